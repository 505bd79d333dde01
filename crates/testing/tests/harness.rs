//! End-to-end tests of the harness against the real servers. They fail (never skip) when
//! nginx, its cache-purge module or Varnish is missing.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use cache_purge_hooks_testing::{
    HarnessError, INSTALL_COMMAND, Nginx, NginxConfig, Origin, PurgeLocation, SilentServer,
    StatusServer, Varnish, refused_addr,
};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// PIDs of the processes whose process group is `pgid` (from /proc).
fn group_members(pgid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may contain spaces, so split after ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|f| f.parse::<u32>().ok()) == Some(pgid) {
            pids.push(pid);
        }
    }
    pids
}

/// Asserts that none of `pids` exists any more (`kill(pid, 0)` fails with ESRCH), and that no
/// process is left in the process group `pgid`.
fn assert_gone(pgid: u32, pids: &[u32], what: &str) {
    for &pid in pids {
        let result = kill(Pid::from_raw(pid as i32), None);
        if result != Err(Errno::ESRCH) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            panic!("{what}: process {pid} still exists after stop ({result:?}): {stat}");
        }
    }
    assert_eq!(
        group_members(pgid),
        Vec::<u32>::new(),
        "{what}: group {pgid} not empty"
    );
}

/// The nginx cache file of key "/a" with levels 1:2 (md5("/a") = 0639767f...abf5).
const CACHE_FILE_OF_A: &str = "5/bf/0639767f3e9eaad729b54037a7e2abf5";

// (1)
#[tokio::test]
async fn origin_counts_fetches_and_bodies_carry_the_count() -> TestResult {
    let origin = Origin::start()?;
    let http = client();
    let base = format!("http://{}", origin.addr());
    assert_eq!(origin.addr(), format!("127.0.0.1:{}", origin.port()));

    let first = http.get(format!("{base}/a")).send().await?;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "text/plain");
    assert_eq!(first.headers()["cache-control"], "public, max-age=600");
    assert_eq!(first.text().await?, "/a #1");
    assert_eq!(
        http.get(format!("{base}/a")).send().await?.text().await?,
        "/a #2"
    );

    // The target is recorded as received: query included, escapes not decoded.
    let raw = "/a%2Fb?q=%41&x=1";
    assert_eq!(
        http.get(format!("{base}{raw}"))
            .send()
            .await?
            .text()
            .await?,
        format!("{raw} #1")
    );
    let head = http.head(format!("{base}/h")).send().await?;
    assert_eq!(head.status(), 200);

    let post = http.post(format!("{base}/a")).send().await?;
    assert_eq!(post.status(), 405);

    assert_eq!(origin.fetches("/a"), 2);
    assert_eq!(origin.fetches(raw), 1);
    assert_eq!(origin.fetches("/a/b?q=A&x=1"), 0);
    assert_eq!(origin.fetches("/h"), 1);
    assert_eq!(origin.fetches("/never"), 0);
    assert_eq!(origin.total_fetches(), 4);
    assert_eq!(origin.other_requests(), 1);
    Ok(())
}

