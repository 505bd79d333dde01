//! The outbox's storage (`cache_purge_hooks_sea_orm::outbox`) against real databases: SQLite
//! always, PostgreSQL and MariaDB on 127.0.0.1 where reachable (required with `CI=true`).
//! Time is passed in, so leases and retry times are tested without sleeping.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_purge_hooks_engine::Target;
use cache_purge_hooks_sea_orm::outbox::sea_orm_migration::{MigrationTrait, MigratorTrait};
use cache_purge_hooks_sea_orm::outbox::{self, DeadRows, OutboxRow, entity};
use cache_purge_hooks_testing::db::{TestDb, all_databases};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityTrait,
    PaginatorTrait, QueryOrder, Set, Statement, TransactionTrait,
};

const LEASE: Duration = Duration::from_secs(30);
const LEASE_MS: i64 = 30_000;
/// A fixed "now" for tests that control time.
const T0: i64 = 1_700_000_000_000;

fn url(u: &str) -> Target {
    Target::url(u).unwrap()
}

fn ids(rows: &[OutboxRow]) -> Vec<i64> {
    rows.iter().map(|r| r.id).collect()
}

/// Every database, each with a fresh outbox table.
async fn outbox_dbs() -> Vec<TestDb> {
    let dbs = all_databases().await;
    for db in &dbs {
        outbox::create_table(&db.db)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", db.label));
        db.take_statements();
    }
    dbs
}

async fn count(db: &DatabaseConnection) -> u64 {
    entity::Entity::find().count(db).await.unwrap()
}

/// Inserts one row per target of `backend`, written at `T0 + i`.
async fn seed(db: &DatabaseConnection, backend: &str, n: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(250) {
        let models: Vec<entity::ActiveModel> = chunk
            .iter()
            .map(|i| entity::ActiveModel {
                backend: Set(backend.to_owned()),
                targets: Set(format!("url /p/{i}")),
                created_at: Set(T0 + *i as i64),
                available_at: Set(T0 + *i as i64),
                attempts: Set(0),
                ..Default::default()
            })
            .collect();
        entity::Entity::insert_many(models)
            .exec_without_returning(db)
            .await
            .unwrap();
    }
    let rows = entity::Entity::find()
        .order_by_asc(entity::Column::Id)
        .all(db)
        .await
        .unwrap();
    ids.extend(rows.iter().filter(|r| r.backend == backend).map(|r| r.id));
    ids
}

#[tokio::test]
async fn enqueue_commits_and_rolls_back_with_the_transaction() {
    for db in outbox_dbs().await {
        let label = db.label;
        let conn = &db.db;
        let targets = [url("/posts/a"), url("/"), Target::tag("post-1").unwrap()];

        let txn = conn.begin().await.unwrap();
        outbox::enqueue(&txn, &["varnish", "nginx"], &targets, T0)
            .await
            .unwrap();
        // (SeaORM's SQLite pool has a single connection, held by the transaction.)
        if db.backend() != DbBackend::Sqlite {
            assert_eq!(
                count(conn).await,
                0,
                "{label}: uncommitted rows are invisible"
            );
        }
        txn.rollback().await.unwrap();
        assert_eq!(
            count(conn).await,
            0,
            "{label}: rolled back with the transaction"
        );
        db.take_statements();

        let txn = conn.begin().await.unwrap();
        outbox::enqueue(&txn, &["varnish", "nginx"], &targets, T0)
            .await
            .unwrap();
        txn.commit().await.unwrap();
        let inserts: Vec<String> = db
            .take_statements()
            .into_iter()
            .filter(|s| s.trim_start().to_uppercase().starts_with("INSERT"))
            .collect();
        assert_eq!(
            inserts.len(),
            1,
            "{label}: one INSERT for every row: {inserts:?}"
        );

        let rows = entity::Entity::find()
            .order_by_asc(entity::Column::Id)
            .all(conn)
            .await
            .unwrap();
        let backends: Vec<&str> = rows.iter().map(|r| r.backend.as_str()).collect();
        assert_eq!(backends, ["varnish", "nginx"], "{label}");
        for row in &rows {
            assert_eq!(row.targets, "url /posts/a\nurl /\ntag post-1", "{label}");
            assert_eq!(
                (row.created_at, row.available_at, row.attempts),
                (T0, T0, 0),
                "{label}"
            );
            assert_eq!(
                (
                    row.locked_until,
                    &row.locked_by,
                    &row.last_error,
                    row.dead_at
                ),
                (None, &None, &None, None),
                "{label}"
            );
        }

        // Nothing to write, no statement.
        db.take_statements();
        outbox::enqueue(conn, &["varnish"], &[], T0).await.unwrap();
        outbox::enqueue::<_, &str>(conn, &[], &targets, T0)
            .await
            .unwrap();
        assert!(db.take_statements().is_empty(), "{label}");
        db.close().await;
    }
}

