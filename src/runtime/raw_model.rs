//! A model handle on a loaded runtime: creating it ([`Runtime::init`]), the
//! calls on it, and destroying it once, after every call queued before.

use super::default_params::default_params;
use super::hook_calls::{self, HookTable};
use super::layout_common::{
    default_sampling, EmbedCallback, HandleAddr, InitFeatures, InitInput, Layout, LlmHandle, LoraAdapter,
    TokenizerCallback,
};
use super::loaded::Runtime;
use super::params::{ModelParams, SamplingValues};
use super::run::{self, CrossAttnSlot, RunRequest, RunTarget};
use super::symbols::Api;
use super::trampoline::{self, RunShared};
use super::version_line;
use crate::error::{Error, ErrorKind, Result};
use crate::hooks::RuntimeHooks;
use std::ffi::{c_void, CString};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What init takes besides the model path and parameters.
#[derive(Default)]
pub struct InitExtras {
    /// Image tags (start, end, content) for releases that take them at
    /// init; `None`: the runtime's defaults.
    pub image_tags: Option<[CString; 3]>,
    /// Tokenizer and embedder (1.3).
    pub hooks: RuntimeHooks,
}

impl Runtime {
    /// Creates a runtime handle for the model at `model_path`. `limit` is how
    /// long any call on the handle may go without progress before the runtime
    /// counts as stuck (`None`: without limit).
    pub fn init(
        self: &Arc<Runtime>,
        model_path: CString,
        params: &ModelParams,
        limit: Option<Duration>,
        extras: InitExtras,
    ) -> Result<RawModel> {
        let features = InitFeatures { cross_attn: params.use_cross_attn == Some(true), hooks: extras.hooks.any() };
        self.layout.check_init(&features).map_err(|why| Error::new(ErrorKind::NotSupported, why))?;
        let api = self.api.clone();
        let layout = self.layout;
        let params = params.clone();
        let path_for_error = model_path.to_string_lossy().into_owned();
        let owned = InitStorage::new(model_path, extras, self.id());
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
        let sampling = owned.sampling.expect("set by a successful init");
        Ok(RawModel {
            runtime: self.clone(),
            sampling,
            handle,
            limit,
            destroyed: AtomicBool::new(false),
            handle_gone: Arc::new(AtomicBool::new(false)),
            owned: Mutex::new(Some(owned)),
            cross_attn: CrossAttnSlot::default(),
        })
    }
}

/// What `rkllm_init` was given and the runtime may keep pointers into: owned
/// here, at a stable heap address, until after `rkllm_destroy`.
struct InitStorage {
    model_path: CString,
    image_tags: Option<[CString; 3]>,
    /// The hooks the runtime gets a pointer to, if any.
    hooks: Option<Box<HookTable>>,
    /// The model's sampling values: the runtime's defaults with the set
    /// parameters over them (what a run without its own uses).
    sampling: Option<SamplingValues>,
    /// The detected release's own structs (see `Layout::init`).
    structs: Option<Box<dyn Send>>,
}

impl InitStorage {
    fn new(model_path: CString, extras: InitExtras, key: usize) -> InitStorage {
        let hooks = extras.hooks.any().then(|| Box::new(HookTable { hooks: extras.hooks, key }));
        InitStorage { model_path, image_tags: extras.image_tags, hooks, sampling: None, structs: None }
    }

