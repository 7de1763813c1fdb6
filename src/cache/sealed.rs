//! A sealed private copy of a prompt cache payload, hashed while it is
//! copied, so that what the runtime reads is exactly what was checked.
//!
//! Hashing the payload file and then giving the runtime that file (even
//! through `/proc/self/fd` of the descriptor that was hashed) leaves a gap:
//! whoever can write the file can rewrite it in place between the hash and
//! the runtime's read. Instead, the payload is read once, block by block;
//! each block is hashed (xxh3-128) and written to an anonymous memory file
//! (`memfd_create` with `MFD_CLOEXEC | MFD_ALLOW_SEALING`, its size reserved
//! first with `fallocate`). The copy is then sealed (`F_SEAL_WRITE`,
//! `F_SEAL_GROW`, `F_SEAL_SHRINK`, `F_SEAL_SEAL`): from then on nobody, not
//! this process and not the runtime, can change a byte of it. Only a copy
//! whose hash matches the manifest is handed out, and the runtime reads it
//! through `/proc/self/fd/<memfd>`; whatever happens to the file afterwards
//! cannot reach the runtime.
//!
//! **Repeat loads.** The last verified copy stays in a process-wide slot
//! (one entry), keyed by the payload's [`FileStamp`] (device, inode, size,
//! modification and change time, taken before the copy, plus the checksum
//! the manifest records). Loading the same unchanged cache again reuses the
//! copy: no read and no hash. A file whose stamp differs in any field is
//! copied and hashed again. The stamp only decides freshness, never what
//! the runtime may read: a reused copy still holds bytes that hashed to the
//! manifest's checksum, at worst (a rewrite within the file system's
//! timestamp granularity) those the file had when they were checked.
//! Inspecting a cache ([`crate::cache::inspect`]) goes the same way and
//! leaves its copy in the slot, where a following load finds it.
//!
//! **Memory.** The copy lives in RAM as shared memory (shmem) for as long as
//! it is cached or a load still uses it: one payload's size per process
//! (38 MB for 330 tokens of Qwen3-0.6B; caches of long prompts run to
//! hundreds of MB), until a load or inspection of another cache (or another
//! state of the file) replaces it. The slot is emptied before a new copy is
//! made, so a replacement does not hold two cached copies at once. The copy
//! is never mapped, so it shows in the system's `Shmem` and the memory
//! cgroup's usage, not in the process's RSS; without swap it cannot be
//! paged out. In isolation mode loads run in the worker, which holds the
//! copy; an inspection in the application's process holds its own.
//!
//! **Without memfd.** Where the kernel has no `memfd_create` (`ENOSYS`:
//! Linux before 3.17, or a sandbox that hides the call), rkl logs one
//! warning and falls back to the previous behaviour: the open payload file
//! is hashed and the runtime reads it through `/proc/self/fd/<fd>`; the slot
//! then remembers only the stamp of the last verified file, so a repeat
//! load is not hashed again. In that mode a rewrite of the file between the
//! check and the runtime's read is not caught.

use super::files::open_regular_file;
use super::identity::{checksum_open_file, hex128};
use crate::error::{Error, ErrorKind, Result};
use std::ffi::CStr;
use std::fs::{File, Metadata};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use xxhash_rust::xxh3::Xxh3;

/// Bytes copied (and hashed) per read: small enough to stay in the CPU's
/// cache between the read, the hash and the write (measured fastest).
const BLOCK: usize = 128 << 10;

/// What identifies an unchanged file, with the checksum it was verified against.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    checksum: String,
}

impl FileStamp {
    /// The stamp of a file's current metadata for `checksum`.
    pub fn new(meta: &Metadata, checksum: &str) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            // ctime changes on any write, even one that restores the mtime.
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            checksum: checksum.to_string(),
        }
    }
}

/// A payload the runtime may read: the bytes that hashed to the manifest's
/// checksum.
pub struct CheckedPayload(Source);

enum Source {
    /// A sealed private copy (shared with the slot).
    Sealed(Arc<File>),
    /// The checked file itself (no memfd on this kernel).
    File(File),
}

impl CheckedPayload {
    /// A path through which the runtime reads exactly the checked bytes,
    /// valid while `self` lives.
    pub fn runtime_path(&self) -> String {
        let fd = match &self.0 {
            Source::Sealed(copy) => copy.as_raw_fd(),
            Source::File(file) => file.as_raw_fd(),
        };
        format!("/proc/self/fd/{fd}")
    }

    /// Whether the runtime reads a sealed copy (not the file itself).
    #[cfg(test)]
    fn is_sealed(&self) -> bool {
        matches!(self.0, Source::Sealed(_))
    }
}

