//! Cache file names and the durable, atomic steps of saving.
//!
//! A cache is a manifest at the path the caller chose plus a payload beside
//! it under a name unique to that save (`<name>.<16 hex>.kv`): a payload's
//! name is derived from its manifest's, so that a manifest can never name
//! any other file for rkl to read or delete. The manifest's rename is the
//! one commit point: before it, the previous cache (manifest and payload)
//! is untouched; after it, the new one is whole. Temporary files are named
//! `.<name>.<pid>-<n>.<kind>.tmp`, held locked by their save, and are left
//! only by a crash. Files rkl writes are readable by their owner alone
//! (caches may hold system prompts).

use crate::error::{Error, ErrorKind, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The mode of every file rkl writes: its owner's alone.
pub const FILE_MODE: u32 = 0o600;

/// Hex digits in a payload name's unique part.
const PAYLOAD_HEX: usize = 16;

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

/// The directory a cache path is in ("." for a bare name).
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

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
        let dir = dir_of(path).to_path_buf();
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

/// Whether `payload` is a name rkl gives a payload of the manifest named
/// `manifest_name`: `<manifest_name>.<16 lowercase hex digits>.kv`.
pub fn is_payload_of(manifest_name: &str, payload: &str) -> bool {
    manifest_of_payload(payload) == Some(manifest_name)
}

/// The manifest name a payload name belongs to, when it has rkl's form.
pub fn manifest_of_payload(payload: &str) -> Option<&str> {
    let stem = payload.strip_suffix(PAYLOAD_SUFFIX)?;
    let (manifest, hex) = stem.rsplit_once('.')?;
    let hex_ok = hex.len() == PAYLOAD_HEX && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex_ok && !manifest.is_empty()).then_some(manifest)
}

/// Whether `name` has the form of rkl's temporary files:
/// `.<name>.<pid>-<n>.<kv|json>.tmp`.
pub fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|r| r.strip_suffix(TEMP_SUFFIX)) else { return false };
    let Some((rest, kind)) = rest.rsplit_once('.') else { return false };
    let Some((_, counters)) = rest.rsplit_once('.') else { return false };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    matches!(kind, "kv" | "json") && counters.split_once('-').is_some_and(|(pid, n)| digits(pid) && digits(n))
}

/// Creates `path` empty and exclusively (mode 0600), proving the directory
/// is writable before the runtime is asked to write there; returned open
/// and share-locked, so that a cleaner sees it is in use.
pub fn create_placeholder(path: &Path) -> Result<File> {
    let file = OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path).map_err(|e| {
        io(format!("cannot write a prompt cache in '{}'", path.parent().unwrap_or(Path::new(".")).display()), e)
    })?;
    // SAFETY: flock(2) on a descriptor `file` owns.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH) };
    Ok(file)
}

/// Whether another process holds a lock on the open `file` (a save in
/// progress); takes no lock that outlives the call.
pub fn is_locked_elsewhere(file: &File) -> bool {
    // SAFETY: flock(2) on a descriptor `file` owns.
    let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if free {
        // SAFETY: as above; dropping the lock just taken.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
    }
    !free
}

/// An exclusive lock on a cache directory: saves commit and cleaners
/// delete under it, so neither sees the other half done.
pub struct DirLock(#[allow(dead_code)] File);

/// How long a save or a cleaner waits for another's directory lock.
const DIR_LOCK_WAIT: Duration = Duration::from_secs(10);

impl DirLock {
    /// Takes the lock on `dir`, waiting up to 10 s for another holder.
    pub fn take(dir: &Path) -> Result<DirLock> {
        let shown = dir.display();
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(dir)
            .map_err(|e| io(format!("cannot lock the cache directory '{shown}'"), e))?;
        let deadline = Instant::now() + DIR_LOCK_WAIT;
        loop {
            // SAFETY: flock(2) on a descriptor `file` owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(DirLock(file));
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) && e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io(format!("cannot lock the cache directory '{shown}'"), e));
            }
            if Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("the cache directory '{shown}' stayed locked by another process for 10 s"),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Sets a file rkl wrote (or had the runtime write) to [`FILE_MODE`].
pub fn restrict(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))
        .map_err(|e| io(format!("cannot restrict '{}' to its owner", path.display()), e))
}

/// Flushes a file's data to the disk.
pub fn sync_file(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| io(format!("cannot sync '{}'", path.display()), e))
}

/// Flushes a directory entry change (a rename) to the disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| io(format!("cannot sync directory '{}'", dir.display()), e))
}

/// Writes `bytes` to a new file (mode 0600) at `path` and syncs it.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
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
    open_checked(path, libc::O_NONBLOCK)
}

/// As [`open_regular_file`], and a symbolic link at `path` is an error too
/// (`ELOOP`): for files rkl may replace or delete.
pub fn open_regular_file_here(path: &Path) -> std::io::Result<File> {
    open_checked(path, libc::O_NONBLOCK | libc::O_NOFOLLOW)
}

fn open_checked(path: &Path, flags: i32) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_and_temporary_names_have_one_form() {
        assert!(is_payload_of("c.json", "c.json.0123456789abcdef.kv"));
        assert_eq!(manifest_of_payload("a.b.0123456789abcdef.kv"), Some("a.b"));
        for other in [
            "c.json.0123456789ABCDEF.kv",
            "c.json.0123456789abcde.kv",
            "c.json.kv",
            "model.rkllm",
            ".0123456789abcdef.kv",
        ] {
            assert!(!is_payload_of("c.json", other), "{other}");
        }
        assert!(!is_payload_of("d.json", "c.json.0123456789abcdef.kv"));
        assert!(is_temp_name(".c.json.123-4.kv.tmp"));
        assert!(is_temp_name(".c.json.123-4.json.tmp"));
        for other in
            [".c.json.tmp", "c.json.123-4.kv.tmp", ".c.json.12x-4.kv.tmp", ".c.json.123-4.txt.tmp", ".bashrc.tmp"]
        {
            assert!(!is_temp_name(other), "{other}");
        }
    }
}
