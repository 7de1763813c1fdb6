//! Per-handle state, the registry of live handles, and the process counters.

use crate::abi::{EmbedCallback, TokenizerCallback};
use crate::callback::ResultFn;
use crate::config::{Abi, OldRelease, WaitingMode};
use crate::model_file::ModelSpec;
use crate::timing::AbortFlag;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_void, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Fixed at init.
pub struct Settings {
    pub abi: Abi,
    /// family-1-2-0 build: 1.2.0 or 1.2.1b1 (their input, result and
    /// callback layouts); `None` in the other builds.
    pub old_release: Option<OldRelease>,
    /// `fault = broken@init`: every call but destroy fails.
    pub broken: bool,
    /// The caller's `model_path` pointer, kept (not copied) and read again on
    /// every run and at destroy, as the real runtime may.
    pub model_path_addr: usize,
    /// The path as it was at init, for messages.
    pub model_path: CString,
    pub model_file_bytes: u64,
    pub model: ModelSpec,
    pub waiting: WaitingMode,
    pub time_scale: f64,
    pub max_context_len: i32,
    pub max_new_tokens: i32,
    pub callback: ResultFn,
    /// 1.3's `result_userdata` (0 in 1.2).
    pub result_userdata: usize,
    /// 1.3's tokenizer callback and its userdata.
    pub tokenizer: Option<(TokenizerCallback, usize)>,
    /// 1.3's embedding callback and its userdata.
    pub embedder: Option<(EmbedCallback, usize)>,
    /// 1.2 layouts: init's `img_start`, `img_end`, `img_content` pointers,
    /// kept (not copied) and read at each multimodal run.
    pub image_tag_addrs: [usize; 3],
    /// init's `extend_param.use_cross_attn`.
    pub use_cross_attn: bool,
}

/// Changes with calls.
#[derive(Clone, Debug)]
pub struct Session {
    /// Tokens in the KV history.
    pub history_tokens: u64,
    /// Turns in the KV history (a loaded prompt cache counts as one).
    pub turns: u64,
    pub system: String,
    pub prefix: String,
    pub postfix: String,
    /// The `tools` string of `rkllm_set_function_tools` (its system prompt
    /// and tool response string are checked but not used by replies).
    pub tools: String,
    /// Loaded LoRA adapters by name.
    pub loras: HashMap<String, PathBuf>,
    /// The `RKLLMCrossAttnParam` pointer given to
    /// `rkllm_set_cross_attn_params`, kept and read again at every run.
    pub cross_attn_addr: Option<usize>,
}

pub struct Handle {
    pub settings: Settings,
    /// Reachable without `session`'s lock, which is never held during callbacks.
    pub abort: AbortFlag,
    /// Runs in progress on this handle.
    pub running: AtomicU32,
    session: Mutex<Session>,
}

impl Handle {
    pub fn new(settings: Settings) -> Handle {
        let session = Session {
            history_tokens: 0,
            turns: 0,
            system: settings.model.system.clone(),
            prefix: settings.model.prefix.clone(),
            postfix: settings.model.postfix.clone(),
            tools: String::new(),
            loras: HashMap::new(),
            cross_attn_addr: None,
        };
        Handle { settings, abort: AbortFlag::default(), running: AtomicU32::new(0), session: Mutex::new(session) }
    }

    /// The session; a panic elsewhere never makes it unusable.
    pub fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the caller's `model_path` string again, so that a path freed
    /// too early shows under ASan or valgrind; reports a changed path.
    pub fn touch_model_path(&self, when: &str) {
        let ptr = self.settings.model_path_addr as *const std::ffi::c_char;
        // SAFETY: the caller promised at init that the string lives as long as
        // the handle (rkllm-abi.md); reading it is exactly that promise.
        let now = unsafe { std::ffi::CStr::from_ptr(ptr) };
        if std::hint::black_box(now) != self.settings.model_path.as_c_str() {
            eprintln!(
                "W rkllm-sim: {when}: model_path changed since init ({:?} -> {:?}); was it freed?",
                self.settings.model_path, now
            );
        }
    }
}

/// Process-wide counters reported by `rkllm_sim_stats`.
pub static VIOLATIONS: AtomicU64 = AtomicU64::new(0);
pub static RUNS_STARTED: AtomicU64 = AtomicU64::new(0);
pub static CACHES_WRITTEN: AtomicU64 = AtomicU64::new(0);
/// Calls currently inside the simulator (abort/is_running/stats excluded).
static IN_RUNTIME: AtomicU64 = AtomicU64::new(0);

/// Marks one call as inside the runtime while it lives; a second one at the
/// same time, on any handle, is a violation of the one-call-at-a-time rule.
pub struct InRuntime(());

impl InRuntime {
    pub fn enter() -> InRuntime {
        if IN_RUNTIME.fetch_add(1, Ordering::SeqCst) > 0 {
            VIOLATIONS.fetch_add(1, Ordering::SeqCst);
        }
        InRuntime(())
    }
}

impl Drop for InRuntime {
    fn drop(&mut self) {
        IN_RUNTIME.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Handle values are opaque, never dereferenced and never reused in a
/// process, so a stale or double-destroyed handle is always recognised.
const HANDLE_BASE: usize = 0x5a5a_0000_0000;
const HANDLE_STRIDE: usize = 0x40;

struct Registry {
    next: usize,
    live: BTreeMap<usize, Arc<Handle>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { next: 0, live: BTreeMap::new() });

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registers a new handle and returns its value for the caller.
pub fn register(handle: Handle) -> *mut c_void {
    let mut reg = registry();
    let value = HANDLE_BASE + reg.next * HANDLE_STRIDE;
    reg.next += 1;
    reg.live.insert(value, Arc::new(handle));
    value as *mut c_void
}

/// The live handle with this value.
pub fn find(value: *mut c_void) -> Option<Arc<Handle>> {
    registry().live.get(&(value as usize)).cloned()
}

/// Removes the handle; `None` when it is not live.
pub fn unregister(value: *mut c_void) -> Option<Arc<Handle>> {
    registry().live.remove(&(value as usize))
}

pub fn live_count() -> u64 {
    registry().live.len() as u64
}

/// Looks up a usable handle for `function`: unknown handles and broken ones
/// give -1 (with a message for unknown ones).
pub fn usable(value: *mut c_void, function: &str) -> Result<Arc<Handle>, i32> {
    match find(value) {
        None => {
            eprintln!("E rkllm-sim: {function}: {value:p} is not a live handle");
            Err(-1)
        }
        Some(h) if h.settings.broken => Err(-1),
        Some(h) => Ok(h),
    }
}
