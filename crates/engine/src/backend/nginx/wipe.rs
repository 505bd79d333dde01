//! `mode = "wipe"`: delete everything inside the cache directory (the seed's "dumb" backend).
//!
//! The directory itself stays (nginx created it, with its owner and mode, and keeps using it).
//! Symbolic links are never followed: a link inside the directory is removed as a link, its
//! target is untouched, and a real subdirectory is removed with [`std::fs::remove_dir_all`],
//! which does not follow links either (it opens each directory with `O_NOFOLLOW`, so a link
//! swapped in mid-walk is not followed). If `cache_dir` itself is a symbolic link, it is
//! followed once, as the root: what is wiped is the inside of the directory it points to.
//!
//! nginx's cache manager and workers create and delete files in there at the same time: an
//! entry that vanishes during the walk is not an error, and a level directory that gets a new
//! file while it is being removed is tried again a few times.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::backend::{Cause, PurgeError};

/// How many times a directory that keeps getting new files is tried again.
const NOT_EMPTY_RETRIES: usize = 3;

/// What a wipe did.
#[derive(Debug, Default)]
pub(crate) struct WipeReport {
    /// Entries (files, links, directory trees) removed directly under the cache directory.
    pub(crate) removed: usize,
    /// Entries that could not be removed, with the error.
    pub(crate) errors: Vec<(PathBuf, io::Error)>,
}

impl WipeReport {
    /// The batch's error when some entries could not be removed: permanent if every failure
    /// was a permission problem, transient otherwise.
    pub(crate) fn into_result(mut self, dir: &Path) -> Result<usize, PurgeError> {
        if self.errors.is_empty() {
            return Ok(self.removed);
        }
        let count = self.errors.len();
        // The cause: a permission problem only if every entry had one (then retrying is
        // pointless), else the first other error's.
        let decisive = self
            .errors
            .iter()
            .position(|(_, e)| e.kind() != io::ErrorKind::PermissionDenied)
            .unwrap_or(0);
        let first_message = super::files::io_message(&self.errors[0].0, &self.errors[0].1);
        let (path, source) = self.errors.swap_remove(decisive);
        let error = super::files::io_error(&path, source);
        Err(PurgeError::new(
            error.cause().clone(),
            format!(
                "wiping {} left {} entr{} behind ({} removed); first: {}",
                dir.display(),
                count,
                if count == 1 { "y" } else { "ies" },
                self.removed,
                first_message
            ),
        )
        .with_source(error))
    }
}

/// Deletes everything inside `dir`, but not `dir`.
///
/// Fails as a whole only when `dir` cannot be listed (missing, not a directory, permission
/// denied); failures on single entries are collected in the report and the rest goes on.
pub(crate) fn wipe(dir: &Path) -> Result<WipeReport, PurgeError> {
    let entries = fs::read_dir(dir).map_err(|e| dir_error(dir, e))?;
    let mut report = WipeReport::default();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                report.errors.push((dir.to_path_buf(), e));
                continue;
            }
        };
        let path = entry.path();
        // DirEntry::file_type does not follow symbolic links.
        let is_dir = match entry.file_type() {
            Ok(t) => t.is_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                report.errors.push((path, e));
                continue;
            }
        };
        match remove_entry(&path, is_dir) {
            Ok(true) => report.removed += 1,
            Ok(false) => {}
            Err(e) => report.errors.push((path, e)),
        }
    }
    Ok(report)
}

