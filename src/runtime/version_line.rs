//! The runtime's version, which it only ever prints to stdout at init
//! ("rkllm-runtime version: 1.2.1, ..."). rkl listens to stdout during the
//! first init on each runtime and passes every byte through unchanged.
//!
//! Listening means pointing file descriptor 1 at a pipe, which affects the
//! whole process, so it is kept short and bounded: it ends as soon as the
//! version line has passed, when the init returns, or after
//! [`MAX_CAPTURE`], whichever comes first (an init that hangs must not keep
//! the process's stdout). One capture runs at a time, and worker processes
//! started meanwhile get the real stdout ([`real_stdout`]).

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most bytes kept for parsing; everything is still passed through.
const KEEP: usize = 64 * 1024;

/// The longest fd 1 stays routed through the pipe.
pub const MAX_CAPTURE: Duration = Duration::from_secs(2);

const MARK: &str = "rkllm-runtime version: ";

/// The version in a runtime's log text, if it printed one.
pub fn parse(log: &str) -> Option<String> {
    let rest = &log[log.find(MARK)? + MARK.len()..];
    // Pre-releases carry letters ("1.2.1b1"), which tell their layouts apart.
    let version: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
    (!version.is_empty() && version.chars().next().is_some_and(|c| c.is_ascii_digit())).then_some(version)
}

/// Whether `kept` holds the whole version line (the mark, then a newline).
fn has_version_line(kept: &[u8]) -> bool {
    let mark = MARK.as_bytes();
    kept.windows(mark.len()).position(|w| w == mark).is_some_and(|at| kept[at..].contains(&b'\n'))
}

/// The capture in progress, if any.
static ACTIVE: Mutex<Option<Arc<Route>>> = Mutex::new(None);
/// Signalled when a capture ends.
static ENDED: Condvar = Condvar::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each holder leaves the value whole before anything can panic.
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn flush_all() {
    let _ = std::io::stdout().flush();
    // SAFETY: fflush(NULL) flushes every C stdio stream; no pointer is read.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}

/// Fd 1 routed through a pipe, and how to undo it.
struct Route {
    /// The real stdout.
    saved: OwnedFd,
    restored: Mutex<bool>,
}

impl Route {
    /// Points fd 1 back at the real stdout (once; later calls do nothing).
    /// Text still in stdio buffers then goes straight to the real stdout.
    /// No flush here: on the reader thread, a flush could wait for a writer
    /// that waits for the reader.
    fn restore(self: &Arc<Route>) {
        {
            let mut restored = lock(&self.restored);
            if *restored {
                return;
            }
            // SAFETY: `saved` is open; dup2 atomically points fd 1 back at
            // it, which drops fd 1's reference to the pipe.
            unsafe { libc::dup2(self.saved.as_raw_fd(), 1) };
            *restored = true;
        }
        let mut active = lock(&ACTIVE);
        if active.as_ref().is_some_and(|r| Arc::ptr_eq(r, self)) {
            *active = None;
        }
        ENDED.notify_all();
    }
}

/// A copy of the real stdout while a capture has fd 1 routed through its
/// pipe, for child processes that must not write into it; `None` otherwise
/// (inherit fd 1).
pub fn real_stdout() -> Option<OwnedFd> {
    let active = lock(&ACTIVE);
    active.as_ref().and_then(|route| route.saved.try_clone().ok())
}

/// Runs `f` with file descriptor 1 routed through a pipe whose reader
/// forwards everything to the real stdout at once and keeps a copy, for at
/// most [`MAX_CAPTURE`]. If the pipe cannot be set up, `f` simply runs.
pub fn capture_stdout<R>(f: impl FnOnce() -> R) -> (R, String) {
    capture_stdout_for(MAX_CAPTURE, f)
}

fn capture_stdout_for<R>(limit: Duration, f: impl FnOnce() -> R) -> (R, String) {
    match start_capture(limit) {
        Some((route, kept)) => {
            let result = f();
            // What the runtime printed into a stdio buffer goes through the
            // pipe while it is still there.
            flush_all();
            route.restore();
            // A runtime that handed fd 1 to a process of its own would keep
            // the pipe open; never wait long for the copy.
            (result, kept.recv_timeout(Duration::from_millis(500)).unwrap_or_default())
        }
        None => (f(), String::new()),
    }
}

/// Routes fd 1 through a pipe read by a thread that forwards and keeps what
/// passes, and that ends the route itself once the version line went by or
/// `limit` passed. Returns the route and where the kept text will arrive.
fn start_capture(limit: Duration) -> Option<(Arc<Route>, mpsc::Receiver<String>)> {
    let mut active = lock(&ACTIVE);
    let waited = Instant::now();
    while active.is_some() {
        let left = (limit * 2).checked_sub(waited.elapsed())?;
        active = ENDED.wait_timeout(active, left).unwrap_or_else(|p| p.into_inner()).0;
    }
    flush_all();
    // Close-on-exec: a process started during the capture (not only rkl's
    // workers) must not inherit this copy of stdout.
    // SAFETY: F_DUPFD_CLOEXEC on fd 1 returns a new descriptor we own (or -1).
    let saved = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 0) };
    if saved < 0 {
        return None;
    }
    // SAFETY: `saved` is a fresh descriptor owned from here on.
    let saved = unsafe { OwnedFd::from_raw_fd(saved) };
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: both descriptors are fresh and owned from here on.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let passthrough = saved.try_clone().ok()?;
    let route = Arc::new(Route { saved, restored: Mutex::new(false) });
    let (kept_tx, kept_rx) = mpsc::channel();
    let tee_route = route.clone();
    let deadline = Instant::now() + limit;
    std::thread::Builder::new()
        .name("rkl-stdout".into())
        .spawn(move || tee(reader, passthrough, &tee_route, deadline, kept_tx))
        .ok()?;
    // SAFETY: both descriptors are open; dup2 atomically points fd 1 at the pipe.
    if unsafe { libc::dup2(writer.as_raw_fd(), 1) } < 0 {
        // Nothing was routed; marking the route restored ends the tee
        // (its pipe closes when `writer` is dropped).
        *lock(&route.restored) = true;
        return None;
    }
    // Fd 1 is now the pipe's only write end.
    drop(writer);
    *active = Some(route.clone());
    Some((route, kept_rx))
}

