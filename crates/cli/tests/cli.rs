//! The `cache-purge` binary against real servers: varnishd and nginx started by
//! `cache-purge-hooks-testing` on free loopback ports, and a real SQLite outbox. Each test
//! runs the built binary as a person would, and checks what a person would: the exit code,
//! the report, and the caches themselves (purged pages are a MISS with fresh content, their
//! neighbours still a HIT).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cache_purge_hooks_engine::Target;
use cache_purge_hooks_sea_orm::outbox;
use cache_purge_hooks_testing::{
    AkamaiFake, AkamaiFakeConfig, CacheServer, CloudFrontFake, CloudFrontFakeConfig,
    CloudflareFake, CloudflareFakeConfig, FastlyFake, FastlyFakeConfig, Nginx, NginxConfig, Origin,
    PurgeLocation, Varnish, assert_cached, assert_purged, refused_addr, warm,
};
use serde_json::Value;

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// Runs `cache-purge ARGS` in `dir` (so that no stray ./cache-purge.toml is read), with
/// `stdin` as its standard input and no CACHE_PURGE__* variables but `env`.
async fn cache_purge(dir: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cache-purge"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("CACHE_PURGE_CONFIG")
        .env_remove("DATABASE_URL")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("CACHE_PURGE__") {
            command.env_remove(k);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("the cache-purge binary starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        tokio::io::AsyncWriteExt::write_all(&mut pipe, text.as_bytes())
            .await
            .expect("stdin is written");
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("cache-purge finishes within 60 s")
        .expect("cache-purge runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn write_settings(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("cache-purge.toml");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    path
}

fn varnish_cli_backend(name: &str, varnish: &Varnish) -> String {
    format!(
        "[backends.{name}]\nkind = \"varnish\"\nservers = [\"{}\"]\nsecret_file = \"{}\"\ntimeout = \"2s\"\n",
        varnish.admin_addr(),
        varnish.secret_file().display()
    )
}

fn nginx_http_backend(name: &str, addr: &str) -> String {
    format!(
        "[backends.{name}]\nkind = \"nginx\"\nservers = [\"{addr}\"]\npurge_prefix = \"/purge\"\ntimeout = \"2s\"\n"
    )
}

/// An origin, a varnishd and an nginx in front of it.
async fn start_both() -> (Origin, Varnish, Nginx) {
    let origin = Origin::start().unwrap();
    let (varnish, nginx) = tokio::try_join!(
        Varnish::start(&origin),
        Nginx::start(&origin, NginxConfig::default())
    )
    .unwrap();
    (origin, varnish, nginx)
}

/// Settings naming `varnish` (cli mode) as `varnish_name` and `nginx` (http mode, separate
/// purge location) as `nginx_name`.
fn both_backends(varnish_name: &str, varnish: &Varnish, nginx_name: &str, nginx: &Nginx) -> String {
    format!(
        "{}{}",
        varnish_cli_backend(varnish_name, varnish),
        nginx_http_backend(nginx_name, &nginx.addr())
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_goes_to_every_backend_and_only_what_was_asked() {
    let (origin, varnish, nginx) = start_both().await;
    let pages = ["/foo", "/foobar", "/a?x=1", "/a?x=2"];
    warm(&varnish, &pages).await;
    warm(&nginx, &pages).await;
    let dir = tempfile::tempdir().unwrap();
    write_settings(
        dir.path(),
        &both_backends("edge", &varnish, "origin-cache", &nginx),
    );

    let run = cache_purge(dir.path(), &["purge", "/foo", "/a?x=1"], None, &[]).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("edge (varnish cli on") && run.stdout.contains("2 purged of 2 targets"),
        "{run:?}"
    );
    assert!(
        run.stdout.ends_with("2 targets purged on 2 backends\n"),
        "{run:?}"
    );
    purged_exactly(&varnish, &origin).await;
    purged_exactly(&nginx, &origin).await;
    // One anchored ban for both URLs: the CLI batches like the library.
    assert_eq!(
        varnish.ban_list().unwrap(),
        [r"req.url ~ ^(?:/foo|/a\?x=1)$"]
    );
}

/// /foo and /a?x=1 purged, /foobar and /a?x=2 still cached.
async fn purged_exactly(cache: &impl CacheServer, origin: &Origin) {
    assert_purged(cache, origin, "/foo").await;
    assert_purged(cache, origin, "/a?x=1").await;
    assert_cached(cache, "/foobar").await;
    assert_cached(cache, "/a?x=2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn urls_come_from_stdin_and_the_report_can_be_json() {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    warm(&nginx, &["/foo", "/bar", "/baz"]).await;
    let dir = tempfile::tempdir().unwrap();
    write_settings(dir.path(), &nginx_http_backend("ngx", &nginx.addr()));

    let run = cache_purge(
        dir.path(),
        &["--json", "purge"],
        Some("/foo\n# a comment\n\n  /bar  \n/foo\n"),
        &[],
    )
    .await;

    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["targets"], 2, "deduplicated: {report}");
    assert_eq!(report["backends"][0]["backend"], "ngx");
    assert_eq!(report["backends"][0]["purged"], 2);
    assert_purged(&nginx, &origin, "/foo").await;
    assert_purged(&nginx, &origin, "/bar").await;
    assert_cached(&nginx, "/baz").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_is_banned_by_varnish_and_reported_unsupported_by_nginx_http() {
    let (origin, varnish, nginx) = start_both().await;
    warm(&varnish, &["/blog/a", "/blog/b", "/blogger"]).await;
    warm(&nginx, &["/blog/a"]).await;
    let dir = tempfile::tempdir().unwrap();
    write_settings(dir.path(), &both_backends("edge", &varnish, "ngx", &nginx));

    let run = cache_purge(dir.path(), &["purge", "--prefix", "/blog/"], None, &[]).await;

    assert_eq!(run.code, 1, "nginx could not purge it: {run:?}");
    assert!(
        run.stdout
            .contains("cannot purge 1 prefix: nginx mode \"http\""),
        "{run:?}"
    );
    assert!(run.stdout.contains("not everything was purged"), "{run:?}");
    assert_purged(&varnish, &origin, "/blog/a").await;
    assert_purged(&varnish, &origin, "/blog/b").await;
    assert_cached(&varnish, "/blogger").await;
    // Never widened into something nginx can do.
    assert_cached(&nginx, "/blog/a").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_is_purged_by_xkey_and_soft_purged_with_soft() {
    let origin = Origin::start().unwrap();
    for (path, tags) in [("/posts/1", "post:1 posts"), ("/posts/10", "post:10 posts")] {
        origin.add_header(path, "xkey", tags).unwrap();
    }
    let varnish = Varnish::start_xkey(&origin).await.unwrap();
    warm(&varnish, &["/posts/1", "/posts/10"]).await;
    let dir = tempfile::tempdir().unwrap();
    write_settings(
        dir.path(),
        &format!(
            "[backends.edge]\nkind = \"varnish\"\nmode = \"http\"\nservers = [\"{}\"]\ntags = \"xkey\"\n",
            varnish.http_addr()
        ),
    );

    let run = cache_purge(dir.path(), &["purge", "--tag", "post:1"], None, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("1 purged of 1 target"), "{run:?}");
    assert_purged(&varnish, &origin, "/posts/1").await;
    assert_cached(&varnish, "/posts/10").await;

    // --soft: the stale page is served at once (and fetched again behind it).
    let run = cache_purge(
        dir.path(),
        &["purge", "--soft", "--tag", "post:10"],
        None,
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let stale = varnish.get("/posts/10").await.unwrap();
    assert_eq!(
        stale.body, "/posts/10 #1",
        "served stale within grace: {stale:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_without_an_xkey_backend_and_tags_without_tag_purging_are_refused_loudly() {
    let (origin, varnish, nginx) = start_both().await;
    warm(&varnish, &["/posts/1"]).await;
    let dir = tempfile::tempdir().unwrap();
    write_settings(dir.path(), &both_backends("edge", &varnish, "ngx", &nginx));

    let run = cache_purge(
        dir.path(),
        &["purge", "--soft", "--tag", "post:1"],
        None,
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("--soft: no configured backend can soft-purge"),
        "{run:?}"
    );

    let run = cache_purge(dir.path(), &["purge", "--tag", "post:1"], None, &[]).await;
    assert_eq!(run.code, 1, "no backend purges tags: {run:?}");
    assert!(
        run.stdout.contains("tags = \"none\": set tags = \"ban\""),
        "{run:?}"
    );
    assert_cached(&varnish, "/posts/1").await;
    let _ = origin;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_is_purged_on_nginx_through_a_redis_index_from_the_settings() {
    use cache_purge_hooks_engine::tag_index::{RedisTagIndex, TagIndex};
    use cache_purge_hooks_engine::{PurgeUrl, Tag};
    let redis = match cache_purge_hooks_testing::Redis::start().await {
        Ok(r) => r,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI requires redis-server: {e}")
        }
        Err(e) => {
            eprintln!("skipping: {e}");
            return;
        }
    };
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    warm(&nginx, &["/posts/1", "/?page=7", "/posts/10"]).await;
    // What the tagging layer records when it serves the pages.
    let index = RedisTagIndex::new(&redis.url()).unwrap();
    let hour = Duration::from_secs(3600);
    let tags = |t: &[&str]| t.iter().map(|t| Tag::parse(t).unwrap()).collect::<Vec<_>>();
    for (page, t) in [
        ("/posts/1", &["post:1", "posts"][..]),
        ("/?page=7", &["post:1", "posts"][..]),
        ("/posts/10", &["post:10"][..]),
    ] {
        index
            .record(&PurgeUrl::parse(page).unwrap(), &tags(t), hour)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    write_settings(
        dir.path(),
        &format!(
            "[tag_index]\nkind = \"redis\"\nurl = \"{}\"\n{}tags = \"index\"\n",
            redis.url(),
            nginx_http_backend("ngx", &nginx.addr())
        ),
    );
    let run = cache_purge(dir.path(), &["purge", "--tag", "post:1"], None, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_purged(&nginx, &origin, "/posts/1").await;
    assert_purged(&nginx, &origin, "/?page=7").await;
    assert_cached(&nginx, "/posts/10").await;
    assert!(index.urls(&tags(&["post:1"])).await.unwrap().is_empty());
    redis.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_fails_the_command_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let addr = refused_addr();
    write_settings(dir.path(), &nginx_http_backend("ngx", &addr));

    let run = cache_purge(
        dir.path(),
        &["purge", "--retries", "1", "--timeout", "5s", "/a"],
        None,
        &[],
    )
    .await;

    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("0 purged, 1 failed of 1 target"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(&format!("given up on: {addr}: "))
            && run.stdout.contains("cannot connect: Connection refused"),
        "the server and the reason are named: {run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_input_and_settings_exit_2_and_send_nothing() {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    warm(&nginx, &["/ok"]).await;
    let dir = tempfile::tempdir().unwrap();
    write_settings(dir.path(), &nginx_http_backend("ngx", &nginx.addr()));

    let run = cache_purge(dir.path(), &["purge", "/ok", "relative/path"], None, &[]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("1 invalid target; nothing was purged")
            && run.stderr.contains("\"relative/path\""),
        "{run:?}"
    );
    assert_cached(&nginx, "/ok").await;

    write_settings(dir.path(), "[backends.edge]\nkind = \"varnsh\"\n");
    let run = cache_purge(dir.path(), &["purge", "/ok"], None, &[]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("`backends.edge.kind`")
            && run.stderr.contains("(from cache-purge.toml)")
            && run.stderr.contains("unknown backend kind `varnsh`"),
        "key, origin and expectation are named: {run:?}"
    );

    let run = cache_purge(
        dir.path(),
        &["--json", "--config", "missing.toml", "check"],
        None,
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not exist")),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_passes_on_working_backends() {
    let (_origin, varnish, nginx) = start_both().await;
    warm(&nginx, &["/kept"]).await;
    let dir = tempfile::tempdir().unwrap();
    write_settings(
        dir.path(),
        &format!(
            "{}[backends.files]\nkind = \"nginx\"\nmode = \"files\"\ncache_dir = \"{}\"\nkey_template = \"$uri$is_args$args\"\n\
             [backends.varnish-http]\nkind = \"varnish\"\nmode = \"http\"\nservers = [\"{}\"]\n",
            both_backends("edge", &varnish, "ngx", &nginx),
            nginx.cache_dir().display(),
            varnish.http_addr(),
        ),
    );

    let run = cache_purge(dir.path(), &["--json", "check"], None, &[]).await;

    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    let backends = report["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 4);
    for b in backends {
        assert_eq!(b["ok"], true, "{b}");
    }
    let edge = backends.iter().find(|b| b["backend"] == "edge").unwrap();
    let message = edge["findings"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("secret accepted") && message.contains("running"),
        "{message}"
    );
    // The probes purged nothing anyone had cached.
    assert_cached(&nginx, "/kept").await;
    assert_eq!(varnish.ban_count().unwrap(), 0, "the cli check adds no ban");

    // The human report, filtered to one backend.
    let run = cache_purge(dir.path(), &["check", "--backend", "ngx"], None, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("OK ngx (nginx http on ")
            && run.stdout.contains("1 backend checked: all good"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_tells_whether_the_vcl_refreshes_in_place() {
    let origin = Origin::start().unwrap();
    let without =
        cache_purge_hooks_testing::HARNESS_VCL.replace("X-Cache-Purge-Refresh", "X-Something-Else");
    let (with_branch, without_branch) = tokio::try_join!(
        Varnish::start(&origin),
        Varnish::start_with_vcl(&origin, &without)
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_settings(
        dir.path(),
        &format!(
            "[backends.good]\nkind = \"varnish\"\nmode = \"http\"\nservers = [\"{}\"]\nhttp_method = \"refresh\"\n\
             [backends.old]\nkind = \"varnish\"\nmode = \"http\"\nservers = [\"{}\"]\nhttp_method = \"refresh\"\n",
            with_branch.http_addr(),
            without_branch.http_addr(),
        ),
    );

    let run = cache_purge(dir.path(), &["--json", "check"], None, &[]).await;

    assert_eq!(run.code, 1, "{run:?}");
    let report = run.json();
    let backends = report["backends"].as_array().unwrap();
    let good = backends.iter().find(|b| b["backend"] == "good").unwrap();
    assert_eq!(good["ok"], true, "{good}");
    let old = backends.iter().find(|b| b["backend"] == "old").unwrap();
    assert_eq!(old["ok"], false, "{old}");
    let finding = &old["findings"][0];
    assert!(
        finding["message"]
            .as_str()
            .is_some_and(|m| m.contains("no refresh branch")),
        "{finding}"
    );
    assert!(
        finding["hint"]
            .as_str()
            .is_some_and(|h| h.contains("hash_always_miss")),
        "{finding}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_each_problem_and_what_to_do() {
    let origin = Origin::start().unwrap();
    let same_location = NginxConfig {
        purge: PurgeLocation::Same {
            method: "PURGE".into(),
        },
        ..NginxConfig::default()
    };
    let (varnish, crashing) = tokio::try_join!(
        Varnish::start(&origin),
        Nginx::start(&origin, same_location)
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrong_secret = dir.path().join("wrong-secret");
    std::fs::write(&wrong_secret, "not the secret\n").unwrap();
    let refused = refused_addr();
    write_settings(
        dir.path(),
        &format!(
            "[backends.edge]\nkind = \"varnish\"\nservers = [\"{}\"]\nsecret_file = \"{}\"\ntimeout = \"2s\"\n\
             [backends.crashing]\nkind = \"nginx\"\nservers = [\"{}\"]\ntimeout = \"2s\"\n\
             {}\
             [backends.nodir]\nkind = \"nginx\"\nmode = \"wipe\"\ncache_dir = \"{}\"\n",
            varnish.admin_addr(),
            wrong_secret.display(),
            crashing.addr(),
            nginx_http_backend("down", &refused),
            dir.path().join("no-such-cache").display(),
        ),
    );

    let run = cache_purge(dir.path(), &["--json", "check"], None, &[]).await;

    assert_eq!(run.code, 1, "{run:?}");
    let report = run.json();
    let finding = |name: &str| {
        let b = report["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backend"] == name)
            .unwrap_or_else(|| panic!("no backend {name}: {report}"));
        assert_eq!(b["ok"], false, "{b}");
        let f = &b["findings"][0];
        (
            f["message"].as_str().unwrap_or("").to_owned(),
            f["hint"].as_str().unwrap_or("").to_owned(),
        )
    };
    let (message, hint) = finding("edge");
    assert!(message.contains("authentication failed"), "{message}");
    assert!(hint.contains("-S"), "{hint}");
    let (message, hint) = finding("crashing");
    assert!(message.contains("PURGE /__cache_purge_check/"), "{message}");
    assert!(
        hint.contains("same-location") && hint.contains("purge_prefix = \"/purge\""),
        "the Debian module's crash is named: {hint}"
    );
    let (message, hint) = finding("down");
    assert!(message.contains("cannot connect"), "{message}");
    assert!(hint.contains(&refused), "{hint}");
    let (message, _) = finding("nodir");
    assert!(message.contains("cannot be used"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn outbox_status_dead_retry_and_drain_on_sqlite() {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    warm(&nginx, &["/posts/a", "/posts/b", "/posts/c"]).await;
    let dir = tempfile::tempdir().unwrap();
    write_settings(
        dir.path(),
        &format!(
            "delivery = \"outbox\"\n{}",
            nginx_http_backend("ngx", &nginx.addr())
        ),
    );
    let db_path = dir.path().join("app.db");
    let url = format!("sqlite://{}?mode=rwc", db_path.display());

    // Before the table exists: a clear error naming the migration.
    let run = cache_purge(
        dir.path(),
        &["outbox", "status", "--database-url", &url],
        None,
        &[],
    )
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("no table `cache_purge_outbox`")
            && run.stderr.contains("outbox::Migration"),
        "{run:?}"
    );

    // What an app in outbox mode leaves behind: one row to deliver, one dead row, and a row
    // for a backend these settings do not have.
    let db = sea_orm::Database::connect(&url).await.unwrap();
    outbox::create_table(&db).await.unwrap();
    let now = outbox::now_ms();
    let url_target = |u: &str| Target::url(u).unwrap();
    outbox::enqueue(&db, &["ngx"], &[url_target("/posts/a")], now)
        .await
        .unwrap();
    outbox::enqueue(&db, &["ngx"], &[url_target("/posts/b")], now)
        .await
        .unwrap();
    outbox::enqueue(&db, &["gone"], &[url_target("/x")], now)
        .await
        .unwrap();
    let claimed = outbox::claim(&db, "ngx", "test", 1, Duration::from_secs(60), now)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    outbox::fail(
        &db,
        "test",
        &[claimed[0].id],
        "ngx: answered 403 Forbidden",
        None,
        now,
    )
    .await
    .unwrap();
    let dead_id = claimed[0].id.to_string();
    db.close().await.unwrap();

    let env = [("DATABASE_URL", url.as_str())];
    let run = cache_purge(dir.path(), &["--json", "outbox", "status"], None, &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    let status = run.json();
    let ngx = &status["backends"][1];
    assert_eq!(
        (
            &ngx["backend"],
            &ngx["pending"],
            &ngx["dead"],
            &ngx["configured"]
        ),
        (
            &Value::from("ngx"),
            &Value::from(1),
            &Value::from(1),
            &Value::from(true)
        ),
        "{status}"
    );
    assert_eq!(status["backends"][0]["configured"], false, "{status}");
    let run = cache_purge(dir.path(), &["outbox", "status"], None, &env).await;
    assert!(
        run.stderr.contains("no configured backend is named `gone`"),
        "{run:?}"
    );

    let run = cache_purge(dir.path(), &["outbox", "dead"], None, &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(&format!("#{dead_id} ngx"))
            && run.stdout.contains("error: ngx: answered 403 Forbidden")
            && run.stdout.contains("url /posts/"),
        "{run:?}"
    );

    let run = cache_purge(
        dir.path(),
        &["outbox", "retry", "--id", &dead_id],
        None,
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("1 dead row revived"), "{run:?}");

    let run = cache_purge(
        dir.path(),
        &["outbox", "drain", "--timeout", "20s"],
        None,
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("2 rows delivered"), "{run:?}");
    assert_purged(&nginx, &origin, "/posts/a").await;
    assert_purged(&nginx, &origin, "/posts/b").await;
    assert_cached(&nginx, "/posts/c").await;

    let run = cache_purge(dir.path(), &["--json", "outbox", "status"], None, &env).await;
    let status = run.json();
    assert_eq!(status["backends"][1]["pending"], 0, "{status}");
    assert_eq!(
        status["backends"][0]["pending"], 1,
        "`gone` is untouched: {status}"
    );

    let run = cache_purge(dir.path(), &["outbox", "delete-dead", "--all"], None, &env).await;
    assert!(run.stdout.contains("0 dead rows deleted"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_shows_the_effective_settings_with_overrides() {
    let dir = tempfile::tempdir().unwrap();
    write_settings(
        dir.path(),
        "[backends.edge]\nkind = \"varnish\"\nservers = \"10.0.0.1:6082, 10.0.0.2:6082\"\n",
    );

    let run = cache_purge(
        dir.path(),
        &["settings"],
        None,
        &[("CACHE_PURGE__SHUTDOWN_TIMEOUT", "3s")],
    )
    .await;

    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("# overridden by CACHE_PURGE__SHUTDOWN_TIMEOUT"),
        "{run:?}"
    );
    assert!(run.stdout.contains("shutdown_timeout = \"3s\""), "{run:?}");
    assert!(
        run.stdout
            .contains("servers = [\"10.0.0.1:6082\", \"10.0.0.2:6082\"]"),
        "{run:?}"
    );
    // What it prints is a settings file that loads to the same settings.
    let printed: String = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let reparsed = cache_purge_hooks_engine::Settings::from_toml_str(&printed).unwrap();
    let original = cache_purge_hooks_engine::settings::SettingsLoader::default()
        .file(dir.path().join("cache-purge.toml"))
        .env_vars([("CACHE_PURGE__SHUTDOWN_TIMEOUT", "3s")])
        .load()
        .unwrap();
    assert_eq!(reparsed, original);
}

/// A million URLs on standard input are purged, exactly those (each once), in bounded memory:
/// the command reads, checks and sends them in chunks instead of holding them all.
#[test]
#[allow(
    clippy::zombie_processes,
    reason = "the child is reaped by libc::wait4, which also reports its peak memory"
)]
fn a_million_urls_are_purged_in_under_100_mb() {
    use std::io::Read as _;

    const URLS: usize = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    write_settings(dir.path(), "[backends.sink]\nkind = \"dummy\"\n");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cache-purge"))
        .args(["--json", "purge"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("CACHE_PURGE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the cache-purge binary starts");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::new(&mut stdin);
        for i in 0..URLS {
            writeln!(
                w,
                "/posts/{i}/a-longer-slug-like-real-sites-have?page={}",
                i % 7
            )
            .unwrap();
        }
        // Duplicates are purged once.
        for i in 0..1000 {
            writeln!(
                w,
                "/posts/{i}/a-longer-slug-like-real-sites-have?page={}",
                i % 7
            )
            .unwrap();
        }
    });
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    writer.join().unwrap();
    // wait4 gives this child's own peak resident set (ru_maxrss, in KiB on Linux).
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let stdout = reader.join().unwrap();
    let stderr = errors.join().unwrap();
    assert!(libc::WIFEXITED(status), "{stderr}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["targets"], URLS, "{report}");
    assert_eq!(report["backends"][0]["purged"], URLS, "{report}");
    assert_eq!(report["backends"][0]["dropped"], 0, "{report}");
    let peak_mib = usage.ru_maxrss as f64 / 1024.0;
    eprintln!("peak RSS of `cache-purge purge` with {URLS} URLs: {peak_mib:.1} MiB");
    assert!(peak_mib < 100.0, "peak RSS {peak_mib:.1} MiB");
}

#[tokio::test]
async fn completions_and_the_manual_page_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    let bash = cache_purge(dir.path(), &["completions", "bash"], None, &[]).await;
    assert_eq!(bash.code, 0, "{bash:?}");
    assert!(
        bash.stdout.contains("complete -F _cache-purge") || bash.stdout.contains("_cache__purge"),
        "{bash:?}"
    );
    assert!(bash.stdout.contains("outbox"), "subcommands are completed");
    let zsh = cache_purge(dir.path(), &["completions", "zsh"], None, &[]).await;
    assert!(zsh.stdout.starts_with("#compdef cache-purge"), "{zsh:?}");
    let man = cache_purge(dir.path(), &["man"], None, &[]).await;
    assert_eq!(man.code, 0, "{man:?}");
    assert!(man.stdout.contains(".TH cache-purge 1"), "{man:?}");
    assert!(
        man.stdout.contains("Exit codes"),
        "the long help is in the page"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_validates_cdn_credentials_and_zones_and_names_what_is_wrong() {
    let cloudflare = CloudflareFake::start(CloudflareFakeConfig::default()).unwrap();
    let fastly = FastlyFake::start(FastlyFakeConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cf = |name: &str, zone: &str, token: &str| {
        format!(
            "[backends.{name}]\nkind = \"cloudflare\"\nzone_id = \"{zone}\"\napi_token = \"{token}\"\n\
             plan = \"pro\"\nsite_url = \"https://www.example.com\"\nbase_url = \"{}\"\n",
            cloudflare.base_url()
        )
    };
    let fy = |name: &str, service: &str, token: &str| {
        format!(
            "[backends.{name}]\nkind = \"fastly\"\nservice_id = \"{service}\"\napi_token = \"{token}\"\n\
             base_url = \"{}\"\n",
            fastly.base_url()
        )
    };
    write_settings(
        dir.path(),
        &[
            cf("cf", &cloudflare.zone_id(), &cloudflare.token()),
            cf("cf-token", &cloudflare.zone_id(), "wrong-token-value"),
            cf(
                "cf-zone",
                "ffffffffffffffffffffffffffffffff",
                &cloudflare.token(),
            ),
            fy("fastly", &fastly.service_id(), &fastly.token()),
            fy("fastly-token", &fastly.service_id(), "wrong-key-value"),
            fy("fastly-service", "NoSuchService", &fastly.token()),
        ]
        .concat(),
    );

    let run = cache_purge(dir.path(), &["--json", "check"], None, &[]).await;

    assert_eq!(run.code, 1, "{run:?}");
    assert!(!run.stdout.contains("wrong-token-value") && !run.stdout.contains("wrong-key-value"));
    let report = run.json();
    let backend = |name: &str| {
        report["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backend"] == name)
            .unwrap_or_else(|| panic!("no backend {name}: {report}"))
            .clone()
    };
    assert_eq!(backend("cf")["ok"], true, "{}", backend("cf"));
    assert!(
        backend("cf")["findings"][1]["message"]
            .as_str()
            .unwrap()
            .contains("example.com (active)"),
        "{}",
        backend("cf")
    );
    assert_eq!(backend("fastly")["ok"], true, "{}", backend("fastly"));
    for (name, subject, says) in [
        ("cf-token", "api_token", "Cloudflare refused the API token"),
        (
            "cf-zone",
            "zone ffffffffffffffffffffffffffffffff",
            "check zone_id",
        ),
        (
            "fastly-token",
            "api_token",
            "Provided credentials are missing or invalid",
        ),
        (
            "fastly-service",
            "service NoSuchService",
            "check service_id",
        ),
    ] {
        let b = backend(name);
        assert_eq!(b["ok"], false, "{b}");
        let f = &b["findings"][0];
        assert_eq!(f["subject"], subject, "{b}");
        assert!(f["message"].as_str().unwrap().contains(says), "{b}");
        assert!(f["hint"].as_str().is_some_and(|h| !h.is_empty()), "{b}");
    }
    assert!(cloudflare.purges().is_empty() && fastly.purges().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn check_validates_cloudfront_credentials_and_the_distribution_and_names_what_is_wrong() {
    let fake = CloudFrontFake::start(CloudFrontFakeConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cf = |name: &str, distribution: &str, secret: &str, hosts: &str| {
        format!(
            "[backends.{name}]\nkind = \"cloudfront\"\ndistribution_id = \"{distribution}\"\n\
             access_key_id = \"{}\"\nsecret_access_key = \"{secret}\"\nhosts = [{hosts}]\nbase_url = \"{}\"\n",
            fake.access_key_id(),
            fake.base_url()
        )
    };
    let secret = fake.secret_access_key();
    let id = fake.distribution_id();
    write_settings(
        dir.path(),
        &[
            cf("cfr", &id, &secret, "\"www.example.com\""),
            cf("cfr-secret", &id, "wrong-secret-value", ""),
            cf("cfr-dist", "E2WRONGEXAMPLE", &secret, ""),
            cf("cfr-hosts", &id, &secret, "\"shop.example.org\""),
        ]
        .concat(),
    );

    let run = cache_purge(dir.path(), &["--json", "check"], None, &[]).await;

    assert_eq!(run.code, 1, "{run:?}");
    assert!(!run.stdout.contains("wrong-secret-value") && !run.stdout.contains(&secret));
    let report = run.json();
    let backend = |name: &str| {
        report["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backend"] == name)
            .unwrap_or_else(|| panic!("no backend {name}: {report}"))
            .clone()
    };
    let ok = backend("cfr");
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(
        ok["findings"][1]["message"]
            .as_str()
            .unwrap()
            .contains("d111111abcdef8.cloudfront.net (Deployed)"),
        "{ok}"
    );
    for (name, at, subject, says) in [
        ("cfr-secret", 0, "credentials", "SignatureDoesNotMatch"),
        (
            "cfr-dist",
            0,
            "distribution E2WRONGEXAMPLE",
            "check distribution_id",
        ),
        ("cfr-hosts", 2, "hosts", "shop.example.org is not a domain"),
    ] {
        let b = backend(name);
        assert_eq!(b["ok"], false, "{b}");
        let f = &b["findings"][at];
        assert_eq!(f["subject"], subject, "{b}");
        assert!(f["message"].as_str().unwrap().contains(says), "{b}");
        assert!(f["hint"].as_str().is_some_and(|h| !h.is_empty()), "{b}");
    }
    assert!(fake.invalidations().is_empty(), "check invalidates nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_validates_akamai_credentials_inline_or_from_an_edgerc_and_names_what_is_wrong() {
    let akamai = AkamaiFake::start(AkamaiFakeConfig::default()).unwrap();
    let (client, access, secret) = akamai.credentials();
    let dir = tempfile::tempdir().unwrap();
    let edgerc = dir.path().join(".edgerc");
    std::fs::write(
        &edgerc,
        format!(
            "[ccu]\nclient_secret = {secret}\nhost = {}\naccess_token = {access}\nclient_token = {client}\n",
            akamai.base_url()
        ),
    )
    .unwrap();
    let inline = |name: &str, secret: &str| {
        format!(
            "[backends.{name}]\nkind = \"akamai\"\nbase_url = \"{}\"\nclient_token = \"{client}\"\n\
             access_token = \"{access}\"\nclient_secret = \"{secret}\"\n",
            akamai.base_url()
        )
    };
    write_settings(
        dir.path(),
        &[
            inline("ak", &secret),
            inline("ak-secret", "d3JvbmctY2xpZW50LXNlY3JldA=="),
            format!(
                "[backends.ak-edgerc]\nkind = \"akamai\"\nedgerc = \"{}\"\nsection = \"ccu\"\ncp_codes = [12345]\n",
                edgerc.display()
            ),
            format!(
                "[backends.ak-section]\nkind = \"akamai\"\nedgerc = \"{}\"\nsection = \"nosuch\"\n",
                edgerc.display()
            ),
        ]
        .concat(),
    );

    let run = cache_purge(dir.path(), &["--json", "check"], None, &[]).await;

    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        !run.stdout.contains("d3JvbmctY2xpZW50LXNlY3JldA=="),
        "{run:?}"
    );
    assert!(!run.stdout.contains(&secret), "{run:?}");
    let report = run.json();
    let backend = |name: &str| {
        report["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backend"] == name)
            .unwrap_or_else(|| panic!("no backend {name}: {report}"))
            .clone()
    };
    for name in ["ak", "ak-edgerc"] {
        let b = backend(name);
        assert_eq!(b["ok"], true, "{b}");
        assert_eq!(b["findings"][0]["subject"], "credentials", "{b}");
    }
    assert!(
        backend("ak-edgerc")
            .to_string()
            .contains("purges CP codes 12345"),
        "{}",
        backend("ak-edgerc")
    );
    let b = backend("ak-secret");
    assert_eq!(b["ok"], false, "{b}");
    assert_eq!(b["findings"][0]["subject"], "credentials", "{b}");
    let message = b["findings"][0]["message"].as_str().unwrap();
    assert!(message.contains("The signature does not match"), "{b}");
    assert!(message.contains("client_secret"), "{b}");
    let b = backend("ak-section");
    assert_eq!(b["ok"], false, "{b}");
    assert!(b.to_string().contains("no section [nosuch]"), "{b}");
    assert!(akamai.purges().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn check_shows_the_routing_table_and_purge_fails_for_a_host_no_backend_serves() {
    let dir = tempfile::tempdir().unwrap();
    write_settings(
        dir.path(),
        "[backends.www]\nkind = \"dummy\"\nhosts = [\"www.example.com\"]\npaths = true\n\
         [backends.shop]\nkind = \"dummy\"\nhosts = [\"*.shop.example\"]\n",
    );
    let run = cache_purge(dir.path(), &["check"], None, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(
            "    shop  URLs of *.shop.example; tags\n    www   URLs of www.example.com; paths, prefixes without a host, everything; tags\n"
        ),
        "{run:?}"
    );
    let run = cache_purge(dir.path(), &["check", "--json"], None, &[]).await;
    let routing = &run.json()["routing"];
    assert_eq!(routing[1]["backend"], "www", "{routing}");
    assert_eq!(routing[1]["paths"], true, "{routing}");
    assert_eq!(routing[0]["hosts"][0], "*.shop.example", "{routing}");

    // A URL of a host nobody serves is purged nowhere: reported, exit 1.
    let run = cache_purge(
        dir.path(),
        &[
            "purge",
            "https://other.example/a",
            "https://www.example.com/b",
        ],
        None,
        &[],
    )
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(
            "1 target: no backend serves their host (see each backend's `hosts`); not purged"
        ),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_checks_a_varnish_refresh_backend_through_its_purge() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    warm(&varnish, &["/post"]).await;
    let dir = tempfile::tempdir().unwrap();
    write_settings(
        dir.path(),
        &format!(
            "[backends.edge]\nkind = \"varnish\"\nmode = \"http\"\nservers = [\"{}\"]\nhttp_method = \"refresh\"\n",
            varnish.http_addr()
        ),
    );
    let run = cache_purge(dir.path(), &["verify", "--json", "/post"], None, &[]).await;
    // A refresh would leave a hit (the new copy) that the check would report as still cached.
    assert_eq!(run.code, 0, "{run:?}");
    let backend = &run.json()["backends"][0];
    assert_eq!(
        (&backend["verified"], &backend["verify_failed"]),
        (&serde_json::json!(1), &serde_json::json!(0)),
        "{backend}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_a_purge_that_worked_and_one_aimed_at_the_wrong_key_with_a_hint() {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    warm(&nginx, &["/good", "/bad"]).await;
    let dir = tempfile::tempdir().unwrap();
    write_settings(dir.path(), &nginx_http_backend("ngx", &nginx.addr()));
    let run = cache_purge(dir.path(), &["verify", "/good"], None, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("OK ngx: 1 of 1 URL verified gone after the purge"),
        "{run:?}"
    );

    // files mode with a key_template that is not nginx's key: the purge "works", the page stays.
    write_settings(
        dir.path(),
        &format!(
            "[backends.files]\nkind = \"nginx\"\nmode = \"files\"\ncache_dir = \"{}\"\n\
             key_template = \"wrong$uri$is_args$args\"\nverify_url = \"http://{}\"\n",
            nginx.cache_dir().display(),
            nginx.addr()
        ),
    );
    let run = cache_purge(dir.path(), &["verify", "--json", "/bad"], None, &[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let backend = &run.json()["backends"][0];
    assert_eq!(backend["verify_failed"], 1, "{backend}");
    assert_eq!(backend["still_cached"], "/bad", "{backend}");
    assert!(
        backend["hint"].as_str().unwrap().contains("key_template"),
        "{backend}"
    );
    assert_cached(&nginx, "/bad").await;
}
