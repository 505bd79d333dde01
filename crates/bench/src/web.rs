//! Talking to the servers the way each method does, and checking what the caches hold.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;

use crate::{Context, Result};

/// How long one request, connection or forked command may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// A keep-alive client with room for `connections` idle connections per server (what the
/// warming and checking GETs use, and the sequential keep-alive reference).
pub(crate) fn client(connections: usize) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .build()
        .context("creating an HTTP client")
}

/// What a series of GETs through a cache saw.
#[derive(Debug, Default)]
pub(crate) struct Gets {
    /// Answers served from the cache.
    pub hits: usize,
    /// Answers fetched from the origin.
    pub misses: usize,
    /// Requests without a `200` answer.
    pub failed: usize,
    /// The first failure, to quote.
    pub first_failure: Option<String>,
}

/// GETs every path through the cache at `base` (`http://127.0.0.1:port`), `concurrency` at
/// a time, and counts HITs and MISSes by the `cache_header` (`x-cache` for Varnish,
/// `x-cache-status` for nginx).
pub(crate) async fn get_all(
    client: &reqwest::Client,
    base: &str,
    cache_header: &str,
    paths: &[String],
    concurrency: usize,
) -> Gets {
    // Indices rather than `&String` items: a closure taking a borrowed argument trips the
    // compiler's `Send` check when the benchmark runs in a spawned task.
    let results: Vec<std::result::Result<bool, String>> = futures::stream::iter(0..paths.len())
        .map(move |k| async move {
            let url = format!("{base}{}", paths[k]);
            let response = client
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let status = response.status();
            let hit = response
                .headers()
                .get(cache_header)
                .and_then(|v| v.to_str().ok())
                == Some("HIT");
            // Read the body so that the connection can be reused.
            let _ = response.bytes().await;
            if status != reqwest::StatusCode::OK {
                return Err(format!("GET {url}: {status}"));
            }
            Ok(hit)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut gets = Gets::default();
    for r in results {
        match r {
            Ok(true) => gets.hits += 1,
            Ok(false) => gets.misses += 1,
            Err(e) => {
                gets.failed += 1;
                gets.first_failure.get_or_insert(e);
            }
        }
    }
    gets
}

/// GETs every path once so that the cache stores it; fails when any GET fails.
pub(crate) async fn warm(
    client: &reqwest::Client,
    base: &str,
    cache_header: &str,
    paths: &[String],
) -> Result<()> {
    let gets = get_all(client, base, cache_header, paths, 16).await;
    if gets.failed > 0 {
        return Err(format!(
            "warming {base}: {} of {} GETs failed, first: {}",
            gets.failed,
            paths.len(),
            gets.first_failure.unwrap_or_default()
        )
        .into());
    }
    Ok(())
}

/// One `PURGE target` on a new connection, closed after the answer (a blocking client that
/// keeps nothing between requests, as the seed's one request per URL). Returns the status.
pub(crate) fn purge_on_new_connection(addr: SocketAddr, target: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;
    let request = format!("PURGE {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::with_capacity(512);
    stream.read_to_end(&mut response)?;
    status_of(&response).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not an HTTP response: {:?}",
                String::from_utf8_lossy(&response[..response.len().min(60)])
            ),
        )
    })
}

/// One kept-alive connection used one request at a time by a blocking client (the peers'
/// way, as PHP's or Python's HTTP clients do it: no async runtime in between).
pub(crate) struct KeepAlive {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl KeepAlive {
    /// A client for `addr`; it connects at the first request.
    pub(crate) fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive { addr, stream: None }
    }

    /// `PURGE target` on the kept connection (opened again if the server closed it); reads
    /// the whole answer (by `Content-Length`) and returns its status.
    pub(crate) fn purge(&mut self, target: &str) -> std::io::Result<u16> {
        let mut statuses = self.pipeline(&[target])?;
        statuses
            .pop()
            .ok_or_else(|| std::io::Error::other("no answer"))
    }

    /// `PURGE` of every target, written at once on the kept connection (HTTP/1.1
    /// pipelining), then their answers read in order; their statuses. An answer closing the
    /// connection before the last one fails the rest.
    pub(crate) fn pipeline<S: AsRef<str>>(&mut self, targets: &[S]) -> std::io::Result<Vec<u16>> {
        let reused = self.stream.is_some();
        match self.pipeline_once(targets) {
            Ok(statuses) => Ok(statuses),
            // A kept connection that the server closed while it was idle (varnishd's
            // `timeout_idle` is 5 s, and more can pass between two turns of one method)
            // fails before its first answer: opened again and sent again, once (a PURGE
            // may be repeated).
            Err((true, e)) if reused && closed(&e) => {
                self.stream = None;
                self.pipeline_once(targets).map_err(|(_, e)| e)
            }
            Err((_, e)) => Err(e),
        }
    }

