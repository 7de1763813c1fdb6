//! The runtime's version, which it only ever prints to stdout at init
//! ("rkllm-runtime version: 1.2.1, ..."). rkl listens to stdout during the
//! first init on each runtime and passes every byte through unchanged.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

/// Most bytes kept for parsing; everything is still passed through.
const KEEP: usize = 64 * 1024;

/// The version in a runtime's log text, if it printed one.
pub fn parse(log: &str) -> Option<String> {
    const MARK: &str = "rkllm-runtime version: ";
    let rest = &log[log.find(MARK)? + MARK.len()..];
    let version: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    (!version.is_empty() && version.chars().next().is_some_and(|c| c.is_ascii_digit())).then_some(version)
}

/// Runs `f` with file descriptor 1 routed through a pipe whose reader
/// forwards everything to the real stdout at once and keeps a copy. Output
/// of other threads in the meantime is forwarded too, in order. If the
/// pipe cannot be set up, `f` simply runs.
pub fn capture_stdout<R>(f: impl FnOnce() -> R) -> (R, String) {
    let _ = std::io::stdout().flush();
    // SAFETY: fflush(NULL) flushes every C stdio stream; no pointer is read.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    // SAFETY: dup of fd 1 returns a new descriptor we own (or -1).
    let saved = unsafe { libc::dup(1) };
    if saved < 0 {
        return (f(), String::new());
    }
    // SAFETY: `saved` is a fresh descriptor owned from here on.
    let saved = unsafe { OwnedFd::from_raw_fd(saved) };
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return (f(), String::new());
    }
    // SAFETY: both descriptors are fresh and owned from here on.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let passthrough = match saved.try_clone() {
        Ok(fd) => fd,
        Err(_) => return (f(), String::new()),
    };
    let (kept_tx, kept_rx) = mpsc::channel();
    let tee = std::thread::Builder::new().name("rkl-stdout".into()).spawn(move || {
        let mut reader = std::fs::File::from(reader);
        let mut out = std::fs::File::from(passthrough);
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
            if n == 0 {
                break;
            }
            let _ = out.write_all(&buf[..n]);
            if kept.len() < KEEP {
                kept.extend_from_slice(&buf[..n.min(KEEP - kept.len())]);
            }
        }
        let _ = kept_tx.send(String::from_utf8_lossy(&kept).into_owned());
    });
    if tee.is_err() {
        return (f(), String::new());
    }
    // SAFETY: both descriptors are open; dup2 atomically points fd 1 at the pipe.
    let routed = unsafe { libc::dup2(writer.as_raw_fd(), 1) } >= 0;
    drop(writer);
    let result = f();
    let _ = std::io::stdout().flush();
    // SAFETY: as above.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    if routed {
        // SAFETY: `saved` is open; this restores the real stdout and closes
        // the last write end of the pipe, which ends the reader.
        unsafe { libc::dup2(saved.as_raw_fd(), 1) };
    }
    // A runtime that handed fd 1 to a process of its own would keep the
    // pipe open; never wait long for the copy.
    let kept = kept_rx.recv_timeout(Duration::from_millis(500)).unwrap_or_default();
    (result, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_version_in_the_runtime_log() {
        assert_eq!(parse("I rkllm: rkllm-runtime version: 1.2.1, rknpu driver version: 0.9.8").as_deref(), Some("1.2.1"));
        assert_eq!(parse("I rkllm: rkllm-runtime version: 1.3.0 (simulator)\n").as_deref(), Some("1.3.0"));
        assert_eq!(parse("no version here"), None);
        assert_eq!(parse("rkllm-runtime version: unknown"), None);
    }
}
