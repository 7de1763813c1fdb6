//! Logging: `RKL_LOG` (env_logger syntax) to stderr, and a C callback so host
//! applications can route rkl's messages themselves.

use super::error::{FfiError, FfiResult};
use super::status::{rkl_status, RKL_REENTRANT};
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, RwLock};

/// Severity of a log message, most severe first.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rkl_log_level {
    /// No messages (as `max_level`: the callback gets nothing).
    RKL_LOG_OFF = 0,
    /// Something failed.
    RKL_LOG_ERROR = 1,
    /// Something looks wrong but work goes on.
    RKL_LOG_WARN = 2,
    /// Milestones: runtime loaded, model opened.
    RKL_LOG_INFO = 3,
    /// Details useful when something goes wrong.
    RKL_LOG_DEBUG = 4,
    /// Everything.
    RKL_LOG_TRACE = 5,
}

/// Receives one log message.
///
/// @param level     the message's ::rkl_log_level (ERROR .. TRACE).
/// @param target    where in rkl it comes from (e.g. "rkl::runtime"),
///                  NUL-terminated, valid only during the call.
/// @param message   the text, UTF-8, NUL-terminated, without a trailing
///                  newline, valid only during the call.
/// @param userdata  the pointer given to rkl_set_log_callback().
///
/// Called on whichever thread logs, including rkl's internal runtime
/// threads, possibly from several threads at once. It must return normally
/// (no longjmp, no C++ exception) and must not call rkl functions other than
/// rkl_status_str() and rkl_version().
pub type rkl_log_fn = Option<
    unsafe extern "C" fn(level: rkl_log_level, target: *const c_char, message: *const c_char, userdata: *mut c_void),
>;

struct Sink {
    callback: unsafe extern "C" fn(rkl_log_level, *const c_char, *const c_char, *mut c_void),
    userdata: *mut c_void,
    max_level: LevelFilter,
}

// SAFETY: the userdata pointer is only handed back to the caller's callback;
// rkl_set_log_callback documents that it is used from any thread.
unsafe impl Send for Sink {}
// SAFETY: as above; the sink itself is never mutated while shared.
unsafe impl Sync for Sink {}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
/// The callback's max level as a LevelFilter index, for a lock-free `enabled`.
static SINK_LEVEL: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();
static LOGGER: std::sync::OnceLock<&'static Forwarder> = std::sync::OnceLock::new();

thread_local! {
    /// Set while this thread runs the log callback: messages logged meanwhile
    /// are not forwarded again, and changing the callback is refused.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

struct Forwarder {
    /// stderr output, filtered by RKL_LOG.
    stderr: env_logger::Logger,
    /// Whether RKL_LOG was set; otherwise stderr falls silent once a callback
    /// is installed (the host routes messages itself).
    explicit: bool,
}

impl Forwarder {
    fn stderr_active(&self) -> bool {
        self.explicit || SINK_LEVEL.load(Ordering::Relaxed) == 0
    }

    fn max_level(&self) -> LevelFilter {
        let stderr = if self.stderr_active() { self.stderr.filter() } else { LevelFilter::Off };
        stderr.max(level_filter(SINK_LEVEL.load(Ordering::Relaxed)))
    }
}

fn level_filter(index: usize) -> LevelFilter {
    LevelFilter::iter().nth(index).unwrap_or(LevelFilter::Off)
}

fn c_level(level: Level) -> rkl_log_level {
    match level {
        Level::Error => rkl_log_level::RKL_LOG_ERROR,
        Level::Warn => rkl_log_level::RKL_LOG_WARN,
        Level::Info => rkl_log_level::RKL_LOG_INFO,
        Level::Debug => rkl_log_level::RKL_LOG_DEBUG,
        Level::Trace => rkl_log_level::RKL_LOG_TRACE,
    }
}

fn c_text(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

impl Log for Forwarder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        (self.stderr_active() && self.stderr.enabled(metadata))
            || metadata.level() <= level_filter(SINK_LEVEL.load(Ordering::Relaxed))
    }

    fn log(&self, record: &Record<'_>) {
        if self.stderr_active() && self.stderr.matches(record) {
            self.stderr.log(record);
        }
        if record.level() > level_filter(SINK_LEVEL.load(Ordering::Relaxed)) {
            return;
        }
        if IN_CALLBACK.with(|c| c.get()) {
            return;
        }
        let sink = SINK.read().unwrap_or_else(|p| p.into_inner());
        let Some(sink) = sink.as_ref() else { return };
        if record.level() > sink.max_level {
            return;
        }
        let target = c_text(record.target());
        let message = c_text(&record.args().to_string());
        IN_CALLBACK.with(|c| c.set(true));
        // SAFETY: the callback and userdata were given by the host through
        // rkl_set_log_callback; the strings live until the call returns.
        unsafe { (sink.callback)(c_level(record.level()), target.as_ptr(), message.as_ptr(), sink.userdata) };
        IN_CALLBACK.with(|c| c.set(false));
    }

    fn flush(&self) {
        self.stderr.flush();
    }
}

