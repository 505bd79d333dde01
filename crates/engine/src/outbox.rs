//! The stored format of the outbox (`delivery = "outbox"`), shared by the ORM integrations so
//! that a row one of them writes is a row every worker reads: SeaORM's and Diesel's writes go
//! to the same `cache_purge_outbox` table, and SeaORM's `OutboxWorker` delivers both.
//!
//! A row holds the purge of one backend: its targets in their [`Display`](std::fmt::Display)
//! form (`url /posts/a`, `prefix /blog/`, `everything`), one per line, at most
//! [`MAX_TARGET_BYTES_PER_ROW`] bytes of them; every time is in unix milliseconds
//! ([`now_ms`]).
//!
//! ```
//! use cache_purge_hooks_engine::{Target, outbox};
//!
//! let targets = [Target::url("/posts/a").unwrap(), Target::Everything, Target::url("/posts/a").unwrap()];
//! let rows = outbox::stored_targets(&targets);
//! assert_eq!(rows, ["url /posts/a\neverything"]); // each target once
//! assert_eq!(outbox::parse_stored_targets(&rows[0]).unwrap(), &targets[..2]);
//! ```

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::target::{InvalidTarget, Target};

/// The table's name.
pub const TABLE: &str = "cache_purge_outbox";

/// The most target text (stored form, newline-separated) one row holds; a purge with more is
/// spread over several rows per backend. It keeps a row well inside MySQL's 64 KiB `TEXT` and
/// bounds what one failed delivery puts back.
pub const MAX_TARGET_BYTES_PER_ROW: usize = 32 * 1024;

/// The current time in unix milliseconds, the unit of every outbox time.
///
/// Workers on several hosts compare their own clocks with the times other hosts wrote: keep
/// the clocks in step to well within the lease.
pub fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        // A clock before 1970: everything written now is due at once.
        Err(_) => 0,
    }
}

/// The stored text of `targets`, cut into rows of at most [`MAX_TARGET_BYTES_PER_ROW`] (one
/// longer target gets a row of its own); each target once, in order.
pub fn stored_targets(targets: &[Target]) -> Vec<String> {
    use std::fmt::Write as _;
    // A save's few targets are compared pairwise (no hashing, no set to allocate); a bulk
    // write's through a set.
    let mut seen: Option<HashSet<&Target, foldhash::fast::RandomState>> = (targets.len()
        > SMALL_PURGE)
        .then(|| HashSet::with_capacity_and_hasher(targets.len(), Default::default()));
    let mut chunks = Vec::new();
    let mut current = String::new();
    // Each target's text, written into one reused buffer.
    let mut text = String::new();
    for (i, target) in targets.iter().enumerate() {
        let first = match &mut seen {
            Some(seen) => seen.insert(target),
            None => !targets[..i].contains(target),
        };
        if !first {
            continue;
        }
        text.clear();
        // Writing to a String cannot fail.
        let _ = write!(text, "{target}");
        if !current.is_empty() && current.len() + 1 + text.len() > MAX_TARGET_BYTES_PER_ROW {
            chunks.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.reserve(text.len());
        } else {
            current.push('\n');
        }
        current.push_str(&text);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Up to this many targets, [`stored_targets`] finds duplicates by comparing each target with
/// those before it.
const SMALL_PURGE: usize = 16;

/// Parses a row's stored targets: one per line (empty lines are ignored).
pub fn parse_stored_targets(text: &str) -> Result<Vec<Target>, InvalidTarget> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_split_into_rows_and_deduplicated() {
        let a = Target::url("/a").unwrap();
        let chunks = stored_targets(&[a.clone(), Target::Everything, a.clone()]);
        assert_eq!(chunks, ["url /a\neverything"]);

        let long = "x".repeat(10_000);
        let many: Vec<Target> = (0..10)
            .map(|i| Target::url(&format!("/{i}{long}")).unwrap())
            .collect();
        let chunks = stored_targets(&many);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.len() <= MAX_TARGET_BYTES_PER_ROW));
        let back: Vec<Target> = chunks
            .iter()
            .flat_map(|c| parse_stored_targets(c).unwrap())
            .collect();
        assert_eq!(back, many);

        let huge = Target::url(&format!("/{}", "y".repeat(MAX_TARGET_BYTES_PER_ROW))).unwrap();
        let chunks = stored_targets(&[a.clone(), huge.clone(), a.clone()]);
        assert_eq!(chunks.len(), 2);
        assert_eq!(parse_stored_targets(&chunks[1]).unwrap(), [huge]);
    }

    #[test]
    fn duplicates_are_stored_once_in_small_and_bulk_purges_alike() {
        for n in [SMALL_PURGE, SMALL_PURGE + 1, 200] {
            // Every target twice, the copies after the originals and among them.
            let distinct: Vec<Target> = (0..n / 2 + 1)
                .map(|i| Target::url(&format!("/p/{i}")).unwrap())
                .collect();
            let mut targets = distinct.clone();
            targets.extend(distinct.iter().rev().cloned());
            targets.truncate(n.max(2));
            let stored = stored_targets(&targets);
            let back = parse_stored_targets(&stored[0]).unwrap();
            let mut expected: Vec<Target> = Vec::new();
            for t in &targets {
                if !expected.contains(t) {
                    expected.push(t.clone());
                }
            }
            assert_eq!(back, expected, "{n} targets");
        }
    }

    #[test]
    fn a_line_that_is_not_a_target_is_an_error() {
        assert!(parse_stored_targets("url /a\nnonsense").is_err());
        assert_eq!(parse_stored_targets("\nurl /a\n").unwrap().len(), 1);
    }
}
