//! The command line, as clap derive types: every help text `cache-purge --help` shows.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  everything worked: every target purged, every check passed
  1  something failed: a target not purged (or unsupported by a backend), a check failed,
     the database could not be used, the outbox was not drained in time
  2  usage error, invalid settings, or invalid input (nothing was sent)

Settings: --config PATH, else the file named by CACHE_PURGE_CONFIG, else ./cache-purge.toml
if it exists (else the defaults: one `log` backend); then CACHE_PURGE__* environment
variables override single keys (CACHE_PURGE__BACKENDS__EDGE__SERVERS=10.0.0.1:6082).

Guide: https://github.com/cache-purge-hooks/cache-purge-hooks/blob/main/docs/cli.md";

/// Purge Varnish and nginx caches, diagnose a purge setup, and look after the outbox of
/// cache-purge-hooks.
#[derive(Debug, Parser)]
#[command(
    name = "cache-purge",
    version,
    about = "Purge Varnish and nginx caches, diagnose a purge setup, look after the outbox",
    long_about = "Purge Varnish and nginx caches with the backends of a cache-purge-hooks settings \
file, diagnose each configured backend (reachable? authenticated? does the purge endpoint \
answer?), and look after the outbox table of the `outbox` delivery mode.",
    after_help = "Exit codes: 0 all good, 1 something failed, 2 usage error or invalid settings \
(details: --help).",
    after_long_help = EXIT_CODES,
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The settings file [default: $CACHE_PURGE_CONFIG, else ./cache-purge.toml if it exists,
    /// else the defaults]. CACHE_PURGE__* variables override its keys.
    #[arg(short, long, global = true, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,

    /// Log what the library does on stderr (target cache_purge_hooks): -v for info, -vv for
    /// debug, -vvv for everything. RUST_LOG, when set, takes precedence.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Print one JSON document on stdout instead of the human report (errors too, as
    /// {"error": {...}}).
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Purge URLs, prefixes, tags or everything now, on every configured backend.
    #[command(after_long_help = PURGE_HELP)]
    Purge(PurgeArgs),

    /// Diagnose each configured backend: reachable, authenticated, purge endpoint answering.
    #[command(after_long_help = CHECK_HELP)]
    Check(CheckArgs),

    /// Purge URLs and check through each cache that they are really gone (verification).
    #[command(after_long_help = VERIFY_HELP)]
    Verify(VerifyArgs),

    /// Look after the outbox table of `delivery = "outbox"`: counts, dead rows, drain.
    Outbox(OutboxArgs),

    /// Run beside a cache node: purge what the fleet's NATS stream says with this node's own
    /// backends, until SIGTERM.
    #[command(after_long_help = AGENT_HELP)]
    Agent(AgentArgs),

    /// The fleet of cache nodes fed by a `kind = "nats"` backend: each agent's state.
    Fleet(FleetArgs),

    /// Print the effective settings (file, then environment overrides) as TOML (or JSON).
    Settings,

    /// Print a shell completion script for cache-purge on stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the manual page of cache-purge (roff) on stdout.
    Man,
}

const PURGE_HELP: &str = "\
Examples:
  cache-purge purge /posts/hello https://www.example.com/feed.xml
  cache-purge purge --prefix /blog/ --prefix /tags/
  cache-purge purge --all
  cache-purge purge --tag post:1 --tag posts --soft
  git diff --name-only | to-urls | cache-purge purge      (one URL per line on stdin)

URLs are read from standard input when no target is given, or when `-` is one of the URLs:
one per line; blank lines and lines starting with # are skipped. Every target is checked
before anything is sent: an invalid URL stops the command with exit code 2.

The purge goes out at once whatever the settings' `delivery` mode, with --retries retries per
target, and the command waits for it (at most --timeout, default the settings'
shutdown_timeout). A backend that cannot purge a kind of target (nginx `http` mode and a
prefix, say) reports it as unsupported, which counts as not purged (exit code 1).";

const CHECK_HELP: &str = "\
What is checked, per backend:
  varnish cli         TCP connection, authentication with secret_file, `ping`, child running
  varnish varnishadm  the binary, secret_file, `varnishadm -S .. -T .. ping`
  varnish http        PURGE (or BAN) of /__cache_purge_check/<random>: the VCL must answer it
  nginx http          the purge request for <purge_prefix>/__cache_purge_check/<random>
  nginx files, wipe   cache_dir exists, is a readable and writable directory; levels and
                      key_template parse
  nats                the servers answer; the stream exists with the settings' subjects,
                      retention, max_age, replicas, storage (or will be created)
  log, dummy, memory  nothing to check

The probes purge a URL nobody caches; an HTTP BAN probe adds one ban that matches nothing.";

const AGENT_HELP: &str = "\
The settings file of an agent lists the node's own caches as [backends.NAME] (nginx files
mode, varnish cli on localhost, ...; never kind = \"nats\") and an [agent] table:

  [agent]
  node = \"edge-1\"                # the durable consumer is cache-purge-agent-edge-1
  servers = [\"10.0.0.5:4222\"]
  groups = [\"all\"]
  start = \"now\"                  # a new node: now, first, or 2026-12-01T10:00:00Z
  when_away_too_long = \"purge_everything\"

Each message is acked only when every backend purged it; failures are redelivered after the
retry policy's backoff; invalid messages and given-up purges are dead-lettered. SIGTERM (or
Ctrl-C) finishes the message in hand and exits 0; a restarted agent resumes after its last
ack. Guide: docs/fleet.md";

/// `cache-purge agent`.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// This node's name [default: agent.node of the settings].
    #[arg(long, value_name = "NAME", env = "CACHE_PURGE_NODE")]
    pub(crate) node: Option<String>,
}

