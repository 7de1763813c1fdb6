//! The result callback rkl gives the runtime, and the table of runs in flight.
//!
//! The runtime gets a run *id* as userdata, never a pointer: a callback that
//! arrives late, twice, or from a run rkl does not know finds no entry and is
//! ignored instead of touching freed memory.

use super::dispatch::Watch;
use super::layout_common::{call_state, PerfStat, RkllmResult};
use super::run_queue::{Batch, RunEvent, RunQueue};
use std::ffi::{c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// State one run shares between the dispatcher, the callback and the consumer.
pub struct RunShared {
    id: usize,
    events: RunQueue,
    abort_requested: AtomicBool,
    /// True while `rkllm_run` is executing; `rkllm_abort` is only ever called
    /// while holding this lock with the value true, so the handle cannot be
    /// destroyed under an abort.
    running: Mutex<bool>,
    /// Tokens after this many are dropped (0: no limit).
    token_limit: u32,
    tokens: AtomicU32,
    /// When an abort was first asked for.
    aborted_at: OnceLock<Instant>,
    /// The dispatcher's progress watch, told of every callback.
    watch: OnceLock<Arc<Watch>>,
}

static NEXT_RUN_ID: AtomicUsize = AtomicUsize::new(1);
static ACTIVE: Mutex<Vec<Arc<RunShared>>> = Mutex::new(Vec::new());
/// See [`RunShared::hand_over_each_token`].
static HAND_OVER: AtomicBool = AtomicBool::new(false);

fn active() -> MutexGuard<'static, Vec<Arc<RunShared>>> {
    // The table holds no invariant a panic could break half-way.
    ACTIVE.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl RunShared {
    /// From now on, every token callback in this process returns to the
    /// runtime only once the run's reader is done with the token (took it
    /// and came back for the next event), or is gone. For isolation mode's
    /// worker, whose reader sends each text to the parent: a runtime that
    /// crashes right after a callback then cannot take text with it that it
    /// had already handed over (nor run ahead of the reader).
    pub fn hand_over_each_token() {
        HAND_OVER.store(true, Ordering::Release);
    }

    /// A new run; its events are read with [`RunShared::next_event`].
    pub fn new(token_limit: u32) -> Arc<RunShared> {
        Arc::new(RunShared {
            id: NEXT_RUN_ID.fetch_add(1, Ordering::Relaxed),
            events: RunQueue::default(),
            abort_requested: AtomicBool::new(false),
            running: Mutex::new(false),
            token_limit,
            tokens: AtomicU32::new(0),
            aborted_at: OnceLock::new(),
            watch: OnceLock::new(),
        })
    }

    /// Reports every callback of this run to `watch` as progress.
    pub fn attach_watch(&self, watch: Arc<Watch>) {
        let _ = self.watch.set(watch);
    }

    /// When an abort was first asked for, if it was.
    pub fn aborted_at(&self) -> Option<Instant> {
        self.aborted_at.get().copied()
    }

    /// The value handed to the runtime as userdata.
    pub fn userdata(&self) -> *mut c_void {
        self.id as *mut c_void
    }

    /// Queues an event (not a token: see `on_callback`) for the consumer.
    pub fn send(&self, event: RunEvent) {
        self.events.push(event, None);
    }

    /// The run's next event, waiting up to `wait` for one. A token's text
    /// replaces the contents of `text`. `batch` is the reader's own, kept
    /// from call to call.
    pub fn next_event(&self, wait: Duration, batch: &mut Batch, text: &mut Vec<u8>) -> Option<RunEvent> {
        self.events.pop(wait, batch, text)
    }

    /// The reader of the run's events is gone: callbacks no longer wait for
    /// it (see [`RunShared::hand_over_each_token`]).
    pub fn reader_gone(&self) {
        self.events.close();
    }

    /// Whether an abort was asked for.
    pub fn abort_requested(&self) -> bool {
        self.abort_requested.load(Ordering::Acquire)
    }

    /// Asks the run to stop. `call_abort` is invoked (to call `rkllm_abort`)
    /// only while the run is inside `rkllm_run`.
    pub fn request_abort(&self, call_abort: impl FnOnce()) {
        let _ = self.aborted_at.set(Instant::now());
        self.abort_requested.store(true, Ordering::Release);
        // Text after an abort is dropped, so callbacks need not wait for the
        // reader any more; and a runtime whose abort waited for its callback
        // to return must not find it waiting for this very thread.
        self.events.close();
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if *running {
            call_abort();
        }
    }

    /// Runs `run` (the `rkllm_run` call) with this run registered for
    /// callbacks, unless an abort came first. Returns `None` when skipped.
    pub fn execute(self: &Arc<RunShared>, run: impl FnOnce() -> i32) -> Option<i32> {
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if self.abort_requested() {
                return None;
            }
            *running = true;
        }
        active().push(self.clone());
        let code = run();
        active().retain(|r| r.id != self.id);
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = false;
        Some(code)
    }

    fn on_callback(&self, result: *const RkllmResult, state: i32) {
        if let Some(watch) = self.watch.get() {
            watch.touch();
        }
        match state {
            call_state::NORMAL | call_state::WAITING => {
                if self.abort_requested() {
                    return;
                }
                let seen = self.tokens.fetch_add(1, Ordering::Relaxed) + 1;
                if self.token_limit != 0 && seen > self.token_limit {
                    return;
                }
                let text = if result.is_null() {
                    None
                } else {
                    // SAFETY: the runtime passes a valid RkllmResult for the
                    // duration of the callback; a non-NULL text is a
                    // NUL-terminated string valid for the same time. The bytes
                    // are copied into the queue before returning.
                    unsafe {
                        let text = (*result).text;
                        (!text.is_null()).then(|| CStr::from_ptr(text).to_bytes())
                    }
                };
                let event = RunEvent::Token { waiting: state == call_state::WAITING, text_len: None };
                let number = self.events.push(event, text);
                if HAND_OVER.load(Ordering::Acquire) {
                    self.events.wait_handled(number);
                }
            }
            call_state::FINISH => {
                let perf = if result.is_null() {
                    PerfStat::default()
                } else {
                    // SAFETY: as above, `result` is valid during the callback;
                    // PerfStat is plain data and is copied out.
                    unsafe { (*result).perf }
                };
                self.send(RunEvent::Finish(perf));
            }
            call_state::ERROR => self.send(RunEvent::Error),
            other => log::warn!("ignored a runtime callback with unknown state {other}"),
        }
    }
}