#[test]
fn origin_works_without_any_runtime_and_stops_when_dropped() -> TestResult {
    let origin = Origin::start()?;
    let addr = origin.addr();
    let mut conn = std::net::TcpStream::connect(&addr)?;
    use std::io::Write;
    conn.write_all(b"GET /sync HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("/sync #1"), "{response}");
    assert_eq!(origin.fetches("/sync"), 1);
    drop(origin);
    let err = std::net::TcpStream::connect(&addr).expect_err("origin still listening");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    Ok(())
}

// (2)
#[tokio::test]
async fn nginx_separate_location_purges_one_key() -> TestResult {
    let origin = Origin::start()?;
    let nginx = Nginx::start(&origin, NginxConfig::default()).await?;
    assert_eq!(nginx.addr(), format!("127.0.0.1:{}", nginx.port()));
    assert!(nginx.config_path().is_file());

    let a1 = nginx.get("/a").await?;
    assert_eq!((a1.status, a1.cache.as_deref()), (200, Some("MISS")));
    assert_eq!(a1.body, "/a #1");
    let a2 = nginx.get("/a").await?;
    assert!(a2.is_hit(), "{a2:?}");
    assert_eq!(a2.body, "/a #1");
    assert!(nginx.get("/ab").await?.cache.as_deref() == Some("MISS"));
    assert!(nginx.get("/ab").await?.is_hit());
    // The cache file is where levels 1:2 put it.
    let file = nginx.cache_dir().join(CACHE_FILE_OF_A);
    assert!(file.is_file(), "{} missing", file.display());

    let purge = nginx.request("PURGE", "/purge/a", &[]).await?;
    assert_eq!(purge.status, 200, "{purge:?}");
    assert!(!file.exists(), "purge left {}", file.display());

    let a3 = nginx.get("/a").await?;
    assert_eq!(a3.cache.as_deref(), Some("MISS"));
    assert_eq!(a3.body, "/a #2");
    let ab = nginx.get("/ab").await?;
    assert!(ab.is_hit(), "neighbour was purged too: {ab:?}");
    assert_eq!(ab.body, "/ab #1");

    // Any method purges in the separate location; a key not cached gives 404.
    assert_eq!(nginx.request("GET", "/purge/zzz", &[]).await?.status, 404);
    // The purge location never reaches the origin.
    assert_eq!(origin.other_requests(), 0);
    assert_eq!(origin.fetches("/a"), 2);
    assert_eq!(origin.fetches("/ab"), 1);

    assert!(
        nginx.access_log().contains("PURGE /purge/a 200"),
        "{}",
        nginx.access_log()
    );
    assert_eq!(nginx.worker_crash(), None, "{}", nginx.error_log());
    nginx.stop()?;
    Ok(())
}

#[tokio::test]
async fn nginx_custom_prefix_key_and_host() -> TestResult {
    let origin = Origin::start()?;
    let config = NginxConfig {
        purge: PurgeLocation::separate("/_cache.purge"),
        cache_key: "$host$uri$is_args$args".to_owned(),
        levels: "2".to_owned(),
        purge_key: None,
        ..NginxConfig::default()
    };
    let nginx = Nginx::start(&origin, config).await?;
    assert!(!nginx.get_with_host("one.test", "/p?x=1").await?.is_hit());
    assert!(nginx.get_with_host("one.test", "/p?x=1").await?.is_hit());
    assert!(!nginx.get_with_host("two.test", "/p?x=1").await?.is_hit());
    // The purge key is "$host$1$is_args$args": it purges one host's entry.
    let purge = nginx
        .request("PURGE", "/_cache.purge/p?x=1", &[("host", "one.test")])
        .await?;
    assert_eq!(purge.status, 200);
    let one = nginx.get_with_host("one.test", "/p?x=1").await?;
    assert_eq!((one.is_hit(), one.body.as_str()), (false, "/p?x=1 #3"));
    assert!(nginx.get_with_host("two.test", "/p?x=1").await?.is_hit());
    // levels=2: one directory level of two hex characters.
    let dirs: Vec<_> = std::fs::read_dir(nginx.cache_dir())?.flatten().collect();
    assert!(
        dirs.iter()
            .all(|d| d.file_name().len() == 2 && d.path().is_dir()),
        "{dirs:?}"
    );
    Ok(())
}

// (3)
#[tokio::test]
async fn nginx_same_location_crashes_debians_module() -> TestResult {
    let origin = Origin::start()?;
    let nginx = Nginx::start(
        &origin,
        NginxConfig {
            purge: PurgeLocation::same("PURGE"),
            ..NginxConfig::default()
        },
    )
    .await?;
    assert!(!nginx.get("/a").await?.is_hit());
    assert!(nginx.get("/a").await?.is_hit());

    // Debian's ngx_cache_purge 2.3 segfaults the worker: no response at all, and no hang (the
    // harness client has a 10 s timeout; this outer one guards the test itself).
    let purge =
        tokio::time::timeout(Duration::from_secs(20), nginx.request("PURGE", "/a", &[])).await?;
    match purge {
        Err(HarnessError::Http { .. }) => {}
        other => panic!("expected no response from the crashing worker, got {other:?}"),
    }

    // Right after the failed request, as a test of a purge backend would ask.
    let crash = nginx
        .worker_crash()
        .ok_or_else(|| format!("no crash reported; error.log:\n{}", nginx.error_log()))?;
    assert!(crash.contains("signal 11 (SIGSEGV)"), "{crash}");
    assert!(crash.contains("ngx_cache_purge 2.3"), "{crash}");
    assert!(crash.contains("PurgeLocation::Separate"), "{crash}");
    assert!(crash.contains("purge_prefix"), "{crash}");

    // The master started a new worker; nothing was purged.
    let after = nginx.get("/a").await?;
    assert!(after.is_hit(), "{after:?}");
    assert_eq!(origin.fetches("/a"), 1);
    // The crash left no core file behind in the harness dir.
    assert!(!nginx.dir().join("core").exists());
    nginx.stop()?;
    Ok(())
}

// (4)
#[tokio::test]
async fn varnish_purge_and_ban() -> TestResult {
    let origin = Origin::start()?;
    let varnish = Varnish::start(&origin).await?;
    // The readiness probe never reached the origin.
    assert_eq!(varnish.stat("MAIN.backend_req")?, 0);
    assert_eq!(varnish.ban_list()?, Vec::<String>::new());
    assert_eq!(varnish.ban_count()?, 0);

    let a1 = varnish.get("/a").await?;
    assert_eq!((a1.status, a1.cache.as_deref()), (200, Some("MISS")));
    assert_eq!(a1.body, "/a #1");
    assert!(varnish.get("/a").await?.is_hit());
    assert!(!varnish.get("/ab").await?.is_hit());
    assert!(varnish.get("/ab").await?.is_hit());

    let purge = varnish.request("PURGE", "/a", &[]).await?;
    assert_eq!(purge.status, 200, "{purge:?}");
    assert_eq!(purge.header("x-purged"), Some("1"));
    let a3 = varnish.get("/a").await?;
    assert_eq!((a3.is_hit(), a3.body.as_str()), (false, "/a #2"));
    let ab = varnish.get("/ab").await?;
    assert_eq!((ab.is_hit(), ab.body.as_str()), (true, "/ab #1"));
    assert_eq!(varnish.request("PURGE", "/nothing", &[]).await?.status, 404);

    // BAN by URL regex.
    assert!(!varnish.get("/b").await?.is_hit());
    assert!(varnish.get("/b").await?.is_hit());
    let ban = varnish
        .request("BAN", "/", &[("X-Ban-Url", "^/b$")])
        .await?;
    assert_eq!(ban.status, 200, "{ban:?}");
    let b = varnish.get("/b").await?;
    assert_eq!((b.is_hit(), b.body.as_str()), (false, "/b #2"));
    assert!(varnish.get("/ab").await?.is_hit());
    assert_eq!(varnish.ban_list()?, ["obj.http.x-url ~ ^/b$"]);
    assert_eq!(varnish.ban_count()?, 1);

    // Errors come back as 400.
    assert_eq!(varnish.request("BAN", "/", &[]).await?.status, 400);
    let bad = varnish.request("BAN", "/", &[("X-Ban-Url", "(")]).await?;
    assert_eq!(bad.status, 400, "{bad:?}");

    // BAN by URL and host.
    let ban = varnish
        .request(
            "BAN",
            "/",
            &[("X-Ban-Url", "^/c$"), ("X-Ban-Host", "^c\\.test$")],
        )
        .await?;
    assert_eq!(ban.status, 200, "{ban:?}");
    let list = varnish.ban_list()?;
    assert_eq!(
        list.last().map(String::as_str),
        Some("obj.http.x-url ~ ^/c$ && obj.http.x-host ~ ^c\\.test$"),
        "{list:?}"
    );
    // The lurker may trim the older ban at any moment: wait for a stable pair of readings.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (count, list) = (varnish.ban_count()?, varnish.ban_list()?);
        if count == list.len() as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ban_count {count} vs ban_list {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let newest = varnish.bans()?.pop().ok_or("no bans")?;
    assert!(!newest.completed, "{newest:?}");

    // Once the lurker has tested a ban against every older object it completes it, and
    // varnishd empties its expression. ban_lurker_age (60 s by default) delays that.
    varnish.varnishadm(&["param.set", "ban_lurker_age", "0"])?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let newest = varnish.bans()?.pop().ok_or("no bans")?;
        if newest.completed {
            assert_eq!(newest.expression, "");
            assert_eq!(varnish.ban_list()?.last().map(String::as_str), Some(""));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lurker did not complete {newest:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(origin.other_requests(), 0);
    varnish.stop()?;
    Ok(())
}

#[tokio::test]
async fn varnish_admin_cli_host_hashing_and_helpers() -> TestResult {
    let origin = Origin::start()?;
    let varnish = Varnish::start(&origin).await?;

    // -S: 32 hex characters and a newline, mode 0600.
    let secret = std::fs::read_to_string(varnish.secret_file())?;
    assert_eq!(secret.len(), 33);
    assert!(secret.ends_with('\n'));
    assert!(
        secret[..32]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(varnish.secret_file())?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(varnish.workdir().is_absolute());

    // -T: the admin port greets with an authentication challenge (status 107).
    let mut admin = std::net::TcpStream::connect(varnish.admin_addr())?;
    admin.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut status = [0u8; 13];
    admin.read_exact(&mut status)?;
    assert!(
        status.starts_with(b"107 "),
        "{:?}",
        String::from_utf8_lossy(&status)
    );

    // varnishadm: output on success, a clear error otherwise.
    assert!(varnish.varnishadm(&["status"])?.contains("running"));
    let err = varnish.varnishadm(&["no.such.command"]).unwrap_err();
    assert!(matches!(err, HarnessError::Command { .. }), "{err}");
    assert!(err.to_string().contains("no.such.command"), "{err}");
    // Bans added over the CLI show up too.
    varnish.varnishadm(&["ban", "req.url", "~", "^/cli$"])?;
    assert_eq!(
        varnish.ban_list()?.last().map(String::as_str),
        Some("req.url ~ ^/cli$")
    );

    // Varnish hashes URL and Host.
    assert!(!varnish.get_with_host("h.test", "/h").await?.is_hit());
    assert!(!varnish.get("/h").await?.is_hit());
    let again = varnish.get_with_host("h.test", "/h").await?;
    assert_eq!((again.is_hit(), again.body.as_str()), (true, "/h #1"));
    assert_eq!(origin.fetches("/h"), 2);
    assert_eq!(varnish.stat("MAIN.backend_req")?, origin.total_fetches());
    Ok(())
}

// (5)
#[tokio::test]
async fn stop_and_drop_leave_no_process_and_no_temp_dir() -> TestResult {
    let origin = Origin::start()?;
    let (nginx, varnish, nginx2, varnish2) = tokio::try_join!(
        Nginx::start(&origin, NginxConfig::default()),
        Varnish::start(&origin),
        Nginx::start(&origin, NginxConfig::default()),
        Varnish::start(&origin),
    )?;

    // Each server is its own process group: nginx master + worker + cache manager/loader,
    // varnishd manager + child.
    let (nginx_pid, varnish_pid) = (nginx.pid(), varnish.pid());
    let (nginx2_pid, varnish2_pid) = (nginx2.pid(), varnish2.pid());
    let nginx_group = group_members(nginx_pid);
    let varnish_group = group_members(varnish_pid);
    assert!(nginx_group.len() >= 2, "nginx group: {nginx_group:?}");
    assert!(
        nginx_group.contains(&nginx_pid),
        "nginx group: {nginx_group:?}"
    );
    assert!(varnish_group.len() >= 2, "varnish group: {varnish_group:?}");
    assert!(
        varnish_group.contains(&varnish_pid),
        "varnish group: {varnish_group:?}"
    );
    let nginx2_group = group_members(nginx2.pid());
    let varnish2_group = group_members(varnish2.pid());
    let dirs = [
        nginx.dir().to_path_buf(),
        varnish.dir().to_path_buf(),
        nginx2.dir().to_path_buf(),
        varnish2
            .workdir()
            .parent()
            .ok_or("no parent")?
            .to_path_buf(),
    ];
    for dir in &dirs {
        assert!(dir.is_dir());
    }

    nginx.stop()?;
    varnish.stop()?;
    assert_gone(nginx_pid, &nginx_group, "nginx");
    assert_gone(varnish_pid, &varnish_group, "varnishd");

    drop(nginx2);
    drop(varnish2);
    assert_gone(nginx2_pid, &nginx2_group, "dropped nginx");
    assert_gone(varnish2_pid, &varnish2_group, "dropped varnishd");

    for dir in &dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    Ok(())
}

#[tokio::test]
async fn stop_reports_a_server_that_died_during_the_test() -> TestResult {
    let origin = Origin::start()?;
    let nginx = Nginx::start(&origin, NginxConfig::default()).await?;
    let (pid, dir) = (nginx.pid(), nginx.dir().to_path_buf());
    nix::sys::signal::killpg(Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL)?;
    // kill() returns before the process is gone: wait until the master is a zombie.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))?
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    {
        assert!(Instant::now() < deadline, "nginx survived SIGKILL");
        std::thread::sleep(Duration::from_millis(5));
    }
    let err = nginx.stop().expect_err("a dead nginx stopped cleanly");
    let message = err.to_string();
    assert!(message.contains("already exited on its own"), "{message}");
    assert!(message.contains("SIGKILL"), "{message}");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_eq!(kill(Pid::from_raw(pid as i32), None), Err(Errno::ESRCH));
    Ok(())
}

#[test]
fn servers_start_and_stop_without_a_runtime() -> TestResult {
    let origin = Origin::start()?;
    let nginx = Nginx::start_blocking(&origin, NginxConfig::default())?;
    let pid = nginx.pid();
    let dir = nginx.dir().to_path_buf();
    drop(nginx);
    assert_gone(pid, &[pid], "nginx");
    assert!(!dir.exists());
    Ok(())
}

// (6)
#[tokio::test]
async fn failure_servers_behave_as_documented() -> TestResult {
    // Refused.
    let refused = refused_addr();
    let err = std::net::TcpStream::connect(&refused).expect_err("something listens");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

    // Silent: accepts, reads, never answers, until dropped.
    let silent = SilentServer::start()?;
    let quick = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()?;
    let started = Instant::now();
    let err = quick
        .get(format!("http://{}/x", silent.addr()))
        .send()
        .await
        .expect_err("the silent server answered");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(silent.connections(), 1);
    let mut open = std::net::TcpStream::connect(silent.addr())?;
    open.set_read_timeout(Some(Duration::from_secs(5)))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while silent.connections() < 2 {
        assert!(Instant::now() < deadline, "second connection not accepted");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(silent);
    let mut buf = [0u8; 1];
    assert_eq!(open.read(&mut buf)?, 0, "connection not closed on drop");

    // Status: a fixed answer to every request, counted.
    let down = StatusServer::start(503, "backend down")?;
    let http = client();
    let r = http
        .get(format!("http://{}/any", down.addr()))
        .send()
        .await?;
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await?, "backend down");
    let r = http
        .request(
            reqwest::Method::from_bytes(b"PURGE")?,
            format!("http://{}/a", down.addr()),
        )
        .send()
        .await?;
    assert_eq!(r.status(), 503);
    assert_eq!(down.requests(), 2);

    let limited = StatusServer::start_with_headers(429, "slow down", &[("Retry-After", "2")])?;
    let r = http
        .get(format!("http://{}/", limited.addr()))
        .send()
        .await?;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(limited.requests(), 1);

    assert!(matches!(
        StatusServer::start(42, "x"),
        Err(HarnessError::InvalidArgument { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn start_failures_are_clear_and_leave_nothing() -> TestResult {
    let origin = Origin::start()?;

    // Refused before anything starts.
    let err = Nginx::start(
        &origin,
        NginxConfig {
            levels: "3:3".to_owned(),
            ..NginxConfig::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("invalid cache levels"), "{err}");

    // nginx rejects the config: the error quotes its message and the config.
    let err = Nginx::start(
        &origin,
        NginxConfig {
            cache_key: "$no_such_variable".to_owned(),
            ..NginxConfig::default()
        },
    )
    .await
    .unwrap_err();
    let HarnessError::StartFailed { config, .. } = &err else {
        panic!("expected StartFailed, got {err}");
    };
    let message = err.to_string();
    assert!(
        message.contains("unknown \"no_such_variable\" variable"),
        "{message}"
    );
    assert!(message.contains(&config.display().to_string()), "{message}");
    assert!(
        message.contains("proxy_cache_key \"$no_such_variable\";"),
        "{message}"
    );
    assert!(!config.parent().ok_or("no parent")?.exists());

    // varnishd rejects the VCL: the error quotes the compiler's message.
    let err = Varnish::start_with_vcl(&origin, "vcl 4.1;\nbackend b { .host = \"127.0.0.1\"; .port = \"@ORIGIN_PORT@\"; }\nsub vcl_recv { nonsense; }\n")
        .await
        .unwrap_err();
    let HarnessError::StartFailed { config, .. } = &err else {
        panic!("expected StartFailed, got {err}");
    };
    let message = err.to_string();
    assert!(message.contains("varnishd failed to start"), "{message}");
    assert!(message.contains("nonsense"), "{message}");
    assert!(message.contains("harness.vcl"), "{message}");
    assert!(!config.parent().ok_or("no parent")?.exists());
    Ok(())
}

#[test]
fn missing_binary_error_names_the_install_command() {
    // The install command is part of every "missing" message.
    assert_eq!(
        INSTALL_COMMAND,
        "apt-get install -y nginx libnginx-mod-http-cache-purge varnish varnish-modules"
    );
    let err = HarnessError::MissingBinary {
        binary: "varnishd".to_owned(),
        searched: "looked in /usr/sbin/varnishd, $PATH".to_owned(),
        why: String::new(),
    };
    let message = err.to_string();
    assert!(message.contains("`varnishd` was not found"), "{message}");
    assert!(message.ends_with(INSTALL_COMMAND), "{message}");
    assert!(Path::new(cache_purge_hooks_testing::CACHE_PURGE_MODULE).is_file());
}