/// Removes one entry: a real directory with everything in it, anything else (file, symbolic
/// link, socket...) with `unlink`. `Ok(false)` when it was already gone.
pub(crate) fn remove_entry(path: &Path, is_dir: bool) -> io::Result<bool> {
    let mut attempt = 0;
    loop {
        let result = if is_dir {
            // Does not follow symbolic links, at the top or below.
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        };
        match result {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            // nginx stored a new response in there meanwhile.
            Err(e)
                if e.kind() == io::ErrorKind::DirectoryNotEmpty && attempt < NOT_EMPTY_RETRIES =>
            {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The error for a cache directory that cannot be used at all: permanent when it is a matter
/// of settings (a path that is missing or not a directory: [`Cause::Misconfigured`]) or of
/// permissions.
pub(crate) fn dir_error(dir: &Path, e: io::Error) -> PurgeError {
    let cause = match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Cause::Misconfigured,
        kind => Cause::Io(kind),
    };
    let message = match e.kind() {
        io::ErrorKind::NotFound => format!(
            "cache_dir {} does not exist: it must be the directory of nginx's proxy_cache_path",
            dir.display()
        ),
        io::ErrorKind::NotADirectory => format!(
            "cache_dir {} is not a directory: it must be the directory of nginx's proxy_cache_path",
            dir.display()
        ),
        io::ErrorKind::PermissionDenied => return super::files::io_error(dir, e),
        _ => format!("cannot read cache_dir {}: {e}", dir.display()),
    };
    PurgeError::new(cause, message).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(dir: &Path) {
        fs::create_dir_all(dir.join("5/bf")).unwrap();
        fs::write(dir.join("5/bf/0639767f3e9eaad729b54037a7e2abf5"), b"x").unwrap();
        fs::create_dir_all(dir.join("a/00")).unwrap();
        fs::write(dir.join("loose-file"), b"y").unwrap();
    }

    #[test]
    fn removes_files_and_subdirectories_but_keeps_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        fill(&cache);
        let report = wipe(&cache).unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.removed, 3);
        assert!(cache.is_dir());
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 0);
        // Wiping an empty cache is fine.
        assert_eq!(wipe(&cache).unwrap().removed, 0);
    }

    #[test]
    fn symbolic_links_are_removed_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        fs::create_dir(&cache).unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("precious"), b"keep me").unwrap();
        fs::write(tmp.path().join("precious-file"), b"keep me too").unwrap();
        std::os::unix::fs::symlink(&outside, cache.join("dir-link")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("precious-file"), cache.join("file-link"))
            .unwrap();
        fs::create_dir(cache.join("sub")).unwrap();
        std::os::unix::fs::symlink(&outside, cache.join("sub/nested-link")).unwrap();

        let report = wipe(&cache).unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 0);
        assert_eq!(fs::read(outside.join("precious")).unwrap(), b"keep me");
        assert_eq!(
            fs::read(tmp.path().join("precious-file")).unwrap(),
            b"keep me too"
        );
    }

    #[test]
    fn a_symlinked_cache_dir_is_followed_once_as_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fill(&real);
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(wipe(&link).unwrap().removed, 3);
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(real.is_dir());
        assert_eq!(fs::read_dir(&real).unwrap().count(), 0);
    }

    #[test]
    fn entries_that_vanish_are_not_errors() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(!remove_entry(&tmp.path().join("gone"), false).unwrap());
        assert!(!remove_entry(&tmp.path().join("gone-dir"), true).unwrap());
    }

    #[test]
    fn copes_with_files_removed_concurrently() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let mut files = Vec::new();
        for i in 0..16 {
            for j in 0..16 {
                let d = cache.join(format!("{i:x}")).join(format!("{j:x}0"));
                fs::create_dir_all(&d).unwrap();
                for k in 0..4 {
                    let f = d.join(format!("file{k}"));
                    fs::write(&f, b"x").unwrap();
                    files.push(f);
                }
            }
        }
        // A "cache manager" deleting files while the wipe runs.
        let manager = std::thread::spawn(move || {
            for f in files.iter().rev() {
                let _ = fs::remove_file(f);
            }
        });
        let report = wipe(&cache).unwrap();
        manager.join().unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_or_unusable_directory_is_a_permanent_error() {
        let tmp = tempfile::tempdir().unwrap();
        let e = wipe(&tmp.path().join("nope")).unwrap_err();
        assert_eq!(e.cause(), &Cause::Misconfigured);
        assert!(!e.is_transient());
        assert!(e.message().contains("does not exist"), "{e}");
        let file = tmp.path().join("file");
        fs::write(&file, b"").unwrap();
        let e = wipe(&file).unwrap_err();
        assert!(e.message().contains("not a directory"), "{e}");
        assert!(!e.is_transient());
    }

    #[test]
    fn a_report_with_errors_names_the_first_path() {
        let report = WipeReport {
            removed: 2,
            errors: vec![
                (
                    PathBuf::from("/c/5"),
                    io::Error::from(io::ErrorKind::PermissionDenied),
                ),
                (PathBuf::from("/c/6"), io::Error::other("EIO")),
            ],
        };
        let e = report.into_result(Path::new("/c")).unwrap_err();
        assert_eq!(e.cause(), &Cause::Io(io::ErrorKind::Other));
        assert!(e.is_transient());
        assert!(e.message().contains("/c/5"), "{e}");
        assert!(e.message().contains("2 entries behind (2 removed)"), "{e}");
    }
}