/// A save's transaction still open: its outbox row is not claimed, and the claim does not
/// wait for the transaction (PostgreSQL, MariaDB; SQLite has a single writer).
#[tokio::test]
async fn claims_skip_uncommitted_rows_without_waiting() {
    for db in outbox_dbs().await {
        let label = db.label;
        if db.backend() == DbBackend::Sqlite {
            db.close().await;
            continue;
        }
        let conn = &db.db;
        outbox::enqueue(conn, &["a"], &[url("/committed")], T0)
            .await
            .unwrap();
        let txn = conn.begin().await.unwrap();
        outbox::enqueue(&txn, &["a"], &[url("/open")], T0)
            .await
            .unwrap();

        let claim = outbox::claim(conn, "a", "w", 10, LEASE, T0 + 1);
        let rows = tokio::time::timeout(Duration::from_secs(5), claim)
            .await
            .unwrap_or_else(|_| panic!("{label}: the claim waited for the open transaction"))
            .unwrap();
        let got: Vec<Vec<Target>> = rows.iter().map(|r| r.targets.clone()).collect();
        assert_eq!(got, [vec![url("/committed")]], "{label}");

        // And the open transaction can still write while the row is leased.
        outbox::enqueue(&txn, &["a"], &[url("/open-2")], T0)
            .await
            .unwrap();
        txn.commit().await.unwrap();
        let rows = outbox::claim(conn, "a", "w", 10, LEASE, T0 + 1)
            .await
            .unwrap();
        let got: Vec<Vec<Target>> = rows.iter().map(|r| r.targets.clone()).collect();
        assert_eq!(got, [vec![url("/open")], vec![url("/open-2")]], "{label}");
        db.close().await;
    }
}

#[tokio::test]
async fn a_large_purge_is_spread_over_rows_and_read_back_whole() {
    for db in outbox_dbs().await {
        let label = db.label;
        let conn = &db.db;
        // 3000 URLs of ~40 bytes: about 120 KiB of text, over MySQL's 64 KiB TEXT.
        let targets: Vec<Target> = (0..3000)
            .map(|i| url(&format!("/posts/a-rather-long-slug-number-{i}")))
            .collect();
        outbox::enqueue(conn, &["varnish"], &targets, T0)
            .await
            .unwrap();
        let stored = count(conn).await;
        assert!(stored >= 4, "{label}: {stored} rows");
        let rows = outbox::claim(conn, "varnish", "w", 100, LEASE, T0)
            .await
            .unwrap();
        assert_eq!(rows.len() as u64, stored, "{label}");
        let back: Vec<Target> = rows.into_iter().flat_map(|r| r.targets).collect();
        assert_eq!(back, targets, "{label}: every target, in order");
        db.close().await;
    }
}

