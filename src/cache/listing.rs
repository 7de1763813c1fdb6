//! Finding the caches in a directory, and what else lies there: payloads no
//! manifest names (left by a crash or an interrupted save) and temporary files.

use super::files::{PAYLOAD_SUFFIX, TEMP_SUFFIX};
use super::info::{inspect, CacheInfo};
use super::manifest::looks_like_manifest;
use crate::error::{Error, ErrorKind, Result};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One thing found in a cache directory.
#[derive(Clone, Debug, PartialEq)]
pub enum Found {
    /// A cache (manifest), with its verdict.
    Cache(Box<CacheInfo>),
    /// A payload no manifest in the directory names.
    Orphan(PathBuf),
    /// A temporary file of a save that did not finish.
    Temporary(PathBuf),
}

/// Lists `dir`: every manifest (inspected), orphan payloads and temporaries,
/// sorted by path.
pub fn scan(dir: &Path) -> Result<Vec<Found>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot list '{}': {e}", dir.display())))?;
    let mut caches = Vec::new();
    let mut payloads = Vec::new();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
            found.push(Found::Temporary(path));
        } else if name.ends_with(PAYLOAD_SUFFIX) {
            payloads.push(path);
        } else if starts_like_manifest(&path) {
            caches.push(inspect(&path));
        }
    }
    let named: HashSet<PathBuf> = caches.iter().filter_map(|c| c.payload_path.clone()).collect();
    found.extend(payloads.into_iter().filter(|p| !named.contains(p)).map(Found::Orphan));
    found.extend(caches.into_iter().map(|c| Found::Cache(Box::new(c))));
    found.sort_by(|a, b| path_of(a).cmp(path_of(b)));
    Ok(found)
}

/// The path a found item is listed under.
pub fn path_of(found: &Found) -> &Path {
    match found {
        Found::Cache(info) => &info.path,
        Found::Orphan(p) | Found::Temporary(p) => p,
    }
}

/// Deletes a cache: the manifest first (so it is never half there), then its
/// payload.
pub fn remove_cache(info: &CacheInfo) -> Result<()> {
    std::fs::remove_file(&info.path)
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot remove '{}': {e}", info.path.display())))?;
    if let Some(payload) = &info.payload_path {
        super::files::remove_quietly(payload);
    }
    Ok(())
}

fn starts_like_manifest(path: &Path) -> bool {
    let mut head = [0u8; 64];
    let Ok(mut file) = super::files::open_regular_file(path) else { return false };
    let n = file.read(&mut head).unwrap_or(0);
    looks_like_manifest(&head[..n])
}