/// Makes the open payload `file` ready for the runtime: copied into a
/// sealed memory file while it is hashed (or the copy of this exact file
/// state reused), refused with [`ErrorKind::CacheCorrupt`] unless the hash
/// is `checksum`. `meta` is the file's metadata, read before anything of it
/// (its size is the manifest's); `shown` names it in messages.
pub fn checked_payload(file: File, meta: &Metadata, checksum: &str, shown: &Path) -> Result<CheckedPayload> {
    static LAST: Slot = Slot::new();
    static KERNEL: Kernel = Kernel { memfd: create_memfd, missing: AtomicBool::new(false) };
    LAST.checked(file, meta, checksum, shown, &KERNEL)
}

/// A sealed copy of the payload file at `path`, made as a load makes it
/// but not cached: its hash and the copy (for `benches/cache_load.rs`).
pub fn sealed_copy_of(path: &Path) -> Result<(String, File)> {
    let io = |e: std::io::Error| {
        Error::from_os(ErrorKind::Io, format!("cannot copy prompt cache payload '{}': {e}", path.display()), &e)
    };
    let file = open_regular_file(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let memfd = create_memfd().map_err(io)?;
    let checksum = copy_and_hash(&file, &memfd, size, path)?;
    seal(&memfd, path)?;
    Ok((checksum, memfd))
}

/// Where memory files come from, and whether the kernel lacks them.
struct Kernel {
    memfd: fn() -> std::io::Result<File>,
    /// Set (and warned about) at the first `ENOSYS`.
    missing: AtomicBool,
}

fn create_memfd() -> std::io::Result<File> {
    const NAME: &CStr = c"rkl-prompt-cache";
    // SAFETY: memfd_create takes a NUL-terminated name, which NAME is, and
    // flags; it returns a new descriptor or -1. The raw system call is used,
    // not the C library's wrapper, so that an old C library without the
    // wrapper still loads librkl and gets ENOSYS here.
    let fd =
        unsafe { libc::syscall(libc::SYS_memfd_create, NAME.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor the call just created, owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// The last verified payload state, and its copy.
struct Slot(Mutex<Option<Entry>>);

struct Entry {
    stamp: FileStamp,
    /// `None` when the kernel has no memfd: the file state was only hashed.
    copy: Option<Arc<File>>,
}

impl Slot {
    const fn new() -> Slot {
        Slot(Mutex::new(None))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Entry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn checked(
        &self,
        file: File,
        meta: &Metadata,
        checksum: &str,
        shown: &Path,
        kernel: &Kernel,
    ) -> Result<CheckedPayload> {
        let stamp = FileStamp::new(meta, checksum);
        let stale = {
            let mut last = self.lock();
            match last.as_ref() {
                Some(Entry { stamp: known, copy }) if *known == stamp => {
                    return Ok(CheckedPayload(match copy {
                        Some(copy) => Source::Sealed(copy.clone()),
                        None => Source::File(file),
                    }));
                }
                // Not kept while another copy is made: one copy at a time.
                _ => last.take(),
            }
        };
        drop(stale); // freeing a large copy takes a while: not under the lock
        let memfd = if kernel.missing.load(Ordering::Relaxed) {
            None
        } else {
            match (kernel.memfd)() {
                Ok(memfd) => Some(memfd),
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    if !kernel.missing.swap(true, Ordering::Relaxed) {
                        log::warn!(
                            "this kernel has no memfd_create: prompt cache payloads are hashed in place, and a \
                             rewrite of the file after the check can reach the runtime"
                        );
                    }
                    None
                }
                Err(e) => {
                    return Err(Error::from_os(
                        ErrorKind::Io,
                        format!("cannot make a private copy of prompt cache payload '{}': {e}", shown.display()),
                        &e,
                    ))
                }
            }
        };
        let (found, source) = match memfd {
            Some(memfd) => {
                let found = copy_and_hash(&file, &memfd, meta.len(), shown)?;
                seal(&memfd, shown)?;
                (found, Source::Sealed(Arc::new(memfd)))
            }
            None => {
                let mut file = file;
                (checksum_open_file(&mut file, shown)?.0, Source::File(file))
            }
        };
        if found != checksum {
            return Err(Error::new(
                ErrorKind::CacheCorrupt,
                format!(
                    "prompt cache payload '{}' is damaged: its checksum does not match the manifest",
                    shown.display()
                ),
            ));
        }
        let copy = match &source {
            Source::Sealed(copy) => Some(copy.clone()),
            Source::File(_) => None,
        };
        *self.lock() = Some(Entry { stamp, copy });
        Ok(CheckedPayload(source))
    }
}

/// Copies the first `size` bytes of `file` to `memfd` in one pass, hashing
/// each block between reading and writing it; returns the hash.
fn copy_and_hash(file: &File, memfd: &File, size: u64, shown: &Path) -> Result<String> {
    let out_of_memory = |e: std::io::Error| {
        let message =
            format!("no memory for a private copy of prompt cache payload '{}' ({size} bytes): {e}", shown.display());
        match e.raw_os_error() {
            // A memory file is full when memory (or the cgroup's share) is.
            Some(libc::ENOSPC) => Error::new(ErrorKind::ResourceExhausted, message),
            _ => Error::from_os(ErrorKind::Io, message, &e),
        }
    };
    // Reserving the whole size first makes a lack of memory an error here
    // rather than halfway through the copy. (A size beyond off_t, on 32-bit
    // systems, is left to the writes.)
    if let Some(len) = libc::off_t::try_from(size).ok().filter(|&len| len > 0) {
        // SAFETY: fallocate on a descriptor this function borrows, with mode
        // 0 (allocate and extend); it touches no memory of this process.
        if unsafe { libc::fallocate(memfd.as_raw_fd(), 0, 0, len) } != 0 {
            let e = std::io::Error::last_os_error();
            // Without fallocate the writes allocate as they go.
            if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(out_of_memory(e));
            }
        }
    }
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; size.min(BLOCK as u64) as usize];
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(BLOCK as u64) as usize;
        file.read_exact_at(&mut buf[..n], done).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::new(
                    ErrorKind::CacheTruncated,
                    format!(
                        "prompt cache payload '{}' shrank below the {size} bytes the manifest records while it was read",
                        shown.display()
                    ),
                )
            } else {
                Error::from_os(
                    ErrorKind::Io,
                    format!("cannot read prompt cache payload '{}': {e}", shown.display()),
                    &e,
                )
            }
        })?;
        hasher.update(&buf[..n]);
        memfd.write_all_at(&buf[..n], done).map_err(out_of_memory)?;
        done += n as u64;
    }
    Ok(hex128(hasher.digest128()))
}

