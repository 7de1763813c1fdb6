//! The parent's side of one worker process: sending requests, routing the
//! replies to whoever waits for them, and the watchdog that kills a worker
//! which stopped making progress or does not stop after an abort.
//!
//! Three threads per worker: the callers (any number), one reader that owns
//! the socket's reading half, one watchdog. When the worker's socket ends,
//! the reader reaps the process and hands every request still open a
//! [`Event::Gone`] that says how the worker ended. The watchdog also looks
//! for the process's end itself and then shuts the socket down, so that a
//! process which inherited the worker's end cannot keep anyone waiting.
//!
//! Progress, for `call_timeout`, is a reply to a request or a heartbeat
//! whose work count went up: a worker repeating heartbeats is stuck.

use super::process::{describe, Process};
use super::protocol::{encode, read_message, Reply, Request};
use crate::error::{Error, ErrorKind, Result};
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How often the watchdog looks while requests are open.
const WATCH_TICK: Duration = Duration::from_millis(10);
/// How often it looks whether an idle worker is still running.
const IDLE_TICK: Duration = Duration::from_millis(100);
/// How long the reader waits for a worker whose socket ended to exit.
const REAP_WAIT: Duration = Duration::from_secs(10);

/// Why rkl ended a worker itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// No progress for `call_timeout`.
    Timeout(Duration),
    /// A run did not stop within `abort_grace` after an abort.
    AbortGrace(Duration),
    /// The model was closed.
    Closing,
    /// The model was restarted.
    Restart,
}

impl EndReason {
    fn describe(self) -> String {
        match self {
            EndReason::Timeout(limit) => format!("no progress for {} ms (call_timeout)", limit.as_millis()),
            EndReason::AbortGrace(grace) => {
                format!("still running {} ms after an abort (abort_grace)", grace.as_millis())
            }
            EndReason::Closing => "the model was closed".into(),
            EndReason::Restart => "the model was restarted".into(),
        }
    }
}

/// How a worker ended.
#[derive(Clone, Debug)]
pub(crate) struct Death {
    pub pid: u32,
    /// Set when rkl ended it.
    pub reason: Option<EndReason>,
    /// "died of SIGSEGV", "exited with status 0".
    pub how: String,
}

impl Death {
    /// The error for a request that was open, doing `during`, when the worker ended.
    pub fn error(&self, during: &str) -> Error {
        let pid = self.pid;
        match self.reason {
            None => Error::new(
                ErrorKind::RuntimeCrashed,
                format!("the runtime process (rkl-host, pid {pid}) {} during {during}; the model is reopened on the next call", self.how),
            ),
            Some(EndReason::Timeout(limit)) => Error::new(
                ErrorKind::Timeout,
                format!(
                    "the runtime made no progress for {} ms during {during} (call_timeout); its process (rkl-host, pid {pid}) was killed and the model is reopened on the next call",
                    limit.as_millis()
                ),
            ),
            Some(EndReason::AbortGrace(grace)) => Error::new(
                ErrorKind::RuntimeCrashed,
                format!(
                    "the runtime did not stop within {} ms of an abort (abort_grace), so its process (rkl-host, pid {pid}) was killed during {during}; the model is reopened on the next call",
                    grace.as_millis()
                ),
            ),
            Some(EndReason::Closing) => Error::new(ErrorKind::Closed, "the model is closed"),
            Some(EndReason::Restart) => Error::new(ErrorKind::Aborted, format!("the model was restarted during {during}")),
        }
    }

    /// One line for logs: "rkl-host pid 7 died of SIGSEGV".
    pub fn summary(&self) -> String {
        match self.reason {
            None => format!("rkl-host pid {} {}", self.pid, self.how),
            Some(reason) => format!("rkl-host pid {} was ended by rkl: {}", self.pid, reason.describe()),
        }
    }

    /// Whether a run that was asked to stop counts as aborted (rather than
    /// failed) when the worker ended this way.
    pub fn ends_aborted_runs(&self) -> bool {
        matches!(self.reason, Some(EndReason::AbortGrace(_) | EndReason::Closing | EndReason::Restart))
    }

