//! A native client of Varnish's admin CLI (what `varnishadm` speaks), over TCP.
//!
//! Every reply is a 13-byte status line (`"%-3d %-8zd\n"`: status, body length), the body and
//! a newline. When varnishd runs with `-S`, it greets with status 107 and a 32-byte challenge;
//! the client answers `auth <sha256 hex of challenge \n secret challenge \n>`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cache_purge_hooks_engine::backend::varnish::CliError> {
//! use std::time::Duration;
//! use cache_purge_hooks_engine::backend::varnish::AdminClient;
//!
//! let secret = std::fs::read("/etc/varnish/secret").unwrap_or_default();
//! let mut cli = AdminClient::connect("127.0.0.1:6082", Some(&secret), Duration::from_secs(5)).await?;
//! let reply = cli.command("ban.list").await?;
//! println!("{}", reply.body);
//! # Ok(()) }
//! ```

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::backend::Cause;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Status codes of the admin CLI (varnish `vcli.h`).
pub mod status {
    /// Syntax error.
    pub const SYNTAX: u16 = 100;
    /// Unknown command.
    pub const UNKNOWN: u16 = 101;
    /// Wrong parameter (a bad ban expression, a wrong number of arguments).
    pub const PARAM: u16 = 106;
    /// Authentication required.
    pub const AUTH: u16 = 107;
    /// Success.
    pub const OK: u16 = 200;
    /// Success, output truncated (`ban.list` over 48 KB).
    pub const TRUNCATED: u16 = 201;
    /// The command could not be carried out.
    pub const CANT: u16 = 300;
    /// Communication error (between manager and child).
    pub const COMMS: u16 = 400;
    /// The connection is being closed.
    pub const CLOSE: u16 = 500;
}

/// The longest reply body accepted (varnishd's `cli_limit` defaults to 48 KB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A reply of the admin CLI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The status code (see [`status`]).
    pub status: u16,
    /// The body, without the closing newline.
    pub body: String,
}

/// The admin CLI failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Could not connect.
    #[error("{0}")]
    Connect(#[source] std::io::Error),
    /// The connection broke.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The secret was refused, or none was given and varnishd wants one.
    #[error("{0}")]
    Auth(String),
    /// The peer does not speak the admin protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A command was refused (a bad ban expression, for example).
    #[error("`{command}` failed with status {status}: {body}")]
    Refused {
        /// The command's first word.
        command: String,
        /// The status code.
        status: u16,
        /// varnishd's explanation.
        body: String,
    },
}

impl CliError {
    /// What this failure is, as a purge failure's [`Cause`].
    pub fn cause(&self) -> Cause {
        match self {
            CliError::Connect(_) => Cause::Unreachable,
            CliError::Io(_) => Cause::ConnectionLost,
            CliError::Timeout(_) => Cause::Timeout,
            CliError::Protocol(_) => Cause::Protocol,
            CliError::Auth(_) => Cause::Authentication,
            // The manager could not reach the cache process: it may be restarting.
            CliError::Refused { status, .. } if *status == status::COMMS => Cause::Unavailable,
            CliError::Refused { .. } => Cause::Refused,
        }
    }

    /// Whether trying again (later, or on a new connection) might work.
    pub fn is_transient(&self) -> bool {
        self.cause().is_transient()
    }
}

/// One authenticated connection to varnishd's admin port.
#[derive(Debug)]
pub struct AdminClient {
    stream: BufReader<TcpStream>,
    timeout: Duration,
}

