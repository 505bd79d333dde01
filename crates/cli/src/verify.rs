//! `cache-purge verify URL...`: purges the URLs on every backend that can verify, then asks
//! each cache whether they are really gone (see `cache_purge_hooks_engine::verify`).

use std::time::Duration;

use cache_purge_hooks_engine::settings::{BackendSettings, VarnishHttpMethod};
use cache_purge_hooks_engine::verify::VerifyMode;
use cache_purge_hooks_engine::{Delivery, PurgerBuilder, Target};
use serde_json::json;

use crate::args::{GlobalArgs, VerifyArgs};
use crate::error::CliError;
use crate::exit;
use crate::output::{Output, plural};
use crate::settings;

/// Runs `cache-purge verify`.
pub(crate) fn run(global: &GlobalArgs, args: VerifyArgs, out: &Output) -> Result<u8, CliError> {
    let loaded = settings::load(global)?;
    let mut targets = Vec::with_capacity(args.urls.len());
    for url in &args.urls {
        let target = Target::url(url).map_err(|e| CliError::usage(e.to_string()))?;
        targets.push(target);
    }
    let unknown: Vec<&String> = args
        .backend
        .iter()
        .filter(|n| !loaded.settings.backends.contains_key(*n))
        .collect();
    if let Some(name) = unknown.first() {
        return Err(CliError::usage(format!(
            "no backend named `{name}` in {}",
            loaded.source.describe()
        )));
    }
    let mut settings = loaded.settings.clone();
    // The backends to verify on, and those that cannot verify (no cache address).
    let mut cannot: Vec<String> = Vec::new();
    settings.backends.retain(|name, b| {
        if !args.backend.is_empty() && !args.backend.contains(name) {
            return false;
        }
        if b.verify_url().is_none() {
            cannot.push(name.clone());
            return false;
        }
        b.common.verify.mode = VerifyMode::All;
        if let BackendSettings::Varnish(v) = &mut b.settings
            && v.http_method == VarnishHttpMethod::Refresh
        {
            // A refreshed page is a hit on its new copy, which a check cannot tell from a
            // stale one: verify with PURGE, the purge that the refresh branch also relies on.
            v.http_method = VarnishHttpMethod::Purge;
        }
        true
    });
    if settings.backends.is_empty() {
        return Err(CliError::usage(
            "no selected backend can verify: none has a cache address to ask",
        )
        .with_hint(
            "set verify_url = \"http://HOST:PORT\" (the cache's public address) on the backend; \
             nginx and varnish in http mode default to their first server",
        ));
    }
    let names: Vec<String> = settings.backends.keys().cloned().collect();
    let hints: Vec<&'static str> = settings
        .backends
        .values()
        .map(|b| b.verify_hint())
        .collect();

    let runtime = crate::runtime()?;
    let stats = runtime.block_on(async {
        let purger = PurgerBuilder::from_settings(&settings)?
            .delivery(Delivery::Immediate)
            .build()?;
        purger.purge(targets.clone()).await;
        purger.flush().await;
        let stats = purger.stats();
        let _ = purger.shutdown(Duration::from_secs(1)).await;
        Ok::<_, CliError>(stats)
    })?;
    runtime.shutdown_timeout(Duration::from_millis(200));

    let asked = targets.len() as u64;
    let rows: Vec<_> = names
        .iter()
        .zip(&hints)
        .map(|(name, hint)| {
            let s = stats.iter().find(|s| &s.backend == name);
            let (verified, failed, unanswered, not_purged) = s.map_or((0, 0, 0, 0), |s| {
                (
                    s.verified,
                    s.verify_failed,
                    s.verify_unanswered,
                    s.failed + s.dead + s.unsupported,
                )
            });
            let ok = verified == asked && failed == 0;
            (name, hint, verified, failed, unanswered, not_purged, ok, s)
        })
        .collect();
    let ok = rows.iter().all(|r| r.6);
    if out.json {
        out.json(&json!({
            "ok": ok,
            "urls": asked,
            "backends": rows.iter().map(|(name, hint, verified, failed, unanswered, not_purged, ok, s)| json!({
                "backend": name,
                "ok": ok,
                "verified": verified,
                "verify_failed": failed,
                "unanswered": unanswered,
                "not_purged": not_purged,
                "still_cached": s.and_then(|s| s.last_verify_failure.as_ref()).map(|f| f.url.to_string()),
                "hint": if *failed > 0 { Some(*hint) } else { None },
            })).collect::<Vec<_>>(),
            "cannot_verify": cannot,
        }));
    } else {
        for (name, hint, verified, failed, unanswered, not_purged, row_ok, s) in &rows {
            out.line(format!(
                "{} {}: {} of {} verified gone after the purge",
                out.mark(*row_ok),
                out.bold(name),
                verified,
                plural(asked, "URL", "URLs"),
            ));
            if *failed > 0 {
                let url = s
                    .and_then(|s| s.last_verify_failure.as_ref())
                    .map(|f| f.url.to_string())
                    .unwrap_or_default();
                out.line(format!(
                    "    {} {}: still cached after the purge and a second one (e.g. {url})",
                    out.fail_mark(),
                    plural(*failed, "URL", "URLs")
                ));
                out.line(format!("      hint: {hint}"));
            }
            if *unanswered > 0 {
                out.line(format!(
                    "    {} {}: the cache did not answer the check (run with -v for why)",
                    out.fail_mark(),
                    plural(*unanswered, "URL", "URLs")
                ));
            }
            if *not_purged > 0 {
                out.line(format!(
                    "    {} {} not purged (run `cache-purge purge` for the errors)",
                    out.fail_mark(),
                    plural(*not_purged, "target", "targets")
                ));
            }
        }
        for name in &cannot {
            out.line(format!(
                "{} {}: cannot verify (no cache address: set verify_url)",
                out.note_mark(),
                out.bold(name)
            ));
        }
    }
    Ok(if ok { exit::SUCCESS } else { exit::FAILURE })
}