    /// Whether the worker was ended because the model was closed or
    /// restarted, which stops every run of it as an abort does.
    pub fn aborts_every_run(&self) -> bool {
        matches!(self.reason, Some(EndReason::Closing | EndReason::Restart))
    }
}

/// What a waiting request receives.
#[derive(Debug)]
pub(crate) enum Event {
    Reply(Reply),
    /// The worker ended before the request did; with when the request was
    /// asked to stop, if it was.
    Gone(Death, Option<Instant>),
}

/// What the parent side knows of one request beyond its replies; shared by
/// the reader thread, the watchdog and whoever waits for the request.
#[derive(Default, Debug)]
pub(crate) struct RequestFlags {
    /// When the caller first asked the run to stop.
    aborted_at: OnceLock<Instant>,
    /// Text of the run arrived after that and was dropped.
    dropped_text: AtomicBool,
}

impl RequestFlags {
    /// When the run was first asked to stop, if it was.
    pub fn aborted_at(&self) -> Option<Instant> {
        self.aborted_at.get().copied()
    }

    /// Whether the run was asked to stop: from then on its text is not
    /// delivered, as in-process (text the worker sent before the abort
    /// reached it may still be on its way).
    pub fn is_aborted(&self) -> bool {
        self.aborted_at.get().is_some()
    }

    /// Marks the run as asked to stop (the first time counts).
    pub fn abort(&self, now: Instant) {
        let _ = self.aborted_at.set(now);
    }

    /// Records that text of the run was dropped after an abort.
    pub fn drop_text(&self) {
        self.dropped_text.store(true, Ordering::Relaxed);
    }

    /// Whether text of the run was dropped after an abort.
    pub fn dropped_text(&self) -> bool {
        self.dropped_text.load(Ordering::Relaxed)
    }
}

/// A request sent: its id, where its replies arrive, and its flags.
pub(crate) struct Submitted {
    pub id: u64,
    pub events: Receiver<Event>,
    pub flags: Arc<RequestFlags>,
}

struct Entry {
    events: Sender<Event>,
    /// A generation or a cache save: stopped by aborts.
    run: bool,
    flags: Arc<RequestFlags>,
}

struct State {
    open: HashMap<u64, Entry>,
    last_progress: Instant,
    /// The highest work count a heartbeat reported.
    work_seen: u64,
    ending: Option<EndReason>,
    death: Option<Death>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The limits the watchdog enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub call_timeout: Option<Duration>,
    pub abort_grace: Duration,
}

/// One worker process and the connection to it.
pub(crate) struct Worker {
    next_id: AtomicU64,
    process: Arc<Process>,
    writer: Mutex<UnixStream>,
    shared: Arc<Shared>,
    limits: Limits,
}

