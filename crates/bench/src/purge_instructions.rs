//! Scenario 4d: our process's instructions per purge over HTTP (valgrind's callgrind), for
//! the Varnish `http` backend and the nginx `http` backend: the client CPU that scenarios 1b
//! and 2 measure in seconds, as a count that a loaded 2-core machine does not blur.
//!
//! The parent answers every request itself (a stub on loopback: `200`, no body, keep-alive,
//! a thread per connection), so that only the client's work is counted, not varnishd's or
//! nginx's. The bench re-runs itself as a child (`--child purges:backend=...,count=K,
//! server=ADDR`) under `valgrind --tool=callgrind`: a current-thread tokio runtime, a
//! `Purger` (immediate delivery) with the backend on the stub, 20 purges to warm up (the
//! connections opened), then `K` purges of distinct URLs (`try_purge` each, then `flush`).
//! `(Ir(K2) - Ir(K1)) / (K2 - K1)` is one purge's instructions, start-up cancelled out. Both
//! runs format the same `K2` URL texts (the bench's own work, not a purge's) and purge the
//! first `K` of them, so that formatting cancels out too.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cache_purge_hooks::backend::nginx::NginxBackend;
use cache_purge_hooks::backend::varnish::VarnishBackend;
use cache_purge_hooks::settings::{NginxSettings, VarnishHttpMethod, VarnishMode, VarnishSettings};
use cache_purge_hooks::{Delivery, Purger};
use serde_json::{Value, json};

use crate::child::{self, Spec};
use crate::report::{Table, grouped};
use crate::{Config, Context, Result, progress};

/// The backends measured: (id, what).
const BACKENDS: [(&str, &str); 2] = [
    (
        "varnish-http",
        "Purger + VarnishBackend `http` (PURGE per URL, 1b's ours)",
    ),
    (
        "nginx-http",
        "Purger + NginxBackend `http` (ngx_cache_purge per URL, 2's ours)",
    ),
];

/// The child: `count` purges through `backend` against `server`, after a warm-up.
pub(crate) fn child(spec: &Spec) -> Result<Value> {
    let count = spec.number("count")?;
    let formatted = spec.number("formatted")?.max(count);
    let backend = spec.text("backend")?.to_owned();
    let server: cache_purge_hooks::settings::ServerAddr = spec
        .text("server")?
        .parse()
        .context("--child purges: `server`")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    runtime.block_on(async move {
        let builder = Purger::builder().delivery(Delivery::Immediate);
        let builder = match backend.as_str() {
            "varnish-http" => {
                let mut settings = VarnishSettings::default();
                settings.mode = VarnishMode::Http;
                settings.http_method = VarnishHttpMethod::Purge;
                settings.servers = vec![server];
                settings.timeout = Duration::from_secs(30);
                builder.backend(
                    "varnish",
                    VarnishBackend::new(&settings).context("VarnishBackend::new (http)")?,
                )
            }
            "nginx-http" => {
                let mut settings = NginxSettings::default();
                settings.servers = vec![server];
                settings.purge_prefix = Some("/purge".parse().context("the purge prefix")?);
                settings.timeout = Duration::from_secs(30);
                builder.backend(
                    "nginx",
                    NginxBackend::new(&settings).context("NginxBackend::new (http)")?,
                )
            }
            other => return Err(format!("--child purges: unknown backend `{other}`").into()),
        };
        let purger = builder.build().context("building the Purger")?;
        let purges = |urls: &[String]| -> Result<()> {
            for t in crate::targets(urls)? {
                purger.try_purge([t]);
            }
            Ok(())
        };
        let warm = crate::web::paths("/ir/warm", 20);
        let timed = crate::web::paths("/ir/timed/a-typical-slug", formatted);
        purges(&warm)?;
        purger.flush().await;
        purges(&timed[..count])?;
        purger.flush().await;
        let (purged, failed) = purger
            .stats()
            .iter()
            .fold((0, 0), |(p, f), s| (p + s.purged, f + s.failed));
        let _ = purger.shutdown(Duration::from_secs(5)).await;
        // A purge that failed would count other work (errors, retries) than a purge's.
        if failed > 0 || purged < (count + 20) as u64 {
            return Err(format!(
                "--child purges: {purged} purged, {failed} failed of {}",
                count + 20
            )
            .into());
        }
        Ok(json!({ "count": count, "purged": purged }))
    })
}

/// A stub HTTP/1.1 server on loopback: every request (headers only, no body) gets `200` with
/// an empty body on the same connection. Stopped (and its threads ended) when dropped.
struct Stub {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Stub {
    fn start() -> Result<Stub> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the stub server")?;
        let addr = listener.local_addr().context("the stub's address")?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(conn) = conn {
                    std::thread::spawn(move || serve(conn));
                }
            }
        });
        Ok(Stub {
            addr,
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Answers the requests of one connection until the client closes it.
fn serve(conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // The end of a request's headers: answer it.
        if (line == "\r\n" || line == "\n")
            && out
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .is_err()
        {
            return;
        }
    }
}

/// Instructions of a child running `count` purges through `backend` under callgrind, having
/// formatted `formatted` URLs.
fn measure(
    valgrind: &Path,
    dir: &Path,
    server: SocketAddr,
    backend: &str,
    (count, formatted): (usize, usize),
) -> Result<u64> {
    let out = dir.join(format!("callgrind.{backend}.{count}.out"));
    let wrapper = crate::instructions::callgrind(valgrind, &out);
    let spec = child::spec(
        "purges",
        &[
            ("backend", backend.to_owned()),
            ("count", count.to_string()),
            ("formatted", formatted.to_string()),
            ("server", server.to_string()),
        ],
    );
    child::run(&spec, &wrapper)?;
    crate::instructions::total_ir(&out)
}

/// Runs scenario 4d.
pub(crate) async fn run(config: &Config) -> Result<Table> {
    let (k1, k2) = config.callgrind_purges;
    let mut table = Table::new(
        "purge-instructions",
        format!(
            "4d. Client CPU per purge over HTTP in instructions (callgrind): our process, against a stub server; Ir of {} purges minus Ir of {}, per purge",
            grouped(k2 as u64),
            grouped(k1 as u64)
        ),
        "purge",
    );
    let Some(valgrind) = crate::instructions::valgrind() else {
        table
            .notes
            .push("skipped: valgrind not installed (apt-get install -y valgrind)".to_owned());
        return Ok(table);
    };
    let dir =
        std::env::temp_dir().join(format!("cph-bench-callgrind-purge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stub = Stub::start()?;
    let server = stub.addr;
    for (id, what) in BACKENDS {
        progress!("callgrind: {id}, {k1} and {k2} purges");
        let (v, d) = (valgrind.clone(), dir.clone());
        let (a, b) = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
            Ok((
                measure(&v, &d, server, id, (k1, k2))?,
                measure(&v, &d, server, id, (k2, k2))?,
            ))
        })
        .await
        .context("the callgrind runs")??;
        let ir = b.saturating_sub(a) as f64 / (k2 - k1) as f64;
        table.measure(id, format!("{what}: ours: Ir per purge (client)"), ir, "Ir");
    }
    drop(stub);
    let _ = std::fs::remove_dir_all(&dir);
    table.notes.push(
        "every thread of the child is counted (tokio on a current-thread runtime, the Purger's worker, the HTTP/1 client); the stub server runs in the parent, not counted"
            .to_owned(),
    );
    Ok(table)
}
