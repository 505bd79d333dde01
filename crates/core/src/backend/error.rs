//! Why a purge failed, in types a program can match on.
//!
//! A backend answers a batch with `Ok(())` or a [`PurgeError`]: a [`Cause`] (what a program
//! matches on: the engine's retry policy, the CLI's hints, a health check), the targets that
//! were not purged ([`FailedTargets`]: all of the batch, or only some), the server concerned,
//! the underlying error as [`source`](std::error::Error::source), and a message for people.
//!
//! A backend with several servers (or parts) collects one error per server in [`Failures`]
//! and returns [`Failures::into_result`]: every backend combines them the same way.
//!
//! ```
//! use cache_purge_hooks_core::backend::{Cause, FailedTargets, Failures, PurgeError};
//! use cache_purge_hooks_core::Target;
//!
//! let batch = [Target::url("/a").unwrap(), Target::url("/b").unwrap()];
//! let mut failures = Failures::new(&batch);
//! failures.push(
//!     PurgeError::new(Cause::Status(403), "answered 403 Forbidden")
//!         .on_server("10.0.0.2:80")
//!         .only(vec![batch[1].clone()]),
//! );
//! let error = failures.into_result().unwrap_err();
//! assert_eq!(error.cause(), &Cause::Status(403));
//! assert!(!error.is_transient()); // retrying a 403 as it is would never work
//! assert_eq!(error.failed(), &FailedTargets::Only(vec![batch[1].clone()]));
//! assert_eq!(error.server(), Some("10.0.0.2:80"));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::target::Target;

/// What made a purge fail. Programs match on it; people read [`PurgeError`]'s message.
///
/// Whether a cause is worth retrying is [`Cause::is_transient`]; the engine's retry policy
/// decides from it (and from how often and how long the purge has failed).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// No connection could be opened: refused, no route to the host, name not resolved.
    Unreachable,
    /// No complete answer within the backend's timeout.
    Timeout,
    /// The connection closed or broke before a complete answer (an nginx worker that crashed
    /// on the request, a reset).
    ConnectionLost,
    /// The peer does not speak the protocol expected (an HTTP port given as Varnish's admin
    /// port, a garbled reply).
    Protocol,
    /// The credentials were refused: a secret that does not match varnishd's `-S` file, a bad
    /// API token.
    Authentication,
    /// The server asked to slow down (HTTP 429, or 503 with `Retry-After`); try again no
    /// sooner than `retry_after` when it says.
    RateLimited {
        /// How long the server asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The server answered with this HTTP status, which is neither success nor "not cached"
    /// (403 from an allow list, 405 where no purge location is, 502...).
    Status(u16),
    /// The server understood the purge and refused it (Varnish rejected a ban expression,
    /// `varnishadm` exited with status 1).
    Refused,
    /// The server is up but cannot purge now (Varnish's cache process is not running, or the
    /// manager could not reach it).
    Unavailable,
    /// A local file operation failed (nginx cache files), with its [`std::io::ErrorKind`].
    Io(std::io::ErrorKind),
    /// The purge cannot work with the backend's settings: a cache key that cannot be computed,
    /// a target the configured mode cannot purge. Fix the settings; retrying is pointless.
    Misconfigured,
    /// The backend failed inside this process (a task that panicked or was cancelled).
    Internal,
}

impl Cause {
    /// Whether the same purge may work later without a change of settings or server:
    /// connection failures, timeouts, rate limits, `5xx` (but `501`) and `408` statuses, I/O
    /// errors other than missing permissions. Authentication, refusals, other
    /// statuses and misconfiguration are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Cause::Unreachable
            | Cause::Timeout
            | Cause::ConnectionLost
            | Cause::Protocol
            | Cause::RateLimited { .. }
            | Cause::Unavailable
            | Cause::Internal => true,
            // 501 is what a purge sent to a location without the purge handler gets: a
            // configuration problem, like 405, not a passing one.
            Cause::Status(code) => (500..600).contains(code) && *code != 501 || *code == 408,
            // A file being rewritten by the cache's own process can fail in passing; missing
            // permissions do not pass.
            Cause::Io(kind) => !matches!(
                kind,
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ),
            Cause::Authentication | Cause::Refused | Cause::Misconfigured => false,
        }
    }

    /// The wait a rate-limited server asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Cause::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Unreachable => f.write_str("unreachable"),
            Cause::Timeout => f.write_str("timed out"),
            Cause::ConnectionLost => f.write_str("connection lost"),
            Cause::Protocol => f.write_str("protocol error"),
            Cause::Authentication => f.write_str("authentication failed"),
            Cause::RateLimited { retry_after: None } => f.write_str("rate limited"),
            Cause::RateLimited {
                retry_after: Some(d),
            } => write!(f, "rate limited, retry after {}s", d.as_secs_f64()),
            Cause::Status(code) => write!(f, "HTTP status {code}"),
            Cause::Refused => f.write_str("refused"),
            Cause::Unavailable => f.write_str("unavailable"),
            Cause::Io(kind) => write!(f, "I/O error: {kind}"),
            Cause::Misconfigured => f.write_str("misconfigured"),
            Cause::Internal => f.write_str("internal error"),
        }
    }
}

