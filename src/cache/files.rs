//! Cache file names and the durable, atomic steps of saving.
//!
//! A cache is a manifest at the path the caller chose plus a payload beside
//! it under a name unique to that save (`<name>.<16 hex>.kv`). The manifest's
//! rename is the one commit point: before it, the previous cache (manifest and
//! payload) is untouched; after it, the new one is whole. Temporary files
//! start with `.` and end in `.tmp`, and are left only by a crash.

use crate::error::{Error, ErrorKind, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Suffix of payload files.
pub const PAYLOAD_SUFFIX: &str = ".kv";
/// Suffix of temporary files.
pub const TEMP_SUFFIX: &str = ".tmp";

fn io(what: String, e: std::io::Error) -> Error {
    Error::from_os(ErrorKind::Io, format!("{what}: {e}"), &e)
}

/// Longest cache file name: the payload and temporary names add up to 32
/// bytes, and file names stop at 255.
pub const MAX_NAME_BYTES: usize = 220;

/// The directory and file name of a cache path, checked.
pub struct CachePath {
    /// The manifest (the path the caller named).
    pub manifest: PathBuf,
    /// Its directory ("." for a bare name).
    pub dir: PathBuf,
    /// Its file name.
    pub name: String,
}

impl CachePath {
    /// Checks `path` names a file in an existing directory.
    pub fn new(path: &Path) -> Result<CachePath> {
        let shown = path.display();
        // Path drops a trailing slash; a directory is never a cache file.
        if path.as_os_str().as_encoded_bytes().ends_with(b"/") || path.is_dir() {
            return Err(Error::invalid(format!("cache path '{shown}' names a directory, not a file")));
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::invalid(format!("cache path '{shown}' does not end in a UTF-8 file name")))?
            .to_string();
        if name.len() > MAX_NAME_BYTES {
            return Err(Error::invalid(format!(
                "cache file name is {} bytes; at most {MAX_NAME_BYTES} (rkl adds a suffix for the payload and temporary files)",
                name.len()
            )));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(Error::new(
                ErrorKind::Io,
                format!("cannot save prompt cache '{shown}': directory '{}' does not exist", dir.display()),
            ));
        }
        Ok(CachePath { manifest: path.to_path_buf(), dir, name })
    }

    /// A new temporary path in the same directory, unique in this process
    /// and across processes (pid).
    pub fn temp(&self, kind: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(".{}.{}-{n}.{kind}{TEMP_SUFFIX}", self.name, std::process::id()))
    }

    /// A payload name no other save will ever use, so that removing the
    /// payload of a replaced manifest can never remove a concurrent save's.
    pub fn payload_name(&self, checksum: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let unique = format!("{}:{}:{nanos}:{checksum}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        format!("{}.{:016x}{PAYLOAD_SUFFIX}", self.name, xxhash_rust::xxh3::xxh3_64(unique.as_bytes()))
    }
}

/// Creates `path` empty and exclusively, proving the directory is writable
/// before the runtime is asked to write there.
pub fn create_placeholder(path: &Path) -> Result<()> {
    OpenOptions::new().write(true).create_new(true).open(path).map(drop).map_err(|e| {
        io(format!("cannot write a prompt cache in '{}'", path.parent().unwrap_or(Path::new(".")).display()), e)
    })
}

/// Flushes a file's data to the disk.
pub fn sync_file(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| io(format!("cannot sync '{}'", path.display()), e))
}

/// Flushes a directory entry change (a rename) to the disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| io(format!("cannot sync directory '{}'", dir.display()), e))
}

/// Writes `bytes` to a new file at `path` and syncs it.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io(format!("cannot create '{}'", path.display()), e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| io(format!("cannot write '{}'", path.display()), e))
}

/// Renames `from` to `to` (atomic on one file system).
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| io(format!("cannot rename '{}' to '{}'", from.display(), to.display()), e))
}

/// Removes a file if it is there; failures are only logged (the file is
/// garbage either way and the cache tool can clean it).
pub fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("could not remove '{}': {e}", path.display());
        }
    }
}

/// Opens `path` for reading without blocking: a FIFO or device put where a
/// cache file belongs must give an error, never hang the caller. What is
/// opened is checked to be a regular file through the descriptor itself.
pub fn open_regular_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK has this value on every Linux architecture rkl targets
    // (x86_64, aarch64, arm, riscv64).
    const O_NONBLOCK: i32 = 0o4000;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(O_NONBLOCK).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(file)
}