impl Worker {
    /// Starts `program` in `cwd` with the reader and watchdog threads.
    pub fn spawn(program: &Path, cwd: &Path, limits: Limits) -> Result<Arc<Worker>> {
        let (process, socket) = Process::spawn(program, cwd)?;
        let process = Arc::new(process);
        let internal =
            |e: std::io::Error| Error::from_os(ErrorKind::Internal, format!("cannot start a worker thread: {e}"), &e);
        let reading = socket.try_clone().map_err(internal)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                open: HashMap::new(),
                last_progress: Instant::now(),
                work_seen: 0,
                ending: None,
                death: None,
            }),
            wake: Condvar::new(),
        });
        let pid = process.pid();
        {
            let (shared, process) = (shared.clone(), process.clone());
            std::thread::Builder::new()
                .name(format!("rkl-read-{pid}"))
                .spawn(move || read_loop(&shared, &process, reading))
                .map_err(internal)?;
        }
        {
            let (shared, process) = (shared.clone(), process.clone());
            let socket = socket.try_clone().map_err(internal)?;
            std::thread::Builder::new()
                .name(format!("rkl-watch-{pid}"))
                .spawn(move || watch_loop(&shared, &process, &socket, limits))
                .map_err(internal)?;
        }
        Ok(Arc::new(Worker { next_id: AtomicU64::new(1), process, writer: Mutex::new(socket), shared, limits }))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether the worker ended or is being ended.
    pub fn is_gone(&self) -> bool {
        let state = self.shared.lock();
        state.death.is_some() || state.ending.is_some()
    }

    /// How it ended, once it has.
    pub fn death(&self) -> Option<Death> {
        self.shared.lock().death.clone()
    }

    /// Sends the request `make(id)` and returns its id, where its replies
    /// arrive and its flags (`flags`, given by the caller so that it can
    /// register them before the request exists). `run`: abortable (a
    /// generation or a cache save).
    pub fn submit(&self, run: bool, flags: Arc<RequestFlags>, make: impl FnOnce(u64) -> Request) -> Result<Submitted> {
        let (sender, events) = unbounded();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame =
            encode(&make(id)).map_err(|e| Error::invalid(format!("cannot send the request to the worker: {e}")))?;
        // Registered and sent under the writer's lock, as `abort_all` marks
        // and sends: an abort that finds this request open reaches the
        // worker after it.
        let socket = self.writer();
        {
            let mut state = self.shared.lock();
            if let Some(death) = &state.death {
                return Err(death.error("the call"));
            }
            if let Some(reason) = state.ending {
                let death = Death { pid: self.pid(), reason: Some(reason), how: "is being stopped".into() };
                return Err(death.error("the call"));
            }
            if state.open.is_empty() {
                // The watchdog measures progress from now, not from the
                // last request's end.
                state.last_progress = Instant::now();
            }
            state.open.insert(id, Entry { events: sender, run, flags: flags.clone() });
        }
        self.shared.wake.notify_all();
        // A failed send means the worker is gone; the reader then ends this
        // request with how it went.
        self.send_on(&socket, &frame);
        drop(socket);
        log::trace!("sent request {id} to worker {}", self.pid());
        if run && flags.is_aborted() {
            // Aborted before it was sent (`abort_run` found no entry to
            // notify): the worker must hear it too, or the watchdog would
            // hold the run to the abort grace while it runs to its end.
            self.notify(&Request::Abort { id });
        }
        Ok(Submitted { id, events, flags })
    }

    /// Sends a request that has no reply (abort, close).
    pub fn notify(&self, request: &Request) {
        match encode(request) {
            Ok(frame) => self.send_frame(&frame),
            Err(e) => log::warn!("cannot encode {request:?}: {e}"),
        }
    }

    fn writer(&self) -> MutexGuard<'_, UnixStream> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send_frame(&self, frame: &[u8]) {
        self.send_on(&self.writer(), frame);
    }

    /// Sends `frame` on the socket whose lock the caller holds.
    fn send_on(&self, socket: &UnixStream, frame: &[u8]) {
        if let Err(e) = send_all(socket, frame) {
            log::debug!("writing to worker {}: {e}", self.pid());
        }
    }

    /// Aborts the run `id` with `flags` (the watchdog then holds it to the
    /// abort grace). Once this returns, no more of its text is delivered,
    /// also when its end has already arrived here.
    pub fn abort_run(&self, id: u64, flags: &RequestFlags) {
        flags.abort(Instant::now());
        if self.shared.lock().open.contains_key(&id) {
            self.notify(&Request::Abort { id });
        }
    }

    /// Aborts every run of the worker. Once this returns, no more of their
    /// text is delivered. The worker hears it after every request marked
    /// here (see `submit`), so it also stops a save that it received but
    /// had not started yet.
    ///
    /// It waits for a request being sent at most the abort grace: a worker
    /// that takes no input is then not told, and the watchdog holds its runs
    /// to the grace as it would an ignored abort.
    pub fn abort_all(&self) {
        let frame = match encode(&Request::AbortAll) {
            Ok(frame) => frame,
            Err(e) => return log::warn!("cannot encode AbortAll: {e}"),
        };
        let socket = self.writer_before(Instant::now() + self.limits.abort_grace);
        {
            let state = self.shared.lock();
            let now = Instant::now();
            for entry in state.open.values().filter(|e| e.run) {
                entry.flags.abort(now);
            }
        }
        match socket {
            Some(socket) => {
                if !send_before(&socket, &frame, Instant::now() + self.limits.abort_grace) {
                    log::debug!("worker {} does not read; the abort is left to the watchdog", self.pid());
                }
            }
            None => log::debug!("worker {} takes no input; the abort is left to the watchdog", self.pid()),
        }
    }

    /// Ends the worker with SIGKILL, recording why.
    pub fn kill(&self, reason: EndReason) {
        self.shared.lock().ending.get_or_insert(reason);
        self.process.kill();
    }

    /// Asks the worker to close its model and exit; kills it (and what it
    /// started) when it has not done so within the abort grace plus a
    /// second. Never waits on the socket: a worker that does not read (frozen,
    /// or still receiving a large request) is not asked but given the same
    /// time. Returns once it has ended and every open request has heard.
    pub fn close(&self) {
        let deadline = Instant::now() + self.limits.abort_grace + Duration::from_secs(1);
        let first = {
            let mut state = self.shared.lock();
            let first = state.ending.is_none() && state.death.is_none();
            state.ending.get_or_insert(EndReason::Closing);
            first
        };
        if first {
            let asked = match (encode(&Request::Close), self.writer_before(deadline)) {
                (Ok(frame), Some(socket)) => send_before(&socket, &frame, deadline),
                _ => false,
            };
            if !asked {
                log::debug!("worker {} is not reading; it is not asked to close", self.pid());
            }
        }
        if self.process.wait(deadline.saturating_duration_since(Instant::now())).is_none() {
            log::warn!("worker {} did not exit after close; killing it", self.pid());
            self.process.kill();
        }
        self.wait_death();
    }

    /// The writer, waiting for a request being sent until `deadline` at
    /// most: `None` when it is still busy then (a worker that does not read).
    fn writer_before(&self, deadline: Instant) -> Option<MutexGuard<'_, UnixStream>> {
        loop {
            match self.writer.try_lock() {
                Ok(socket) => return Some(socket),
                Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(std::sync::TryLockError::WouldBlock) => return None,
            }
        }
    }

    /// Blocks until the reader saw the worker end.
    pub fn wait_death(&self) -> Death {
        let mut state = self.shared.lock();
        loop {
            if let Some(death) = &state.death {
                return death.clone();
            }
            state = self.shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let alive = self.shared.lock().death.is_none();
        if alive {
            self.kill(EndReason::Closing);
        }
    }
}

