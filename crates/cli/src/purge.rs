//! `cache-purge purge`: reads and checks every target, sends them to every backend of the
//! settings at once, waits, and reports per backend what was purged and what was not.
//!
//! Any number of targets, in bounded memory: every target is checked and deduplicated as it is
//! read (by a 128-bit fingerprint, 16 bytes a target), and written to a spool file; only when
//! all of them are valid (an invalid one stops everything before anything is sent) are they
//! read back and sent in chunks, each waiting for room in the queue. Nothing is widened into
//! "purge everything" and nothing is dropped: exactly the listed targets are purged.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::io::{BufRead as _, BufReader, BufWriter, IsTerminal as _, Seek as _, Write as _};
use std::time::Duration;

use cache_purge_hooks_engine::backend::{Capabilities, PurgeError};
use cache_purge_hooks_engine::{
    BackendStats, DeadLetter, Delivery, InvalidTarget, Purger, PurgerBuilder, QueueFull, Target,
    TargetKind,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::args::{GlobalArgs, PurgeArgs};
use crate::describe::{self, BackendInfo};
use crate::error::CliError;
use crate::exit;
use crate::output::{self, Output, plural, some_of};
use crate::settings::{self, Source};

/// More targets than this get a progress bar (when stderr is a terminal).
const PROGRESS_THRESHOLD: u64 = 100;
/// Targets read back from the spool and handed to the purger at a time.
const CHUNK: usize = 10_000;
/// The most targets the purger holds in memory per backend (the settings' `queue_capacity`
/// if lower): the command waits for room rather than spill or widen.
const CLI_QUEUE_CAPACITY: usize = 50_000;
/// Invalid inputs listed before "and N more".
const MAX_LISTED_ERRORS: usize = 20;

/// `--soft`: every backend that can soft-purge does (Varnish with `tags = "xkey"`); none
/// able to is a usage error, never a hard purge in disguise.
fn soften(settings: &mut cache_purge_hooks_engine::Settings) -> Result<(), CliError> {
    use cache_purge_hooks_engine::settings::{BackendSettings, VarnishTags};
    let mut softened = 0;
    for backend in settings.backends.values_mut() {
        if let BackendSettings::Varnish(v) = &mut backend.settings
            && v.tags == VarnishTags::Xkey
        {
            v.soft_purge = true;
            softened += 1;
        }
    }
    if softened == 0 {
        return Err(CliError::usage(
            "--soft: no configured backend can soft-purge",
        )
        .with_hint(
            "soft purges are xkey's: a varnish backend with mode = \"http\" and tags = \"xkey\" \
             (deploy/varnish/cache-purge-xkey.vcl); without --soft, tags are purged for good",
        ));
    }
    Ok(())
}

/// Runs `cache-purge purge`.
pub(crate) fn run(global: &GlobalArgs, args: PurgeArgs, out: &Output) -> Result<u8, CliError> {
    let loaded = settings::load(global)?;
    let mut targets = spool_targets(&args)?;
    if targets.count == 0 {
        output::note("nothing to purge (no target given, none on standard input)");
        if out.json {
            out.json(&json!({ "ok": true, "targets": 0, "backends": [] }));
        }
        return Ok(exit::SUCCESS);
    }
    if loaded.source == Source::Defaults {
        output::note(format!(
            "no settings file: using {}, whose only backend is `log` (it purges nothing; run with -v to see what it logs)",
            loaded.source.describe()
        ));
    }
    let mut loaded = loaded;
    if args.soft {
        soften(&mut loaded.settings)?;
    }
    let settings = &loaded.settings;
    let mut retry = settings.retry.clone();
    retry.max_attempts = args.retries.saturating_add(1);
    retry.initial_backoff = Duration::from_millis(100);
    retry.max_backoff = Duration::from_secs(2);
    let deadline = args.timeout.unwrap_or(settings.shutdown_timeout);
    let infos: Vec<(
        BackendInfo,
        &cache_purge_hooks_engine::settings::BackendSettings,
    )> = settings
        .backends
        .iter()
        .map(|(name, b)| (describe::info(name, &b.settings), &b.settings))
        .collect();

    let runtime = crate::runtime()?;
    let outcome = runtime.block_on(async {
        let purger = PurgerBuilder::from_settings(settings)?
            .delivery(Delivery::Immediate)
            .retry(retry)
            .queue_capacity(settings.queue_capacity.min(CLI_QUEUE_CAPACITY))
            .when_full(QueueFull::Wait)
            .build()?;
        let timed_out = send_and_wait(&purger, &mut targets, deadline).await?;
        Ok::<_, CliError>(Outcome {
            stats: purger.stats(),
            unrouted: purger.unrouted(),
            dead: purger.dead_letters(),
            capabilities: infos
                .iter()
                .map(|(info, _)| purger.capabilities(&info.name).unwrap_or_default())
                .collect(),
            timed_out,
        })
    })?;
    runtime.shutdown_timeout(Duration::from_millis(200));

    let reports: Vec<BackendReport> = infos
        .iter()
        .zip(&outcome.capabilities)
        .map(|((info, backend_settings), caps)| {
            BackendReport::new(info, backend_settings, *caps, &targets, &outcome)
        })
        .collect();
    let ok = reports.iter().all(BackendReport::ok) && outcome.unrouted == 0;
    if out.json {
        out.json(&json!({
            "ok": ok,
            "targets": targets.count,
            "unrouted": outcome.unrouted,
            "backends": reports.iter().map(BackendReport::json).collect::<Vec<_>>(),
        }));
    } else {
        if outcome.unrouted > 0 {
            out.line(format!(
                "{} {}: no backend serves their host (see each backend's `hosts`); not purged",
                out.fail_mark(),
                plural(outcome.unrouted, "target", "targets")
            ));
        }
        print_human(
            out,
            &reports,
            targets.count,
            ok,
            outcome.timed_out,
            deadline,
        );
    }
    Ok(if ok { exit::SUCCESS } else { exit::FAILURE })
}

/// What the purger did.
struct Outcome {
    stats: Vec<BackendStats>,
    /// Targets of a host no backend serves (`hosts`): purged nowhere.
    unrouted: u64,
    dead: Vec<DeadLetter>,
    capabilities: Vec<Capabilities>,
    /// The deadline passed with targets still undelivered.
    timed_out: bool,
}

/// The targets to purge, checked, deduplicated and spooled to a file, in order.
#[derive(Debug)]
struct Spooled {
    file: std::fs::File,
    /// Distinct targets.
    count: u64,
    /// How many of each kind.
    kinds: Vec<(TargetKind, u64)>,
}

/// Tells targets apart by a 128-bit fingerprint (two keyed SipHash values): 16 bytes a target
/// whatever its length, and a collision (which would skip a target) as likely as
/// 1 in 10^26 for a million targets.
struct Seen {
    keys: (std::hash::RandomState, std::hash::RandomState),
    set: HashSet<(u64, u64)>,
}

impl Seen {
    fn new() -> Self {
        Self {
            keys: (std::hash::RandomState::new(), std::hash::RandomState::new()),
            set: HashSet::new(),
        }
    }

    /// Whether this target is new.
    fn insert(&mut self, target: &Target) -> bool {
        self.set
            .insert((self.keys.0.hash_one(target), self.keys.1.hash_one(target)))
    }
}

/// Every target of the command line (and stdin), checked and deduplicated, in order, written
/// to a spool file. Any invalid one is a usage error listing them (the first ones): nothing is
/// sent.
fn spool_targets(args: &PurgeArgs) -> Result<Spooled, CliError> {
    let io_error = |e: std::io::Error| {
        CliError::failed(format!(
            "cannot write the list of targets to a temporary file: {e}"
        ))
    };
    let file = tempfile::tempfile().map_err(io_error)?;
    let mut writer = BufWriter::new(file);
    let mut seen = Seen::new();
    let mut count = 0u64;
    let mut kinds: Vec<(TargetKind, u64)> = Vec::new();
    let mut invalid: Vec<String> = Vec::new();
    let mut invalid_count = 0usize;
    let mut push = |result: Result<Target, InvalidTarget>,
                    origin: &dyn Fn() -> String|
     -> std::io::Result<()> {
        match result {
            Ok(t) => {
                if seen.insert(&t) {
                    count += 1;
                    match kinds.iter_mut().find(|(k, _)| *k == t.kind()) {
                        Some((_, n)) => *n += 1,
                        None => kinds.push((t.kind(), 1)),
                    }
                    writeln!(writer, "{t}")?;
                }
            }
            Err(e) => {
                invalid_count += 1;
                if invalid.len() < MAX_LISTED_ERRORS {
                    invalid.push(format!("{}: {:?}: {}", origin(), e.input, e.reason));
                }
            }
        }
        Ok(())
    };
    let mut read_stdin = args.urls.iter().any(|u| u == "-");
    for url in args.urls.iter().filter(|u| *u != "-") {
        push(Target::url(url), &|| "URL".to_owned()).map_err(io_error)?;
    }
    for prefix in &args.prefix {
        push(Target::prefix(prefix), &|| "--prefix".to_owned()).map_err(io_error)?;
    }
    for tag in &args.tag {
        push(Target::tag(tag), &|| "--tag".to_owned()).map_err(io_error)?;
    }
    if args.all {
        push(Ok(Target::Everything), &|| "--all".to_owned()).map_err(io_error)?;
    }
    if args.urls.is_empty() && args.prefix.is_empty() && args.tag.is_empty() && !args.all {
        read_stdin = true;
    }
    if read_stdin {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            output::note("reading URLs from standard input, one per line (end with Ctrl-D)");
        }
        for (i, line) in stdin.lock().lines().enumerate() {
            let line = line.map_err(|e| {
                CliError::usage(format!("cannot read line {} of standard input: {e}", i + 1))
            })?;
            let url = line.trim();
            if url.is_empty() || url.starts_with('#') {
                continue;
            }
            push(Target::url(url), &|| {
                format!("standard input, line {}", i + 1)
            })
            .map_err(io_error)?;
        }
    }
    if invalid_count > 0 {
        let mut details = invalid;
        if invalid_count > MAX_LISTED_ERRORS {
            details.push(format!(
                "... and {} more",
                invalid_count - MAX_LISTED_ERRORS
            ));
        }
        return Err(CliError::usage(format!(
            "{}; nothing was purged",
            plural(invalid_count as u64, "invalid target", "invalid targets")
        ))
        .with_details(details));
    }
    let mut file = writer.into_inner().map_err(|e| io_error(e.into_error()))?;
    file.rewind().map_err(io_error)?;
    Ok(Spooled { file, count, kinds })
}

