//! Everything about `librkllmrt.so`: loading it, telling its release, its
//! exact struct layouts, and the one thread that makes every call into it.

mod detect;
mod dispatch;
mod family;
mod layout;
mod layout_common;
mod layout_v1_2;
mod layout_v1_3;
mod params;
mod run_queue;
mod symbols;
mod trampoline;
mod version_line;

pub use family::Family;
pub use layout_common::PerfStat;
pub use params::ModelParams;
pub use dispatch::STALL_POLL;
pub use run_queue::{Batch, RunEvent};
pub use trampoline::RunShared;
pub use version_line::real_stdout;

use crate::error::{Error, ErrorKind, Result};
use dispatch::Dispatcher;
use layout_common::{InitInput, Layout, LlmHandle, LoraAdapter, LoraParam, PromptCacheParam, RunInput};
use libloading::os::unix::Library;
use std::ffi::{c_void, CString};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use symbols::Api;

/// The loader's name for the runtime when no path is configured.
pub const DEFAULT_RUNTIME: &str = "librkllmrt.so";

/// A loaded runtime: its functions, its release family and its dispatcher.
/// Runtimes stay loaded for the life of the process.
pub struct Runtime {
    id: usize,
    path: String,
    family: Family,
    /// The family's per-release code.
    layout: &'static dyn Layout,
    /// What the default-param probe said, kept to judge later overrides.
    probe: std::result::Result<Family, String>,
    api: Arc<Api>,
    dispatcher: Dispatcher,
    raw_library: usize,
    /// The version the runtime printed at its first successful listen.
    version: std::sync::OnceLock<String>,
    _library: Library,
}

static RUNTIMES: Mutex<Vec<Arc<Runtime>>> = Mutex::new(Vec::new());
static NEXT_RUNTIME_ID: AtomicUsize = AtomicUsize::new(1);

impl Runtime {
    /// Loads (or finds already loaded) the runtime at `path` and works out its
    /// release. `requested` is an explicit ABI that must agree with what the
    /// runtime shows, or stand in where detection is not certain.
    pub fn load(path: &str, requested: Option<Family>) -> Result<Arc<Runtime>> {
        let mut loaded = RUNTIMES.lock().unwrap_or_else(|p| p.into_inner());
        let raw = symbols::open_library(path)?.into_raw();
        if let Some(rt) = loaded.iter().find(|rt| rt.raw_library == raw as usize) {
            // SAFETY: `raw` came from `into_raw` just above; rebuilding the
            // Library and dropping it gives back the extra dlopen reference.
            drop(unsafe { Library::from_raw(raw) });
            let family = detect::decide(rt.probe.clone(), requested)
                .map_err(|why| Error::new(ErrorKind::RuntimeUnsupported, format!("runtime '{path}': {why}")))?;
            if family != rt.family {
                return Err(Error::new(
                    ErrorKind::RuntimeUnsupported,
                    format!("runtime '{}' is already in use as ABI {}; it cannot also be opened as {family}", rt.path, rt.family),
                ));
            }
            return Ok(rt.clone());
        }
        // SAFETY: as above; from here the Library owns the reference.
        let library = unsafe { Library::from_raw(raw) };
        let runtime = Runtime::start(path, library, raw as usize, requested)?;
        loaded.push(runtime.clone());
        Ok(runtime)
    }

    fn start(path: &str, library: Library, raw_library: usize, requested: Option<Family>) -> Result<Arc<Runtime>> {
        let unsupported = |why: String| Error::new(ErrorKind::RuntimeUnsupported, format!("runtime '{path}': {why}"));
        // A library without even the core entry points is not a runtime of an
        // older release; say which symbols are missing.
        if !symbols::has_symbol(&library, "rkllm_init") || !symbols::has_symbol(&library, "rkllm_run") {
            return Err(symbols::resolve(&library, path).err().expect("core symbols are missing"));
        }
        detect::family_from_symbols(
            symbols::has_symbol(&library, symbols::FUNCTION_TOOLS),
            symbols::has_symbol(&library, symbols::KV_CACHE_SIZE),
        )
        .map_err(unsupported)?;
        let api = Arc::new(symbols::resolve(&library, path)?);
        let id = NEXT_RUNTIME_ID.fetch_add(1, Ordering::Relaxed);
        let dispatcher = Dispatcher::start(format!("rkl-runtime-{id}"))?;
        let probe_api = api.clone();
        // SAFETY: create_default_param is declared returning a 512-byte slot,
        // larger than any release's RKLLMParam, so the callee cannot overrun it.
        let image = dispatcher.call(move || unsafe { (probe_api.create_default_param)() })?;
        let probed = detect::family_from_probe(&image);
        let family = detect::decide(probed.clone(), requested).map_err(unsupported)?;
        log::info!("loaded RKLLM runtime '{path}' as ABI {family}");
        Ok(Arc::new(Runtime {
            id,
            path: path.to_string(),
            family,
            layout: layout::of(family),
            probe: probed,
            api,
            dispatcher,
            raw_library,
            version: std::sync::OnceLock::new(),
            _library: library,
        }))
    }

