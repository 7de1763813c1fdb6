//! Cleaning a cache directory: removing what rkl can prove it made and no
//! longer needs, and nothing else.
//!
//! Removed: invalid caches (and stale ones when asked), each as its pair
//! (the manifest and the payload rkl made for it, never another file it
//! names); orphan payloads and temporary files of rkl's own forms (see
//! `listing.rs`) that are older than [`MIN_AGE`] and not locked by a save in
//! progress. Every file removed is a regular file (never through a link)
//! owned by the user cleaning: a shared directory's other users' files stay.
//! Caches refused as untrusted, of a newer format, or unreadable for now
//! (an I/O error) are left alone. The removals run under the
//! directory's lock, each checked again there, so a save committing at the
//! same time is never broken and never loses its files.

use super::files::{is_locked_elsewhere, open_regular_file_here, DirLock};
use super::info::Verdict;
use super::listing::{scan, Found};
use super::manifest::Manifest;
use crate::error::{Error, ErrorKind, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How old a temporary file or orphan must be before it is removed: a save
/// that just made one may not have locked or named it yet.
pub const MIN_AGE: Duration = Duration::from_secs(60);

/// What cleaning removes (or, in a dry run, would remove).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// The file.
    pub path: PathBuf,
    /// Why: "invalid cache", "its payload", "stale cache", "orphan payload",
    /// "temporary file".
    pub what: &'static str,
}

/// One thing to remove, with what makes it the same thing under the lock.
struct Candidate {
    files: Vec<Removal>,
    /// (path, dev, ino) of each file as scanned.
    stamps: Vec<(PathBuf, u64, u64)>,
    /// For an orphan: the manifest it is named after, which must still not
    /// name it.
    orphan_of: Option<PathBuf>,
    /// For a temporary file: not locked by a save.
    temporary: bool,
}

/// The metadata of a file rkl may remove: a regular file (not a link)
/// owned by the caller.
fn removable(path: &Path) -> Option<std::fs::Metadata> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    // SAFETY: geteuid has no arguments and cannot fail.
    (meta.is_file() && meta.uid() == unsafe { libc::geteuid() }).then_some(meta)
}

fn old_enough(meta: &std::fs::Metadata, now: SystemTime) -> bool {
    meta.modified().is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age >= MIN_AGE))
}

/// Cleans `dir` (stale caches too with `stale`); with `dry_run` nothing is
/// removed. Returns every file removed or that would be, in order.
pub fn clean(dir: &Path, stale: bool, dry_run: bool) -> Result<Vec<Removal>> {
    let now = SystemTime::now();
    let mut candidates = Vec::new();
    for found in scan(dir)? {
        let (files, orphan_of, temporary) = match &found {
            Found::Cache(info) => {
                let what = match &info.verdict {
                    // Broken for good; not another user's, not a newer
                    // format, not a failure to read it now.
                    Verdict::Invalid(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::CacheInvalid | ErrorKind::CacheTruncated | ErrorKind::CacheCorrupt
                        ) =>
                    {
                        "invalid cache"
                    }
                    Verdict::Stale(_) if stale => "stale cache",
                    _ => continue,
                };
                let mut files = vec![Removal { path: info.path.clone(), what }];
                if let Some(payload) = info.payload_path.as_ref().filter(|p| p.exists()) {
                    files.push(Removal { path: payload.clone(), what: "its payload" });
                }
                (files, None, false)
            }
            Found::Orphan(path) => {
                let Some(meta) = removable(path) else { continue };
                if !old_enough(&meta, now) {
                    continue;
                }
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let manifest = super::files::manifest_of_payload(name).map(|m| path.with_file_name(m));
                (vec![Removal { path: path.clone(), what: "orphan payload" }], manifest, false)
            }
            Found::Temporary(path) => {
                let Some(meta) = removable(path) else { continue };
                if !old_enough(&meta, now) {
                    continue;
                }
                (vec![Removal { path: path.clone(), what: "temporary file" }], None, true)
            }
        };
        let stamps: Option<Vec<_>> =
            files.iter().map(|f| removable(&f.path).map(|m| (f.path.clone(), m.dev(), m.ino()))).collect();
        // A pair is removed whole or not at all: both files the caller's.
        let Some(stamps) = stamps else { continue };
        candidates.push(Candidate { files, stamps, orphan_of, temporary });
    }
    if dry_run {
        return Ok(candidates.into_iter().flat_map(|c| c.files).collect());
    }
    let _lock = DirLock::take(dir)?;
    let mut removed = Vec::new();
    for candidate in candidates {
        if !still_removable(&candidate) {
            continue;
        }
        for file in candidate.files {
            std::fs::remove_file(&file.path).map_err(|e| {
                Error::from_os(ErrorKind::Io, format!("cannot remove '{}': {e}", file.path.display()), &e)
            })?;
            removed.push(file);
        }
    }
    Ok(removed)
}

/// Under the directory lock: the same files as scanned, an orphan still not
/// named by its manifest, a temporary file not locked by a save.
fn still_removable(candidate: &Candidate) -> bool {
    let same = candidate
        .stamps
        .iter()
        .all(|(path, dev, ino)| removable(path).is_some_and(|m| m.dev() == *dev && m.ino() == *ino));
    if !same {
        return false;
    }
    if let Some(manifest) = &candidate.orphan_of {
        let named = Manifest::read(manifest).ok().and_then(|m| m.payload_path(manifest).ok());
        if named.as_deref() == candidate.files.first().map(|f| f.path.as_path()) {
            return false;
        }
    }
    if candidate.temporary {
        let Some(file) = candidate.files.first().and_then(|f| open_regular_file_here(&f.path).ok()) else {
            return false;
        };
        if is_locked_elsewhere(&file) {
            return false;
        }
    }
    true
}
