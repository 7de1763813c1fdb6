//! Fast identities: a model fingerprint that reads a few blocks, not the
//! whole file, and a payload checksum that reads it all at memory speed.

use crate::cache::manifest::ModelIdentity;
use crate::error::{Error, ErrorKind, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::UNIX_EPOCH;
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// Bytes read from each sampled place of a model file.
const SAMPLE: u64 = 1 << 20;

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::from_os(ErrorKind::Io, format!("cannot read {what} '{}': {e}", path.display()), &e)
}

/// Hex form of a 128-bit hash.
pub fn hex128(hash: u128) -> String {
    format!("{hash:032x}")
}

/// The hash rkl records for a prompt.
pub fn prompt_hash(prompt: &[u8]) -> String {
    hex128(xxh3_128(prompt))
}

/// Identifies a model file by size and three sampled 1 MiB blocks (start,
/// middle, end): different weights of the same size differ there. Only a
/// regular file is read, opened without blocking: a manifest naming a FIFO
/// or a device as its model cannot hang or touch it.
pub fn model_identity(path: &Path) -> Result<ModelIdentity> {
    let mut file = super::files::open_regular_file(path).map_err(|e| io_error("model", path, e))?;
    let meta = file.metadata().map_err(|e| io_error("model", path, e))?;
    let size = meta.len();
    let mut hasher = Xxh3::new();
    hasher.update(&size.to_le_bytes());
    let mut block = vec![0u8; SAMPLE as usize];
    let middle = (size / 2).saturating_sub(SAMPLE / 2);
    let end = size.saturating_sub(SAMPLE);
    for offset in [0, middle, end] {
        file.seek(SeekFrom::Start(offset)).map_err(|e| io_error("model", path, e))?;
        let n = read_up_to(&mut file, &mut block).map_err(|e| io_error("model", path, e))?;
        hasher.update(&offset.to_le_bytes());
        hasher.update(&block[..n]);
    }
    // An absolute path, so that a cache inspected from another directory
    // still finds its model.
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(ModelIdentity {
        path: absolute.to_string_lossy().into_owned(),
        size,
        mtime_ns: mtime_ns(&meta),
        fingerprint: hex128(hasher.digest128()),
    })
}

/// Modification time in nanoseconds since the epoch (0 if unknown).
pub fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as u64)
}

/// Checksum and size of a whole file.
pub fn file_checksum(path: &Path) -> Result<(String, u64)> {
    let mut file = super::files::open_regular_file(path).map_err(|e| io_error("prompt cache payload", path, e))?;
    checksum_open_file(&mut file, path)
}

/// Checksum and size of an open file, read from its start.
pub fn checksum_open_file(file: &mut File, shown: &Path) -> Result<(String, u64)> {
    file.seek(SeekFrom::Start(0)).map_err(|e| io_error("prompt cache payload", shown, e))?;
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| io_error("prompt cache payload", shown, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex128(hasher.digest128()), total))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_sees_changes_in_sampled_blocks_and_size() {
        let dir = std::env::temp_dir().join(format!("rkl-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.bin");
        let mut data = vec![7u8; 3 << 20];
        std::fs::write(&path, &data).unwrap();
        let a = model_identity(&path).unwrap();
        assert_eq!(a, model_identity(&path).unwrap(), "stable");
        data[(3 << 20) / 2] ^= 1;
        std::fs::write(&path, &data).unwrap();
        assert_ne!(a.fingerprint, model_identity(&path).unwrap().fingerprint);
        data.push(0);
        std::fs::write(&path, &data).unwrap();
        assert_ne!(a.fingerprint, model_identity(&path).unwrap().fingerprint);
        let (sum1, n) = file_checksum(&path).unwrap();
        assert_eq!(n, data.len() as u64);
        data[5] ^= 1;
        std::fs::write(&path, &data).unwrap();
        assert_ne!(sum1, file_checksum(&path).unwrap().0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