    /// The runtime's version, as it printed it at init ("1.2.1"); `None` if
    /// it printed none.
    pub fn version(&self) -> Option<&str> {
        self.version.get().map(String::as_str)
    }

    /// A number unique to this runtime in the process.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The path (or name) it was loaded from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The release family in use.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The error to report when the runtime got stuck in a call that never
    /// returned (see `dispatch::Watch`); `None` while it works.
    pub fn stuck(&self) -> Option<Error> {
        self.dispatcher.watch().stuck()
    }

    /// When the call the runtime is in last made progress (started, or a
    /// callback); `None` while it is idle.
    pub fn last_progress(&self) -> Option<std::time::Instant> {
        self.dispatcher.watch().last_progress()
    }

    /// Creates a runtime handle for the model at `model_path`. `limit` is how
    /// long any call on the handle may go without progress before the runtime
    /// counts as stuck (`None`: without limit).
    pub fn init(self: &Arc<Runtime>, model_path: CString, params: &ModelParams, limit: Option<Duration>) -> Result<RawModel> {
        let api = self.api.clone();
        let layout = self.layout;
        let params = params.clone();
        let path_for_error = model_path.to_string_lossy().into_owned();
        let owned = InitStorage::new(model_path);
        let listen = self.version.get().is_none();
        let (owned, outcome, log) = self.dispatcher.call_limited(limit, move || {
            let mut owned = owned;
            let (outcome, log) = if listen {
                version_line::capture_stdout(|| owned.init(&api, layout, &params))
            } else {
                (owned.init(&api, layout, &params), String::new())
            };
            (owned, outcome, log)
        })?;
        if let Some(version) = version_line::parse(&log) {
            let _ = self.version.set(version);
        }
        let handle = match outcome {
            Ok(handle) => handle,
            Err(code) => {
                return Err(Error::new(
                    ErrorKind::ModelLoadFailed,
                    format!("the runtime could not load model '{path_for_error}' ({code})"),
                ))
            }
        };
        Ok(RawModel {
            runtime: self.clone(),
            handle,
            limit,
            destroyed: AtomicBool::new(false),
            handle_gone: Arc::new(AtomicBool::new(false)),
            owned: Mutex::new(Some(owned)),
        })
    }
}

/// A runtime handle, sendable to the dispatcher thread.
#[derive(Clone, Copy)]
struct HandleAddr(LlmHandle);

// SAFETY: the handle is an opaque token; it is only passed to the runtime from
// the dispatcher thread, except for rkllm_abort, which the runtime provides for
// calling during a run from another thread.
unsafe impl Send for HandleAddr {}
// SAFETY: as above; sharing the token shares no memory.
unsafe impl Sync for HandleAddr {}

/// What `rkllm_init` was given and the runtime may keep pointers into: owned
/// here, at a stable heap address, until after `rkllm_destroy`.
struct InitStorage {
    model_path: CString,
    /// The detected release's own structs (see `Layout::init`).
    structs: Option<Box<dyn Send>>,
}

impl InitStorage {
    fn new(model_path: CString) -> InitStorage {
        InitStorage { model_path, structs: None }
    }

