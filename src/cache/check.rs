//! Validating a cache on disk, in a fixed order with a distinct error kind
//! for each failure, before the runtime ever sees the payload.

use super::files::{dir_of, open_regular_file};
use super::manifest::Manifest;
use super::sealed::{checked_payload, CheckedPayload};
use super::trust;
use crate::error::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};

/// A cache whose files passed every check that needs no model.
pub struct CheckedCache {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The payload beside it.
    pub payload_path: PathBuf,
    /// What the runtime reads: a sealed private copy of exactly the bytes
    /// that were checked (`sealed`), whatever happens to the file at
    /// `payload_path` afterwards.
    pub payload: CheckedPayload,
}

impl CheckedCache {
    /// A path through which the runtime reads exactly the checked bytes.
    pub fn runtime_path(&self) -> String {
        self.payload.runtime_path()
    }
}

/// How often a manifest is read again when a concurrent save replaced its
/// payload between reading the manifest and opening the payload.
const ATTEMPTS: usize = 3;

/// Checks, in order: manifest present and parseable, format version known,
/// its payload name rkl's own for it, manifest and directory trusted
/// (`trust.rs`), payload present with the recorded size and trusted,
/// payload checksum (hashed while it is copied into the sealed copy the
/// runtime reads; skipped when the copy of this exact file state is still
/// there, see `sealed`).
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

fn check_payload(manifest_path: &Path, manifest: Manifest) -> Result<CheckedCache> {
    let payload_path = manifest.payload_path(manifest_path)?;
    let shown = payload_path.display();
    let missing = |e: std::io::Error| {
        Error::new(ErrorKind::CacheTruncated, format!("prompt cache payload '{shown}' is missing ({e})"))
    };
    let payload = open_regular_file(&payload_path).map_err(missing)?;
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
    let payload = checked_payload(payload, &meta, &manifest.payload.checksum, &payload_path)?;
    Ok(CheckedCache { manifest, payload_path, payload })
}