impl AdminClient {
    /// Connects to `addr` (`host:port`), answering the challenge with `secret` (the secret
    /// file's bytes, trailing newline included) if varnishd asks for one. `timeout` bounds
    /// the connection, the authentication and every later command.
    pub async fn connect(
        addr: &str,
        secret: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Self, CliError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| CliError::Timeout(timeout))?
            .map_err(CliError::Connect)?;
        // Strict request/reply: without this, Nagle holds each command back waiting for the
        // previous reply's delayed ACK (40 ms per command).
        stream.set_nodelay(true)?;
        let mut client = Self {
            stream: BufReader::new(stream),
            timeout,
        };
        let greeting = client.read_reply().await?;
        match greeting.status {
            status::OK => Ok(client),
            status::AUTH => {
                let Some(secret) = secret else {
                    return Err(CliError::Auth(
                        "varnishd requires authentication (-S) and no secret file was given".into(),
                    ));
                };
                let challenge = greeting.body.get(..32).ok_or_else(|| {
                    CliError::Protocol("authentication challenge shorter than 32 bytes".into())
                })?;
                let answer = client
                    .command(&format!("auth {}", auth_response(challenge, secret)))
                    .await;
                match answer {
                    Ok(_) => Ok(client),
                    // varnishd answers a wrong secret with 107 (older) or 500 and a hang-up.
                    Err(CliError::Refused { .. }) => Err(CliError::Auth(
                        "authentication failed: the secret does not match varnishd's -S file"
                            .into(),
                    )),
                    Err(e) => Err(e),
                }
            }
            other => Err(CliError::Protocol(format!(
                "unexpected greeting status {other}: {}",
                greeting.body.lines().next().unwrap_or("")
            ))),
        }
    }

    /// Sends one command line and reads its reply. A status other than 200 or 201 is a
    /// [`CliError::Refused`].
    ///
    /// The line must be a single command: a newline in it is refused here, since varnishd
    /// would run what follows it as a second command.
    pub async fn command(&mut self, line: &str) -> Result<Reply, CliError> {
        if line.contains(['\n', '\r']) {
            return Err(CliError::Protocol(
                "a command line may not contain a newline".into(),
            ));
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        tokio::time::timeout(self.timeout, self.stream.get_mut().write_all(&buf))
            .await
            .map_err(|_| CliError::Timeout(self.timeout))??;
        let reply = self.read_reply().await?;
        if matches!(reply.status, status::OK | status::TRUNCATED) {
            Ok(reply)
        } else {
            Err(CliError::Refused {
                command: line.split(' ').next().unwrap_or("").to_owned(),
                status: reply.status,
                body: reply.body.trim_end().to_owned(),
            })
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, CliError> {
        tokio::time::timeout(self.timeout, self.read_reply_untimed())
            .await
            .map_err(|_| CliError::Timeout(self.timeout))?
    }

    async fn read_reply_untimed(&mut self) -> Result<Reply, CliError> {
        let mut header = [0u8; 13];
        self.stream.read_exact(&mut header).await?;
        let (status, length) = parse_header(&header)?;
        let mut body = vec![0u8; length + 1];
        self.stream.read_exact(&mut body).await?;
        if body.pop() != Some(b'\n') {
            return Err(CliError::Protocol(
                "reply body not ended by a newline".into(),
            ));
        }
        Ok(Reply {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Parses the 13-byte status line `"%-3d %-8zd\n"`.
fn parse_header(header: &[u8; 13]) -> Result<(u16, usize), CliError> {
    let bad = || {
        CliError::Protocol(format!(
            "not a Varnish admin reply (status line {:?}); is this the -T address?",
            String::from_utf8_lossy(header)
        ))
    };
    if header[3] != b' ' || header[12] != b'\n' {
        return Err(bad());
    }
    let text = std::str::from_utf8(header).map_err(|_| bad())?;
    let status: u16 = text[..3].trim().parse().map_err(|_| bad())?;
    let length: usize = text[4..12].trim().parse().map_err(|_| bad())?;
    if length > MAX_BODY {
        return Err(bad());
    }
    Ok((status, length))
}

/// `sha256(challenge + "\n" + secret + challenge + "\n")` in lowercase hex.
fn auth_response(challenge: &str, secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(challenge.as_bytes());
    h.update(b"\n");
    h.update(secret);
    h.update(challenge.as_bytes());
    h.update(b"\n");
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_header(b"200 13      \n").unwrap(), (200, 13));
        assert_eq!(parse_header(b"107 59      \n").unwrap(), (107, 59));
        assert!(parse_header(b"HTTP/1.1 400 ").is_err());
    }

    #[test]
    fn auth_response_matches_varnish() {
        // sha256("abc\nsecret\nabc\n"), computed with coreutils' sha256sum.
        assert_eq!(
            auth_response("abc", b"secret\n"),
            "9869b356b2d1e4ea50adbe56091db1a8dc702e022bbb1a1e15f81f78b2ad6dca"
        );
    }
}
