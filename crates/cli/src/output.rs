//! Writing reports: marks (✔/✘ on a terminal, OK/FAIL otherwise), colours (on a terminal,
//! unless NO_COLOR is set), JSON documents, and small formatting helpers.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

/// Where and how reports are written.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    /// `--json`: one JSON document on stdout.
    pub(crate) json: bool,
    /// Stdout is a terminal: ✔/✘ marks.
    fancy: bool,
    /// Colours too (a terminal, and NO_COLOR unset).
    color: bool,
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        let fancy = std::io::stdout().is_terminal();
        let color = fancy && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Self { json, fancy, color }
    }

    /// The mark of a good finding: `✔`, or `OK` when stdout is not a terminal.
    pub(crate) fn ok_mark(&self) -> String {
        self.paint(if self.fancy { "✔" } else { "OK" }, "32")
    }

    /// The mark of a failed finding: `✘`, or `FAIL` when stdout is not a terminal.
    pub(crate) fn fail_mark(&self) -> String {
        self.paint(if self.fancy { "✘" } else { "FAIL" }, "31")
    }

    /// The mark of a line that is neither: `-`.
    pub(crate) fn note_mark(&self) -> String {
        self.paint("-", "2")
    }

    /// `✔`/`✘` (or `OK`/`FAIL`) for `ok`.
    pub(crate) fn mark(&self, ok: bool) -> String {
        if ok { self.ok_mark() } else { self.fail_mark() }
    }

    /// Bold text on a colour terminal.
    pub(crate) fn bold(&self, text: &str) -> String {
        self.paint(text, "1")
    }

    fn paint(&self, text: &str, sgr: &str) -> String {
        if self.color {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Writes one line on stdout (a closed pipe is not an error worth reporting).
    pub(crate) fn line(&self, text: impl AsRef<str>) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", text.as_ref());
    }

    /// Writes a JSON document on stdout, pretty-printed, with a final newline.
    pub(crate) fn json(&self, value: &serde_json::Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned());
        self.line(text);
    }
}

/// A note for the person running the command, on stderr (never part of a report).
pub(crate) fn note(text: impl AsRef<str>) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "cache-purge: {}", text.as_ref());
}

/// A duration for people: `250ms`, `3s`, `4m 12s`, `2h 5m`, `3d 4h`.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match s {
        0..60 => {
            let tenths = (ms % 1000) / 100;
            if tenths == 0 || s >= 10 {
                format!("{s}s")
            } else {
                format!("{s}.{tenths}s")
            }
        }
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// `1 target`, `3 targets`.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The first `max` items joined with `, `, and `(+N more)` when there are more.
pub(crate) fn some_of<T: std::fmt::Display>(items: &[T], max: usize) -> String {
    let mut text = items
        .iter()
        .take(max)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > max {
        text.push_str(&format!(" (+{} more)", items.len() - max));
    }
    text
}

/// A purge failure as JSON: its cause (a stable name, with the HTTP status or the wait a
/// rate limit asked for), whether it is worth retrying, the server and the message.
pub(crate) fn error_json(e: &cache_purge_hooks_engine::backend::PurgeError) -> serde_json::Value {
    use cache_purge_hooks_engine::backend::Cause;
    let (cause, status, retry_after) = match e.cause() {
        Cause::Unreachable => ("unreachable", None, None),
        Cause::Timeout => ("timeout", None, None),
        Cause::ConnectionLost => ("connection_lost", None, None),
        Cause::Protocol => ("protocol", None, None),
        Cause::Authentication => ("authentication", None, None),
        Cause::RateLimited { retry_after } => {
            ("rate_limited", None, retry_after.map(|d| d.as_secs_f64()))
        }
        Cause::Status(code) => ("status", Some(*code), None),
        Cause::Refused => ("refused", None, None),
        Cause::Unavailable => ("unavailable", None, None),
        Cause::Io(_) => ("io", None, None),
        Cause::Misconfigured => ("misconfigured", None, None),
        _ => ("other", None, None),
    };
    serde_json::json!({
        "cause": cause,
        "status": status,
        "retry_after_seconds": retry_after,
        "transient": e.is_transient(),
        "server": e.server(),
        "message": e.message(),
        "text": e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human_duration(Duration::from_secs(42)), "42s");
        assert_eq!(human_duration(Duration::from_secs(252)), "4m 12s");
        assert_eq!(human_duration(Duration::from_secs(7500)), "2h 5m");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 86400 + 7200)),
            "3d 2h"
        );
    }

    #[test]
    fn lists_are_cut() {
        assert_eq!(some_of(&[1, 2, 3], 2), "1, 2 (+1 more)");
        assert_eq!(some_of(&["a"], 2), "a");
        assert_eq!(plural(1, "row", "rows"), "1 row");
        assert_eq!(plural(2, "row", "rows"), "2 rows");
    }
}