/// Which targets of a batch a [`PurgeError`] concerns.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum FailedTargets {
    /// The whole batch: nothing of it is known to be purged.
    #[default]
    All,
    /// Only these; the rest of the batch was purged.
    Only(Vec<Target>),
}

impl FailedTargets {
    /// Whether `target` (of the batch) was not purged.
    pub fn contains(&self, target: &Target) -> bool {
        match self {
            FailedTargets::All => true,
            FailedTargets::Only(targets) => targets.contains(target),
        }
    }

    /// How many targets of a batch of `batch_len` were not purged.
    pub fn count(&self, batch_len: usize) -> usize {
        match self {
            FailedTargets::All => batch_len,
            FailedTargets::Only(targets) => targets.len(),
        }
    }
}

type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A batch, or part of it, could not be purged.
///
/// ```
/// use cache_purge_hooks_core::backend::{Cause, PurgeError};
///
/// let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// let e = PurgeError::new(Cause::Unreachable, "cannot connect: connection refused")
///     .on_server("127.0.0.1:6082")
///     .with_source(io);
/// assert!(e.is_transient());
/// assert_eq!(e.to_string(), "127.0.0.1:6082: cannot connect: connection refused");
/// assert!(std::error::Error::source(&e).is_some());
/// ```
#[derive(Clone)]
pub struct PurgeError {
    cause: Cause,
    message: String,
    server: Option<String>,
    failed: FailedTargets,
    source: Option<Source>,
}

impl PurgeError {
    /// An error of the whole batch: `cause` for programs, `message` for people (what went
    /// wrong, in the server's own words where it gave some).
    pub fn new(cause: Cause, message: impl Into<String>) -> Self {
        Self {
            cause,
            message: message.into(),
            server: None,
            failed: FailedTargets::All,
            source: None,
        }
    }

    /// Names the server concerned (`host:port`), when a backend has several.
    pub fn on_server(mut self, server: impl Into<String>) -> Self {
        self.server = Some(server.into());
        self
    }

    /// Narrows the failure to these targets: the rest of the batch was purged.
    pub fn only(mut self, failed: Vec<Target>) -> Self {
        self.failed = FailedTargets::Only(failed);
        self
    }

    /// Keeps the underlying error, returned by [`source`](std::error::Error::source).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// What made the purge fail.
    pub fn cause(&self) -> &Cause {
        &self.cause
    }

    /// What went wrong, for people (without the server, which [`Display`](fmt::Display) adds).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The server concerned, if the backend named one.
    pub fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    /// The targets not purged.
    pub fn failed(&self) -> &FailedTargets {
        &self.failed
    }

    /// [`Cause::is_transient`] of the cause.
    pub fn is_transient(&self) -> bool {
        self.cause.is_transient()
    }

    /// [`Cause::retry_after`] of the cause.
    pub fn retry_after(&self) -> Option<Duration> {
        self.cause.retry_after()
    }
}

impl PartialEq for PurgeError {
    /// Equal causes, messages, servers and failed targets (sources are not compared).
    fn eq(&self, other: &Self) -> bool {
        self.cause == other.cause
            && self.message == other.message
            && self.server == other.server
            && self.failed == other.failed
    }
}

impl Eq for PurgeError {}