#[tokio::test]
async fn claim_takes_the_oldest_due_rows_and_leases_them() {
    for db in outbox_dbs().await {
        let label = db.label;
        let conn = &db.db;
        for (i, at) in [T0 + 100, T0 + 200, T0 + 300, T0 + 400]
            .into_iter()
            .enumerate()
        {
            outbox::enqueue(conn, &["a"], &[url(&format!("/{i}"))], at)
                .await
                .unwrap();
        }
        outbox::enqueue(conn, &["b"], &[url("/b")], T0)
            .await
            .unwrap();
        let now = T0 + 350;

        // Oldest first, at most `limit`, only due rows of the backend.
        let first = outbox::claim(conn, "a", "w1", 2, LEASE, now).await.unwrap();
        let urls: Vec<Vec<Target>> = first.iter().map(|r| r.targets.clone()).collect();
        assert_eq!(urls, [vec![url("/0")], vec![url("/1")]], "{label}");
        assert!(first.iter().all(|r| r.backend == "a" && r.attempts == 0));
        assert_eq!(first[0].created_at, T0 + 100, "{label}");

        // Leased rows are skipped; the row written at +400 is not due yet.
        let second = outbox::claim(conn, "a", "w2", 10, LEASE, now)
            .await
            .unwrap();
        assert_eq!(second.len(), 1, "{label}");
        assert_eq!(second[0].targets, [url("/2")], "{label}");
        assert!(
            outbox::claim(conn, "a", "w3", 10, LEASE, now)
                .await
                .unwrap()
                .is_empty(),
            "{label}"
        );
        let leased = entity::Entity::find_by_id(first[0].id)
            .one(conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (leased.locked_until, leased.locked_by.as_deref()),
            (Some(now + LEASE_MS), Some("w1")),
            "{label}"
        );

        // Still leased just before the lease ends; claimable again once it has.
        let before_end = now + LEASE_MS - 1;
        let late = outbox::claim(conn, "a", "w3", 10, LEASE, before_end)
            .await
            .unwrap();
        assert_eq!(late.len(), 1, "{label}: only the row that became due");
        assert_eq!(late[0].targets, [url("/3")], "{label}");
        let reclaimed = outbox::claim(conn, "a", "w3", 10, LEASE, now + LEASE_MS)
            .await
            .unwrap();
        let expired = [ids(&first), ids(&second)].concat();
        assert_eq!(
            ids(&reclaimed),
            expired,
            "{label}: expired leases, oldest first"
        );

        // The first holders lost their leases: settling does nothing; the new holder's does.
        assert_eq!(outbox::complete(conn, "w1", &ids(&first)).await.unwrap(), 0);
        assert_eq!(
            outbox::fail(conn, "w1", &ids(&first), "x", None, now)
                .await
                .unwrap(),
            0
        );
        assert_eq!(outbox::release(conn, "w2", &ids(&second)).await.unwrap(), 0);
        assert_eq!(outbox::complete(conn, "w3", &expired).await.unwrap(), 3);
        assert_eq!(outbox::complete(conn, "w3", &ids(&late)).await.unwrap(), 1);
        assert_eq!(
            outbox::status(conn, now).await.unwrap()[0].backend,
            "b",
            "{label}"
        );

        // Backend `b` was never touched.
        let b = outbox::claim(conn, "b", "w1", 10, LEASE, now)
            .await
            .unwrap();
        assert_eq!(b.len(), 1, "{label}");
        assert_eq!(
            outbox::claim(conn, "a", "w1", 0, LEASE, now).await.unwrap(),
            []
        );
        db.close().await;
    }
}

#[tokio::test]
async fn a_failed_delivery_waits_for_its_retry_time() {
    for db in outbox_dbs().await {
        let label = db.label;
        let conn = &db.db;
        outbox::enqueue(conn, &["a"], &[url("/x")], T0)
            .await
            .unwrap();
        outbox::enqueue(conn, &["a"], &[url("/y")], T0 + 1)
            .await
            .unwrap();
        let rows = outbox::claim(conn, "a", "w", 1, LEASE, T0 + 10)
            .await
            .unwrap();
        assert_eq!(rows[0].targets, [url("/x")], "{label}");

        let retry_at = T0 + 1000;
        let failed = outbox::fail(
            conn,
            "w",
            &ids(&rows),
            "503 from varnish",
            Some(retry_at),
            T0 + 10,
        )
        .await
        .unwrap();
        assert_eq!(failed, 1, "{label}");

        // Not before its retry time (the other row is claimable meanwhile).
        let other = outbox::claim(conn, "a", "w", 10, LEASE, retry_at - 1)
            .await
            .unwrap();
        assert_eq!(other.len(), 1, "{label}");
        assert_eq!(other[0].targets, [url("/y")], "{label}");
        outbox::complete(conn, "w", &ids(&other)).await.unwrap();

        let again = outbox::claim(conn, "a", "w2", 10, LEASE, retry_at)
            .await
            .unwrap();
        assert_eq!(ids(&again), ids(&rows), "{label}");
        assert_eq!(again[0].attempts, 1, "{label}");
        assert_eq!(again[0].available_at, retry_at, "{label}");
        assert_eq!(
            again[0].last_error.as_deref(),
            Some("503 from varnish"),
            "{label}"
        );

        // Attempts add up.
        outbox::fail(
            conn,
            "w2",
            &ids(&again),
            "timeout",
            Some(retry_at + 1),
            retry_at,
        )
        .await
        .unwrap();
        let third = outbox::claim(conn, "a", "w", 10, LEASE, retry_at + 1)
            .await
            .unwrap();
        assert_eq!(third[0].attempts, 2, "{label}");
        assert_eq!(third[0].last_error.as_deref(), Some("timeout"), "{label}");

        // Released rows come back at once, without an attempt.
        assert_eq!(outbox::release(conn, "w", &ids(&third)).await.unwrap(), 1);
        let fourth = outbox::claim(conn, "a", "w", 10, LEASE, retry_at + 1)
            .await
            .unwrap();
        assert_eq!(ids(&fourth), ids(&third), "{label}");
        assert_eq!(fourth[0].attempts, 2, "{label}");

        // A long error is cut.
        let long = "e".repeat(10_000);
        outbox::fail(conn, "w", &ids(&fourth), &long, Some(retry_at), retry_at)
            .await
            .unwrap();
        let stored = entity::Entity::find_by_id(fourth[0].id)
            .one(conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.last_error.unwrap().chars().count(),
            outbox::MAX_ERROR_CHARS + 1,
            "{label}"
        );
        db.close().await;
    }
}

