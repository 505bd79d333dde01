//! Backend-level tests: `http` mode against a tiny fake nginx, `files` and `wipe` modes on a
//! temporary directory. Real-nginx tests live with the test suite.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::settings::{CacheDir, KeyTemplate, Levels, PurgePrefix};
use super::*;
use crate::backend::FailedTargets;
use crate::settings::types::{HttpMethod, ServerAddr};

/// One request the fake nginx received.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    method: String,
    target: String,
    host: String,
}

/// A fake ngx_cache_purge: answers each request with the status `respond` gives its target.
struct FakeNginx {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    max_in_flight: Arc<AtomicUsize>,
}

impl FakeNginx {
    fn start(respond: fn(&str) -> (u16, &'static str), delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let (s, i, m) = (seen.clone(), in_flight, max_in_flight.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, i, m) = (s.clone(), i.clone(), m.clone());
                std::thread::spawn(move || serve(stream, respond, delay, &s, &i, &m));
            }
        });
        Self {
            addr,
            seen,
            max_in_flight,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        let mut seen = self.seen.lock().unwrap().clone();
        seen.sort_by(|a, b| a.target.cmp(&b.target));
        seen
    }
}

fn serve(
    stream: TcpStream,
    respond: fn(&str) -> (u16, &'static str),
    delay: Duration,
    seen: &Mutex<Vec<Seen>>,
    in_flight: &AtomicUsize,
    max_in_flight: &AtomicUsize,
) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or_default().to_owned();
        let target = words.next().unwrap_or_default().to_owned();
        let mut host = String::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("host")
            {
                host = value.trim().to_owned();
            }
        }
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        max_in_flight.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(delay);
        seen.lock().unwrap().push(Seen {
            method,
            target: target.clone(),
            host,
        });
        let (status, extra_headers) = respond(&target);
        let body = format!("<html>{status}</html>");
        let reply = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{extra_headers}\r\n{body}",
            body.len()
        );
        in_flight.fetch_sub(1, Ordering::SeqCst);
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// ngx_cache_purge 2.3: 200 when cached, 404 when not.
fn purge_2_3(target: &str) -> (u16, &'static str) {
    if target.contains("missing") {
        (404, "")
    } else if target.contains("gone") {
        (412, "")
    } else if target.contains("bad") {
        (503, "")
    } else if target.contains("forbidden") {
        (403, "")
    } else if target.contains("slow-down") {
        (429, "Retry-After: 7\r\n")
    } else {
        (200, "")
    }
}

fn urls(list: &[&str]) -> Vec<Target> {
    list.iter().map(|u| Target::url(u).unwrap()).collect()
}

fn http_settings(servers: &[&str], f: impl FnOnce(&mut NginxSettings)) -> NginxSettings {
    let mut s = NginxSettings {
        servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
        timeout: Duration::from_secs(5),
        ..NginxSettings::default()
    };
    f(&mut s);
    s
}

fn backend(settings: &NginxSettings) -> NginxBackend {
    NginxBackend::new(settings).unwrap()
}

/// An address where nothing listens.
fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn separate_location_style_with_hosts() {
    let nginx = FakeNginx::start(purge_2_3, Duration::ZERO);
    let b = backend(&http_settings(&[&nginx.addr], |s| {
        s.purge_prefix = Some("/purge".parse().unwrap())
    }));
    assert_eq!(b.capabilities(), Capabilities::URL);
    assert_eq!(b.max_batch(), 256);
    b.purge(&urls(&[
        "/a?x=1",
        "https://Example.com:8443/b",
        "/missing",
        "/gone",
    ]))
    .await
    .unwrap();
    let seen = nginx.seen();
    let show: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.target.as_str(), s.host.as_str()))
        .collect();
    assert_eq!(
        show,
        [
            ("PURGE", "/purge/a?x=1", nginx.addr.as_str()),
            ("PURGE", "/purge/b", "example.com:8443"),
            ("PURGE", "/purge/gone", nginx.addr.as_str()),
            ("PURGE", "/purge/missing", nginx.addr.as_str()),
        ]
    );
}