/// Writes all of `frame` with `send(MSG_NOSIGNAL)`: a worker that died must
/// give an error here, never a SIGPIPE that kills the host process.
fn send_all(socket: &UnixStream, mut frame: &[u8]) -> std::io::Result<()> {
    let fd = socket.as_raw_fd();
    while !frame.is_empty() {
        // SAFETY: `fd` is an open socket owned by `socket`, which outlives the
        // call; the pointer and length describe the live slice `frame`.
        let sent = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), libc::MSG_NOSIGNAL) };
        if sent < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        frame = &frame[sent as usize..];
    }
    Ok(())
}

/// Sends `frame`, waiting for room on the socket until `deadline` at most;
/// whether it went out whole. Past the deadline the worker does not read,
/// and whoever called is about to end it (a frame left torn then does not
/// matter).
fn send_before(socket: &UnixStream, mut frame: &[u8], deadline: Instant) -> bool {
    let fd = socket.as_raw_fd();
    while !frame.is_empty() {
        // SAFETY: `fd` is open for the call (owned by `socket`); the pointer
        // and length describe the live slice `frame`.
        let sent =
            unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        if let Ok(n) = usize::try_from(sent) {
            frame = &frame[n..];
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => {}
            _ => return false,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut wanted = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: `wanted` is one pollfd owned by this frame.
        unsafe { libc::poll(&mut wanted, 1, ms) };
    }
    true
}

fn read_loop(shared: &Shared, process: &Process, mut socket: UnixStream) {
    let mut malformed = None;
    loop {
        match read_message::<Reply>(&mut socket) {
            Ok(Some(reply)) => route(shared, reply),
            Ok(None) => break,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                malformed = Some(e.to_string());
                break;
            }
            Err(_) => break, // torn message or reset: the worker died
        }
    }
    if let Some(why) = &malformed {
        log::error!("worker {} sent a malformed message ({why}); killing it", process.pid());
        process.kill();
    }
    let ended = process.wait(REAP_WAIT).unwrap_or_else(|| {
        log::warn!("worker {} closed its socket but did not exit; killing it", process.pid());
        process.kill();
        process.wait(REAP_WAIT).unwrap_or_else(|| Err("it could not be reaped".into()))
    });
    let mut how = describe(&ended);
    if let Some(why) = malformed {
        how = format!("sent a malformed message ({why}) and was killed");
    }
    let open: Vec<Entry> = {
        let mut state = shared.lock();
        let death = Death { pid: process.pid(), reason: state.ending, how };
        if death.reason.is_none() {
            log::error!("the runtime process ended: {}", death.summary());
        }
        state.death = Some(death);
        state.open.drain().map(|(_, entry)| entry).collect()
    };
    shared.wake.notify_all();
    let death = shared.lock().death.clone().expect("just set");
    for entry in open {
        let _ = entry.events.send(Event::Gone(death.clone(), entry.flags.aborted_at()));
    }
}

