//! Finding the caches in a directory, and what else of rkl's lies there:
//! payloads their manifest no longer names (left by a crash) and temporary
//! files. Only files of rkl's own forms are listed: a payload counts as an
//! orphan only when it is named after a manifest in the directory that
//! does not name it; a temporary file only by rkl's temporary name.

use super::files::{is_temp_name, manifest_of_payload};
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
    /// A payload named after a manifest in the directory that does not name
    /// it.
    Orphan(PathBuf),
    /// A temporary file of a save that did not finish.
    Temporary(PathBuf),
}

/// Lists `dir`: every manifest (inspected), orphan payloads and temporaries,
/// sorted by path. Symbolic links, FIFOs and devices are never opened.
pub fn scan(dir: &Path) -> Result<Vec<Found>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::from_os(ErrorKind::Io, format!("cannot list '{}': {e}", dir.display()), &e))?;
    let mut caches = Vec::new();
    let mut payloads = Vec::new();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        // The entry's own type: a link to a file is not a file here.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(name) = entry.file_name().into_string() else { continue };
        if is_temp_name(&name) {
            found.push(Found::Temporary(path));
        } else if let Some(manifest) = manifest_of_payload(&name) {
            payloads.push((path, manifest.to_string()));
        } else if starts_like_manifest(&path) {
            caches.push(inspect(&path));
        }
    }
    let manifests: HashSet<String> =
        caches.iter().filter_map(|c| c.path.file_name()?.to_str().map(str::to_string)).collect();
    let named: HashSet<PathBuf> = caches.iter().filter_map(|c| c.payload_path.clone()).collect();
    found.extend(
        payloads
            .into_iter()
            .filter(|(path, manifest)| manifests.contains(manifest) && !named.contains(path))
            .map(|(path, _)| Found::Orphan(path)),
    );
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

fn starts_like_manifest(path: &Path) -> bool {
    let mut head = [0u8; 64];
    let Ok(mut file) = super::files::open_regular_file(path) else { return false };
    let n = file.read(&mut head).unwrap_or(0);
    looks_like_manifest(&head[..n])
}