#[tokio::test]
async fn same_location_style_with_a_host_header_and_method() {
    let nginx = FakeNginx::start(purge_2_3, Duration::ZERO);
    let b = backend(&http_settings(&[&nginx.addr], |s| {
        s.host_header = Some("site.test".parse().unwrap());
        s.method = "GET".parse().unwrap();
    }));
    b.purge(&urls(&["/a%20b?q", "/"])).await.unwrap();
    assert_eq!(
        nginx.seen(),
        [
            Seen {
                method: "GET".into(),
                target: "/".into(),
                host: "site.test".into()
            },
            Seen {
                method: "GET".into(),
                target: "/a%20b?q".into(),
                host: "site.test".into()
            },
        ]
    );
}

#[tokio::test]
async fn partial_failures_list_the_failed_urls_and_the_first_failing_server() {
    let good = FakeNginx::start(|_| (200, ""), Duration::ZERO);
    let picky = FakeNginx::start(purge_2_3, Duration::ZERO);
    let b = backend(&http_settings(&[&good.addr, &picky.addr], |_| {}));
    let batch = urls(&["/ok", "/bad", "/forbidden", "/missing"]);
    let e = b.purge(&batch).await.unwrap_err();
    assert_eq!(
        e.failed(),
        &FailedTargets::Only(urls(&["/bad", "/forbidden"]))
    );
    assert_eq!(e.server(), Some(picky.addr.as_str()));
    assert_eq!(e.cause(), &Cause::Status(503), "{e}");
    assert!(e.is_transient(), "503 is transient: {e}");
    assert!(
        e.message().starts_with(&format!(
            "2 of 4 targets not purged (failed 2 on {})",
            picky.addr
        )),
        "{e}"
    );
    assert!(e.message().contains("first: url /bad: answered 503"), "{e}");
    // Every server got every URL.
    assert_eq!(good.seen().len(), 4);
    assert_eq!(picky.seen().len(), 4);
}

