//! A pull stream, for callers that cannot take callbacks from C: the
//! `rkl_stream` handle and its registry, `rkl_stream_open`,
//! `rkl_stream_next`, `rkl_stream_read`, `rkl_stream_error_message`,
//! `rkl_stream_stats`, `rkl_stream_abort`, `rkl_stream_close`.

use super::args;
use super::error::{copy_message, FfiError};
use super::handles::{self, Registry, STREAM_TAG};
use super::model::{model_entry, rkl_model};
use super::request::{read_request, rkl_generate_params};
use super::stats::rkl_stats;
use super::status::{rkl_status, RKL_BAD_HANDLE, RKL_INVALID_ARGUMENT, RKL_IN_PROGRESS, RKL_TIMEOUT};
use crate::Step;
use crate::Stream;
use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A generation read by pulling (`rkl_stream_open()`). Opaque like
/// ::rkl_model.
pub struct rkl_stream {
    _private: [u8; 0],
}

/// How long one wait holds the stream's lock, so that rkl_stream_close()
/// from another thread gets in promptly.
const SLICE: Duration = Duration::from_millis(20);

/// What the registry keeps for an open stream.
pub struct StreamEntry {
    closed: AtomicBool,
    state: Mutex<StreamState>,
}

struct StreamState {
    /// `None` once closed (dropping the stream aborts an unfinished run).
    stream: Option<Stream>,
    /// The last text handed out, NUL-terminated; valid until the next call.
    /// Reused, so that reading allocates nothing per token.
    text: String,
    /// The message of the failure rkl_stream_next() returned, if any.
    failure: Option<String>,
    /// Text taken from the generation by rkl_stream_read() and not handed
    /// out yet (it did not fit the caller's buffer); handed out first by
    /// either call. Reused, like `text`.
    pending: String,
    /// A failure met while rkl_stream_read() collected text, returned once
    /// `pending` is empty.
    pending_error: Option<FfiError>,
}

/// Every open stream.
pub static STREAMS: Registry<StreamEntry> = Registry::new(STREAM_TAG, "stream");