/// The pipe's reader: forwards every byte to `out` as it comes, keeps a copy
/// until the version line is complete, and ends the route then (or at
/// `deadline`, or when the pipe ends or fails first). Sends the kept text
/// when the route ends for the version line, else at the pipe's end.
fn tee(reader: OwnedFd, out: OwnedFd, route: &Arc<Route>, deadline: Instant, kept_tx: mpsc::Sender<String>) {
    let mut out = std::fs::File::from(out);
    let mut kept = Vec::new();
    let mut sent = false;
    let mut buf = [0u8; 4096];
    loop {
        let routed = !*lock(&route.restored);
        let wait_ms = if routed {
            deadline.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32
        } else {
            -1
        };
        let mut pollfd = libc::pollfd { fd: reader.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut pollfd, 1, wait_ms) };
        if ready == 0 {
            route.restore();
            continue;
        }
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        // SAFETY: `buf` is writable for its length; `reader` is open.
        let n = unsafe { libc::read(reader.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break;
        }
        let bytes = &buf[..n as usize];
        let _ = out.write_all(bytes);
        if !sent && kept.len() < KEEP {
            kept.extend_from_slice(&bytes[..bytes.len().min(KEEP - kept.len())]);
            if has_version_line(&kept) {
                route.restore();
                let _ = kept_tx.send(String::from_utf8_lossy(&kept).into_owned());
                sent = true;
            }
        }
    }
    // The pipe ended or failed: a route still on would stay on for as long
    // as the call runs (no deadline is watched any more), and with no
    // reader left, writes to fd 1 would fail.
    route.restore();
    if !sent {
        let _ = kept_tx.send(String::from_utf8_lossy(&kept).into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_version_in_the_runtime_log() {
        assert_eq!(
            parse("I rkllm: rkllm-runtime version: 1.2.1, rknpu driver version: 0.9.8").as_deref(),
            Some("1.2.1")
        );
        assert_eq!(parse("I rkllm: rkllm-runtime version: 1.3.0 (simulator)\n").as_deref(), Some("1.3.0"));
        assert_eq!(parse("no version here"), None);
        assert_eq!(parse("rkllm-runtime version: unknown"), None);
    }

    #[test]
    fn the_version_line_is_complete_at_its_newline() {
        assert!(!has_version_line(b"I rkllm: rkllm-runtime version: 1.2"));
        assert!(has_version_line(b"boot\nI rkllm: rkllm-runtime version: 1.2.1, driver 0.9\nmore"));
        assert!(!has_version_line(b"a line\nanother\n"));
    }

    /// Fd 1's identity, to tell the real stdout from the pipe.
    fn stdout_identity() -> (u64, u64) {
        // SAFETY: fstat writes into the zeroed struct it is given.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is valid for writing; fd 1 is always open in tests.
        assert_eq!(unsafe { libc::fstat(1, &mut st) }, 0);
        (st.st_dev as u64, st.st_ino as u64)
    }

    fn write_fd1(text: &str) {
        // SAFETY: writes our own bytes to fd 1.
        unsafe { libc::write(1, text.as_ptr().cast(), text.len()) };
    }

    fn wait_for_stdout(identity: (u64, u64), within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if stdout_identity() == identity {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    // The two tests below reroute this test process's fd 1 (other tests'
    // output passes through). One at a time, so that each sees the real
    // stdout before it starts.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn the_capture_ends_when_the_version_line_has_passed() {
        let _serial = lock(&SERIAL);
        let real = stdout_identity();
        let (restored_inside, kept) = capture_stdout_for(Duration::from_secs(30), || {
            assert_ne!(stdout_identity(), real, "fd 1 is routed through the pipe");
            write_fd1("I rkllm: rkllm-runtime version: 7.8.9, test\n");
            wait_for_stdout(real, Duration::from_secs(20))
        });
        assert!(restored_inside, "fd 1 came back while the call still ran");
        assert_eq!(parse(&kept).as_deref(), Some("7.8.9"));
        assert_eq!(stdout_identity(), real);
    }

    /// The descriptors a child process starts with.
    fn child_descriptors() -> Vec<String> {
        let out = std::process::Command::new("sh")
            .args(["-c", "ls /proc/$$/fd"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .expect("sh runs");
        let mut fds: Vec<String> =
            String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
        fds.sort();
        fds
    }

    #[test]
    fn a_child_started_during_a_capture_inherits_no_descriptor_of_it() {
        let _serial = lock(&SERIAL);
        let outside = child_descriptors();
        let (inside, _) = capture_stdout_for(Duration::from_secs(30), child_descriptors);
        assert_eq!(
            inside, outside,
            "a child started during the capture got more descriptors than one started outside it"
        );
    }

    #[test]
    fn a_capture_whose_pipe_was_taken_away_ends_while_the_call_goes_on() {
        let _serial = lock(&SERIAL);
        let real = stdout_identity();
        let (ended_inside, _) = capture_stdout_for(Duration::from_millis(100), || {
            // Someone else points fd 1 elsewhere (here: back at the real
            // stdout) while the call runs: the pipe ends.
            let elsewhere = real_stdout().expect("a capture is on");
            // SAFETY: both descriptors are open.
            assert!(unsafe { libc::dup2(elsewhere.as_raw_fd(), 1) } >= 0);
            drop(elsewhere);
            let start = Instant::now();
            while real_stdout().is_some() {
                if start.elapsed() > Duration::from_secs(10) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            true
        });
        assert!(ended_inside, "the capture still counted as on while the call went on, long after its limit");
        assert_eq!(stdout_identity(), real);
    }

    #[test]
    fn a_call_that_never_returns_in_time_gets_stdout_back_after_the_limit() {
        let _serial = lock(&SERIAL);
        let real = stdout_identity();
        let (restored_inside, kept) = capture_stdout_for(Duration::from_millis(100), || {
            write_fd1("no version from this runtime\n");
            wait_for_stdout(real, Duration::from_secs(20))
        });
        assert!(restored_inside, "fd 1 came back after the limit though the call went on");
        assert_eq!(parse(&kept), None);
        assert_eq!(stdout_identity(), real);
    }
}
