//! Finding the worker program, `rkl-host`.
//!
//! The rule: the configured `host_path`, else `RKL_HOST`, names it — a
//! value with a `/` is a path (relative ones from the current directory), a
//! bare name is looked up in `PATH` as a shell would; nothing else is tried
//! then. Unnamed, the first of: beside the file this code was loaded from
//! (`librkl.so`, or the program itself when linked statically), in
//! `../libexec`, `../../libexec` or `../bin` from there, beside the running
//! executable, then each `PATH` directory. What is found is made absolute,
//! and that absolute path is the one started: the file checked is the file
//! run, whatever the worker's working directory.

use crate::error::{Error, ErrorKind, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Environment variable naming the worker program.
pub const ENV_HOST: &str = "RKL_HOST";
/// The worker program's file name.
pub const HOST_NAME: &str = "rkl-host";

fn is_program(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The worker program to start.
pub fn locate(configured: Option<&Path>) -> Result<PathBuf> {
    let explicit = configured
        .map(|p| (p.to_path_buf(), "host_path"))
        .or_else(|| std::env::var_os(ENV_HOST).filter(|v| !v.is_empty()).map(|v| (PathBuf::from(v), ENV_HOST)));
    if let Some((path, from)) = explicit {
        if !path.as_os_str().as_encoded_bytes().contains(&b'/') {
            let on_path: Vec<PathBuf> = path_dirs().into_iter().map(|dir| dir.join(&path)).collect();
            return on_path.iter().find(|p| is_program(p)).cloned().ok_or_else(|| {
                not_found(format!("{from} names '{}', a bare name, and no PATH directory holds it", path.display()))
            });
        }
        let path = absolute(&path);
        if is_program(&path) {
            return Ok(path);
        }
        return Err(not_found(format!("{from} names '{}', which is not an executable file", path.display())));
    }
    let mut tried = Vec::new();
    for candidate in candidates() {
        if is_program(&candidate) {
            return Ok(candidate);
        }
        tried.push(candidate.display().to_string());
    }
    Err(not_found(format!("looked in {}", tried.join(", "))))
}

fn not_found(detail: String) -> Error {
    Error::new(
        ErrorKind::RuntimeNotFound,
        format!("isolation mode needs the worker program {HOST_NAME}, and it was not found: {detail}; set {ENV_HOST} to its path"),
    )
}

fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = loaded_from().as_deref().and_then(Path::parent) {
        out.push(dir.join(HOST_NAME));
        out.push(dir.join("../libexec").join(HOST_NAME));
        // Multiarch library directories (lib/aarch64-linux-gnu).
        out.push(dir.join("../../libexec").join(HOST_NAME));
        out.push(dir.join("../bin").join(HOST_NAME));
    }
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        out.push(dir.join(HOST_NAME));
    }
    out.extend(path_dirs().into_iter().map(|dir| dir.join(HOST_NAME)));
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// The `PATH` directories, absolute (an empty entry is the current
/// directory, as for a shell).
fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| absolute(&dir)).collect())
        .unwrap_or_default()
}

/// `path` from the current directory (an empty one is that directory),
/// unchanged when that is unknown.
fn absolute(path: &Path) -> PathBuf {
    let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The file this function's code was mapped from, read from
/// `/proc/self/maps`.
fn loaded_from() -> Option<PathBuf> {
    let here = loaded_from as fn() -> Option<PathBuf> as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| mapping_of(line, here))
}

/// The path of a `/proc/self/maps` line when its range holds `addr`.
fn mapping_of(line: &str, addr: usize) -> Option<PathBuf> {
    let mut fields = line.splitn(6, ' ');
    let (start, end) = fields.next()?.split_once('-')?;
    let (start, end) = (usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?);
    if !(start..end).contains(&addr) {
        return None;
    }
    let path = fields.nth(4)?.trim_start();
    path.starts_with('/').then(|| PathBuf::from(path.strip_suffix(" (deleted)").unwrap_or(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_are_parsed() {
        let line = "7f00-7f80 r-xp 00001000 08:01 1234                       /usr/lib/librkl.so.0.1.0";
        assert_eq!(mapping_of(line, 0x7f10), Some(PathBuf::from("/usr/lib/librkl.so.0.1.0")));
        assert_eq!(mapping_of(line, 0x7f80), None);
        assert_eq!(mapping_of("7f00-7f80 rw-p 00000000 00:00 0 ", 0x7f10), None);
        assert_eq!(
            mapping_of("7f00-7f80 r-xp 0 08:01 9   /a b/x.so (deleted)", 0x7f00),
            Some(PathBuf::from("/a b/x.so"))
        );
    }

    #[test]
    fn this_code_is_found_in_the_test_program() {
        let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
        assert_eq!(loaded_from().unwrap().canonicalize().unwrap(), exe);
    }

    #[test]
    fn candidates_are_absolute() {
        assert!(candidates().iter().all(|p| p.is_absolute()), "{:?}", candidates());
    }

    #[test]
    fn an_explicit_path_must_be_a_program() {
        let err = locate(Some(Path::new("/nonexistent/rkl-host"))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeNotFound);
        assert!(err.message().contains("host_path"), "{err}");
    }
}