/// Installs rkl's logger on the first call of any C function. If the process
/// already has a `log` logger (a Rust host), that one is kept, and the C
/// callback and `RKL_LOG` have no effect.
pub fn ensure_installed() {
    INSTALL.call_once(|| {
        let explicit = std::env::var_os("RKL_LOG").is_some();
        let stderr = env_logger::Builder::from_env(
            env_logger::Env::new().filter_or("RKL_LOG", "warn").write_style("RKL_LOG_STYLE"),
        )
        .build();
        let forwarder: &'static Forwarder = Box::leak(Box::new(Forwarder { stderr, explicit }));
        if log::set_logger(forwarder).is_ok() {
            log::set_max_level(forwarder.max_level());
            let _ = LOGGER.set(forwarder);
        }
    });
}

fn set_sink(sink: Option<Sink>) -> FfiResult {
    if IN_CALLBACK.with(|c| c.get()) {
        return Err(FfiError::new(RKL_REENTRANT, "the log callback cannot be changed from inside the log callback"));
    }
    let level = sink.as_ref().map_or(LevelFilter::Off, |s| s.max_level);
    // Taking the write lock waits for callbacks running on other threads, so
    // once this returns the old callback is never called again.
    let mut slot = SINK.write().unwrap_or_else(|p| p.into_inner());
    *slot = sink;
    SINK_LEVEL.store(level as usize, Ordering::Relaxed);
    drop(slot);
    if let Some(forwarder) = LOGGER.get() {
        log::set_max_level(forwarder.max_level());
    }
    Ok(())
}

/// Routes rkl's log messages to `callback`.
///
/// Messages at `max_level` and more severe go to the callback. While a
/// callback is installed, rkl writes nothing to stderr unless the `RKL_LOG`
/// environment variable is set (env_logger syntax, e.g. `RKL_LOG=debug` or
/// `RKL_LOG=rkl::runtime=trace`; without it, warnings and errors go to
/// stderr while no callback is installed).
///
/// @param callback   the receiver, or NULL to remove the callback (then
///                   `max_level` and `userdata` are ignored).
/// @param max_level  the least severe ::rkl_log_level to deliver
///                   (::RKL_LOG_OFF .. ::RKL_LOG_TRACE).
/// @param userdata   passed back to every call; must stay valid until the
///                   callback is replaced or removed.
/// @return ::RKL_OK; ::RKL_INVALID_ARGUMENT for a level out of range;
///         ::RKL_REENTRANT when called from inside the log callback.
///
/// Thread-safe. When this returns, calls of the previous callback that were
/// running on other threads have finished, so its userdata may be freed.
#[no_mangle]
pub unsafe extern "C" fn rkl_set_log_callback(
    callback: rkl_log_fn,
    max_level: i32,
    userdata: *mut c_void,
) -> rkl_status {
    ffi_fn!({
        let Some(callback) = callback else { return set_sink(None) };
        if !(0..=5).contains(&max_level) {
            return Err(FfiError::invalid(format!("max_level {max_level} is not an rkl_log_level (0..5)")));
        }
        set_sink(Some(Sink { callback, userdata, max_level: level_filter(max_level as usize) }))
    })
}