    /// Runs on the dispatcher: default params, overrides, `rkllm_init`, and a
    /// cheap first call, because init has returned 0 after failing inside.
    fn init(
        &mut self,
        api: &Api,
        layout: &dyn Layout,
        params: &ModelParams,
    ) -> std::result::Result<HandleAddr, String> {
        // SAFETY: the symbol is rkllm_createDefaultParam.
        let image = unsafe { default_params(api.create_default_param) }?;
        self.sampling = Some(params.sampling_over(&default_sampling(&image)));
        let mut handle: LlmHandle = ptr::null_mut();
        let table = self.hooks.as_deref().map_or(ptr::null_mut(), |t| t as *const HookTable as *mut c_void);
        let hooks = self.hooks.as_deref().map(|t| &t.hooks);
        let tokenizer = hooks
            .and_then(|h| h.tokenizer.as_ref())
            .map(|_| (hook_calls::tokenizer_callback as TokenizerCallback, table));
        let embedder =
            hooks.and_then(|h| h.embedder.as_ref()).map(|_| (hook_calls::embed_callback as EmbedCallback, table));
        let input = InitInput {
            defaults: &image,
            params,
            model_path: &self.model_path,
            callback: trampoline::result_callback,
            void_callback: trampoline::result_callback_void,
            image_tags: self.image_tags.as_ref().map(|[a, b, c]| [a.as_c_str(), b.as_c_str(), c.as_c_str()]),
            tokenizer,
            embedder,
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
        let (probe, what) = match api.get_kv_cache_size {
            Some(size) => {
                let mut sizes = [0i32; 16];
                // SAFETY: the handle was just created; `sizes` has room for
                // n_batch (at most 8) entries.
                (unsafe { size(handle, sizes.as_mut_ptr()) }, "rkllm_get_kv_cache_size")
            }
            // SAFETY: the handle was just created; its history is empty.
            None => (unsafe { layout.clear_kv_cache(api.clear_kv_cache, handle, false) }, "rkllm_clear_kv_cache"),
        };
        if probe != 0 {
            // SAFETY: the handle is live and destroyed exactly once, here.
            unsafe { (api.destroy)(handle) };
            return Err(format!("rkllm_init reported success but the handle does not work ({what} returned {probe})"));
        }
        Ok(HandleAddr(handle))
    }
}

/// A live runtime handle with its owned init strings and structs.
pub struct RawModel {
    runtime: Arc<Runtime>,
    /// The model's sampling values (see `InitStorage::sampling`).
    sampling: SamplingValues,
    handle: HandleAddr,
    /// How long a call may go without progress (the model's call_timeout).
    limit: Option<Duration>,
    destroyed: AtomicBool,
    /// Set on the dispatcher thread right before `rkllm_destroy`: a call
    /// that passed `check_live` while a close was starting, and was queued
    /// behind the destroy, sees it there and never touches the handle.
    handle_gone: Arc<AtomicBool>,
    owned: Mutex<Option<InitStorage>>,
    /// The last cross-attention parameters, which the runtime may point at.
    cross_attn: CrossAttnSlot,
}

impl RawModel {
    /// The runtime this handle belongs to.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The model's sampling values: what a run without its own uses.
    pub fn sampling(&self) -> SamplingValues {
        self.sampling
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
        shared.attach_watch(self.runtime.dispatcher.watch().clone());
        let target = RunTarget {
            api: self.runtime.api.clone(),
            layout: self.runtime.layout,
            handle: self.handle,
            release: self.runtime.version().map(str::to_string),
            cross_attn: self.cross_attn.clone(),
        };
        let job = run::job(target, request, shared);
        self.runtime.dispatcher.submit_limited(self.limit, job)
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

    /// `rkllm_clear_kv_cache(handle, keep_system_prompt, NULL, NULL)` (in
    /// the release's form).
    pub fn clear_kv_cache(&self, keep_system_prompt: bool) -> Result<()> {
        let layout = self.runtime.layout;
        // SAFETY: live handle on the dispatcher; the layout calls the
        // release's form; NULL ranges mean "everything".
        self.call_status("rkllm_clear_kv_cache", move |api, h| unsafe {
            layout.clear_kv_cache(api.clear_kv_cache, h, keep_system_prompt)
        })
    }

    fn later_call<T>(&self, call: Option<T>, name: &str) -> Result<T> {
        call.ok_or_else(|| {
            Error::new(
                ErrorKind::NotSupported,
                format!("{name} needs runtime 1.2.1 or later; this one is {}", self.runtime.family()),
            )
        })
    }

    /// Tokens currently in the KV cache (first batch slot).
    pub fn kv_cache_size(&self) -> Result<i32> {
        let size = self.later_call(self.runtime.api.get_kv_cache_size, "rkllm_get_kv_cache_size")?;
        let (code, size) = self.call(move |_, h| {
            let mut sizes = [0i32; 16];
            // SAFETY: live handle; room for the at most 8 batch slots.
            let code = unsafe { size(h, sizes.as_mut_ptr()) };
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
        let set = self.later_call(self.runtime.api.set_function_tools, "rkllm_set_function_tools")?;
        // SAFETY: live handle; the strings are owned by the closure for the call.
        self.call_status("rkllm_set_function_tools", move |_, h| unsafe {
            set(h, system.as_ptr(), tools.as_ptr(), tool_response.as_ptr())
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
            std::mem::forget(self.cross_attn.lock().unwrap_or_else(|p| p.into_inner()).take());
            return Ok(());
        }
        let owned = self.owned.lock().unwrap_or_else(|p| p.into_inner()).take();
        let cross_attn = self.cross_attn.clone();
        let api = self.runtime.api.clone();
        let handle = self.handle;
        let gone = self.handle_gone.clone();
        let result = self.runtime.dispatcher.call(move || {
            let h = handle;
            gone.store(true, Ordering::Release);
            // SAFETY: the flag above makes this the only destroy of a live handle.
            let code = unsafe { (api.destroy)(h.0) };
            // The init strings and the cross-attention parameters may be
            // referenced by the runtime until now.
            drop(owned);
            drop(cross_attn.lock().unwrap_or_else(|p| p.into_inner()).take());
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