/// Reads the spooled targets back and hands them to the purger a chunk at a time (each
/// waiting for room, so memory stays bounded), then waits for every target to be purged,
/// given up on or skipped, at most `deadline`, and stops the purger. Shows a progress bar on a
/// terminal for many targets. Returns whether the deadline passed first.
async fn send_and_wait(
    purger: &Purger,
    targets: &mut Spooled,
    deadline: Duration,
) -> Result<bool, CliError> {
    let backends = purger.backend_names().len() as u64;
    let bar = (targets.count > PROGRESS_THRESHOLD && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::with_draw_target(
            Some(targets.count * backends),
            ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} purging [{bar:30}] {pos}/{len} ({per_sec}, {eta} left) {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let show = |bar: &Option<ProgressBar>| {
        if let Some(bar) = bar {
            let stats = purger.stats();
            let done: u64 = stats.iter().map(settled).sum();
            let dead: u64 = stats.iter().map(|s| s.dead).sum();
            bar.set_position(done);
            if dead > 0 {
                bar.set_message(format!("{dead} failed"));
            }
        }
    };
    let mut lines = BufReader::new(&targets.file).lines();
    let mut chunk: Vec<Target> = Vec::with_capacity(CHUNK);
    loop {
        chunk.clear();
        for line in lines.by_ref().take(CHUNK) {
            let line = line.map_err(|e| {
                CliError::failed(format!("cannot read back the list of targets: {e}"))
            })?;
            // Written by spool_targets from valid targets: it parses.
            if let Ok(t) = line.parse::<Target>() {
                chunk.push(t);
            }
        }
        if chunk.is_empty() {
            break;
        }
        purger.purge(std::mem::take(&mut chunk)).await;
        show(&bar);
    }
    let shutdown = purger.shutdown(deadline);
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let result = loop {
        tokio::select! {
            result = &mut shutdown => break result,
            _ = tick.tick() => show(&bar),
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(result.is_err())
}

/// Targets a backend is done with, one way or another.
fn settled(s: &BackendStats) -> u64 {
    s.purged + s.dead + s.unsupported + s.dropped
}

/// What happened on one backend.
struct BackendReport {
    info: BackendInfo,
    requested: u64,
    purged: u64,
    dead: u64,
    undelivered: u64,
    dropped: u64,
    failed_attempts: u64,
    /// Unsupported targets by kind.
    unsupported: Vec<(TargetKind, u64)>,
    unsupported_reason: Option<String>,
    dead_letters: Vec<DeadLetter>,
    last_error: Option<PurgeError>,
}

impl BackendReport {
    fn new(
        info: &BackendInfo,
        settings: &cache_purge_hooks_engine::settings::BackendSettings,
        caps: Capabilities,
        targets: &Spooled,
        outcome: &Outcome,
    ) -> Self {
        let stats = outcome.stats.iter().find(|s| s.backend == info.name);
        let get = |f: fn(&BackendStats) -> u64| stats.map(f).unwrap_or(0);
        let unsupported: Vec<(TargetKind, u64)> = targets
            .kinds
            .iter()
            .filter(|(k, _)| !caps.supports(*k))
            .copied()
            .collect();
        Self {
            info: info.clone(),
            requested: targets.count,
            purged: get(|s| s.purged),
            dead: get(|s| s.dead),
            undelivered: get(|s| s.queued),
            dropped: get(|s| s.dropped),
            failed_attempts: get(|s| s.failed),
            unsupported_reason: (!unsupported.is_empty())
                .then(|| describe::unsupported_reason(settings, caps)),
            unsupported,
            dead_letters: outcome
                .dead
                .iter()
                .filter(|d| d.backend == info.name)
                .cloned()
                .collect(),
            last_error: stats.and_then(|s| s.last_error.clone()),
        }
    }

    fn unsupported_total(&self) -> u64 {
        self.unsupported.iter().map(|(_, n)| n).sum()
    }

    fn ok(&self) -> bool {
        self.purged == self.requested
    }

    /// `1 prefix, 2 tags`.
    fn unsupported_list(&self) -> String {
        self.unsupported
            .iter()
            .map(|(k, n)| match k {
                TargetKind::Url => plural(*n, "URL", "URLs"),
                TargetKind::Prefix => plural(*n, "prefix", "prefixes"),
                TargetKind::Tag => plural(*n, "tag", "tags"),
                _ => "everything (--all)".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Dead letters grouped by error: (error, targets).
    fn dead_by_error(&self) -> Vec<(&PurgeError, Vec<String>)> {
        let mut groups: Vec<(&PurgeError, Vec<String>)> = Vec::new();
        for d in &self.dead_letters {
            let target = d.target.to_string();
            match groups.iter_mut().find(|(e, _)| **e == d.error) {
                Some((_, ts)) => ts.push(target),
                None => groups.push((&d.error, vec![target])),
            }
        }
        groups
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "backend": self.info.name,
            "kind": self.info.kind,
            "mode": self.info.mode,
            "servers": self.info.servers,
            "ok": self.ok(),
            "requested": self.requested,
            "purged": self.purged,
            "failed_attempts": self.failed_attempts,
            "dead": self.dead,
            "undelivered": self.undelivered,
            "dropped": self.dropped,
            "unsupported": self.unsupported_total(),
            "unsupported_reason": self.unsupported_reason,
            "last_error": self.last_error.as_ref().map(output::error_json),
            "dead_letters": self.dead_letters.iter().map(|d| json!({
                "target": d.target.to_string(),
                "attempts": d.attempts,
                "error": output::error_json(&d.error),
            })).collect::<Vec<_>>(),
        })
    }
}

fn print_human(
    out: &Output,
    reports: &[BackendReport],
    targets: u64,
    ok: bool,
    timed_out: bool,
    deadline: Duration,
) {
    for r in reports {
        let mut counts = vec![format!("{} purged", r.purged)];
        if r.dead > 0 {
            counts.push(format!("{} failed", r.dead));
        }
        if r.undelivered > 0 {
            counts.push(format!("{} undelivered", r.undelivered));
        }
        if r.dropped > 0 {
            counts.push(format!("{} dropped", r.dropped));
        }
        if r.unsupported_total() > 0 {
            counts.push(format!("{} unsupported", r.unsupported_total()));
        }
        out.line(format!(
            "{} {} ({}): {} of {}",
            out.mark(r.ok()),
            out.bold(&r.info.name),
            r.info.label(),
            counts.join(", "),
            plural(r.requested, "target", "targets"),
        ));
        if r.info.kind == "log" && r.purged > 0 {
            out.line(format!(
                "    {} the log backend only logs what it would purge (see it with -v)",
                out.note_mark()
            ));
        }
        if let Some(reason) = &r.unsupported_reason {
            out.line(format!(
                "    {} cannot purge {}: {reason}",
                out.fail_mark(),
                r.unsupported_list()
            ));
        }
        for (error, targets) in r.dead_by_error() {
            out.line(format!(
                "    {} {} given up on: {error}",
                out.fail_mark(),
                plural(targets.len() as u64, "target", "targets")
            ));
            out.line(format!("        {}", some_of(&targets, 5)));
        }
        if r.undelivered > 0 {
            let why = match &r.last_error {
                Some(e) => format!("; last error: {e}"),
                None => String::new(),
            };
            out.line(format!(
                "    {} {} still being retried when the {} deadline passed{why}",
                out.fail_mark(),
                plural(r.undelivered, "target", "targets"),
                output::human_duration(deadline),
            ));
        }
        if r.dropped > 0 {
            out.line(format!(
                "    {} {} dropped: the queue was full (queue_capacity)",
                out.fail_mark(),
                plural(r.dropped, "target", "targets"),
            ));
        }
    }
    if ok {
        out.line(format!(
            "{} purged on {}",
            plural(targets, "target", "targets"),
            plural(reports.len() as u64, "backend", "backends")
        ));
    } else {
        let mut line = "not everything was purged".to_owned();
        if timed_out {
            line.push_str(
                " (--timeout or shutdown_timeout gives more time; --retries more attempts)",
            );
        }
        out.line(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(urls: &[&str]) -> PurgeArgs {
        PurgeArgs {
            urls: urls.iter().map(|s| s.to_string()).collect(),
            prefix: vec!["/blog/".into()],
            tag: Vec::new(),
            all: false,
            soft: false,
            retries: 2,
            timeout: None,
        }
    }

    #[test]
    fn targets_are_checked_and_deduplicated() {
        let t = spool_targets(&args(&["/a", "/a#top", "https://x.example/b"])).unwrap();
        let shown: Vec<String> = BufReader::new(&t.file)
            .lines()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            shown,
            ["url /a", "url https://x.example/b", "prefix /blog/"]
        );
        assert_eq!(t.count, 3);
        assert_eq!(t.kinds, [(TargetKind::Url, 2), (TargetKind::Prefix, 1)]);
    }

    #[test]
    fn invalid_targets_are_named() {
        let e = spool_targets(&args(&["/ok", "posts/1", "ftp://x/"])).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert_eq!(e.message, "2 invalid targets; nothing was purged");
        assert!(
            e.details[0].starts_with("URL: \"posts/1\": a URL must be"),
            "{e:?}"
        );
    }
}