#[tokio::test]
async fn dead_rows_are_listed_retried_and_deleted() {
    for db in outbox_dbs().await {
        let label = db.label;
        let conn = &db.db;
        outbox::enqueue(conn, &["varnish", "nginx"], &[url("/x")], T0)
            .await
            .unwrap();
        outbox::enqueue(conn, &["nginx"], &[url("/z")], T0 + 1)
            .await
            .unwrap();
        let v = outbox::claim(conn, "varnish", "w", 10, LEASE, T0)
            .await
            .unwrap();
        let n = outbox::claim(conn, "nginx", "w", 10, LEASE, T0 + 1)
            .await
            .unwrap();
        assert_eq!((v.len(), n.len()), (1, 2), "{label}");

        // Given up on: dead, not claimable, listed.
        let died = outbox::fail(conn, "w", &ids(&v), "wrong secret", None, T0 + 5)
            .await
            .unwrap();
        assert_eq!(died, 1, "{label}");
        outbox::fail(conn, "w", &ids(&n), "refused", None, T0 + 6)
            .await
            .unwrap();
        assert!(
            outbox::claim(conn, "varnish", "w", 10, LEASE, T0 + LEASE_MS * 2)
                .await
                .unwrap()
                .is_empty(),
            "{label}"
        );
        let all = outbox::dead(conn, None, 100).await.unwrap();
        assert_eq!(all.len(), 3, "{label}");
        let varnish = outbox::dead(conn, Some("varnish"), 100).await.unwrap();
        assert_eq!(varnish.len(), 1, "{label}");
        let row = &varnish[0];
        assert_eq!(
            (
                row.backend.as_str(),
                row.attempts,
                row.dead_at,
                row.last_error.as_deref()
            ),
            ("varnish", 1, Some(T0 + 5), Some("wrong secret")),
            "{label}"
        );
        assert_eq!(row.targets, [url("/x")], "{label}");
        assert_eq!(outbox::dead(conn, Some("nginx"), 1).await.unwrap().len(), 1);
        assert!(
            outbox::dead(conn, Some("other"), 10)
                .await
                .unwrap()
                .is_empty()
        );

        // Retried by id: claimable at once, attempts from zero.
        let now = T0 + 100;
        let revived = outbox::retry_dead(conn, DeadRows::Ids(&[row.id]), now)
            .await
            .unwrap();
        assert_eq!(revived, 1, "{label}");
        let back = outbox::claim(conn, "varnish", "w", 10, LEASE, now)
            .await
            .unwrap();
        assert_eq!(ids(&back), [row.id], "{label}");
        assert_eq!(back[0].attempts, 0, "{label}");
        // A row that is not dead is not touched by retry_dead.
        assert_eq!(
            outbox::retry_dead(conn, DeadRows::Ids(&[row.id]), now)
                .await
                .unwrap(),
            0
        );

        // Retried by backend, then all; deleted.
        assert_eq!(
            outbox::retry_dead(conn, DeadRows::Backend("varnish"), now)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            outbox::retry_dead(conn, DeadRows::Backend("nginx"), now)
                .await
                .unwrap(),
            2
        );
        let n = outbox::claim(conn, "nginx", "w", 10, LEASE, now)
            .await
            .unwrap();
        outbox::fail(conn, "w", &ids(&n), "again", None, now)
            .await
            .unwrap();
        assert_eq!(
            outbox::retry_dead(conn, DeadRows::All, now).await.unwrap(),
            2
        );
        let n = outbox::claim(conn, "nginx", "w", 10, LEASE, now)
            .await
            .unwrap();
        outbox::fail(conn, "w", &ids(&n), "again", None, now)
            .await
            .unwrap();
        assert_eq!(
            outbox::delete_dead(conn, DeadRows::Ids(&[n[0].id]))
                .await
                .unwrap(),
            1
        );
        assert_eq!(outbox::delete_dead(conn, DeadRows::All).await.unwrap(), 1);
        assert_eq!(
            count(conn).await,
            1,
            "{label}: the leased varnish row is left"
        );
        db.close().await;
    }
}

