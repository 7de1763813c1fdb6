//! Validating a cache on disk, in a fixed order with a distinct error kind
//! for each failure, before the runtime ever sees the payload.

use super::files::open_regular_file;
use super::identity::checksum_open_file;
use super::manifest::Manifest;
use super::trust;
use super::verified::{is_verified, remember, FileStamp};
use crate::error::{Error, ErrorKind, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A cache whose files passed every check that needs no model.
pub struct CheckedCache {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The payload beside it.
    pub payload_path: PathBuf,
    /// The payload, open: what was checked is what the runtime will read
    /// (through `/proc/self/fd`), even if a concurrent save replaces the
    /// file at `payload_path`.
    pub payload: File,
}

impl CheckedCache {
    /// A path through which the runtime reads exactly the checked file.
    pub fn runtime_path(&self) -> String {
        format!("/proc/self/fd/{}", self.payload.as_raw_fd())
    }
}

/// How often a manifest is read again when a concurrent save replaced its
/// payload between reading the manifest and opening the payload.
const ATTEMPTS: usize = 3;

/// Checks, in order: manifest present and parseable, format version known,
/// its payload name rkl's own for it, manifest and directory trusted
/// (`trust.rs`), payload present with the recorded size and trusted,
/// payload checksum (skipped when this exact file was verified before in
/// this process).
pub fn check_files(manifest_path: &Path) -> Result<CheckedCache> {
    let mut attempt = 1;
    loop {
        let (manifest, meta) = Manifest::read_with_metadata(manifest_path)?;
        manifest.payload_path(manifest_path)?;
        trust::check_file("manifest", manifest_path, &meta)?;
        trust::check_dir(dir_of(manifest_path))?;
        let tried = manifest.payload.file.clone();
        match check_payload(manifest_path, manifest) {
            Err(e)
                if e.kind() == ErrorKind::CacheTruncated
                    && attempt < ATTEMPTS
                    && payload_renamed(manifest_path, &tried) =>
            {
                attempt += 1
            }
            other => return other,
        }
    }
}

/// Whether the manifest now names another payload than `tried`.
fn payload_renamed(manifest_path: &Path, tried: &str) -> bool {
    Manifest::read(manifest_path).is_ok_and(|m| m.payload.file != tried)
}

/// The directory a cache path is in ("." for a bare name).
fn dir_of(manifest_path: &Path) -> &Path {
    match manifest_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn check_payload(manifest_path: &Path, manifest: Manifest) -> Result<CheckedCache> {
    let payload_path = manifest.payload_path(manifest_path)?;
    let shown = payload_path.display();
    let missing = |e: std::io::Error| {
        Error::new(ErrorKind::CacheTruncated, format!("prompt cache payload '{shown}' is missing ({e})"))
    };
    let mut payload = open_regular_file(&payload_path).map_err(missing)?;
    let meta = payload.metadata().map_err(missing)?;
    trust::check_file("payload", &payload_path, &meta)?;
    if !meta.is_file() || meta.len() != manifest.payload.size {
        return Err(Error::new(
            ErrorKind::CacheTruncated,
            format!(
                "prompt cache payload '{shown}' has {} bytes; the manifest records {}",
                meta.len(),
                manifest.payload.size
            ),
        ));
    }
    let stamp = FileStamp::new(&meta, &manifest.payload.checksum);
    if !is_verified(&stamp) {
        let (checksum, _) = checksum_open_file(&mut payload, &payload_path)?;
        if checksum != manifest.payload.checksum {
            return Err(Error::new(
                ErrorKind::CacheCorrupt,
                format!("prompt cache payload '{shown}' is damaged: its checksum does not match the manifest"),
            ));
        }
        // Stamp from metadata read before hashing: a write during the hash
        // changes ctime and so can never be remembered as verified.
        remember(stamp);
    }
    Ok(CheckedCache { manifest, payload_path, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::identity::file_checksum;
    use crate::cache::identity::FILES_HASHED;
    use crate::cache::manifest::{tests::sample, Manifest};
    use std::sync::atomic::Ordering;

    #[test]
    fn an_unchanged_payload_is_hashed_once_and_a_rewritten_one_again() {
        let dir = std::env::temp_dir().join(format!("rkl-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let payload = dir.join("c.json.0123456789abcdef.kv");
        std::fs::write(&payload, b"kv state").unwrap();
        let (checksum, size) = file_checksum(&payload).unwrap();
        let mut m: Manifest = sample();
        m.payload.file = "c.json.0123456789abcdef.kv".into();
        m.payload.size = size;
        m.payload.checksum = checksum;
        let manifest = dir.join("c.json");
        std::fs::write(&manifest, m.to_json()).unwrap();

        let before = FILES_HASHED.load(Ordering::Relaxed);
        check_files(&manifest).unwrap();
        check_files(&manifest).unwrap();
        check_files(&manifest).unwrap();
        assert_eq!(FILES_HASHED.load(Ordering::Relaxed) - before, 1, "verified once, remembered after");

        // Same size, same content length, flipped byte: must be hashed again
        // and refused.
        std::fs::write(&payload, b"kv stat!").unwrap();
        let err = check_files(&manifest).err().expect("a flipped byte is refused");
        assert_eq!(err.kind(), ErrorKind::CacheCorrupt);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
