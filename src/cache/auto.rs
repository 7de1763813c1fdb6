//! Automatic prompt caches on disk: the name of a stable prefix's cache
//! (from everything that shapes its KV state), marking a cache used, and
//! keeping a directory under its cap by removing the least recently used.
//!
//! An automatic cache is an ordinary cache named `auto-<32 hex>.rklcache`,
//! the hex a hash of its [`AutoKey`]: any change of the model file's
//! content, the runtime release, the chat template, the prefix or the
//! settings that shape the KV state names another cache. A cache's last use
//! is its manifest's modification time, set on every hit.

use super::clean::Removal;
use super::files::DirLock;
use super::manifest::Manifest;
use crate::error::{Error, ErrorKind, Result};
use serde::Serialize;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What names an automatic cache: everything its KV state depends on.
#[derive(Serialize)]
pub struct AutoKey<'a> {
    /// The model file's fingerprint and size (by content, not path).
    pub fingerprint: &'a str,
    pub model_size: u64,
    /// The runtime release family and version.
    pub family: &'a str,
    pub runtime_version: Option<&'a str>,
    /// The chat template set on the model, if any.
    pub chat_template: Option<&'a [String; 3]>,
    /// The prefix itself.
    pub prefix: &'a str,
    pub role: &'a str,
    pub enable_thinking: bool,
    pub max_context_len: Option<i32>,
    /// The digest of the images and videos the prefix holds, if it holds
    /// any (left out otherwise, so text-only keys stay as they were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<&'a str>,
}

/// Start of every automatic cache's file name.
const NAME_START: &str = "auto-";
/// End of every automatic cache's file name.
const NAME_END: &str = ".rklcache";

/// Where the automatic cache of `key` lives in `dir`.
pub fn manifest_path(dir: &Path, key: &AutoKey<'_>) -> PathBuf {
    let text = serde_json::to_vec(key).expect("a key always serialises");
    dir.join(format!("{NAME_START}{:032x}{NAME_END}", xxhash_rust::xxh3::xxh3_128(&text)))
}

fn is_auto_name(name: &str) -> bool {
    name.strip_prefix(NAME_START)
        .and_then(|r| r.strip_suffix(NAME_END))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Makes the cache directory when it is missing (owner-only, mode 0700);
/// an existing path must be a directory.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => return Err(Error::invalid(format!("cache_dir '{shown}' is not a directory"))),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::from_os(ErrorKind::Io, format!("cannot use cache_dir '{shown}': {e}"), &e))
        }
        Err(_) => {}
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::from_os(ErrorKind::Io, format!("cannot make cache_dir '{shown}': {e}"), &e))
}

/// Marks the cache at `manifest` used now (for least-recently-used
/// removal); a failure only costs the order.
pub fn touch(manifest: &Path) {
    if let Err(e) = std::fs::File::open(manifest).and_then(|f| f.set_modified(SystemTime::now())) {
        log::debug!("cannot mark '{}' used: {e}", manifest.display());
    }
}

/// One automatic cache found in a directory.
struct Entry {
    manifest: PathBuf,
    payload: Option<PathBuf>,
    bytes: u64,
    used: SystemTime,
}

fn entries(dir: &Path) -> Result<Vec<Entry>> {
    let listing = std::fs::read_dir(dir)
        .map_err(|e| Error::from_os(ErrorKind::Io, format!("cannot list '{}': {e}", dir.display()), &e))?;
    // SAFETY: geteuid has no arguments and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut found = Vec::new();
    for entry in listing.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        let manifest = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&manifest) else { continue };
        if !is_auto_name(&name) || !meta.is_file() || meta.uid() != me {
            continue;
        }
        let payload = Manifest::read(&manifest).ok().and_then(|m| m.payload_path(&manifest).ok());
        let payload_bytes = payload
            .as_ref()
            .and_then(|p| std::fs::symlink_metadata(p).ok())
            .filter(|m| m.is_file() && m.uid() == me)
            .map_or(0, |m| m.len());
        found.push(Entry {
            payload: payload.filter(|_| payload_bytes > 0),
            bytes: meta.len() + payload_bytes,
            used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            manifest,
        });
    }
    Ok(found)
}

/// Removes the least recently used automatic caches of `dir` (the caller's
/// own) until they take at most `max_bytes` together, never `keep`; with
/// `dry_run` nothing is removed. Returns the files removed or that would
/// be. Runs under the directory's lock, so saves are never broken.
pub fn prune(dir: &Path, max_bytes: u64, keep: Option<&Path>, dry_run: bool) -> Result<Vec<Removal>> {
    let _lock = if dry_run { None } else { Some(DirLock::take(dir)?) };
    let mut caches = entries(dir)?;
    let mut total: u64 = caches.iter().map(|c| c.bytes).sum();
    caches.sort_by_key(|c| c.used);
    let mut removed = Vec::new();
    for cache in caches {
        if total <= max_bytes {
            break;
        }
        if keep == Some(cache.manifest.as_path()) {
            continue;
        }
        let mut files = vec![Removal { path: cache.manifest, what: "least recently used automatic cache" }];
        files.extend(cache.payload.map(|path| Removal { path, what: "its payload" }));
        for file in files {
            if !dry_run {
                std::fs::remove_file(&file.path).map_err(|e| {
                    Error::from_os(ErrorKind::Io, format!("cannot remove '{}': {e}", file.path.display()), &e)
                })?;
            }
            removed.push(file);
        }
        total -= cache.bytes;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_the_key_names_another_cache() {
        let template = ["s".to_string(), "<u>".to_string(), "</u>".to_string()];
        let base = AutoKey {
            fingerprint: "f",
            model_size: 1,
            family: "1.3",
            runtime_version: Some("1.3.0"),
            chat_template: None,
            prefix: "You are",
            role: "user",
            enable_thinking: false,
            max_context_len: None,
            media: None,
        };
        let dir = Path::new("/c");
        let one = manifest_path(dir, &base);
        assert!(is_auto_name(one.file_name().unwrap().to_str().unwrap()), "{one:?}");
        assert_eq!(one, manifest_path(dir, &AutoKey { ..base }));
        let variants = [
            AutoKey { fingerprint: "g", ..base },
            AutoKey { model_size: 2, ..base },
            AutoKey { media: Some("d"), ..base },
            AutoKey { family: "1.2", ..base },
            AutoKey { runtime_version: None, ..base },
            AutoKey { chat_template: Some(&template), ..base },
            AutoKey { prefix: "You are!", ..base },
            AutoKey { role: "tool", ..base },
            AutoKey { enable_thinking: true, ..base },
            AutoKey { max_context_len: Some(4096), ..base },
        ];
        for variant in variants {
            assert_ne!(manifest_path(dir, &variant), one);
        }
        assert!(!is_auto_name("auto-x.rklcache") && !is_auto_name("c.rklcache"));
    }
}
