//! Whose cache files rkl hands to the runtime: the trust rule for loads,
//! after ssh's StrictModes.
//!
//! A manifest or payload is refused ([`ErrorKind::CacheUntrusted`]) when it
//! is owned by a user other than the caller (the effective uid) or root, or
//! is writable by its group or by others; so is one whose directory is
//! owned by such a user, or is writable by group or others without the
//! sticky bit (anyone there could have replaced it). Setting
//! `RKL_CACHE_TRUST=any` turns the rule off for the process, for caches
//! shared on purpose.

use crate::error::{Error, ErrorKind, Result};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The environment variable that turns the rule off (`any`).
pub const ENV_CACHE_TRUST: &str = "RKL_CACHE_TRUST";

/// Whether the caller opted out of the rule.
fn trusts_any() -> bool {
    std::env::var(ENV_CACHE_TRUST).is_ok_and(|v| v.trim() == "any")
}

fn untrusted(what: &str, path: &Path, why: String) -> Error {
    Error::new(
        ErrorKind::CacheUntrusted,
        format!(
            "prompt cache {what} '{}' {why}, so rkl does not trust it (set {ENV_CACHE_TRUST}=any to allow caches of others)",
            path.display()
        ),
    )
}

fn owner_is_trusted(uid: u32) -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

/// Checks a cache file (`what`: "manifest" or "payload") by the metadata of
/// its open descriptor.
pub fn check_file(what: &str, path: &Path, meta: &Metadata) -> Result<()> {
    if trusts_any() {
        return Ok(());
    }
    if !owner_is_trusted(meta.uid()) {
        return Err(untrusted(what, path, format!("belongs to another user (uid {})", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted(
            what,
            path,
            format!("is writable by its group or others (mode {:o})", meta.mode() & 0o777),
        ));
    }
    Ok(())
}

/// Checks the directory a cache's files are in.
pub fn check_dir(dir: &Path) -> Result<()> {
    if trusts_any() {
        return Ok(());
    }
    let meta = std::fs::metadata(dir).map_err(|e| {
        Error::from_os(ErrorKind::Io, format!("cannot read the cache directory '{}': {e}", dir.display()), &e)
    })?;
    if !owner_is_trusted(meta.uid()) {
        return Err(untrusted("directory", dir, format!("belongs to another user (uid {})", meta.uid())));
    }
    let sticky = meta.mode() & 0o1000 != 0;
    if meta.mode() & 0o022 != 0 && !sticky {
        return Err(untrusted(
            "directory",
            dir,
            format!("is writable by its group or others without the sticky bit (mode {:o})", meta.mode() & 0o7777),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writable_files_and_open_directories_are_refused() {
        let dir = std::env::temp_dir().join(format!("rkl-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.json");
        std::fs::write(&file, b"{}").unwrap();
        let set = |p: &Path, mode: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        set(&dir, 0o755);
        set(&file, 0o600);
        check_file("manifest", &file, &std::fs::metadata(&file).unwrap()).unwrap();
        check_dir(&dir).unwrap();
        set(&file, 0o664);
        let err = check_file("manifest", &file, &std::fs::metadata(&file).unwrap()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CacheUntrusted);
        assert!(err.message().contains("mode 664"), "{err}");
        set(&dir, 0o777);
        assert_eq!(check_dir(&dir).unwrap_err().kind(), ErrorKind::CacheUntrusted);
        set(&dir, 0o1777);
        check_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