impl fmt::Debug for PurgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PurgeError");
        d.field("cause", &self.cause)
            .field("message", &self.message)
            .field("server", &self.server)
            .field("failed", &self.failed);
        if let Some(source) = &self.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl fmt::Display for PurgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(server) = &self.server {
            write!(f, "{server}: ")?;
        }
        f.write_str(&self.message)?;
        match &self.cause {
            Cause::RateLimited { .. } => write!(f, " ({})", self.cause)?,
            cause if !cause.is_transient() => f.write_str(" (permanent)")?,
            _ => {}
        }
        if let FailedTargets::Only(targets) = &self.failed {
            write!(f, " [{} target(s) not purged]", targets.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for PurgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The failures of one batch on several servers (or parts), combined into the batch's one
/// result the same way by every backend.
///
/// The combined error:
/// - lists the targets that failed anywhere ([`FailedTargets::All`] when that is all of them);
/// - names the first failing server, in the order the backend gave
///   ([`Failures::with_servers`]), else in the order the failures were pushed;
/// - has the cause that decides what to do next: a rate limit if any server asked to slow
///   down (with the longest `Retry-After`), else the first transient cause, else the first
///   cause: permanent only when every failure is;
/// - says, for people, how many targets failed on which server and quotes the first error.
#[derive(Debug)]
pub struct Failures<'a> {
    batch: &'a [Target],
    servers: Vec<String>,
    errors: Vec<PurgeError>,
}

impl<'a> Failures<'a> {
    /// No failure yet, for this batch.
    pub fn new(batch: &'a [Target]) -> Self {
        Self {
            batch,
            servers: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Orders the failures by the position of their server in `servers` (the settings'
    /// order), whatever the order they arrive in.
    pub fn with_servers<S: Into<String>>(mut self, servers: impl IntoIterator<Item = S>) -> Self {
        self.servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one failure (of the whole batch on that server, or [`only`](PurgeError::only)
    /// some of its targets).
    pub fn push(&mut self, error: PurgeError) {
        self.errors.push(error);
    }

    /// Whether nothing failed.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(())` when nothing failed, else the combined error.
    pub fn into_result(self) -> Result<(), PurgeError> {
        let Failures {
            batch,
            servers,
            mut errors,
        } = self;
        match errors.len() {
            0 => return Ok(()),
            1 => {
                let mut only = errors.remove(0);
                if let FailedTargets::Only(targets) = &only.failed
                    && batch.iter().all(|t| targets.contains(t))
                {
                    only.failed = FailedTargets::All;
                }
                return Err(only);
            }
            _ => {}
        }
        // Position of each target in the batch, to order and count.
        let index: HashMap<&Target, usize> =
            batch.iter().enumerate().map(|(i, t)| (t, i)).collect();
        let first_index = |e: &PurgeError| match &e.failed {
            FailedTargets::All => 0,
            FailedTargets::Only(ts) => ts
                .iter()
                .filter_map(|t| index.get(t).copied())
                .min()
                .unwrap_or(usize::MAX),
        };
        let server_rank = |e: &PurgeError| {
            e.server
                .as_deref()
                .and_then(|s| servers.iter().position(|x| x == s))
                .unwrap_or(usize::MAX)
        };
        // A stable sort: equal keys keep the order they were pushed in.
        errors.sort_by_key(|e| (server_rank(e), first_index(e)));

        let mut failed = vec![false; batch.len()];
        let mut per_server: Vec<(Option<String>, usize)> = Vec::new();
        for e in &errors {
            let mut count = 0;
            match &e.failed {
                FailedTargets::All => {
                    failed.iter_mut().for_each(|f| *f = true);
                    count = batch.len();
                }
                FailedTargets::Only(ts) => {
                    for t in ts {
                        if let Some(&i) = index.get(t) {
                            failed[i] = true;
                        }
                        count += 1;
                    }
                }
            }
            match per_server.iter_mut().find(|(s, _)| *s == e.server) {
                Some((_, n)) => *n += count,
                None => per_server.push((e.server.clone(), count)),
            }
        }
        let failed_count = failed.iter().filter(|f| **f).count();

        let decisive = errors
            .iter()
            .filter(|e| matches!(e.cause, Cause::RateLimited { .. }))
            .max_by_key(|e| e.retry_after())
            .or_else(|| errors.iter().find(|e| e.is_transient()))
            .unwrap_or(&errors[0]);
        let first = &errors[0];

        let mut message = format!(
            "{} of {} target{} not purged",
            failed_count,
            batch.len(),
            if batch.len() == 1 { "" } else { "s" }
        );
        let named: Vec<String> = per_server
            .iter()
            .filter_map(|(s, n)| s.as_ref().map(|s| format!("{n} on {s}")))
            .collect();
        if !named.is_empty() {
            message.push_str(&format!(" (failed {})", named.join(", ")));
        }
        let first_target = match &first.failed {
            FailedTargets::All => batch.first(),
            FailedTargets::Only(ts) => ts
                .iter()
                .min_by_key(|t| index.get(t).copied().unwrap_or(usize::MAX)),
        };
        match first_target {
            Some(t) => message.push_str(&format!("; first: {t}: {}", first.message)),
            None => message.push_str(&format!("; first: {}", first.message)),
        }

        let failed = if failed_count == batch.len() {
            FailedTargets::All
        } else {
            FailedTargets::Only(
                batch
                    .iter()
                    .zip(&failed)
                    .filter(|(_, f)| **f)
                    .map(|(t, _)| t.clone())
                    .collect(),
            )
        };
        Err(PurgeError {
            cause: decisive.cause.clone(),
            message,
            server: first.server.clone(),
            failed,
            source: decisive.source.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<Target> {
        list.iter().map(|u| Target::url(u).unwrap()).collect()
    }

    #[test]
    fn causes_say_whether_a_retry_can_work() {
        for transient in [
            Cause::Unreachable,
            Cause::Timeout,
            Cause::ConnectionLost,
            Cause::Status(502),
            Cause::Status(503),
            Cause::Status(408),
            Cause::RateLimited { retry_after: None },
            Cause::Io(std::io::ErrorKind::Interrupted),
        ] {
            assert!(transient.is_transient(), "{transient:?}");
        }
        for permanent in [
            Cause::Authentication,
            Cause::Refused,
            Cause::Misconfigured,
            Cause::Status(403),
            Cause::Status(405),
            Cause::Status(501),
            Cause::Io(std::io::ErrorKind::PermissionDenied),
        ] {
            assert!(!permanent.is_transient(), "{permanent:?}");
        }
    }

    #[test]
    fn one_failure_is_returned_as_it_is() {
        let batch = urls(&["/a", "/b"]);
        let mut f = Failures::new(&batch);
        f.push(PurgeError::new(Cause::Timeout, "timed out").on_server("s:1"));
        let e = f.into_result().unwrap_err();
        assert_eq!(e.to_string(), "s:1: timed out");
        assert_eq!(e.failed(), &FailedTargets::All);

        // Narrowed to every target of the batch: that is all of it.
        let mut f = Failures::new(&batch);
        f.push(PurgeError::new(Cause::Timeout, "timed out").only(batch.clone()));
        assert_eq!(f.into_result().unwrap_err().failed(), &FailedTargets::All);
        assert_eq!(Failures::new(&batch).into_result(), Ok(()));
    }

    #[test]
    fn failures_on_several_servers_combine_in_the_servers_order() {
        let batch = urls(&["/a", "/b", "/c"]);
        let mut f = Failures::new(&batch).with_servers(["s0:80", "s1:80"]);
        f.push(
            PurgeError::new(Cause::Status(403), "answered 403")
                .on_server("s1:80")
                .only(vec![batch[0].clone()]),
        );
        f.push(
            PurgeError::new(Cause::Timeout, "timed out")
                .on_server("s0:80")
                .only(vec![batch[2].clone()]),
        );
        f.push(
            PurgeError::new(Cause::Timeout, "timed out")
                .on_server("s0:80")
                .only(vec![batch[1].clone()]),
        );
        let e = f.into_result().unwrap_err();
        assert_eq!(e.server(), Some("s0:80"));
        assert_eq!(
            e.failed(),
            &FailedTargets::All,
            "all three failed somewhere"
        );
        assert_eq!(e.cause(), &Cause::Timeout);
        assert_eq!(
            e.message(),
            "3 of 3 targets not purged (failed 2 on s0:80, 1 on s1:80); first: url /b: timed out"
        );
    }

    #[test]
    fn a_rate_limit_decides_with_the_longest_wait_and_permanent_needs_every_failure() {
        let batch = urls(&["/a", "/b", "/c"]);
        let limited = |secs| {
            PurgeError::new(
                Cause::RateLimited {
                    retry_after: Some(Duration::from_secs(secs)),
                },
                "answered 429",
            )
        };
        let mut f = Failures::new(&batch);
        f.push(PurgeError::new(Cause::Status(403), "403").only(vec![batch[0].clone()]));
        f.push(limited(3).only(vec![batch[1].clone()]));
        f.push(limited(7).only(vec![batch[1].clone()]));
        let e = f.into_result().unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(e.failed(), &FailedTargets::Only(urls(&["/a", "/b"])));

        let mut f = Failures::new(&batch);
        f.push(PurgeError::new(Cause::Status(403), "403").only(vec![batch[0].clone()]));
        f.push(PurgeError::new(Cause::Refused, "no").only(vec![batch[2].clone()]));
        let e = f.into_result().unwrap_err();
        assert!(!e.is_transient());
        assert_eq!(e.cause(), &Cause::Status(403));
    }
}