    /// Runs on the dispatcher: default params, overrides, `rkllm_init`, and a
    /// cheap first call, because init has returned 0 after failing inside.
    fn init(&mut self, api: &Api, layout: &dyn Layout, params: &ModelParams) -> std::result::Result<HandleAddr, String> {
        // SAFETY: the slot is larger than any RKLLMParam (see detect.rs).
        let image = unsafe { (api.create_default_param)() };
        let mut handle: LlmHandle = ptr::null_mut();
        let input = InitInput {
            defaults: &image,
            params,
            model_path: &self.model_path,
            callback: trampoline::result_callback,
        };
        // SAFETY: `layout` is the one of this runtime's detected release and
        // `image` its defaults; the model path and the structs returned are
        // kept in self until after rkllm_destroy.
        let (code, structs) = unsafe { layout.init(api.init, input, &mut handle) };
        self.structs = Some(structs);
        if code != 0 {
            return Err(format!("rkllm_init returned {code}"));
        }
        if handle.is_null() {
            return Err("rkllm_init returned 0 but no handle".into());
        }
        let mut sizes = [0i32; 16];
        // SAFETY: the handle was just created; `sizes` has room for n_batch
        // (at most 8) entries.
        let probe = unsafe { (api.get_kv_cache_size)(handle, sizes.as_mut_ptr()) };
        if probe != 0 {
            // SAFETY: the handle is live and destroyed exactly once, here.
            unsafe { (api.destroy)(handle) };
            return Err(format!("rkllm_init reported success but the handle does not work (rkllm_get_kv_cache_size returned {probe})"));
        }
        Ok(HandleAddr(handle))
    }
}

/// One request to `rkllm_run`, with every string it needs owned.
pub struct RunRequest {
    /// The prompt text.
    pub prompt: CString,
    /// "user" or "tool".
    pub role: CString,
    /// Qwen3 thinking mode.
    pub enable_thinking: bool,
    /// Keep this turn in the KV history.
    pub keep_history: bool,
    /// Per-run token limit (1.3 passes it on; 0 = the init value).
    pub max_new_tokens: i32,
    /// A loaded LoRA adapter to apply.
    pub lora: Option<CString>,
    /// Save the prompt's KV cache to this path during the run.
    pub save_cache_path: Option<CString>,
}

/// A live runtime handle with its owned init strings.
pub struct RawModel {
    runtime: Arc<Runtime>,
    handle: HandleAddr,
    /// How long a call may go without progress (the model's call_timeout).
    limit: Option<Duration>,
    destroyed: AtomicBool,
    /// Set on the dispatcher thread right before `rkllm_destroy`: a call
    /// that passed `check_live` while a close was starting, and was queued
    /// behind the destroy, sees it there and never touches the handle.
    handle_gone: Arc<AtomicBool>,
    owned: Mutex<Option<InitStorage>>,
}