/// Seals a memory file against every change.
fn seal(memfd: &File, shown: &Path) -> Result<()> {
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: fcntl F_ADD_SEALS on a descriptor this function borrows, with
    // an int argument; it touches no memory of this process.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::from_os(
            ErrorKind::Io,
            format!("cannot seal the private copy of prompt cache payload '{}': {e}", shown.display()),
            &e,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::identity::file_checksum;
    use std::path::PathBuf;

    fn temp(tag: &str, bytes: &[u8]) -> (PathBuf, String) {
        let dir = std::env::temp_dir().join(format!("rkl-sealed-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.kv");
        std::fs::write(&path, bytes).unwrap();
        let checksum = file_checksum(&path).unwrap().0;
        (path, checksum)
    }

    fn real_kernel() -> Kernel {
        Kernel { memfd: create_memfd, missing: AtomicBool::new(false) }
    }

    fn check(slot: &Slot, kernel: &Kernel, path: &Path, checksum: &str) -> Result<CheckedPayload> {
        let file = File::open(path).unwrap();
        let meta = file.metadata().unwrap();
        slot.checked(file, &meta, checksum, path, kernel)
    }

    /// The memfd inode behind a runtime path: the same one means a reused copy.
    fn inode(payload: &CheckedPayload) -> u64 {
        std::fs::metadata(payload.runtime_path()).unwrap().ino()
    }

    /// Writes `bytes` over the start of `path`, until its ctime shows it (a
    /// coarse clock may give a write the ctime of the one before).
    fn rewrite_in_place(path: &Path, bytes: &[u8]) {
        let ctime = |p: &Path| std::fs::metadata(p).map(|m| (m.ctime(), m.ctime_nsec())).unwrap();
        let before = ctime(path);
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(bytes, 0).unwrap();
        while ctime(path) == before {
            std::thread::sleep(std::time::Duration::from_millis(2));
            file.write_all_at(bytes, 0).unwrap();
        }
    }

    #[test]
    fn the_runtime_path_reads_the_checked_bytes_whatever_happens_to_the_file() {
        let original: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 1000) as u8).collect();
        let (path, checksum) = temp("guarantee", &original);
        let (slot, kernel) = (Slot::new(), real_kernel());
        let checked = check(&slot, &kernel, &path, &checksum).unwrap();
        assert!(checked.is_sealed());

        // In place, same size, other bytes; then shorter; then gone.
        rewrite_in_place(&path, &vec![0xA5; original.len()]);
        assert_eq!(std::fs::read(checked.runtime_path()).unwrap(), original);
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(10).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(std::fs::read(checked.runtime_path()).unwrap(), original);

        // Nobody can change the copy, not even through its own descriptor.
        let copy = std::fs::OpenOptions::new().write(true).open(checked.runtime_path()).unwrap();
        assert!(copy.write_all_at(b"x", 0).is_err(), "F_SEAL_WRITE");
        assert!(copy.set_len(1).is_err(), "F_SEAL_SHRINK");
        assert!(copy.set_len(original.len() as u64 + 1).is_err(), "F_SEAL_GROW");
        // SAFETY: fcntl F_GET_SEALS on a descriptor the test owns; it takes no pointer.
        let seals = unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_GET_SEALS) };
        let all = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        assert_eq!(seals & all, all, "every seal, and no way to remove them");
        assert_eq!(std::fs::read(checked.runtime_path()).unwrap(), original);
    }

    #[test]
    fn an_unchanged_payload_is_copied_once_and_a_rewritten_one_again() {
        let (path, checksum) = temp("reuse", b"kv state, long enough to matter");
        let (slot, kernel) = (Slot::new(), real_kernel());
        let first = check(&slot, &kernel, &path, &checksum).unwrap();
        let again = check(&slot, &kernel, &path, &checksum).unwrap();
        assert_eq!(inode(&first), inode(&again), "the same copy");
        drop((first, again));
        let third = check(&slot, &kernel, &path, &checksum).unwrap();
        let copy = inode(&third);

        // Rewritten with the same bytes: a new ctime, so copied again.
        rewrite_in_place(&path, b"kv state");
        let fourth = check(&slot, &kernel, &path, &checksum).unwrap();
        assert_ne!(inode(&fourth), copy, "a changed file is copied and hashed again");

        // Same size, a flipped byte: copied again and refused, and the
        // refused state does not stay in the slot.
        rewrite_in_place(&path, b"kv stat!");
        for _ in 0..2 {
            let err = check(&slot, &kernel, &path, &checksum).err().expect("a flipped byte is refused");
            assert_eq!(err.kind(), ErrorKind::CacheCorrupt);
            assert!(err.message().contains("p.kv"), "{err}");
        }
        // A checksum other than the one it was verified against is another state.
        rewrite_in_place(&path, b"kv state");
        check(&slot, &kernel, &path, &checksum).unwrap();
        assert_eq!(
            check(&slot, &kernel, &path, "0".repeat(32).as_str()).err().unwrap().kind(),
            ErrorKind::CacheCorrupt
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_file_that_shrinks_while_it_is_read_is_truncated() {
        let (path, checksum) = temp("shrinks", &[1u8; 1000]);
        let file = File::open(&path).unwrap();
        let meta = file.metadata().unwrap();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(10).unwrap();
        let err = Slot::new().checked(file, &meta, &checksum, &path, &real_kernel()).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::CacheTruncated, "{err}");
    }

    #[test]
    fn an_empty_payload_is_an_empty_sealed_copy() {
        let (path, checksum) = temp("empty", b"");
        let checked = check(&Slot::new(), &real_kernel(), &path, &checksum).unwrap();
        assert!(checked.is_sealed());
        assert_eq!(std::fs::read(checked.runtime_path()).unwrap(), b"");
    }

    #[test]
    fn without_memfd_the_file_itself_is_hashed_and_remembered() {
        fn enosys() -> std::io::Result<File> {
            Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
        }
        let (path, checksum) = temp("fallback", b"kv state");
        let (slot, kernel) = (Slot::new(), Kernel { memfd: enosys, missing: AtomicBool::new(false) });
        let checked = check(&slot, &kernel, &path, &checksum).unwrap();
        assert!(!checked.is_sealed() && kernel.missing.load(Ordering::Relaxed));
        let file_ino = std::fs::metadata(&path).unwrap().ino();
        assert_eq!(inode(&checked), file_ino, "the runtime reads the payload file");
        assert_eq!(inode(&check(&slot, &kernel, &path, &checksum).unwrap()), file_ino, "remembered");
        rewrite_in_place(&path, b"kv stat!");
        assert_eq!(check(&slot, &kernel, &path, &checksum).err().unwrap().kind(), ErrorKind::CacheCorrupt);

        // Any other failure to make the copy is an error, not a fallback.
        fn emfile() -> std::io::Result<File> {
            Err(std::io::Error::from_raw_os_error(libc::EMFILE))
        }
        let kernel = Kernel { memfd: emfile, missing: AtomicBool::new(false) };
        let err = check(&Slot::new(), &kernel, &path, &checksum).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted, "{err}");
    }

    #[test]
    fn the_copy_is_closed_on_exec() {
        let (path, checksum) = temp("cloexec", b"kv");
        let checked = check(&Slot::new(), &real_kernel(), &path, &checksum).unwrap();
        let fd: i32 = checked.runtime_path().rsplit('/').next().unwrap().parse().unwrap();
        // SAFETY: fcntl F_GETFD on a live descriptor; it takes no pointer.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0);
    }
}