#[tokio::test]
async fn rows_with_invalid_targets_are_dead_lettered_by_claim() {
    for db in outbox_dbs().await {
        let label = db.label;
        let conn = &db.db;
        outbox::enqueue(conn, &["a"], &[url("/good")], T0)
            .await
            .unwrap();
        let bad = entity::ActiveModel {
            backend: Set("a".into()),
            targets: Set("url /fine\nbogus /x".into()),
            created_at: Set(T0 + 1),
            available_at: Set(T0 + 1),
            attempts: Set(0),
            ..Default::default()
        }
        .insert(conn)
        .await
        .unwrap();
        outbox::enqueue(conn, &["a"], &[url("/also-good")], T0 + 2)
            .await
            .unwrap();

        let rows = outbox::claim(conn, "a", "w", 10, LEASE, T0 + 10)
            .await
            .unwrap();
        let got: Vec<Vec<Target>> = rows.iter().map(|r| r.targets.clone()).collect();
        assert_eq!(
            got,
            [vec![url("/good")], vec![url("/also-good")]],
            "{label}"
        );
        let dead = outbox::dead(conn, None, 10).await.unwrap();
        assert_eq!(ids(&dead), [bad.id], "{label}");
        assert!(
            dead[0].last_error.as_deref().unwrap().contains("bogus /x"),
            "{label}: {:?}",
            dead[0].last_error
        );
        // The listing keeps the lines that parse.
        assert_eq!(dead[0].targets, [url("/fine")], "{label}");
        db.close().await;
    }
}

#[tokio::test]
async fn status_counts_rows_per_backend() {
    for db in outbox_dbs().await {
        let label = db.label;
        let conn = &db.db;
        assert!(
            outbox::status(conn, T0).await.unwrap().is_empty(),
            "{label}"
        );

        // varnish: 2 leased, 1 dead, 1 retrying, 2 ready.
        for i in 0..6 {
            outbox::enqueue(conn, &["varnish"], &[url(&format!("/{i}"))], T0 + i)
                .await
                .unwrap();
        }
        outbox::enqueue(conn, &["nginx"], &[url("/n")], T0 + 50)
            .await
            .unwrap();
        let now = T0 + 100;
        let dead = outbox::claim(conn, "varnish", "w", 1, LEASE, now)
            .await
            .unwrap();
        outbox::fail(conn, "w", &ids(&dead), "x", None, now)
            .await
            .unwrap();
        let retry = outbox::claim(conn, "varnish", "w", 1, LEASE, now)
            .await
            .unwrap();
        outbox::fail(conn, "w", &ids(&retry), "x", Some(now + 1000), now)
            .await
            .unwrap();
        outbox::claim(conn, "varnish", "w", 2, LEASE, now)
            .await
            .unwrap();

        let status = outbox::status(conn, now).await.unwrap();
        assert_eq!(status.len(), 2, "{label}: {status:?}");
        let nginx = &status[0];
        assert_eq!(
            (
                nginx.backend.as_str(),
                nginx.pending,
                nginx.retrying,
                nginx.in_flight,
                nginx.dead
            ),
            ("nginx", 1, 0, 0, 0),
            "{label}"
        );
        assert_eq!(nginx.oldest_created_at, Some(T0 + 50), "{label}");
        let varnish = &status[1];
        assert_eq!(
            (
                varnish.backend.as_str(),
                varnish.pending,
                varnish.retrying,
                varnish.in_flight,
                varnish.dead
            ),
            ("varnish", 3, 1, 2, 1),
            "{label}"
        );
        // The dead row (written first) does not count as lag.
        assert_eq!(varnish.oldest_created_at, Some(T0 + 1), "{label}");

        // Once the leases run out the rows are pending again.
        let later = outbox::status(conn, now + LEASE_MS).await.unwrap();
        assert_eq!((later[1].pending, later[1].in_flight), (5, 0), "{label}");
        db.close().await;
    }
}