/// `cache-purge fleet`.
#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    #[command(subcommand)]
    pub(crate) command: FleetCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FleetCommand {
    /// Every node that reported: health (ok, failing, stale, stopped), lag, applied sequence,
    /// last error. Exit code 1 when a node is failing or stale.
    Status,
    /// Forget a retired node: delete its durable consumer and its state, so that `status` no
    /// longer lists it (and, with `retention = "interest"`, the stream no longer keeps purges
    /// for it). Refused while the node's agent reports in, unless --force.
    Forget {
        /// The node's name (as in its `[agent]` table).
        #[arg(value_name = "NODE")]
        node: String,
        /// Forget it even though its agent reported in recently (a running agent then
        /// creates its consumer again, resuming after what its state says it applied).
        #[arg(long)]
        force: bool,
    },
}

/// `cache-purge purge`.
#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// URLs to purge: paths (/posts/a?page=2) or absolute http(s) URLs. `-` (or no target at
    /// all) reads them from stdin, one per line.
    #[arg(value_name = "URL")]
    pub(crate) urls: Vec<String>,

    /// Purge every URL starting with this prefix (repeatable). Varnish (cli, varnishadm, http
    /// ban) and nginx wipe can; nginx http cannot.
    #[arg(long, value_name = "PREFIX")]
    pub(crate) prefix: Vec<String>,

    /// Purge every object with this tag (repeatable), on backends that support tags.
    #[arg(long, value_name = "TAG")]
    pub(crate) tag: Vec<String>,

    /// Purge everything in every cache.
    #[arg(long)]
    pub(crate) all: bool,

    /// Soft-purge the tags: objects stay as stale copies, served within their grace while
    /// they are fetched again (xkey.softpurge). Only Varnish backends with tags = "xkey" can;
    /// refused when none is configured. URLs are purged as usual.
    #[arg(long)]
    pub(crate) soft: bool,

    /// Retries per target after a failed attempt (the backoff starts at 100ms).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub(crate) retries: u32,

    /// How long to wait for the purges [default: the settings' shutdown_timeout, 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,
}

/// `cache-purge check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Check only this backend (repeatable) [default: all of them].
    #[arg(long, value_name = "NAME")]
    pub(crate) backend: Vec<String>,
}

/// `cache-purge verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The URLs to purge and verify: paths (/posts/a) or absolute URLs.
    #[arg(required = true, value_name = "URL")]
    pub(crate) urls: Vec<String>,

    /// Only this backend (repeatable) [default: every backend that can verify].
    #[arg(long, value_name = "NAME")]
    pub(crate) backend: Vec<String>,
}

const VERIFY_HELP: &str = "\
Each URL is purged on every selected backend that has a cache address to ask (verify_url;
nginx and varnish in http mode default to their first server), then requested through that
address (never the URL's own host) and judged by the cache's hit header (verify_header,
verify_hit). A URL still served from the cache is purged once more and asked again; still a
hit, it is reported with what to check (exit code 1). The check's GET caches the fresh page.

Examples:
  cache-purge verify /posts/hello https://www.example.com/feed.xml
  cache-purge verify --backend edge /";

/// `cache-purge outbox`.
#[derive(Debug, Args)]
pub(crate) struct OutboxArgs {
    /// The database holding the cache_purge_outbox table, as SeaORM takes it:
    /// sqlite://app.db, postgres://user:pass@host/db, mysql://user:pass@host/db.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub(crate) database_url: Option<String>,

    #[command(subcommand)]
    pub(crate) command: OutboxCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum OutboxCommand {
    /// Per backend: rows pending, waiting to retry, being delivered, dead, and the oldest's age.
    Status,

    /// List dead rows (given up on) with their last error.
    Dead {
        /// Only this backend's rows.
        #[arg(long, value_name = "NAME")]
        backend: Option<String>,

        /// List at most this many rows (oldest first).
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: u64,
    },

    /// Revive dead rows: deliverable again at once, with fresh attempts.
    Retry(DeadSelection),

    /// Delete dead rows for good.
    DeleteDead(DeadSelection),

    /// Deliver the outbox with the settings' backends until nothing is pending (or --timeout).
    Drain {
        /// Give up after this long.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
        timeout: Duration,
    },
}

/// Which dead rows `retry` and `delete-dead` act on: exactly one of the three.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct DeadSelection {
    /// Every dead row.
    #[arg(long)]
    pub(crate) all: bool,

    /// The dead rows of this backend.
    #[arg(long, value_name = "NAME")]
    pub(crate) backend: Option<String>,

    /// These dead rows (ids from `outbox dead`; repeatable, or comma-separated).
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub(crate) id: Vec<i64>,
}

/// Parses `10s`, `250ms`, `2m`, `1h 30m` (humantime), or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}; expected a duration like \"10s\", \"250ms\" or \"2m\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").unwrap_err().contains("like \"10s\""));
    }

    #[test]
    fn dead_selection_needs_exactly_one() {
        assert!(Cli::try_parse_from(["cache-purge", "outbox", "retry"]).is_err());
        assert!(
            Cli::try_parse_from(["cache-purge", "outbox", "retry", "--all", "--id", "3"]).is_err()
        );
        let cli =
            Cli::try_parse_from(["cache-purge", "outbox", "delete-dead", "--id", "3,4"]).unwrap();
        let Command::Outbox(OutboxArgs {
            command: OutboxCommand::DeleteDead(sel),
            ..
        }) = cli.command
        else {
            panic!("{cli:?}")
        };
        assert_eq!(sel.id, [3, 4]);
    }
}
