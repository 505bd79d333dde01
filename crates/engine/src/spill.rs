//! Spilling: where targets go when a backend's queue is full, so that memory stays bounded
//! without widening a purge into "everything", without dropping one, and without making a
//! save wait.
//!
//! Each backend has one spill file, appended to by the senders (in the order they send) and
//! read back, in the same order, by the backend's worker whenever its in-memory queue has
//! room. Once a backend spills, everything sent to it goes to the file until the worker has
//! caught up, so purges are delivered in the order they were made. The file holds targets in
//! their stored form (`url /a?b=1`, one per line, as the outbox does).
//!
//! The file is this process's: it lives in `<spill_dir>/<pid>-<n>/` and is removed when the
//! [`Purger`](crate::Purger) shuts down. Purges that must survive a crash belong in the outbox
//! (`delivery = "outbox"`), which is bounded by its own table.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::target::Target;

/// The spill file of one backend.
#[derive(Debug)]
pub(crate) struct Spill {
    path: PathBuf,
    state: Mutex<State>,
    /// Targets in the file not read back yet; changed only under `state`'s lock, so that it
    /// always matches the file.
    count: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Open for appending once something was spilled.
    writer: Option<File>,
    /// Bytes written so far.
    len: u64,
    /// Bytes read back so far.
    read: u64,
}

impl Spill {
    /// A spill file at `dir/file` (created at the first spill).
    pub(crate) fn new(dir: &Path, file: &str) -> Self {
        Self {
            path: dir.join(file),
            state: Mutex::new(State::default()),
            count: AtomicU64::new(0),
        }
    }

    /// Targets in the file, not read back yet.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends targets, in order.
    pub(crate) fn append(&self, targets: &[Target]) -> io::Result<()> {
        let mut text = String::with_capacity(targets.len() * 48);
        for t in targets {
            use std::fmt::Write as _;
            let _ = writeln!(text, "{t}");
        }
        let mut state = self.lock();
        if state.writer.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&self.path)?;
            state.len = file.metadata()?.len();
            state.writer = Some(file);
        }
        if let Some(file) = state.writer.as_mut() {
            file.write_all(text.as_bytes())?;
        }
        state.len += text.len() as u64;
        self.count.fetch_add(targets.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    /// Reads back up to `max` targets, oldest first, and forgets them; empties the file once
    /// everything was read. Lines that are not targets (a damaged file) are logged, skipped
    /// and counted in [`Taken::lost`].
    pub(crate) fn take(&self, max: usize) -> io::Result<Taken> {
        let (start, end) = {
            let state = self.lock();
            (state.read, state.len)
        };
        if start >= end || max == 0 {
            return Ok(Taken::default());
        }
        // Reading needs no lock: appends only add bytes after `end`.
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(start))?;
        let mut reader = BufReader::new(file.take(end - start));
        let mut targets = Vec::with_capacity(max.min(64 * 1024));
        let mut consumed = 0u64;
        let mut lost = 0u64;
        let mut line = String::new();
        while targets.len() < max {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            consumed += n as u64;
            match line.trim_end().parse::<Target>() {
                Ok(t) => targets.push(t),
                Err(e) => {
                    lost += 1;
                    tracing::error!(
                        target: "cache_purge_hooks",
                        file = %self.path.display(),
                        error = %e,
                        "a line of the spill file is not a target; skipped"
                    );
                }
            }
        }
        let mut state = self.lock();
        state.read = start + consumed;
        let read = targets.len() as u64 + lost;
        let before = self.count.load(Ordering::Acquire);
        self.count
            .store(before.saturating_sub(read), Ordering::Release);
        if state.read >= state.len
            && let Some(file) = state.writer.as_mut()
        {
            // Caught up: start the file over, so that it does not grow forever.
            file.set_len(0)?;
            state.read = 0;
            state.len = 0;
            // Whatever is still counted is not in the file (it cannot be: every append
            // counts what it wrote); report it rather than wait for it forever.
            lost += self.count.swap(0, Ordering::AcqRel);
        }
        Ok(Taken { targets, lost })
    }

    /// Deletes the file (what is in it is forgotten).
    pub(crate) fn remove(&self) {
        let mut state = self.lock();
        state.writer = None;
        state.len = 0;
        state.read = 0;
        self.count.store(0, Ordering::Release);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What [`Spill::take`] read back.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// The targets, oldest first.
    pub(crate) targets: Vec<Target>,
    /// Spilled targets that could not be read back (a damaged file).
    pub(crate) lost: u64,
}

/// The directory of one pipeline's spill files under `spill_dir`: unique in this process and
/// across processes sharing `spill_dir`.
pub(crate) fn pipeline_dir(spill_dir: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PIPELINES: AtomicU64 = AtomicU64::new(0);
    spill_dir.join(format!(
        "{}-{}",
        std::process::id(),
        PIPELINES.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The default `spill_dir`: `cache-purge-spill` in the system's temporary directory.
pub(crate) fn default_dir() -> PathBuf {
    std::env::temp_dir().join("cache-purge-spill")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: std::ops::Range<usize>) -> Vec<Target> {
        n.map(|i| Target::url(&format!("/p/{i}?q=a b")).unwrap())
            .collect()
    }

    #[test]
    fn targets_come_back_in_order_and_the_file_starts_over_once_read() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::new(dir.path(), "0.targets");
        assert!(
            spill.take(10).unwrap().targets.is_empty(),
            "nothing spilled yet"
        );
        spill.append(&urls(0..5)).unwrap();
        spill
            .append(&[Target::Everything, Target::tag("post-1").unwrap()])
            .unwrap();
        assert_eq!(spill.count(), 7);
        assert_eq!(spill.take(3).unwrap().targets, urls(0..3));
        assert_eq!(spill.count(), 4);
        // Appends while reading land after what is being read.
        spill.append(&urls(5..7)).unwrap();
        let mut rest = urls(3..5);
        rest.extend([Target::Everything, Target::tag("post-1").unwrap()]);
        rest.extend(urls(5..7));
        let taken = spill.take(100).unwrap();
        assert_eq!((taken.targets, taken.lost), (rest, 0));
        assert_eq!(std::fs::metadata(spill.path()).unwrap().len(), 0);
        assert_eq!(spill.count(), 0);
        spill.append(&urls(7..8)).unwrap();
        assert_eq!(spill.take(100).unwrap().targets, urls(7..8));
        spill.remove();
        assert!(!spill.path().exists());
    }

    #[test]
    fn a_damaged_line_is_counted_as_lost() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::new(dir.path(), "0.targets");
        spill.append(&urls(0..3)).unwrap();
        // The second line is damaged in place (a disk error, someone else's write).
        let text = std::fs::read_to_string(spill.path()).unwrap();
        let second = text.find('\n').unwrap() + 1;
        let mut f = OpenOptions::new().write(true).open(spill.path()).unwrap();
        f.seek(SeekFrom::Start(second as u64)).unwrap();
        f.write_all(b"xx").unwrap();
        let taken = spill.take(100).unwrap();
        assert_eq!(taken.targets, [urls(0..1), urls(2..3)].concat());
        assert_eq!(taken.lost, 1);
        assert_eq!(spill.count(), 0);
    }

    #[test]
    fn an_unusable_directory_is_an_error_not_a_loss() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        // A directory below a regular file cannot be created.
        let spill = Spill::new(&file.join("sub"), "0.targets");
        assert!(spill.append(&urls(0..1)).is_err());
    }
}