/// Four workers, each with its own connection pool (as separate processes would have),
/// claim from 500 rows until none is left and complete what they claim: every row is
/// claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_never_claim_the_same_row() {
    const ROWS: usize = 500;
    const WORKERS: usize = 4;
    for db in outbox_dbs().await {
        let label = db.label;
        let all = seed(&db.db, "varnish", ROWS).await;
        assert_eq!(all.len(), ROWS);
        let url = db.url().await;
        let claimed: Arc<Mutex<Vec<(usize, i64)>>> = Arc::default();
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for w in 0..WORKERS {
            let url = url.clone();
            let claimed = claimed.clone();
            tasks.push(tokio::spawn(async move {
                let conn = Database::connect(&url).await.unwrap();
                let worker = format!("worker-{w}");
                let mut rounds = 0;
                loop {
                    let rows = outbox::claim(&conn, "varnish", &worker, 7, LEASE, outbox::now_ms())
                        .await
                        .unwrap_or_else(|e| panic!("{worker}: {e}"));
                    if rows.is_empty() {
                        break;
                    }
                    rounds += 1;
                    for r in &rows {
                        // Targets came back with their row.
                        assert_eq!(r.targets.len(), 1);
                    }
                    claimed
                        .lock()
                        .unwrap()
                        .extend(rows.iter().map(|r| (w, r.id)));
                    tokio::task::yield_now().await;
                    let done = outbox::complete(&conn, &worker, &ids(&rows)).await.unwrap();
                    assert_eq!(done as usize, rows.len(), "{worker} lost a lease");
                }
                conn.close().await.unwrap();
                rounds
            }));
        }
        let mut rounds = Vec::new();
        for t in tasks {
            rounds.push(t.await.unwrap());
        }
        let claimed = claimed.lock().unwrap().clone();
        let mut seen = HashSet::new();
        let twice: Vec<i64> = claimed
            .iter()
            .map(|(_, id)| *id)
            .filter(|id| !seen.insert(*id))
            .collect();
        assert!(
            twice.is_empty(),
            "{label}: claimed more than once: {twice:?}"
        );
        let missing: Vec<i64> = all
            .iter()
            .copied()
            .filter(|id| !seen.contains(id))
            .collect();
        assert!(missing.is_empty(), "{label}: never claimed: {missing:?}");
        assert_eq!(count(&db.db).await, 0, "{label}");
        let per_worker: BTreeMap<usize, usize> =
            claimed.iter().fold(BTreeMap::new(), |mut m, (w, _)| {
                *m.entry(*w).or_default() += 1;
                m
            });
        eprintln!(
            "{label}: {ROWS} rows in {:?}; rows per worker {per_worker:?}; claims per worker {rounds:?}",
            started.elapsed()
        );
        db.close().await;
    }
}

