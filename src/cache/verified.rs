//! Remembers payload files already checked in this process, so that loading
//! the same unchanged cache again does not hash it again.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

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
    pub fn new(meta: &std::fs::Metadata, checksum: &str) -> FileStamp {
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

static VERIFIED: Mutex<Option<HashSet<FileStamp>>> = Mutex::new(None);

/// Whether this exact file state was verified before.
pub fn is_verified(stamp: &FileStamp) -> bool {
    VERIFIED.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|set| set.contains(stamp))
}

/// Records a verified file state.
pub fn remember(stamp: FileStamp) {
    VERIFIED.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashSet::new).insert(stamp);
}