impl StreamEntry {
    fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn closed_while_waiting() -> FfiError {
    FfiError::new(RKL_BAD_HANDLE, "the stream was closed by another thread")
}

/// Starts a generation and returns a stream to pull its text from.
///
/// @param model   a handle from rkl_open().
/// @param params  the request; read only during the call (rkl copies it).
/// @param out     receives the stream handle, only on success; valid until
///                rkl_stream_close(), also after the model is closed.
/// @return ::RKL_OK; ::RKL_BAD_HANDLE; ::RKL_NULL_ARGUMENT;
///         ::RKL_INVALID_ARGUMENT; ::RKL_CLOSED; ::RKL_REENTRANT;
///         ::RKL_CACHE_MISMATCH (a prompt cache is loaded and the prompt
///         does not start with its prompt); ::RKL_RUNTIME_TIMEOUT (the
///         runtime is stuck); ::RKL_RUNTIME_CRASHED (isolation mode).
///
/// Thread-safe. The generation queues behind other calls on the runtime and
/// runs while the caller pulls; an unread stream buffers its text.
#[no_mangle]
pub unsafe extern "C" fn rkl_stream_open(
    model: *mut rkl_model,
    params: *const rkl_generate_params,
    out: *mut *mut rkl_stream,
) -> rkl_status {
    ffi_fn!({
        let entry = model_entry(model)?;
        args::require(out, "out")?;
        // SAFETY: the caller promises a readable params struct.
        let request = unsafe { read_request(params)? };
        let stream = entry.model.stream(&request)?;
        let value = STREAMS.insert(StreamEntry {
            closed: AtomicBool::new(false),
            state: Mutex::new(StreamState {
                stream: Some(stream),
                text: String::new(),
                failure: None,
                pending: String::new(),
                pending_error: None,
            }),
        })?;
        // SAFETY: `out` was checked non-NULL; the caller promises it writable.
        unsafe { args::put(out, handles::pointer(value)) };
        Ok(())
    })
}

/// Waits for the next piece of text.
///
/// @param stream      a handle from rkl_stream_open().
/// @param timeout_ms  how long to wait: negative = without limit, 0 = only
///                    look.
/// @param text        receives the text (complete UTF-8 characters,
///                    NUL-terminated), or NULL when the generation is over.
///                    The text is owned by the stream and valid until the
///                    next rkl_stream_next() or rkl_stream_close() on it.
/// @param len         receives the length of the text in bytes (0 at the end).
/// @return ::RKL_OK with text, or with `*text == NULL` at the end (again on
///         every later call; then rkl_stream_stats() has the figures);
///         ::RKL_TIMEOUT when nothing arrived in time (outputs untouched; call
///         again); ::RKL_RUNTIME_FAILED, ::RKL_RUNTIME_TIMEOUT (no progress
///         within `call_timeout_ms`) or ::RKL_RUNTIME_CRASHED (isolation
///         mode) once when the generation failed (the stream then reports
///         the end); ::RKL_BAD_HANDLE (also when another
///         thread closed the stream while this call waited);
///         ::RKL_NULL_ARGUMENT.
///
/// Thread-safe; calls on one stream are served one at a time.
#[no_mangle]
pub unsafe extern "C" fn rkl_stream_next(
    stream: *mut rkl_stream,
    timeout_ms: i32,
    text: *mut *const c_char,
    len: *mut usize,
) -> rkl_status {
    ffi_fn!({
        let entry = STREAMS.get(handles::value(stream))?;
        args::require(text, "text")?;
        args::require(len, "len")?;
        let deadline = (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
        loop {
            if entry.closed.load(Ordering::Acquire) {
                return Err(closed_while_waiting());
            }
            let mut state = entry.lock();
            let state = &mut *state;
            let Some(live) = state.stream.as_mut() else { return Err(closed_while_waiting()) };
            // What rkl_stream_read() took and could not hand out comes first.
            if state.pending.is_empty() {
                if let Some(e) = state.pending_error.take() {
                    return Err(e);
                }
            }
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            state.text.clear();
            if !state.pending.is_empty() {
                std::mem::swap(&mut state.text, &mut state.pending);
                let chunk_len = state.text.len();
                state.text.push('\0');
                // SAFETY: both were checked non-NULL; the text lives in the
                // entry until the next call on the stream.
                unsafe {
                    args::put(text, state.text.as_ptr().cast::<c_char>());
                    args::put(len, chunk_len);
                }
                return Ok(());
            }
            let step = live.next_into(Some(wait), &mut state.text).map_err(|e| {
                let e = FfiError::from(e);
                state.failure.get_or_insert_with(|| format!("rkl_stream_next: {}", e.message));
                e
            })?;
            match step {
                Step::Text => {
                    let chunk_len = state.text.len();
                    state.text.push('\0');
                    // SAFETY: both were checked non-NULL; the text lives in
                    // the entry until the next call on the stream.
                    unsafe {
                        args::put(text, state.text.as_ptr().cast::<c_char>());
                        args::put(len, chunk_len);
                    }
                    return Ok(());
                }
                Step::Finished(_) => {
                    // SAFETY: as above.
                    unsafe {
                        args::put(text, std::ptr::null());
                        args::put(len, 0);
                    }
                    return Ok(());
                }
                Step::Timeout => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(FfiError::new(RKL_TIMEOUT, format!("no text within {timeout_ms} ms")));
                    }
                }
            }
        }
    })
}

/// The smallest buffer rkl_stream_read() takes: the longest UTF-8 character.
const READ_MIN_CAP: usize = 4;