impl RawModel {
    /// The runtime this handle belongs to.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    fn check_live(&self) -> Result<()> {
        if self.destroyed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Closed, "the model is closed"));
        }
        match self.runtime.stuck() {
            Some(stuck) => Err(stuck),
            None => Ok(()),
        }
    }

    /// Runs `f` with the API and handle on the dispatcher and waits.
    fn call<R: Send + 'static>(&self, f: impl FnOnce(&Api, LlmHandle) -> R + Send + 'static) -> Result<R> {
        self.check_live()?;
        let api = self.runtime.api.clone();
        let handle = self.handle;
        let gone = self.handle_gone.clone();
        let result = self.runtime.dispatcher.call_limited(self.limit, move || {
            if gone.load(Ordering::Acquire) {
                return None;
            }
            let h = handle;
            Some(f(&api, h.0))
        })?;
        result.ok_or_else(|| Error::new(ErrorKind::Closed, "the model is closed"))
    }

    /// Runs a status-returning runtime function and maps non-zero to an error.
    fn call_status(&self, what: &'static str, f: impl FnOnce(&Api, LlmHandle) -> i32 + Send + 'static) -> Result<()> {
        match self.call(f)? {
            0 => Ok(()),
            code => Err(Error::new(ErrorKind::RuntimeFailed, format!("{what} returned {code}"))),
        }
    }

    /// Queues a run; its events arrive in `shared`.
    pub fn start_run(&self, request: RunRequest, shared: Arc<RunShared>) -> Result<()> {
        self.check_live()?;
        let api = self.runtime.api.clone();
        let handle = self.handle;
        let layout = self.runtime.layout;
        shared.attach_watch(self.runtime.dispatcher.watch().clone());
        let end = EndGuard(Some(shared.clone()));
        self.runtime.dispatcher.submit_limited(self.limit, move || {
            let h = handle;
            shared.send(RunEvent::Started);
            let outcome = shared.execute(|| execute_run(&api, layout, h.0, &request, shared.userdata()));
            // `request` (prompt, role, cache path...) is dropped only after
            // rkllm_run returned, and so after its last callback.
            drop(request);
            end.report(match outcome {
                Some(code) => RunEvent::Returned(code),
                None => RunEvent::Skipped,
            });
        })
    }

    /// Stops `shared`'s run if it is inside the runtime; bypasses the queue.
    pub fn abort_run(&self, shared: &RunShared) {
        let api = &self.runtime.api;
        let handle = self.handle;
        shared.request_abort(|| {
            // SAFETY: called only while the run is inside rkllm_run on this
            // handle (RunShared holds its lock), so the handle is live.
            let code = unsafe { (api.abort)(handle.0) };
            if code != 0 {
                log::warn!("rkllm_abort returned {code}");
            }
        });
    }

    /// `rkllm_clear_kv_cache(handle, keep_system_prompt, NULL, NULL)`.
    pub fn clear_kv_cache(&self, keep_system_prompt: bool) -> Result<()> {
        // SAFETY: live handle on the dispatcher; NULL ranges mean "everything".
        self.call_status("rkllm_clear_kv_cache", move |api, h| unsafe {
            (api.clear_kv_cache)(h, keep_system_prompt as i32, ptr::null_mut(), ptr::null_mut())
        })
    }

    /// Tokens currently in the KV cache (first batch slot).
    pub fn kv_cache_size(&self) -> Result<i32> {
        let (code, size) = self.call(|api, h| {
            let mut sizes = [0i32; 16];
            // SAFETY: live handle; room for the at most 8 batch slots.
            let code = unsafe { (api.get_kv_cache_size)(h, sizes.as_mut_ptr()) };
            (code, sizes[0])
        })?;
        match code {
            0 => Ok(size),
            code => Err(Error::new(ErrorKind::RuntimeFailed, format!("rkllm_get_kv_cache_size returned {code}"))),
        }
    }

    /// `rkllm_set_chat_template`; the runtime copies the strings.
    pub fn set_chat_template(&self, system: CString, prefix: CString, postfix: CString) -> Result<()> {
        // SAFETY: live handle; the strings are owned by the closure for the call.
        self.call_status("rkllm_set_chat_template", move |api, h| unsafe {
            (api.set_chat_template)(h, system.as_ptr(), prefix.as_ptr(), postfix.as_ptr())
        })
    }

    /// `rkllm_set_function_tools`.
    pub fn set_function_tools(&self, system: CString, tools: CString, tool_response: CString) -> Result<()> {
        // SAFETY: live handle; the strings are owned by the closure for the call.
        self.call_status("rkllm_set_function_tools", move |api, h| unsafe {
            (api.set_function_tools)(h, system.as_ptr(), tools.as_ptr(), tool_response.as_ptr())
        })
    }

    /// `rkllm_load_lora`.
    pub fn load_lora(&self, path: CString, name: CString, scale: f32) -> Result<()> {
        self.call_status("rkllm_load_lora", move |api, h| {
            let mut adapter = LoraAdapter { lora_adapter_path: path.as_ptr(), lora_adapter_name: name.as_ptr(), scale };
            // SAFETY: live handle; the adapter and its strings outlive the call.
            unsafe { (api.load_lora)(h, &mut adapter) }
        })
    }

    /// `rkllm_load_prompt_cache`.
    pub fn load_prompt_cache(&self, path: CString) -> Result<()> {
        // SAFETY: live handle; the path is owned by the closure for the call.
        self.call_status("rkllm_load_prompt_cache", move |api, h| unsafe { (api.load_prompt_cache)(h, path.as_ptr()) })
    }

    /// `rkllm_release_prompt_cache`.
    pub fn release_prompt_cache(&self) -> Result<()> {
        // SAFETY: live handle on the dispatcher.
        self.call_status("rkllm_release_prompt_cache", |api, h| unsafe { (api.release_prompt_cache)(h) })
    }

    /// Destroys the handle once; later calls are no-ops. Waits for every
    /// queued call on the handle to finish first (the queue is FIFO).
    pub fn destroy(&self) -> Result<()> {
        if self.destroyed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.runtime.dispatcher.watch().is_stuck() {
            // Queued behind a call that never returns, destroy would wait
            // forever; the handle and its init strings are left to the stuck
            // runtime instead.
            log::warn!("not destroying a model handle: its runtime is stuck in an earlier call");
            std::mem::forget(self.owned.lock().unwrap_or_else(|p| p.into_inner()).take());
            return Ok(());
        }
        let owned = self.owned.lock().unwrap_or_else(|p| p.into_inner()).take();
        let api = self.runtime.api.clone();
        let handle = self.handle;
        let gone = self.handle_gone.clone();
        let result = self.runtime.dispatcher.call(move || {
            let h = handle;
            gone.store(true, Ordering::Release);
            // SAFETY: the flag above makes this the only destroy of a live handle.
            let code = unsafe { (api.destroy)(h.0) };
            // The init strings may be referenced by the runtime until now.
            drop(owned);
            code
        });
        match result {
            Ok(0) => Ok(()),
            Ok(code) => Err(Error::new(ErrorKind::RuntimeFailed, format!("rkllm_destroy returned {code}"))),
            Err(e) => Err(e),
        }
    }
}

