//! The outbox delivery mode end to end: saves write their purges into the outbox in their own
//! transaction, workers deliver them. With real databases (SQLite; PostgreSQL and MariaDB on
//! 127.0.0.1, required with `CI=true`), a real nginx, and real child processes: an app killed
//! with SIGKILL mid-stream, and two worker processes sharing one outbox.
//!
//! The child processes are this test binary again, running the ignored test `outbox_child`
//! with `CPH_CHILD` saying what to do.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_purge_hooks::backend::{
    Backend, Capabilities, Cause, MemoryBackend, NginxBackend, PurgeError,
};
use cache_purge_hooks::sea_orm::outbox::{self, OutboxWorker};
use cache_purge_hooks::settings::NginxSettings;
use cache_purge_hooks::{Delivery, Purger, RetryPolicy, Target};
use cache_purge_hooks_testing::{Nginx, NginxConfig, Origin, assert_cached, assert_purged, warm};
use common::TestDb;
use common::entities::post;
use sea_orm::{ActiveModelTrait, Database, DatabaseConnection, DbErr, EntityTrait, Set};

fn new_post(slug: &str) -> post::ActiveModel {
    post::ActiveModel {
        slug: Set(slug.into()),
        title: Set(format!("Title of {slug}")),
        category_id: Set(1),
        published: Set(true),
        ..Default::default()
    }
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(1000)
        .with_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

fn outbox_purger(backends: Vec<(&str, Arc<dyn Backend>)>) -> Purger {
    let mut builder = Purger::builder()
        .delivery(Delivery::Outbox)
        .retry(quick_retries());
    for (name, b) in backends {
        builder = builder.shared_backend(name, b);
    }
    builder.build().unwrap()
}

/// Waits until the outbox holds no row that is pending or leased.
async fn drained(db: &DatabaseConnection, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let status = outbox::status(db, outbox::now_ms()).await.unwrap();
        if status
            .iter()
            .all(|s| s.pending + s.in_flight + s.retrying == 0)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

async fn outbox_rows(db: &DatabaseConnection) -> usize {
    outbox::entity::Entity::find().all(db).await.unwrap().len()
}

/// Every database, with the outbox table.
async fn outbox_dbs() -> Vec<TestDb> {
    let dbs = common::all_databases().await;
    for db in &dbs {
        outbox::create_table(&db.db).await.unwrap();
    }
    dbs
}

#[tokio::test(flavor = "multi_thread")]
async fn purges_commit_and_roll_back_with_the_save() {
    for db in outbox_dbs().await {
        let label = db.label;
        let memory = MemoryBackend::new();
        let purger = outbox_purger(vec![("memory", Arc::new(memory.clone()))]);

        // Rolled back: neither the row nor its purge exists.
        let rolled_back = purger
            .scope(cache_purge_hooks::sea_orm::transaction(&db.db, |txn| {
                Box::pin(async move {
                    new_post("never").insert(txn).await?;
                    Err::<(), DbErr>(DbErr::Custom("changed my mind".into()))
                })
            }))
            .await;
        assert!(rolled_back.is_err());
        assert_eq!(outbox_rows(&db.db).await, 0, "{label}");

        // Committed: the purge is a row, and nothing was sent by the save itself.
        purger
            .scope(cache_purge_hooks::sea_orm::transaction(&db.db, |txn| {
                Box::pin(async move { new_post("kept").insert(txn).await })
            }))
            .await
            .unwrap();
        purger.flush().await;
        assert_eq!(outbox_rows(&db.db).await, 1, "{label}");
        assert!(
            memory.records().is_empty(),
            "{label}: sent before the worker ran"
        );

        let worker = OutboxWorker::builder(db.db.clone(), purger.clone())
            .poll_interval(Duration::from_millis(20))
            .start()
            .await
            .unwrap();
        assert!(drained(&db.db, Duration::from_secs(10)).await, "{label}");
        let stats = worker.stop(Duration::from_secs(5)).await;
        assert_eq!(stats.delivered, 1, "{label}");
        assert_eq!(outbox_rows(&db.db).await, 0, "{label}");
        assert!(memory.was_purged("/posts/kept"), "{label}");
        assert!(!memory.was_purged("/posts/never"), "{label}");
        db.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_backend_is_retried_alone() {
    for db in outbox_dbs().await {
        let label = db.label;
        let good = MemoryBackend::new();
        let bad = MemoryBackend::new();
        bad.fail_with(Some(
            PurgeError::new(Cause::Status(503), "503").on_server("bad:80"),
        ));
        let purger = outbox_purger(vec![
            ("good", Arc::new(good.clone())),
            ("bad", Arc::new(bad.clone())),
        ]);
        purger
            .scope(new_post("split").insert(&db.db))
            .await
            .unwrap();
        let worker = OutboxWorker::builder(db.db.clone(), purger.clone())
            .poll_interval(Duration::from_millis(20))
            .start()
            .await
            .unwrap();
        // The good backend's row is delivered and gone; the bad one's waits with attempts.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = outbox::entity::Entity::find().all(&db.db).await.unwrap();
            if rows.len() == 1 && rows[0].backend == "bad" && rows[0].attempts >= 2 {
                break;
            }
            assert!(Instant::now() < deadline, "{label}: {rows:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(good.was_purged("/posts/split"));
        let good_calls = good.records().len();
        // Fixed: delivered, and the good backend was not sent it again.
        bad.fail_with(None);
        assert!(drained(&db.db, Duration::from_secs(10)).await, "{label}");
        worker.stop(Duration::from_secs(5)).await;
        assert!(bad.records().iter().any(|r| !r.failed));
        assert_eq!(good.records().len(), good_calls, "{label}");
        db.close().await;
    }
}

/// The in-memory queue and the outbox decide retries with one function
/// (`RetryPolicy::decide`): a permanent failure is dead at once in both, after exactly one
/// attempt, and both keep the typed error.
#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_failure_is_dead_at_once_in_memory_and_in_outbox_mode() {
    let wrong_secret =
        || PurgeError::new(Cause::Authentication, "wrong secret").on_server("v:6082");

    // In memory.
    let memory = MemoryBackend::new();
    memory.fail_with(Some(wrong_secret()));
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .retry(quick_retries())
        .backend("memory", memory.clone())
        .build()
        .unwrap();
    purger.purge([Target::url("/posts/a").unwrap()]).await;
    purger.flush().await;
    let dead = purger.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(dead[0].error.cause(), &Cause::Authentication);
    assert_eq!(memory.records().len(), 1, "tried once");
    assert_eq!(purger.stats()[0].queued, 0);

    // In the outbox, on every database.
    for db in outbox_dbs().await {
        let label = db.label;
        let memory = MemoryBackend::new();
        memory.fail_with(Some(wrong_secret()));
        let purger = outbox_purger(vec![("memory", Arc::new(memory.clone()))]);
        purger
            .scope(new_post("secret").insert(&db.db))
            .await
            .unwrap();
        let worker = OutboxWorker::builder(db.db.clone(), purger.clone())
            .poll_interval(Duration::from_millis(20))
            .start()
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let row = loop {
            let rows = outbox::entity::Entity::find().all(&db.db).await.unwrap();
            if let Some(row) = rows.iter().find(|r| r.dead_at.is_some()) {
                break row.clone();
            }
            assert!(Instant::now() < deadline, "{label}: {rows:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let stats = worker.stop(Duration::from_secs(5)).await;
        assert_eq!(row.attempts, 1, "{label}: dead after one attempt");
        assert!(
            row.last_error
                .as_deref()
                .is_some_and(|e| e.contains("wrong secret")),
            "{label}: {row:?}"
        );
        assert_eq!((stats.dead, stats.delivered), (1, 0), "{label}");
        assert_eq!(memory.records().len(), 1, "{label}: tried once");
        // The engine counted it like any purge, and kept the typed error.
        let backend = &purger.stats()[0];
        let targets = memory.records()[0].targets.len() as u64;
        assert_eq!((backend.failed, backend.purged), (targets, 0), "{label}");
        assert_eq!(
            backend.last_error.as_ref().map(|e| e.cause().clone()),
            Some(Cause::Authentication),
            "{label}"
        );
        db.close().await;
    }
}

/// Read-your-writes in outbox mode: a watched save returns from `attempted` only once this
/// process's outbox worker has delivered the rows the save wrote (in its transaction, too).
#[tokio::test(flavor = "multi_thread")]
async fn a_watched_save_waits_for_the_outbox_worker_to_deliver_its_rows() {
    use cache_purge_hooks::watch::Watch;

    for db in outbox_dbs().await {
        let label = db.label;
        let memory = MemoryBackend::new();
        let purger = outbox_purger(vec![("memory", Arc::new(Slow(memory.clone())))]);
        let worker = OutboxWorker::builder(db.db.clone(), purger.clone())
            .poll_interval(Duration::from_secs(30))
            .start()
            .await
            .unwrap();
        // A plain save, and one in an after-commit transaction.
        let (saved, watch) = Watch::run(purger.scope(new_post("watched").insert(&db.db))).await;
        saved.unwrap();
        let watched = watch.attempted(Duration::from_secs(10)).await;
        assert!(watched.in_time(), "{label}: {watched:?}");
        assert!(memory.was_purged("/posts/watched"), "{label}");
        let (saved, watch) = Watch::run(
            purger.scope(cache_purge_hooks::sea_orm::transaction(&db.db, |txn| {
                Box::pin(async move { new_post("in-a-transaction").insert(txn).await })
            })),
        )
        .await;
        saved.unwrap();
        let watched = watch.attempted(Duration::from_secs(10)).await;
        assert!(watched.in_time(), "{label}: {watched:?}");
        assert!(memory.was_purged("/posts/in-a-transaction"), "{label}");
        // Unwatched, the save returns before the worker has delivered.
        purger
            .scope(new_post("unwatched").insert(&db.db))
            .await
            .unwrap();
        assert!(!memory.was_purged("/posts/unwatched"), "{label}");
        assert!(drained(&db.db, Duration::from_secs(10)).await, "{label}");
        worker.stop(Duration::from_secs(5)).await;
        db.close().await;
    }
}

/// With `repurge_after`, a save writes its rows twice, the second set due later: the delayed
/// second purge survives a restart, and the worker delivers it when it is due.
#[tokio::test(flavor = "multi_thread")]
async fn the_delayed_second_purge_is_a_second_row_due_later() {
    for db in outbox_dbs().await {
        let label = db.label;
        let memory = MemoryBackend::new();
        let purger = Purger::builder()
            .delivery(Delivery::Outbox)
            .retry(quick_retries())
            .repurge_after(Duration::from_millis(700))
            .backend("memory", memory.clone())
            .build()
            .unwrap();
        let before = outbox::now_ms();
        purger
            .scope(new_post("twice").insert(&db.db))
            .await
            .unwrap();
        let rows = outbox::entity::Entity::find().all(&db.db).await.unwrap();
        assert_eq!(rows.len(), 2, "{label}: {rows:?}");
        assert!(rows[0].available_at < before + 700, "{label}: {rows:?}");
        assert!(rows[1].available_at >= before + 700, "{label}: {rows:?}");
        assert_eq!(rows[0].targets, rows[1].targets, "{label}");
        let worker = OutboxWorker::builder(db.db.clone(), purger.clone())
            .poll_interval(Duration::from_millis(50))
            .start()
            .await
            .unwrap();
        assert!(drained(&db.db, Duration::from_secs(10)).await, "{label}");
        let stats = worker.stop(Duration::from_secs(5)).await;
        assert_eq!(stats.delivered, 2, "{label}");
        let count = memory
            .urls()
            .iter()
            .filter(|u| *u == "/posts/twice")
            .count();
        assert_eq!(count, 2, "{label}: {:?}", memory.urls());
        db.close().await;
    }
}

/// A backend whose purges take a while, and which says when one has begun.
struct SlowBackend {
    started: Arc<tokio::sync::Notify>,
    delay: Duration,
}

#[cache_purge_hooks::async_trait]
impl Backend for SlowBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities::URL
    }
    async fn purge(&self, _batch: &[Target]) -> Result<(), PurgeError> {
        self.started.notify_one();
        tokio::time::sleep(self.delay).await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_counts_the_deliveries_it_waited_for() {
    let db = common::sqlite().await;
    outbox::create_table(&db.db).await.unwrap();
    let started = Arc::new(tokio::sync::Notify::new());
    let purger = outbox_purger(vec![(
        "slow",
        Arc::new(SlowBackend {
            started: started.clone(),
            delay: Duration::from_millis(300),
        }),
    )]);
    purger
        .scope(new_post("in-flight").insert(&db.db))
        .await
        .unwrap();
    let worker = OutboxWorker::builder(db.db.clone(), purger.clone())
        .poll_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    // Stop while the delivery is under way: stop waits for it, and counts it.
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the worker starts delivering");
    let stats = worker.stop(Duration::from_secs(5)).await;
    assert_eq!(stats.delivered, 1, "{stats:?}");
    assert!(drained(&db.db, Duration::from_secs(1)).await);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_refuses_to_start_without_the_table() {
    let db = common::sqlite().await;
    let purger = outbox_purger(vec![("m", Arc::new(MemoryBackend::new()))]);
    let err = OutboxWorker::builder(db.db.clone(), purger)
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cache_purge_outbox"), "{err}");
    assert!(err.contains("outbox::Migration"), "{err}");
    db.close().await;
}

// ---------------------------------------------------------------------------------------
// Real processes.

const CHILD: &str = "CPH_CHILD";

/// Runs this test binary's `outbox_child` in a new process.
fn spawn_child(role: &str, vars: &[(&str, String)]) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(exe);
    command
        .args(["outbox_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in vars {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

/// Lines the child prints for the parent start with this.
const SAY: &str = "CPH ";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a child process of the outbox tests (CPH_CHILD says what to do)"]
async fn outbox_child() {
    let role = std::env::var(CHILD).expect("run by the outbox tests, which set CPH_CHILD");
    let db = Database::connect(std::env::var("CPH_DB").unwrap())
        .await
        .unwrap();
    match role.as_str() {
        "saver" => saver(db).await,
        "worker" => worker(db).await,
        other => panic!("unknown role {other}"),
    }
}

/// Saves posts in a stream, every fourth in a transaction that rolls back, until killed.
async fn saver(db: DatabaseConnection) {
    let mut settings = NginxSettings::default();
    settings.servers = vec![std::env::var("CPH_NGINX").unwrap().parse().unwrap()];
    settings.purge_prefix = Some("/purge".parse().unwrap());
    let nginx: Arc<dyn Backend> = Arc::new(NginxBackend::new(&settings).unwrap());
    let purger = outbox_purger(vec![("nginx", nginx)]);
    purger.install();
    let _worker = OutboxWorker::builder(db.clone(), purger.clone())
        .poll_interval(Duration::from_millis(20))
        .lease(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    for i in 0..10_000 {
        if i % 4 == 3 {
            let slug = format!("r{i}");
            let _ = cache_purge_hooks::sea_orm::transaction(&db, |txn| {
                Box::pin(async move {
                    new_post(&slug).insert(txn).await?;
                    Err::<(), DbErr>(DbErr::Custom("rolled back on purpose".into()))
                })
            })
            .await;
        } else {
            new_post(&format!("s{i}")).insert(&db).await.unwrap();
            println!("{SAY}committed s{i}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Delivers the outbox with a slow recording backend until it is empty, then prints what it
/// purged.
async fn worker(db: DatabaseConnection) {
    let memory = MemoryBackend::new();
    let slow = Arc::new(Slow(memory.clone()));
    let purger = outbox_purger(vec![("memory", slow)]);
    let worker = OutboxWorker::builder(db.clone(), purger)
        .poll_interval(Duration::from_millis(10))
        .claim_limit(10)
        .start()
        .await
        .unwrap();
    assert!(drained(&db, Duration::from_secs(60)).await);
    let stats = worker.stop(Duration::from_secs(5)).await;
    for url in memory.urls() {
        println!("{SAY}purged {url}");
    }
    println!("{SAY}lease_lost {}", stats.lease_lost);
}

/// A memory backend that takes 10 ms per batch, so that two workers overlap.
struct Slow(MemoryBackend);

#[cache_purge_hooks::async_trait]
impl Backend for Slow {
    fn capabilities(&self) -> Capabilities {
        Capabilities::URL
    }
    fn max_batch(&self) -> usize {
        100
    }
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.0.purge(batch).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_killed_mid_stream_loses_no_committed_purge() {
    for db in [common::sqlite().await]
        .into_iter()
        .chain(common::postgres().await)
    {
        let label = db.label;
        outbox::create_table(&db.db).await.unwrap();
        let origin = Origin::start().unwrap();
        let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
        let pages: Vec<String> = (0..60)
            .flat_map(|i| [format!("/posts/s{i}"), format!("/posts/r{i}")])
            .collect();
        let refs: Vec<&str> = pages.iter().map(String::as_str).collect();
        warm(&nginx, &refs).await;

        let mut child = spawn_child(
            "saver",
            &[("CPH_DB", db.url().await), ("CPH_NGINX", nginx.addr())],
        );
        let stdout = child.stdout.take().unwrap();
        let committed_lines = tokio::task::spawn_blocking(move || {
            let mut n = 0;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with(&format!("{SAY}committed")) {
                    n += 1;
                    if n == 30 {
                        break;
                    }
                }
            }
            n
        })
        .await
        .unwrap();
        assert_eq!(committed_lines, 30, "{label}: the saver did not get going");
        // SIGKILL, mid-stream: no shutdown, no flush.
        child.kill().unwrap();
        child.wait().unwrap();

        // The truth is the database: what committed.
        let committed: BTreeSet<String> = post::Entity::find()
            .all(&db.db)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.slug)
            .collect();
        assert!(committed.len() >= 30, "{label}");
        assert!(
            committed.iter().all(|s| s.starts_with('s')),
            "{label}: {committed:?}"
        );

        // The app restarts: a new worker delivers what the killed one had not.
        let mut settings = NginxSettings::default();
        settings.servers = vec![nginx.addr().parse().unwrap()];
        settings.purge_prefix = Some("/purge".parse().unwrap());
        let purger = outbox_purger(vec![(
            "nginx",
            Arc::new(NginxBackend::new(&settings).unwrap()) as Arc<dyn Backend>,
        )]);
        let worker = OutboxWorker::builder(db.db.clone(), purger)
            .poll_interval(Duration::from_millis(20))
            .start()
            .await
            .unwrap();
        // Rows the killed worker had claimed come back when their 2 s lease runs out.
        assert!(drained(&db.db, Duration::from_secs(30)).await, "{label}");
        worker.stop(Duration::from_secs(5)).await;
        assert_eq!(outbox_rows(&db.db).await, 0, "{label}");

        for i in 0..60 {
            let slug = format!("s{i}");
            let page = format!("/posts/{slug}");
            if committed.contains(&slug) {
                assert_purged(&nginx, &origin, &page).await;
            } else {
                assert_cached(&nginx, &page).await;
            }
            // Never committed: never purged.
            assert_cached(&nginx, &format!("/posts/r{i}")).await;
        }
        db.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_worker_processes_share_one_outbox() {
    let dbs: Vec<TestDb> = common::postgres()
        .await
        .into_iter()
        .chain(common::mariadb().await)
        .collect();
    for db in dbs {
        let label = db.label;
        outbox::create_table(&db.db).await.unwrap();
        let targets: Vec<Target> = (0..400)
            .map(|i| Target::url(&format!("/item/{i}")).unwrap())
            .collect();
        for t in &targets {
            outbox::enqueue(
                &db.db,
                &["memory"],
                std::slice::from_ref(t),
                outbox::now_ms(),
            )
            .await
            .unwrap();
        }
        let url = db.url().await;
        let children: Vec<_> = (0..2)
            .map(|_| spawn_child("worker", &[("CPH_DB", url.clone())]))
            .collect();
        let mut purged: HashMap<String, usize> = HashMap::new();
        let mut per_worker = Vec::new();
        let mut lease_lost = 0;
        for mut child in children {
            let stdout = child.stdout.take().unwrap();
            let lines: Vec<String> = tokio::task::spawn_blocking(move || {
                BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                    .filter_map(|l| l.strip_prefix(SAY).map(str::to_owned))
                    .collect()
            })
            .await
            .unwrap();
            assert!(child.wait().unwrap().success(), "{label}: a worker failed");
            let mut mine = 0;
            for line in lines {
                if let Some(url) = line.strip_prefix("purged ") {
                    *purged.entry(url.to_owned()).or_default() += 1;
                    mine += 1;
                } else if let Some(n) = line.strip_prefix("lease_lost ") {
                    lease_lost += n.parse::<u64>().unwrap();
                }
            }
            per_worker.push(mine);
        }
        let duplicates: usize = purged.values().map(|n| n - 1).sum();
        eprintln!(
            "{label}: rows delivered per worker {per_worker:?}, duplicates {duplicates}, lease lost {lease_lost}"
        );
        // Every row delivered, none lost; with leases far longer than a delivery, none twice.
        assert_eq!(purged.len(), 400, "{label}");
        assert_eq!(duplicates, 0, "{label}");
        assert_eq!(outbox_rows(&db.db).await, 0, "{label}");
        db.close().await;
    }
}

// ---------------------------------------------------------------------------------------
// SeaORM 2's ActiveModelEx, which saves a model and its relations in a transaction of its
// own (`db.begin()` inside `save`/`insert`): the hooks run on that transaction.

mod dense {
    pub mod article {
        use cache_purge_hooks::CachePurge;
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, DeriveEntityModel, CachePurge)]
        #[sea_orm(table_name = "ex_article")]
        #[cache_purge(url = "/articles/{slug}")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i32,
            pub slug: String,
            #[sea_orm(has_many)]
            pub notes: HasMany<super::note::Entity>,
        }

        cache_purge_hooks::sea_orm::active_model_behavior!();
    }

    pub mod note {
        use cache_purge_hooks::CachePurge;
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, CachePurge)]
        #[sea_orm(table_name = "ex_note")]
        #[cache_purge(url = "/notes/{body}")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i32,
            pub article_id: i32,
            #[sea_orm(unique)]
            pub body: String,
            #[sea_orm(belongs_to, from = "article_id", to = "id")]
            pub article: HasOne<super::article::Entity>,
        }

        cache_purge_hooks::sea_orm::active_model_behavior!();
    }
}

fn article_ex(slug: &str, notes: &[&str]) -> dense::article::ActiveModelEx {
    use sea_orm::ActiveHasMany;
    dense::article::ActiveModelEx {
        slug: Set(slug.into()),
        notes: ActiveHasMany::Append(
            notes
                .iter()
                .map(|b| dense::note::ActiveModelEx {
                    body: Set((*b).into()),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn active_model_ex_saves_purge_only_if_their_own_transaction_commits() {
    use sea_orm::{ConnectionTrait, Schema};
    for db in outbox_dbs().await {
        let label = db.label;
        let schema = Schema::new(db.backend());
        for stmt in [
            schema.create_table_from_entity(dense::article::Entity),
            schema.create_table_from_entity(dense::note::Entity),
        ] {
            db.db.execute(&stmt).await.unwrap();
        }

        // Outbox: the rows are written on ActiveModelEx's own transaction.
        let purger = outbox_purger(vec![("memory", Arc::new(MemoryBackend::new()))]);
        purger
            .scope(article_ex("ok", &["first"]).insert(&db.db))
            .await
            .unwrap();
        let stored: Vec<String> = outbox::entity::Entity::find()
            .all(&db.db)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.targets)
            .collect();
        assert_eq!(stored, ["url /articles/ok", "url /notes/first"], "{label}");
        // The second note breaks a UNIQUE constraint: the whole save rolls back, rows too.
        let failed = purger
            .scope(article_ex("broken", &["dup", "dup"]).insert(&db.db))
            .await;
        assert!(failed.is_err(), "{label}");
        assert_eq!(
            outbox_rows(&db.db).await,
            2,
            "{label}: nothing of the failed save"
        );

        // after_commit: wrapped in cache_purge_hooks::sea_orm::transaction, the save's own
        // transaction is a savepoint and its purges wait for the outer COMMIT.
        let memory = MemoryBackend::new();
        let purger = Purger::builder()
            .backend("memory", memory.clone())
            .build()
            .unwrap();
        let failed = purger
            .scope(cache_purge_hooks::sea_orm::transaction(&db.db, |txn| {
                Box::pin(async move { article_ex("broken", &["dup2", "dup2"]).insert(txn).await })
            }))
            .await;
        assert!(failed.is_err(), "{label}");
        purger
            .scope(cache_purge_hooks::sea_orm::transaction(&db.db, |txn| {
                Box::pin(async move { article_ex("fine", &["second"]).insert(txn).await })
            }))
            .await
            .unwrap();
        purger.flush().await;
        assert_eq!(
            memory.url_set(),
            ["/articles/fine", "/notes/second"],
            "{label}"
        );
        db.close().await;
    }
}