/// The statements of `docs/outbox.sql` for one database.
fn docs_sql(backend: DbBackend) -> Vec<String> {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/outbox.sql"
    ));
    let heading = match backend {
        DbBackend::Postgres => "-- == PostgreSQL ==",
        DbBackend::Sqlite => "-- == SQLite ==",
        _ => "-- == MySQL / MariaDB ==",
    };
    let section = text
        .split_once(heading)
        .unwrap_or_else(|| panic!("docs/outbox.sql has no `{heading}`"))
        .1;
    let section = section.split("-- == ").next().unwrap();
    let without_comments: String = section
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The outbox table's columns (name, type, nullability, default, key) and index columns, as
/// the database describes them.
async fn describe(conn: &DatabaseConnection) -> Vec<String> {
    let backend = conn.get_database_backend();
    let (columns, indexes) = match backend {
        DbBackend::Postgres => (
            "SELECT column_name || ' ' || data_type || ' ' || is_nullable || ' ' \
             || COALESCE(column_default, '-') || ' ' || COALESCE(character_maximum_length::text, '-') \
             || ' ' || is_identity AS d \
             FROM information_schema.columns WHERE table_name = 'cache_purge_outbox' \
             ORDER BY ordinal_position",
            "SELECT indexdef AS d FROM pg_indexes WHERE tablename = 'cache_purge_outbox' ORDER BY indexname",
        ),
        DbBackend::Sqlite => (
            "SELECT name || ' ' || type || ' ' || \"notnull\" || ' ' || COALESCE(dflt_value, '-') \
             || ' ' || pk AS d FROM pragma_table_info('cache_purge_outbox') ORDER BY cid",
            "SELECT il.name || ' ' || ii.seqno || ' ' || ii.name AS d \
             FROM pragma_index_list('cache_purge_outbox') il, pragma_index_info(il.name) ii \
             ORDER BY il.name, ii.seqno",
        ),
        _ => (
            "SELECT CONCAT_WS(' ', column_name, column_type, is_nullable, COALESCE(column_default, '-'), \
             column_key, extra) AS d FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = 'cache_purge_outbox' \
             ORDER BY ordinal_position",
            "SELECT CONCAT_WS(' ', index_name, seq_in_index, column_name, non_unique) AS d \
             FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = 'cache_purge_outbox' \
             ORDER BY index_name, seq_in_index",
        ),
    };
    let mut out = Vec::new();
    for sql in [columns, indexes] {
        for row in conn
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
        {
            out.push(row.try_get::<String>("", "d").unwrap());
        }
    }
    out
}

struct Migrator;

#[cache_purge_hooks_sea_orm::outbox::sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(outbox::Migration)]
    }
}