fn route(shared: &Shared, reply: Reply) {
    let target = {
        let mut state = shared.lock();
        if let Reply::Progress { work } = reply {
            // Only a heartbeat that reports more work than the last one is
            // progress.
            if work > state.work_seen {
                state.work_seen = work;
                state.last_progress = Instant::now();
            }
            return;
        }
        state.last_progress = Instant::now();
        let id = reply.id();
        if reply.is_last() {
            state.open.remove(&id).map(|e| e.events)
        } else {
            match state.open.get(&id) {
                // Text of a run the caller aborted is dropped here already
                // (the stream drops what was routed before the abort).
                Some(entry) if matches!(reply, Reply::Text { .. }) && entry.flags.is_aborted() => {
                    entry.flags.drop_text();
                    return;
                }
                Some(entry) => Some(entry.events.clone()),
                None => None,
            }
        }
    };
    match target {
        Some(events) => {
            let _ = events.send(Event::Reply(reply));
        }
        None => log::debug!("a reply for request {} that nobody waits for", reply.id()),
    }
}

fn watch_loop(shared: &Shared, process: &Process, socket: &UnixStream, limits: Limits) {
    let mut shut = false;
    let mut state = shared.lock();
    loop {
        if state.death.is_some() {
            return;
        }
        drop(state);
        if !shut && process.wait(Duration::ZERO).is_some() {
            // The worker is gone (and reaped): end the reader, whoever else
            // holds the worker's end of the socket. Replies already sent
            // stay readable.
            shut = true;
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        state = shared.lock();
        if state.open.is_empty() || state.ending.is_some() || shut {
            state = shared.wake.wait_timeout(state, IDLE_TICK).map(|(s, _)| s).unwrap_or_else(|p| p.into_inner().0);
            continue;
        }
        let now = Instant::now();
        let stalled = limits.call_timeout.filter(|limit| now.duration_since(state.last_progress) > *limit);
        let late = state
            .open
            .values()
            .any(|e| e.flags.aborted_at().is_some_and(|at| now.duration_since(at) > limits.abort_grace));
        let reason = match (stalled, late) {
            (Some(limit), _) => Some(EndReason::Timeout(limit)),
            (None, true) => Some(EndReason::AbortGrace(limits.abort_grace)),
            (None, false) => None,
        };
        if let Some(reason) = reason {
            log::warn!("killing the runtime process (rkl-host pid {}): {}", process.pid(), reason.describe());
            state.ending = Some(reason);
            drop(state);
            process.kill();
            state = shared.lock();
            continue;
        }
        state = shared.wake.wait_timeout(state, WATCH_TICK).map(|(s, _)| s).unwrap_or_else(|p| p.into_inner().0);
    }
}
