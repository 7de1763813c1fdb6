//! The worker process: starting it with its end of a socket pair as its
//! stdin and nothing else of ours, killing it with everything it started,
//! and saying how it ended.
//!
//! The worker leads a process group of its own, so that a kill reaches the
//! children it (or the vendor runtime) started too: a child that kept the
//! worker's socket open must not keep rkl waiting.

use crate::config::ENV_ISOLATED;
use crate::error::{Error, ErrorKind, Result};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The argument that tells `rkl-host` it was started by rkl.
pub const WORKER_ARG: &str = "--rkl-worker";

/// A started worker process.
pub struct Process {
    pid: u32,
    child: Mutex<ChildState>,
}

struct ChildState {
    child: Child,
    /// How it ended, once reaped; `Err` when its status was lost (someone
    /// else reaped it).
    ended: Option<std::result::Result<ExitStatus, String>>,
}

impl Process {
    /// Starts `program` in `cwd` and returns it with the parent's end of the
    /// socket pair. The worker gets the other end as its stdin; stdout and
    /// stderr are inherited (the runtime prints there, as in-process); every
    /// other descriptor of the caller's is closed at exec, whether or not it
    /// was opened close-on-exec.
    pub fn spawn(program: &Path, cwd: &Path) -> Result<(Process, UnixStream)> {
        let io = |e: std::io::Error| {
            Error::from_os(ErrorKind::Io, format!("cannot start the worker '{}': {e}", program.display()), &e)
        };
        let (ours, theirs) = UnixStream::pair().map_err(io)?;
        let mut command = Command::new(program);
        command
            .arg(WORKER_ARG)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            // The worker runs the runtime in-process, whatever the parent's
            // environment says.
            .env_remove(ENV_ISOLATED)
            .current_dir(cwd)
            .process_group(0);
        // SAFETY: the hook runs in the forked child before exec and only
        // makes system calls (close_range, getrlimit, fcntl), which are
        // async-signal-safe; it allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(|| {
                close_at_exec_from(3);
                Ok(())
            });
        }
        // While an in-process init has fd 1 routed to read the runtime's
        // version, the worker gets the real stdout instead of that pipe.
        if let Some(stdout) = crate::runtime::real_stdout() {
            command.stdout(Stdio::from(stdout));
        }
        let child = command.spawn().map_err(io)?;
        // The Command (and with it our copy of the worker's end) is gone, so
        // the socket reports the end as soon as the worker exits.
        log::debug!("started worker '{}' as pid {}", program.display(), child.id());
        Ok((Process { pid: child.id(), child: Mutex::new(ChildState { child, ended: None }) }, ours))
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChildState> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends SIGKILL to the worker's process group (the worker and what it
    /// started), unless the worker was already reaped: its pid may name
    /// another group by then.
    pub fn kill(&self) {
        let state = self.lock();
        if state.ended.is_none() {
            self.kill_group();
        }
    }

    /// SIGKILL to the group the worker leads; the caller holds the state
    /// lock and the worker is not reaped yet, so the group id is still ours.
    fn kill_group(&self) {
        // SAFETY: kill(2) with a negative pid signals a process group; no
        // memory is passed.
        if unsafe { libc::kill(-(self.pid as libc::pid_t), libc::SIGKILL) } != 0 {
            log::debug!("killing worker group {}: {}", self.pid, std::io::Error::last_os_error());
        }
    }

    /// Whether the worker has exited, without reaping it.
    fn has_exited(&self) -> bool {
        // SAFETY: `info` is a zeroed siginfo_t owned by this frame, which
        // waitid fills; WNOWAIT leaves the child to be reaped by try_wait.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
            libc::waitid(libc::P_PID, self.pid as libc::id_t, &mut info, flags) == 0 && info.si_pid() != 0
        }
    }

    /// Waits up to `timeout` for the worker to end and reaps it; `None` if it
    /// is still running.
    pub fn wait(&self, timeout: Duration) -> Option<std::result::Result<ExitStatus, String>> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut state = self.lock();
                if state.ended.is_none() && self.has_exited() {
                    // What it left running goes with it, before the reap
                    // frees the group id.
                    self.kill_group();
                    match state.child.try_wait() {
                        Ok(Some(status)) => state.ended = Some(Ok(status)),
                        Ok(None) => {}
                        Err(e) => state.ended = Some(Err(format!("its exit status is unknown ({e})"))),
                    }
                }
                if let Some(ended) = &state.ended {
                    return Some(ended.clone());
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Never leave a worker behind, nor a zombie.
        self.kill();
        let _ = self.wait(Duration::from_secs(5));
    }
}

/// Marks every descriptor from `first` up close-on-exec. Runs between fork
/// and exec: system calls only.
fn close_at_exec_from(first: libc::c_int) {
    // SAFETY: close_range(2) takes no pointers; CLOSE_RANGE_CLOEXEC only
    // sets flags (std's own exec-error pipe is close-on-exec already).
    let marked = unsafe {
        libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC)
    };
    if marked == 0 {
        return;
    }
    // Kernels before 5.11: every descriptor below the limit, one by one.
    // SAFETY: `limit` is a plain struct owned by this frame that getrlimit
    // fills; fcntl(F_SETFD) on a closed descriptor only fails with EBADF.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        let top =
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 { limit.rlim_cur.min(1 << 20) } else { 1 << 16 };
        for fd in first..top as libc::c_int {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// How a worker ended, for messages: "died of SIGSEGV", "exited with status 3".
pub fn describe(ended: &std::result::Result<ExitStatus, String>) -> String {
    match ended {
        Ok(status) => match (status.signal(), status.code()) {
            (Some(signal), _) => format!("died of {}", signal_name(signal)),
            (None, Some(code)) => format!("exited with status {code}"),
            (None, None) => format!("ended ({status})"),
        },
        Err(why) => format!("ended; {why}"),
    }
}

/// The name of a signal number ("SIGSEGV"), or "signal N".
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described() {
        assert_eq!(describe(&Ok(ExitStatus::from_raw(libc::SIGSEGV))), "died of SIGSEGV");
        assert_eq!(describe(&Ok(ExitStatus::from_raw(libc::SIGABRT | 0x80))), "died of SIGABRT");
        assert_eq!(describe(&Ok(ExitStatus::from_raw(3 << 8))), "exited with status 3");
        assert_eq!(signal_name(77), "signal 77");
    }
}