/// The migration (run by a `Migrator`) and `docs/outbox.sql` make the same table and index,
/// and the outbox works on the one made from the docs.
#[tokio::test]
async fn the_migration_and_docs_sql_make_the_same_table() {
    let migrated = all_databases().await;
    let from_docs = all_databases().await;
    assert_eq!(migrated.len(), from_docs.len());
    for (m, d) in migrated.into_iter().zip(from_docs) {
        let label = m.label;
        Migrator::up(&m.db, None)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let applied =
            m.db.query_one_raw(Statement::from_string(
                m.backend(),
                "SELECT version FROM seaql_migrations",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            applied.try_get::<String>("", "version").unwrap(),
            "m20261125_000100_cache_purge_outbox"
        );

        for stmt in docs_sql(d.backend()) {
            d.db.execute_unprepared(&stmt)
                .await
                .unwrap_or_else(|e| panic!("{label}: docs/outbox.sql: {e}\n{stmt}"));
        }
        let want = describe(&m.db).await;
        assert!(want.len() > 10, "{label}: {want:?}");
        assert_eq!(
            describe(&d.db).await,
            want,
            "{label}: docs/outbox.sql differs"
        );

        // create_table on an existing table (made from the docs) changes nothing.
        outbox::create_table(&d.db).await.unwrap();
        assert_eq!(describe(&d.db).await, want, "{label}");

        // The outbox works on the docs' table.
        outbox::enqueue(&d.db, &["varnish"], &[url("/a"), Target::Everything], T0)
            .await
            .unwrap();
        let rows = outbox::claim(&d.db, "varnish", "w", 10, LEASE, T0)
            .await
            .unwrap();
        assert_eq!(rows[0].targets, [url("/a"), Target::Everything], "{label}");
        outbox::complete(&d.db, "w", &ids(&rows)).await.unwrap();
        assert_eq!(count(&d.db).await, 0, "{label}");

        // down drops the table.
        Migrator::down(&m.db, None).await.unwrap();
        let gone = entity::Entity::find().count(&m.db).await;
        assert!(gone.is_err(), "{label}: the table is still there");
        m.close().await;
        d.close().await;
    }
}

/// The claim reads the claim index in order (no sort of every waiting row, no table scan)
/// on each database, with a realistic backlog.
#[tokio::test]
async fn the_claim_reads_the_index_in_order() {
    for db in outbox_dbs().await {
        let label = db.label;
        let backend = db.backend();
        seed(&db.db, "varnish", 3000).await;
        seed(&db.db, "nginx", 3000).await;
        // The exact claim statement, captured from a connection of our own.
        let mut conn = Database::connect(db.url().await).await.unwrap();
        let seen: Arc<Mutex<Vec<Statement>>> = Arc::default();
        let sink = seen.clone();
        conn.set_metric_callback(move |info| sink.lock().unwrap().push(info.statement.clone()));
        match backend {
            DbBackend::Postgres => conn.execute_unprepared("ANALYZE cache_purge_outbox").await,
            DbBackend::Sqlite => conn.execute_unprepared("ANALYZE").await,
            _ => {
                conn.execute_unprepared("ANALYZE TABLE cache_purge_outbox")
                    .await
            }
        }
        .unwrap();
        seen.lock().unwrap().clear();
        outbox::claim(&conn, "varnish", "w", 10, LEASE, T0 + 10_000)
            .await
            .unwrap();
        let statements = seen.lock().unwrap().clone();
        // On MySQL the claim's SELECT is the first statement of its transaction.
        let claim = statements
            .into_iter()
            .find(|s| {
                let sql = s.sql.to_uppercase();
                sql.contains("SKIP LOCKED") || sql.starts_with("UPDATE")
            })
            .unwrap();
        let explain = match backend {
            DbBackend::Sqlite => "EXPLAIN QUERY PLAN ",
            _ => "EXPLAIN ",
        };
        let plan_rows = conn
            .query_all_raw(Statement {
                sql: format!("{explain}{}", claim.sql),
                ..claim.clone()
            })
            .await
            .unwrap();
        let plan: Vec<String> = plan_rows
            .iter()
            .map(|row| match backend {
                DbBackend::Postgres => row.try_get::<String>("", "QUERY PLAN").unwrap(),
                DbBackend::Sqlite => row.try_get::<String>("", "detail").unwrap(),
                _ => format!(
                    "table={:?} key={:?} extra={:?}",
                    row.try_get::<Option<String>>("", "table").unwrap(),
                    row.try_get::<Option<String>>("", "key").unwrap(),
                    row.try_get::<Option<String>>("", "Extra").unwrap(),
                ),
            })
            .collect();
        let text = plan.join("\n");
        eprintln!("{label} claim plan:\n{text}");
        assert!(
            text.contains("idx_cache_purge_outbox_claim"),
            "{label}: {text}"
        );
        let sorts = match backend {
            DbBackend::Postgres => text.contains("Sort"),
            DbBackend::Sqlite => text.contains("TEMP B-TREE"),
            _ => text.contains("filesort"),
        };
        assert!(!sorts, "{label}: the claim sorts: {text}");
        conn.close().await.unwrap();
        db.close().await;
    }
}

/// The heap page of each row, by id (PostgreSQL's `ctid` is `(page, item)`).
async fn pages(conn: &DatabaseConnection) -> BTreeMap<i64, String> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id, split_part(trim(both '()' from ctid::text), ',', 1) AS page \
             FROM cache_purge_outbox",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get::<i64>("", "id").unwrap(),
                r.try_get::<String>("", "page").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_claim_on_postgres_leaves_each_row_on_its_page_without_new_index_entries() {
    for db in outbox_dbs().await {
        if db.backend() != DbBackend::Postgres {
            db.close().await;
            continue;
        }
        let conn = &db.db;
        seed(conn, "a", 500).await;
        let before = pages(conn).await;
        let pages_used: HashSet<&String> = before.values().collect();
        assert!(pages_used.len() > 1, "the rows fill several pages");

        // The longest default worker id: `{HOSTNAME}:{pid}:{n}`, a 64-character host name.
        let worker = format!("{}:4194304:999", "h".repeat(64));
        let claimed = outbox::claim(conn, "a", &worker, 500, LEASE, T0 + 1_000)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 500);
        // A new row version on the same page, no indexed column changed: a HOT update, which
        // adds no entry to the primary key or the claim index (at the default fillfactor of
        // 100 the pages are full, and every claimed row moves to a new page).
        let after = pages(conn).await;
        let moved = before
            .iter()
            .filter(|(id, page)| after.get(*id) != Some(*page))
            .count();
        assert_eq!(moved, 0, "claimed rows moved to another page");
        db.close().await;
    }
}