#[tokio::test]
async fn permanent_only_when_every_failure_is() {
    let nginx = FakeNginx::start(purge_2_3, Duration::ZERO);
    let b = backend(&http_settings(&[&nginx.addr], |_| {}));
    let e = b
        .purge(&urls(&["/forbidden", "/forbidden2", "/ok"]))
        .await
        .unwrap_err();
    assert!(!e.is_transient());
    assert_eq!(e.failed().count(3), 2);
    assert!(e.message().contains("403"), "{e}");

    let e = b
        .purge(&urls(&["/forbidden", "/slow-down"]))
        .await
        .unwrap_err();
    assert_eq!(
        e.cause(),
        &Cause::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    // The whole batch failed: `failed` is empty, meaning all of it.
    assert_eq!(*e.failed(), FailedTargets::All);
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_without_stopping_the_others() {
    let good = FakeNginx::start(|_| (200, ""), Duration::ZERO);
    let dead = dead_address();
    let b = backend(&http_settings(&[&good.addr, &dead], |s| {
        s.concurrency = NonZeroUsize::new(2).unwrap()
    }));
    let batch: Vec<Target> = (0..20)
        .map(|i| Target::url(&format!("/p/{i}")).unwrap())
        .collect();
    let e = b.purge(&batch).await.unwrap_err();
    assert!(
        (*e.failed() == FailedTargets::All),
        "the whole batch failed on the dead server"
    );
    assert_eq!(e.server(), Some(dead.as_str()));
    assert_eq!(e.cause(), &Cause::Unreachable);
    assert!(e.message().contains("cannot connect"), "{e}");
    assert!(e.message().contains(&format!("20 on {dead}")), "{e}");
    assert_eq!(good.seen().len(), 20);
}

#[tokio::test]
async fn at_most_concurrency_connections_are_served_at_once_per_server() {
    let nginx = FakeNginx::start(|_| (200, ""), Duration::from_millis(20));
    let b = backend(&http_settings(&[&nginx.addr], |s| {
        s.concurrency = NonZeroUsize::new(3).unwrap()
    }));
    let batch: Vec<Target> = (0..15)
        .map(|i| Target::url(&format!("/c/{i}")).unwrap())
        .collect();
    b.purge(&batch).await.unwrap();
    assert_eq!(nginx.seen().len(), 15);
    let max = nginx.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "max in flight {max}");
}

/// What a constructor used to refuse is now refused where the value is read: by `FromStr` in
/// code, and by the loader (with key and origin) in a file. Only the rules across keys are
/// left to the constructor, as the loader's own check.
#[test]
fn bad_settings_are_parse_errors() {
    let parse_err = |e: crate::settings::types::InvalidValue| e.to_string();
    assert!(parse_err("nohost".parse::<ServerAddr>().unwrap_err()).contains("host:port"));
    assert!(parse_err("purge".parse::<PurgePrefix>().unwrap_err()).contains("must start with `/`"));
    assert!(parse_err("PU RGE".parse::<HttpMethod>().unwrap_err()).contains("HTTP method"));
    assert!(parse_err("cache".parse::<CacheDir>().unwrap_err()).contains("absolute"));
    assert!(parse_err("/".parse::<CacheDir>().unwrap_err()).contains("absolute"));
    assert!(parse_err("/var/../etc".parse::<CacheDir>().unwrap_err()).contains("absolute"));
    assert!(parse_err("3".parse::<Levels>().unwrap_err()).contains("levels"));
    assert!(parse_err("$args".parse::<KeyTemplate>().unwrap_err()).contains("$uri"));

    // The same values in a file are refused by the loader, with key, origin and expectation:
    // crates/engine/tests/settings.rs (`nginx_values_are_refused_where_the_file_is_read`).

    // Rules across keys, for settings built in code: the loader's check, as a build error.
    let err = |s: NginxSettings| match NginxBackend::new(&s) {
        Err(e @ SetupError::Invalid { .. }) => e.to_string(),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("accepted"),
    };
    let files = |f: fn(&mut NginxSettings)| {
        let mut s = NginxSettings {
            mode: NginxMode::Files,
            cache_dir: Some("/var/cache/nginx".parse().unwrap()),
            key_template: Some("$uri$is_args$args".parse().unwrap()),
            ..NginxSettings::default()
        };
        f(&mut s);
        s
    };
    assert!(NginxBackend::new(&files(|_| {})).is_ok());
    assert!(
        err(files(|s| s.cache_dir = None))
            .starts_with("cache_dir: required with mode = \"files\" or \"wipe\"")
    );
    assert!(
        err(files(|s| s.key_template = None))
            .starts_with("key_template: required with mode = \"files\"")
    );
    assert!(
        err(files(
            |s| s.key_template = Some("$scheme$proxy_host$request_uri".parse().unwrap())
        ))
        .starts_with("proxy_host: required because key_template")
    );
    assert!(
        err(files(
            |s| s.key_template = Some("$host$uri".parse().unwrap())
        ))
        .starts_with("host_header: required because key_template `$host$uri` uses $host")
    );
    let mut wipe = files(|_| {});
    wipe.mode = NginxMode::Wipe;
    wipe.cache_dir = None;
    assert_eq!(
        err(wipe.clone()),
        format!("cache_dir: {}", wipe.check().unwrap_err().message)
    );
}

// ----- files mode -------------------------------------------------------------------------

fn files_backend(dir: &Path) -> NginxBackend {
    backend(&NginxSettings {
        mode: NginxMode::Files,
        cache_dir: Some(CacheDir::new(dir).unwrap()),
        key_template: Some("$uri$is_args$args".parse().unwrap()),
        ..NginxSettings::default()
    })
}

/// Writes a cache file for `key` the way nginx lays it out.
fn cache_file(b: &NginxBackend, url: &str, key: &str) -> PathBuf {
    let path = b.cache_file(&PurgeUrl::parse(url).unwrap()).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut data = vec![5u8, 0, 0, 0, b'\n', 0xff, 0x00];
    data.resize(336, 0);
    data.extend_from_slice(format!("\nKEY: {key}\nHTTP/1.1 200 OK\r\n\r\nbody").as_bytes());
    std::fs::write(&path, data).unwrap();
    path
}

#[tokio::test]
async fn files_mode_unlinks_exactly_the_cached_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let b = files_backend(tmp.path());
    assert_eq!(
        b.capabilities(),
        Capabilities::URL | Capabilities::EVERYTHING
    );
    assert_eq!(b.max_batch(), 1000);
    assert_eq!(
        b.cache_file(&PurgeUrl::parse("/a").unwrap()).unwrap(),
        tmp.path().join("5/bf/0639767f3e9eaad729b54037a7e2abf5")
    );
    assert_eq!(
        b.cache_key(&PurgeUrl::parse("/a%20b?").unwrap()).unwrap(),
        b"/a b"
    );

    let a = cache_file(&b, "/a", "/a");
    let q = cache_file(&b, "/b?x=1", "/b?x=1");
    let sp = cache_file(&b, "/c%20d", "/c d");
    let other = cache_file(&b, "/e", "/not-e"); // another key at this path: kept
    b.purge(&urls(&[
        "/a",
        "/b?x=1",
        "/c%20d",
        "/e",
        "/never-cached",
        "/../x",
    ]))
    .await
    .unwrap();
    assert!(!a.exists() && !q.exists() && !sp.exists());
    assert!(other.exists());
}