/// Waits for text like rkl_stream_next(), then copies all the text queued
/// at that moment into the caller's buffer in one call: for bindings whose
/// every call across the FFI costs more than a token does.
///
/// The call waits up to `timeout_ms` for the first text (or the end or a
/// failure), then takes, without waiting again, every further piece the
/// generation has already queued, until `cap` bytes are filled. Only
/// complete UTF-8 characters are copied; text that does not fit stays queued
/// for the next rkl_stream_read() or rkl_stream_next() on the stream, and
/// each byte is handed out once.
///
/// @param stream      a handle from rkl_stream_open().
/// @param timeout_ms  how long to wait for the first text: negative =
///                    without limit, 0 = only look.
/// @param buf         caller memory of at least `cap` bytes; receives the
///                    text (complete UTF-8 characters, not NUL-terminated),
///                    written during the call only and only on ::RKL_OK.
/// @param cap         size of `buf` in bytes, at least 4 (one character of
///                    any length fits).
/// @param len         receives the number of bytes written to `buf`: at
///                    least 1 with text, 0 at the end of the generation.
/// @return ::RKL_OK with text (`*len > 0`), or with `*len == 0` at the end
///         (again on every later call; then rkl_stream_stats() has the
///         figures); ::RKL_TIMEOUT when nothing arrived in time (outputs
///         untouched; call again); ::RKL_RUNTIME_FAILED,
///         ::RKL_RUNTIME_TIMEOUT or ::RKL_RUNTIME_CRASHED once when the
///         generation failed, as rkl_stream_next() reports them, after the
///         text that came before the failure was read (the stream then
///         reports the end); ::RKL_BAD_HANDLE (also when another thread
///         closed the stream while this call waited); ::RKL_NULL_ARGUMENT
///         for a NULL `buf` or `len`; ::RKL_INVALID_ARGUMENT for a `cap`
///         below 4.
///
/// Thread-safe; calls on one stream (rkl_stream_read() and
/// rkl_stream_next() alike) are served one at a time and may be mixed.
#[no_mangle]
pub unsafe extern "C" fn rkl_stream_read(
    stream: *mut rkl_stream,
    timeout_ms: i32,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> rkl_status {
    ffi_fn!({
        let entry = STREAMS.get(handles::value(stream))?;
        args::require(buf, "buf")?;
        args::require(len, "len")?;
        if cap < READ_MIN_CAP {
            return Err(FfiError::new(
                RKL_INVALID_ARGUMENT,
                format!("cap is {cap} bytes; at least {READ_MIN_CAP} are needed (one UTF-8 character)"),
            ));
        }
        let deadline = (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
        loop {
            if entry.closed.load(Ordering::Acquire) {
                return Err(closed_while_waiting());
            }
            let mut state = entry.lock();
            let state = &mut *state;
            let Some(live) = state.stream.as_mut() else { return Err(closed_while_waiting()) };
            if state.pending.is_empty() {
                if let Some(e) = state.pending_error.take() {
                    return Err(e);
                }
                let wait = match deadline {
                    Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                    None => SLICE,
                };
                let step = live.next_into(Some(wait), &mut state.pending).map_err(|e| {
                    let e = FfiError::from(e);
                    state.failure.get_or_insert_with(|| format!("rkl_stream_read: {}", e.message));
                    e
                })?;
                match step {
                    Step::Text => {}
                    Step::Finished(_) => {
                        // SAFETY: checked non-NULL above.
                        unsafe { args::put(len, 0) };
                        return Ok(());
                    }
                    Step::Timeout => {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            return Err(FfiError::new(RKL_TIMEOUT, format!("no text within {timeout_ms} ms")));
                        }
                        continue;
                    }
                }
            }
            // Everything queued now, without waiting, until the buffer is full.
            while state.pending.len() < cap && state.pending_error.is_none() {
                match live.next_into(Some(Duration::ZERO), &mut state.pending) {
                    Ok(Step::Text) => {}
                    Ok(Step::Timeout | Step::Finished(_)) => break,
                    Err(e) => {
                        let e = FfiError::from(e);
                        state.failure.get_or_insert_with(|| format!("rkl_stream_read: {}", e.message));
                        state.pending_error = Some(e);
                    }
                }
            }
            let mut n = state.pending.len().min(cap);
            while !state.pending.is_char_boundary(n) {
                n -= 1;
            }
            // SAFETY: `buf` was checked non-NULL and the caller promises `cap`
            // writable bytes; n <= cap; `len` was checked non-NULL.
            unsafe {
                std::ptr::copy_nonoverlapping(state.pending.as_ptr(), buf.cast::<u8>(), n);
                args::put(len, n);
            }
            if n == state.pending.len() {
                state.pending.clear();
            } else {
                state.pending.drain(..n);
            }
            return Ok(());
        }
    })
}

/// Copies the message of the failure rkl_stream_next() or rkl_stream_read()
/// reported for this stream, on whichever thread it was read: for callers whose pulls run on
/// other threads (rkl_last_error_message() is per thread).
///
/// Copies like rkl_last_error_message(): at most `len - 1` bytes (cut at a
/// UTF-8 character boundary) and a NUL into `buf`; returns the full length
/// in bytes, without the NUL.
///
/// @param stream  a handle from rkl_stream_open().
/// @param buf     caller memory of at least `len` bytes, written during the
///                call only; or NULL with `len` 0 (to ask for the length).
/// @param len     size of `buf` in bytes.
/// @return the length of the message; 0 (and an empty string in `buf`) when
///         the stream has not failed or is not an open stream.
///
/// Thread-safe; does not change the calling thread's last error.
#[no_mangle]
pub unsafe extern "C" fn rkl_stream_error_message(stream: *mut rkl_stream, buf: *mut c_char, len: usize) -> usize {
    ffi_fn!(value on panic: 0, {
        let message = match STREAMS.get(handles::value(stream)) {
            Ok(entry) => entry.lock().failure.clone().unwrap_or_default(),
            Err(_) => String::new(),
        };
        // SAFETY: the caller promises `buf` has `len` writable bytes, or is NULL.
        unsafe { copy_message(&message, buf, len) }
    })
}

/// The figures of a finished stream.
///
/// @param stream  a handle from rkl_stream_open().
/// @param out     caller stats with `struct_size` set; filled only on success.
/// @return ::RKL_OK; ::RKL_IN_PROGRESS while the stream has not reported its
///         end through rkl_stream_next(); ::RKL_BAD_HANDLE;
///         ::RKL_NULL_ARGUMENT; ::RKL_INVALID_ARGUMENT for a bad `struct_size`.
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_stream_stats(stream: *mut rkl_stream, out: *mut rkl_stats) -> rkl_status {
    ffi_fn!({
        let entry = STREAMS.get(handles::value(stream))?;
        // SAFETY: the caller promises a struct of `struct_size` bytes.
        unsafe { args::check_out_struct(out, "out")? };
        let state = entry.lock();
        let Some(live) = state.stream.as_ref() else { return Err(closed_while_waiting()) };
        let Some(stats) = live.stats() else {
            return Err(FfiError::new(RKL_IN_PROGRESS, "the stream has not finished; read it to the end first"));
        };
        // SAFETY: checked above.
        unsafe { args::write_struct(out, &rkl_stats::from(&stats), "out") }
    })
}

/// Asks the stream's generation to stop; it then ends with
/// ::RKL_FINISH_ABORTED. The stream stays open: read it to its end or close it.
///
/// @param stream  a handle from rkl_stream_open().
/// @return ::RKL_OK (also when the stream already finished); ::RKL_BAD_HANDLE.
///
/// Thread-safe; may briefly wait for an rkl_stream_next() running on another
/// thread.
#[no_mangle]
pub unsafe extern "C" fn rkl_stream_abort(stream: *mut rkl_stream) -> rkl_status {
    ffi_fn!({
        let entry = STREAMS.get(handles::value(stream))?;
        let state = entry.lock();
        if let Some(live) = state.stream.as_ref() {
            live.abort();
        }
        Ok(())
    })
}

/// Closes a stream. An unfinished generation is aborted. Text handed out by
/// rkl_stream_next() is freed.
///
/// @param stream  a handle from rkl_stream_open(), or NULL (nothing happens).
/// @return ::RKL_OK, also for NULL and for a stream already closed (closing
///         twice is harmless); ::RKL_BAD_HANDLE for a value that was never a
///         stream handle.
///
/// Thread-safe: an rkl_stream_next() waiting on another thread returns
/// ::RKL_BAD_HANDLE promptly.
#[no_mangle]
pub unsafe extern "C" fn rkl_stream_close(stream: *mut rkl_stream) -> rkl_status {
    ffi_fn!({
        let value = handles::value(stream);
        let Some(entry) = STREAMS.remove(value)? else { return Ok(()) };
        close_entry(&entry);
        Ok(())
    })
}

fn close_entry(entry: &Arc<StreamEntry>) {
    entry.closed.store(true, Ordering::Release);
    let taken = entry.lock().stream.take();
    // Dropped outside the lock: aborts the run if it has not finished.
    drop(taken);
}
