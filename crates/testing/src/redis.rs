//! A real `redis-server` on a free loopback port, for tag index tests.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::background::off_thread;
use crate::error::{HarnessError, Result};
use crate::ports;
use crate::process::{self, ServerProcess};

/// Where Debian's `redis-server` package puts the binary.
const REDIS_BIN: &str = "/usr/bin/redis-server";

/// A `redis-server` started for one test: `--port <free port> --bind 127.0.0.1 --save ""
/// --appendonly no`, in its own temp dir (nothing is written to disk), in its own process
/// group. [`Redis::stop`] (or dropping it) stops it by PID and removes the temp dir.
///
/// ```no_run
/// use cache_purge_hooks_testing::Redis;
///
/// # fn example() -> Result<(), cache_purge_hooks_testing::HarnessError> {
/// let redis = Redis::start_blocking()?;
/// let url = redis.url(); // redis://127.0.0.1:PORT/0
/// // ... point the code under test at `url` ...
/// redis.stop()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Redis {
    // Field order matters for Drop: the process stops before its temp dir is removed.
    process: Option<ServerProcess>,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    pid: u32,
    port: u16,
}

impl Redis {
    /// Starts `redis-server` and waits (up to 30 s) until it answers `PING`. Works on any
    /// Tokio runtime flavour (the blocking work runs on its own thread).
    ///
    /// Fails with [`HarnessError::MissingBinary`] when `redis-server` is not installed
    /// (Debian: `apt-get install redis-server`), and with [`HarnessError::StartFailed`]
    /// (quoting its log) when it does not start. A port taken meanwhile is retried.
    pub async fn start() -> Result<Redis> {
        off_thread("cph-redis-start", Redis::start_blocking).await
    }

    /// [`Redis::start`] for synchronous code.
    pub fn start_blocking() -> Result<Redis> {
        let binary = process::find_binary(
            "redis-server",
            &[REDIS_BIN],
            "the tag index tests need it (apt-get install redis-server)",
        )?;
        let dir = process::server_temp_dir("cph-redis-")?;
        let root = dir.path().to_path_buf();
        let stdout = root.join("stdout.log");
        let stderr = root.join("stderr.log");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = ports::free_port()?;
            let port_text = port.to_string();
            let args: [&OsStr; 10] = [
                OsStr::new("--port"),
                OsStr::new(&port_text),
                OsStr::new("--bind"),
                OsStr::new("127.0.0.1"),
                OsStr::new("--save"),
                OsStr::new(""),
                OsStr::new("--appendonly"),
                OsStr::new("no"),
                OsStr::new("--dir"),
                root.as_os_str(),
            ];
            let mut server =
                ServerProcess::spawn("redis-server", &binary, &args, &root, &stdout, &stderr)?;
            let logs = [stdout.as_path(), stderr.as_path()];
            let deadline = Instant::now() + process::START_DEADLINE;
            let outcome = loop {
                if let Some(status) = server.poll_exit()? {
                    break Err(format!("it exited ({status}) before it was ready"));
                }
                if process::mentions_port_taken(&logs) {
                    break Err(format!("port {port} is already in use"));
                }
                if pings(port) {
                    break Ok(());
                }
                if Instant::now() >= deadline {
                    break Err(format!(
                        "no PONG on port {port} after {:?}",
                        process::START_DEADLINE
                    ));
                }
                std::thread::sleep(process::POLL_INTERVAL);
            };
            match outcome {
                Ok(()) => {
                    tracing::debug!(pid = server.pid(), port, "redis-server ready");
                    return Ok(Redis {
                        pid: server.pid(),
                        process: Some(server),
                        dir: Some(dir),
                        root,
                        port,
                    });
                }
                Err(reason) => {
                    let in_use = process::mentions_port_taken(&logs);
                    let _ = server.terminate(process::STOP_GRACE);
                    if in_use && attempt < process::PORT_ATTEMPTS {
                        for log in [&stdout, &stderr] {
                            let _ = std::fs::remove_file(log);
                        }
                        continue;
                    }
                    return Err(HarnessError::StartFailed {
                        server: "redis-server",
                        reason,
                        config: root.clone(),
                        logs: process::log_tails(&logs),
                    });
                }
            }
        }
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The PID of the server.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops the server (SIGTERM to its process group, SIGKILL after 5 s) and removes its
    /// temp dir; an error also if it had died during the test. Dropping does the same.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let stdout = self.root.join("stdout.log");
        process::shut_down(
            "redis-server",
            self.pid,
            self.process.take(),
            self.dir.take(),
            &[Path::new(&stdout)],
        )
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Whether a Redis answers `PING` on 127.0.0.1:`port` (within half a second).
pub fn redis_answers(port: u16) -> bool {
    pings(port)
}

fn pings(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr.into(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}