#[tokio::test]
async fn files_mode_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let b = files_backend(&tmp.path().join("missing"));
    let e = b.purge(&urls(&["/a"])).await.unwrap_err();
    assert!(!e.is_transient());
    assert!(e.message().contains("does not exist"), "{e}");

    // A level directory that is a file: an I/O error for that URL only.
    let b = files_backend(tmp.path());
    let blocked = b.cache_file(&PurgeUrl::parse("/a").unwrap()).unwrap();
    let level = blocked.parent().unwrap().parent().unwrap();
    std::fs::write(level, b"not a dir").unwrap();
    let ok = cache_file(&b, "/z", "/z");
    let e = b.purge(&urls(&["/z", "/a"])).await.unwrap_err();
    assert_eq!(e.failed(), &FailedTargets::Only(urls(&["/a"])));
    assert!(e.is_transient());
    assert!(e.message().contains(&blocked.display().to_string()), "{e}");
    assert!(!ok.exists());
}

#[tokio::test]
async fn files_mode_everything_wipes_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let b = files_backend(tmp.path());
    cache_file(&b, "/a", "/a");
    cache_file(&b, "/b", "/b");
    b.purge(&[Target::Everything]).await.unwrap();
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

// ----- wipe mode --------------------------------------------------------------------------

#[tokio::test]
async fn wipe_mode_empties_the_directory_once_per_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(cache.join("5/bf")).unwrap();
    std::fs::write(cache.join("5/bf/0639767f3e9eaad729b54037a7e2abf5"), b"x").unwrap();
    let b = backend(&NginxSettings {
        mode: NginxMode::Wipe,
        cache_dir: Some(CacheDir::new(&cache).unwrap()),
        ..NginxSettings::default()
    });
    assert_eq!(
        b.capabilities(),
        Capabilities::URL | Capabilities::PREFIX | Capabilities::EVERYTHING
    );
    assert_eq!(b.max_batch(), 100_000);
    let mut batch = urls(&["/a", "/b"]);
    batch.push(Target::prefix("/posts/").unwrap());
    b.purge(&batch).await.unwrap();
    assert!(cache.is_dir());
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);

    std::fs::remove_dir(&cache).unwrap();
    let e = b.purge(&urls(&["/a"])).await.unwrap_err();
    assert!(!e.is_transient());
}