/// The result callback registered with the runtime for every handle.
pub unsafe extern "C" fn result_callback(result: *mut RkllmResult, userdata: *mut c_void, state: i32) -> i32 {
    // Unwinding into the runtime's C frames would be undefined behaviour.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let id = userdata as usize;
        // Not under the table's lock: a callback may wait for its reader.
        let run = active().iter().find(|r| r.id == id).cloned();
        if let Some(run) = run {
            run.on_callback(result, state);
        } else {
            log::debug!("ignored a runtime callback for unknown run {id:#x} (state {state})");
        }
    }));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_an_abort_a_token_callback_does_not_wait_for_the_reader() {
        let shared = RunShared::new(0);
        let number = shared.events.push(RunEvent::Token { waiting: false, text_len: None }, Some(b"x"));
        let mut called = false;
        shared.request_abort(|| called = true);
        assert!(!called, "rkllm_abort is called only while the run is inside rkllm_run");
        // Nobody reads this run: without the abort this would wait forever.
        let (done, finished) = std::sync::mpsc::channel();
        let waiter = shared.clone();
        std::thread::spawn(move || {
            waiter.events.wait_handled(number);
            let _ = done.send(());
        });
        assert!(finished.recv_timeout(Duration::from_secs(10)).is_ok(), "the callback still waits after the abort");
    }
}
