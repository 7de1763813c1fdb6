//! The result callback rkl gives the runtime, and the table of runs in flight.
//!
//! The runtime gets a run *id* as userdata, never a pointer: a callback that
//! arrives late, twice, or from a run rkl does not know finds no entry and is
//! ignored instead of touching freed memory.

use super::dispatch::Watch;
use super::layout_common::{call_state, infer_mode, FloatBlock, PerfStat, ResultHead, RkllmResult};
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
    /// The run's `infer_mode`: other than GENERATE, its float blocks are
    /// collected into `floats` and text is not expected.
    mode: i32,
    floats: Mutex<Floats>,
}

/// Most floats rkl takes from one run's hidden states or logits (1 GiB).
pub const MAX_OUTPUT_FLOATS: usize = 1 << 28;

/// The rows of float blocks a run reported, or what was wrong with them.
#[derive(Default)]
pub struct Floats {
    /// Row after row.
    pub values: Vec<f32>,
    /// Rows so far.
    pub tokens: usize,
    /// Values per row (0 until the first block).
    pub dim: usize,
    /// A block that could not be taken, and why.
    pub error: Option<String>,
}

impl Floats {
    /// Appends `block` (valid only during the callback: copied here).
    ///
    /// # Safety
    /// `block.data` points at `count_a * count_b` readable floats when both
    /// counts are positive, as the runtime promises during a callback.
    unsafe fn append(&mut self, block: FloatBlock) {
        if self.error.is_some() || block.data.is_null() || block.count_a <= 0 || block.count_b <= 0 {
            return;
        }
        let (dim, tokens) = (block.count_a as usize, block.count_b as usize);
        if self.dim != 0 && self.dim != dim {
            self.error = Some(format!("the runtime's rows changed width from {} to {dim}", self.dim));
            return;
        }
        let Some(total) = dim.checked_mul(tokens).and_then(|n| n.checked_add(self.values.len())) else {
            self.error = Some("the runtime reported more floats than fit in memory".into());
            return;
        };
        if total > MAX_OUTPUT_FLOATS {
            self.error = Some(format!("the runtime reported {total} floats; rkl takes at most {MAX_OUTPUT_FLOATS}"));
            return;
        }
        // SAFETY: the caller's promise: dim * tokens floats at data.
        let values = unsafe { std::slice::from_raw_parts(block.data, dim * tokens) };
        self.values.extend_from_slice(values);
        self.tokens += tokens;
        self.dim = dim;
    }
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
    #[cfg(test)]
    pub fn new(token_limit: u32) -> Arc<RunShared> {
        RunShared::with_mode(token_limit, infer_mode::GENERATE)
    }

    /// A new run in `mode` (an `infer_mode` value).
    pub fn with_mode(token_limit: u32, mode: i32) -> Arc<RunShared> {
        Arc::new(RunShared {
            mode,
            floats: Mutex::new(Floats::default()),
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

    /// The float rows the run reported (hidden states or logits).
    pub fn take_floats(&self) -> Floats {
        std::mem::take(&mut *self.floats.lock().unwrap_or_else(|p| p.into_inner()))
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

    /// `perf` is `None` for releases whose result has none.
    fn on_callback(&self, result: *const ResultHead, perf: Option<PerfStat>, state: i32) {
        if let Some(watch) = self.watch.get() {
            watch.touch();
        }
        match state {
            call_state::NORMAL | call_state::WAITING if self.mode != infer_mode::GENERATE => {
                if self.abort_requested() || result.is_null() {
                    return;
                }
                // SAFETY: the runtime passes a valid result for the duration
                // of the callback; its blocks point at their floats as long.
                unsafe {
                    let block =
                        if self.mode == infer_mode::LOGITS { (*result).logits } else { (*result).last_hidden_layer };
                    self.floats.lock().unwrap_or_else(|p| p.into_inner()).append(block);
                }
            }
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
            call_state::FINISH => self.send(RunEvent::Finish(perf.unwrap_or_default())),
            call_state::ERROR => self.send(RunEvent::Error),
            other => log::warn!("ignored a runtime callback with unknown state {other}"),
        }
    }
}

/// Hands a callback to its run, if rkl knows the run.
fn deliver(result: *const ResultHead, perf: impl FnOnce() -> Option<PerfStat>, userdata: *mut c_void, state: i32) {
    // Unwinding into the runtime's C frames would be undefined behaviour.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let id = userdata as usize;
        // Not under the table's lock: a callback may wait for its reader.
        let run = active().iter().find(|r| r.id == id).cloned();
        if let Some(run) = run {
            let perf = if state == call_state::FINISH { perf() } else { None };
            run.on_callback(result, perf, state);
        } else {
            log::debug!("ignored a runtime callback for unknown run {id:#x} (state {state})");
        }
    }));
}

/// The result callback registered with runtimes of 1.2.1 and later.
pub unsafe extern "C" fn result_callback(result: *mut RkllmResult, userdata: *mut c_void, state: i32) -> i32 {
    let perf = || {
        // SAFETY: a non-NULL result is valid during the callback, with
        // perf in these releases; PerfStat is plain data, copied out.
        (!result.is_null()).then(|| unsafe { (*result).perf })
    };
    // The head is the result's first field.
    deliver(result.cast::<ResultHead>(), perf, userdata, state);
    0
}

/// The result callback of 1.2.0 and 1.2.1b1, whose result has no perf and
/// whose callback returns nothing.
pub unsafe extern "C" fn result_callback_void(result: *mut ResultHead, userdata: *mut c_void, state: i32) {
    deliver(result, || None, userdata, state);
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