impl Drop for RawModel {
    fn drop(&mut self) {
        if let Err(e) = self.destroy() {
            log::warn!("closing a model failed: {e}");
        }
    }
}

/// Tells a run's reader how the run ended. If the job holding it ends
/// without saying (it unwound, or was dropped without running), the reader
/// gets `Returned(i32::MIN)` (a failed run) instead of waiting for an end
/// that cannot come.
struct EndGuard(Option<Arc<RunShared>>);

impl EndGuard {
    fn report(mut self, event: RunEvent) {
        if let Some(shared) = self.0.take() {
            shared.send(event);
        }
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.send(RunEvent::Returned(i32::MIN));
        }
    }
}

/// Builds the release's input structs on this stack frame and calls `rkllm_run`.
fn execute_run(api: &Api, layout: &dyn Layout, handle: LlmHandle, req: &RunRequest, userdata: *mut c_void) -> i32 {
    let mut cache = req.save_cache_path.as_ref().map(|path| PromptCacheParam {
        save_prompt_cache: 1,
        prompt_cache_path: path.as_ptr(),
    });
    let mut lora = req.lora.as_ref().map(|name| LoraParam { lora_adapter_name: name.as_ptr() });
    let input = RunInput {
        prompt: &req.prompt,
        role: &req.role,
        enable_thinking: req.enable_thinking,
        keep_history: req.keep_history,
        max_new_tokens: req.max_new_tokens,
        lora: lora.as_mut(),
        prompt_cache: cache.as_mut(),
    };
    // SAFETY: `layout` is the one of this runtime's detected release and the
    // handle is live on the dispatcher; `cache`, `lora` and `req` outlive the
    // call.
    unsafe { layout.run(api.run, handle, input, userdata) }
}

#[cfg(test)]
mod end_guard_tests {
    use super::*;
    use std::time::Duration;

    fn next(shared: &RunShared) -> Option<RunEvent> {
        shared.next_event(Duration::ZERO, &mut Batch::default(), &mut Vec::new())
    }

    #[test]
    fn a_job_that_ends_without_reporting_reports_a_failed_run() {
        let shared = RunShared::new(0);
        let job = {
            let end = EndGuard(Some(shared.clone()));
            move || end.report(RunEvent::Returned(0))
        };
        drop(job); // never ran
        assert!(matches!(next(&shared), Some(RunEvent::Returned(i32::MIN))));
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe({
            let end = EndGuard(Some(shared.clone()));
            move || {
                let _end = end;
                panic!("the job unwinds");
            }
        }));
        assert!(unwound.is_err());
        assert!(matches!(next(&shared), Some(RunEvent::Returned(i32::MIN))));
        assert!(next(&shared).is_none());
    }

    #[test]
    fn a_reported_end_is_the_only_one() {
        let shared = RunShared::new(0);
        EndGuard(Some(shared.clone())).report(RunEvent::Returned(7));
        assert!(matches!(next(&shared), Some(RunEvent::Returned(7))));
        assert!(next(&shared).is_none());
    }
}