    /// [`pipeline`](Self::pipeline) on the connection as it is; an error says whether no
    /// answer was read.
    fn pipeline_once<S: AsRef<str>>(
        &mut self,
        targets: &[S],
    ) -> std::result::Result<Vec<u16>, (bool, std::io::Error)> {
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                let connect = || -> std::io::Result<TcpStream> {
                    let s = TcpStream::connect_timeout(&self.addr, TIMEOUT)?;
                    s.set_read_timeout(Some(TIMEOUT))?;
                    s.set_write_timeout(Some(TIMEOUT))?;
                    s.set_nodelay(true)?;
                    Ok(s)
                };
                self.stream
                    .insert(BufReader::new(connect().map_err(|e| (true, e))?))
            }
        };
        let mut requests = String::new();
        for target in targets {
            requests.push_str(&format!(
                "PURGE {} HTTP/1.1\r\nHost: {}\r\n\r\n",
                target.as_ref(),
                self.addr
            ));
        }
        let failed = |stream: &mut Option<BufReader<TcpStream>>, answered: usize, e| {
            *stream = None;
            (answered == 0, e)
        };
        if let Err(e) = stream.get_mut().write_all(requests.as_bytes()) {
            return Err(failed(&mut self.stream, 0, e));
        }
        let mut statuses = Vec::with_capacity(targets.len());
        for k in 0..targets.len() {
            let (status, close) = match read_answer(stream) {
                Ok(answer) => answer,
                Err(e) => return Err(failed(&mut self.stream, k, e)),
            };
            statuses.push(status);
            if close {
                self.stream = None;
                if k + 1 < targets.len() {
                    return Err((
                        false,
                        std::io::Error::other(format!(
                            "the server closed the connection after {} of {} pipelined answers",
                            k + 1,
                            targets.len()
                        )),
                    ));
                }
                break;
            }
        }
        Ok(statuses)
    }
}

/// Whether `e` says the connection was closed under us.
fn closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted
    )
}

/// Reads one whole answer (its body by `Content-Length`): its status, and whether it closes
/// the connection.
fn read_answer(stream: &mut BufReader<TcpStream>) -> std::io::Result<(u16, bool)> {
    {
        let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let mut line = String::new();
        if stream.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the status line",
            ));
        }
        let status = status_of(line.as_bytes())
            .ok_or_else(|| invalid(format!("not an HTTP status line: {line:?}")))?;
        let mut length: Option<usize> = None;
        let mut close = false;
        loop {
            line.clear();
            if stream.read_line(&mut line)? == 0 {
                return Err(invalid("connection closed inside the headers".into()));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().ok();
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(invalid(format!("unexpected Transfer-Encoding: {value}")));
            }
        }
        let length = length.ok_or_else(|| invalid("no Content-Length".into()))?;
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body)?;
        Ok((status, close))
    }
}

/// The status code of a raw HTTP/1.x response.
fn status_of(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    words.next()?.parse().ok()
}

/// Forks `curl -s -o /dev/null -X PURGE url` (the field notes' reference for a blocking
/// purge per URL); returns the status curl saw.
pub(crate) fn curl_purge(curl: &Path, url: &str) -> Result<u16> {
    let out = Command::new(curl)
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--noproxy",
            "*",
        ])
        .args(["--max-time", "10", "-X", "PURGE", url])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", curl.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("curl -X PURGE {url}: {} (printed {text:?})", out.status).into());
    }
    text.trim()
        .parse()
        .map_err(|_| format!("curl -X PURGE {url}: unexpected output {text:?}").into())
}

/// Forks `varnishadm -S secret -T addr ban req.url ~ url`, as django-cache-purge-hooks did
/// once per URL (its regex unanchored and unescaped).
pub(crate) fn varnishadm_ban(bin: &Path, secret: &Path, addr: &str, url: &str) -> Result<()> {
    let out = Command::new(bin)
        .args(["-t", "5", "-S"])
        .arg(secret)
        .args(["-T", addr, "ban", "req.url", "~", url])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "varnishadm ban req.url ~ {url}: {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// Runs `sync`: writes dirty pages (the cache files nginx just wrote) to disk.
pub(crate) fn sync() -> Result<()> {
    let bin = find_program("sync", &["/usr/bin/sync", "/bin/sync"])
        .ok_or("sync not found (coreutils)")?;
    let status = Command::new(&bin)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        return Err(format!("{}: {status}", bin.display()).into());
    }
    Ok(())
}

/// The first of `candidates` (absolute paths) that exists, else `name` on `PATH`.
pub(crate) fn find_program(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|p| p.is_file())
}

/// The first line a command prints (stdout, then stderr: `nginx -v` and `varnishd -V` print
/// on stderr), or why there is none.
pub(crate) fn first_line(program: &str, candidates: &[&str], args: &[&str]) -> String {
    let Some(bin) = find_program(program, candidates) else {
        return format!("{program}: not found");
    };
    match Command::new(&bin).args(args).stdin(Stdio::null()).output() {
        Ok(out) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        }
        Err(e) => format!("{}: {e}", bin.display()),
    }
}

/// `count` paths `prefix/0`, `prefix/1`, ...
pub(crate) fn paths(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}/{i}")).collect()
}

/// `k` paths of `set`, evenly spread (all of them when `k >= set.len()`).
pub(crate) fn sample(set: &[String], k: usize) -> Vec<String> {
    if k >= set.len() {
        return set.to_vec();
    }
    (0..k).map(|j| set[j * set.len() / k].clone()).collect()
}

/// A neighbour of each sampled path: the same path with `-keep` appended, which an exact
/// purge must leave cached (`/foo` vs `/foo-keep`) and a substring regex does not.
pub(crate) fn neighbours(set: &[String], k: usize) -> Vec<String> {
    sample(set, k)
        .into_iter()
        .map(|p| format!("{p}-keep"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_samples() {
        assert_eq!(status_of(b"HTTP/1.1 404 Not Found\r\n\r\n"), Some(404));
        assert_eq!(status_of(b"garbage"), None);
        let set = paths("/a", 10);
        assert_eq!(sample(&set, 2), ["/a/0", "/a/5"]);
        assert_eq!(sample(&set, 20).len(), 10);
        assert_eq!(neighbours(&set, 1), ["/a/0-keep"]);
    }
}
