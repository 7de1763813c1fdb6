//! Models: the `rkl_model` handle and its registry, `rkl_open_params`,
//! `rkl_open`, `rkl_close`, `rkl_model_restart`, `rkl_model_info`.

use super::args::{self, Versioned};
use super::error::{FfiError, FfiResult};
use super::handles::{self, Registry, MODEL_TAG};
use super::hooks::{rkl_embed_fn, rkl_tokenize_fn, CEmbedder, CTokenizer};
use super::status::rkl_status;
use crate::{AutoCache, ErrorKind, Family, MediaTags, Model, ModelParams, OpenConfig, RuntimeHooks, Tags};
use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

/// An open model. Opaque: only ever used through pointers returned by
/// `rkl_open()`, which are tokens the library looks up, never addresses.
pub struct rkl_model {
    _private: [u8; 0],
}

/// "Not set" for the integer fields of ::rkl_open_params: the runtime's own
/// default is used. (Float fields use NaN for the same purpose.)
pub const RKL_UNSET: i32 = i32::MIN;

/// ::rkl_open_params `flags`: isolation mode. The runtime runs in a worker
/// process (`rkl-host`, installed with the library; found beside it, in
/// `../libexec` or `../bin` from it, or through the `RKL_HOST` environment
/// variable). A crash or hang of the runtime then cannot take the calling
/// process down: the call in flight returns ::RKL_RUNTIME_CRASHED (or
/// ::RKL_RUNTIME_TIMEOUT) and the model is reopened on the next call. The API
/// is the same in both modes. The environment variable `RKL_ISOLATED=1`
/// turns it on for every model.
pub const RKL_OPEN_ISOLATED: u32 = 1;

/// How to open a model. Fill with rkl_open_params_init(), then set
/// `model_path` and whatever else should differ from the defaults.
///
/// Tuning fields left "unset" keep the runtime's own default; rkl starts from
/// the runtime's default parameters and changes only what is set. Integer
/// fields are unset when they hold ::RKL_UNSET, float fields when they hold
/// NaN (rkl_open_params_init() writes these). Set values are range-checked
/// before the runtime sees them.
///
/// Compatibility: `struct_size` tells rkl which version of the struct the
/// caller has. Fields are only ever added at the end; a field added in a
/// later version treats 0 as "default", so callers built against an older
/// header keep working with a newer library.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rkl_open_params {
    /// Size of the struct as the caller knows it; written by
    /// rkl_open_params_init().
    pub struct_size: usize,
    /// The model file (`.rkllm`). Required. UTF-8, read only during rkl_open().
    pub model_path: *const c_char,
    /// The runtime library, or NULL: then the `RKL_RUNTIME` environment
    /// variable, else the dynamic loader's search for `librkllmrt.so`.
    pub runtime_path: *const c_char,
    /// The runtime ABI ("1.2", "1.3", or a release such as "1.2.3"), or NULL
    /// or "auto": then `RKL_RUNTIME_ABI`, else detected. An explicit ABI must
    /// agree with what detection finds when detection is certain.
    pub runtime_abi: *const c_char,
    /// Context window in tokens, 1..=1048576 (runtime default 512).
    pub max_context_len: i32,
    /// Tokens to generate per request, -1 = until the end (runtime default -1).
    pub max_new_tokens: i32,
    /// Top-k sampling, >= 0; 0 disables it (default 40).
    pub top_k: i32,
    /// Tokens kept when the context shifts, >= -1 (default -1: runtime's choice).
    pub n_keep: i32,
    /// Nucleus sampling mass, 0..=1 (default 0.9).
    pub top_p: f32,
    /// Sampling temperature, >= 0 (default 0.8).
    pub temperature: f32,
    /// Repetition penalty, >= 0 (default 1.1).
    pub repeat_penalty: f32,
    /// Frequency penalty, -100..=100 (default 0).
    pub frequency_penalty: f32,
    /// Presence penalty, -100..=100 (default 0).
    pub presence_penalty: f32,
    /// Mirostat mode: 0 off, 1 or 2 (default 0).
    pub mirostat: i32,
    /// Mirostat target entropy, > 0 (default 5.0).
    pub mirostat_tau: f32,
    /// Mirostat learning rate, > 0 (default 0.1).
    pub mirostat_eta: f32,
    /// 1: leave special tokens out of the text; 0: keep them (default 1).
    pub skip_special_token: i32,
    /// 1: read word embeddings from flash; 0: from memory (default 1).
    pub embed_flash: i32,
    /// CPU cores the runtime may use, 1..=8 (default 4).
    pub enabled_cpus_num: i32,
    /// Bit mask of those cores; 0 = unset (the runtime's choice).
    pub enabled_cpus_mask: u32,
    /// NPU domain id, >= 0 (default 0).
    pub base_domain_id: i32,
    /// Unused (on 64-bit targets it is where version 1 of the struct had
    /// padding, so it may hold anything and is never read).
    pub _reserved: u32,
    /// Version 2 of the struct starts here. Bit flags: ::RKL_OPEN_ISOLATED;
    /// 0 (default): in-process. Unknown bits are refused.
    pub flags: u32,
    /// A call or generation on which the runtime makes no progress (no
    /// token, no return) for this many ms fails with ::RKL_RUNTIME_TIMEOUT.
    /// Isolation mode kills the worker and reopens the model on the next
    /// call; in-process the runtime's thread stays stuck and every model on
    /// that runtime fails from then on. Must exceed the longest prefill.
    /// 0 (default): no limit.
    pub call_timeout_ms: u32,
    /// How long the runtime may take to stop after rkl_abort(), in ms:
    /// beyond it, isolation mode kills the worker (the generation still ends
    /// with ::RKL_FINISH_ABORTED) and restarts it on the next call;
    /// in-process the late stop is logged and shows in rkl_stats.abort_ms.
    /// 0 (default): 2000.
    pub abort_grace_ms: u32,
    /// Isolation mode: automatic restarts allowed per minute after the
    /// worker died; past it calls fail with ::RKL_RUNTIME_CRASHED until
    /// rkl_model_restart(). 0 (default): 3; negative: never restart
    /// automatically.
    pub max_restarts: i32,
    /// Version 3 of the struct starts here. Automatic prompt caching: a
    /// directory (UTF-8; made owner-only when missing) where requests that
    /// mark a stable prefix (`rkl_generate_params.cache_prefix_bytes`) find
    /// the prefix's cache, or save it the first time. Keyed by the model
    /// file's content, the runtime release, the chat template, the prefix
    /// and the settings that shape the KV state, so a change of any of them
    /// makes a new cache. Several processes and models may share the
    /// directory. NULL (default): off. Copied during rkl_open().
    pub cache_dir: *const c_char,
    /// Automatic prompt caching: the most bytes the directory's automatic
    /// caches may take together; past it the least recently used are
    /// removed. 0 (default): no cap.
    pub cache_max_bytes: u64,
    /// Version 4 of the struct starts here. 1: a cross-attention model
    /// (requests pass `rkl_generate_params.cross_attn`; runtime 1.2.1 or
    /// later); 0 (default): not.
    pub use_cross_attn: i32,
    /// Unused; must be 0.
    pub _reserved4: u32,
    /// Image tags: the strings the runtime puts before (`image_start`, e.g.
    /// "<|vision_start|>"), after (`image_end`) and inside (`image_content`,
    /// the placeholder token) each image of a multimodal prompt. All three
    /// or none (default: the runtime's on 1.2, empty strings on 1.3).
    /// Release 1.2 takes them at open, 1.3 with every request; rkl does
    /// both from this one setting. Copied during rkl_open().
    pub image_start: *const c_char,
    /// See `image_start`.
    pub image_end: *const c_char,
    /// See `image_start`.
    pub image_content: *const c_char,
    /// Video tags (release 1.3), as the image tags.
    pub video_start: *const c_char,
    /// See `video_start`.
    pub video_end: *const c_char,
    /// See `video_start`.
    pub video_content: *const c_char,
    /// The caller's tokenizer (release 1.3, in-process models), or NULL
    /// (default): the model's. Kept until rkl_close().
    pub tokenizer: rkl_tokenize_fn,
    /// Passed to `tokenizer` unchanged; never dereferenced by rkl.
    pub tokenizer_userdata: *mut std::ffi::c_void,
    /// The caller's embedding lookup (release 1.3, in-process models), or
    /// NULL (default): the model's. Kept until rkl_close().
    pub embedder: rkl_embed_fn,
    /// Passed to `embedder` unchanged; never dereferenced by rkl.
    pub embedder_userdata: *mut std::ffi::c_void,
}

// SAFETY: repr(C), starts with usize; pointers, integers and floats are
// valid for any bit pattern.
unsafe impl Versioned for rkl_open_params {
    const NAME: &'static str = "rkl_open_params";
    /// Version 1 ended with `base_domain_id`.
    const V1_SIZE: usize = V1_OPEN_PARAMS_SIZE;
}

/// `sizeof(rkl_open_params)` of version 1, which ended with `base_domain_id`
/// (plus padding to the struct's alignment).
pub const V1_OPEN_PARAMS_SIZE: usize =
    std::mem::offset_of!(rkl_open_params, _reserved).next_multiple_of(std::mem::align_of::<rkl_open_params>());

#[cfg(target_pointer_width = "64")]
const _: () = assert!(
    V1_OPEN_PARAMS_SIZE == 104
        && std::mem::offset_of!(rkl_open_params, flags) == 104
        && std::mem::offset_of!(rkl_open_params, cache_dir) == 120
        && std::mem::offset_of!(rkl_open_params, use_cross_attn) == 136
        && std::mem::offset_of!(rkl_open_params, image_start) == 144
        && std::mem::offset_of!(rkl_open_params, tokenizer) == 192
        && std::mem::size_of::<rkl_open_params>() == 224
);

impl rkl_open_params {
    fn defaults() -> rkl_open_params {
        rkl_open_params {
            struct_size: std::mem::size_of::<rkl_open_params>(),
            model_path: ptr::null(),
            runtime_path: ptr::null(),
            runtime_abi: ptr::null(),
            max_context_len: RKL_UNSET,
            max_new_tokens: RKL_UNSET,
            top_k: RKL_UNSET,
            n_keep: RKL_UNSET,
            top_p: f32::NAN,
            temperature: f32::NAN,
            repeat_penalty: f32::NAN,
            frequency_penalty: f32::NAN,
            presence_penalty: f32::NAN,
            mirostat: RKL_UNSET,
            mirostat_tau: f32::NAN,
            mirostat_eta: f32::NAN,
            skip_special_token: RKL_UNSET,
            embed_flash: RKL_UNSET,
            enabled_cpus_num: RKL_UNSET,
            enabled_cpus_mask: 0,
            base_domain_id: RKL_UNSET,
            _reserved: 0,
            flags: 0,
            call_timeout_ms: 0,
            abort_grace_ms: 0,
            max_restarts: 0,
            cache_dir: ptr::null(),
            cache_max_bytes: 0,
            use_cross_attn: 0,
            _reserved4: 0,
            image_start: ptr::null(),
            image_end: ptr::null(),
            image_content: ptr::null(),
            video_start: ptr::null(),
            video_end: ptr::null(),
            video_content: ptr::null(),
            tokenizer: None,
            tokenizer_userdata: ptr::null_mut(),
            embedder: None,
            embedder_userdata: ptr::null_mut(),
        }
    }

    /// Reads the media tags and the hooks into `config`.
    ///
    /// # Safety
    /// The tag strings are NULL or NUL-terminated, valid for the call.
    unsafe fn apply_media(&self, config: &mut OpenConfig) -> FfiResult<()> {
        if self._reserved4 != 0 {
            return Err(FfiError::invalid("params->_reserved4 must be 0"));
        }
        config.params.use_cross_attn = match self.use_cross_attn {
            0 => None,
            1 => Some(true),
            other => return Err(FfiError::invalid(format!("params->use_cross_attn = {other}: expected 0 or 1"))),
        };
        let tags = |what: &str, [start, end, content]: [*const c_char; 3]| -> FfiResult<Option<Tags>> {
            // SAFETY: forwarded from the caller.
            let read = |p, part: &str| unsafe { args::optional_text(p, &format!("params->{what}_{part}")) };
            match (read(start, "start")?, read(end, "end")?, read(content, "content")?) {
                (None, None, None) => Ok(None),
                (Some(start), Some(end), Some(content)) => {
                    Ok(Some(Tags { start: start.into(), end: end.into(), content: content.into() }))
                }
                _ => Err(FfiError::invalid(format!(
                    "params->{what}_start, _end and _content are set together or not at all"
                ))),
            }
        };
        config.media_tags = MediaTags {
            image: tags("image", [self.image_start, self.image_end, self.image_content])?,
            video: tags("video", [self.video_start, self.video_end, self.video_content])?,
        };
        config.hooks = RuntimeHooks {
            tokenizer: self
                .tokenizer
                .map(|function| std::sync::Arc::new(CTokenizer { function, userdata: self.tokenizer_userdata }) as _),
            embedder: self
                .embedder
                .map(|function| std::sync::Arc::new(CEmbedder { function, userdata: self.embedder_userdata }) as _),
        };
        Ok(())
    }

    /// Applies the reliability fields to `config`.
    fn apply_reliability(&self, config: &mut OpenConfig) -> FfiResult<()> {
        if self.flags & !RKL_OPEN_ISOLATED != 0 {
            return Err(FfiError::invalid(format!("flags = {:#x} has bits this library does not know", self.flags)));
        }
        config.isolated = self.flags & RKL_OPEN_ISOLATED != 0;
        config.call_timeout = (self.call_timeout_ms != 0).then(|| Duration::from_millis(self.call_timeout_ms.into()));
        if self.abort_grace_ms != 0 {
            config.abort_grace = Duration::from_millis(self.abort_grace_ms.into());
        }
        match self.max_restarts {
            0 => {}
            n if n < 0 => config.restart.max_restarts = 0,
            n => config.restart.max_restarts = n as u32,
        }
        Ok(())
    }

    fn model_params(&self) -> FfiResult<ModelParams> {
        let int = |v: i32| (v != RKL_UNSET).then_some(v);
        let float = |v: f32| (!v.is_nan()).then_some(v);
        let flag = |v: i32, what: &str| match v {
            RKL_UNSET => Ok(None),
            0 => Ok(Some(false)),
            1 => Ok(Some(true)),
            other => Err(FfiError::invalid(format!("{what} = {other}: expected 0, 1 or RKL_UNSET"))),
        };
        let cpus = match self.enabled_cpus_num {
            RKL_UNSET => None,
            n if (1..=8).contains(&n) => Some(n as i8),
            n => return Err(FfiError::invalid(format!("enabled_cpus_num = {n} is out of range (expected 1..=8)"))),
        };
        Ok(ModelParams {
            max_context_len: int(self.max_context_len),
            max_new_tokens: int(self.max_new_tokens),
            top_k: int(self.top_k),
            n_keep: int(self.n_keep),
            top_p: float(self.top_p),
            temperature: float(self.temperature),
            repeat_penalty: float(self.repeat_penalty),
            frequency_penalty: float(self.frequency_penalty),
            presence_penalty: float(self.presence_penalty),
            mirostat: int(self.mirostat),
            mirostat_tau: float(self.mirostat_tau),
            mirostat_eta: float(self.mirostat_eta),
            skip_special_token: flag(self.skip_special_token, "skip_special_token")?,
            embed_flash: flag(self.embed_flash, "embed_flash")?,
            enabled_cpus_num: cpus,
            enabled_cpus_mask: (self.enabled_cpus_mask != 0).then_some(self.enabled_cpus_mask),
            base_domain_id: int(self.base_domain_id),
            use_cross_attn: None,
        })
    }
}

/// What the registry keeps for an open model: the model and the strings
/// rkl_model_info() hands out (owned here, so they live until rkl_close()).
pub struct ModelEntry {
    /// The model.
    pub model: Model,
    model_path: CString,
    runtime_path: CString,
    runtime_version: CString,
}

/// Every open model.
pub static MODELS: Registry<ModelEntry> = Registry::new(MODEL_TAG, "model");

/// Looks up a model handle.
pub fn model_entry(model: *const rkl_model) -> FfiResult<Arc<ModelEntry>> {
    MODELS.get(handles::value(model))
}

/// Fills `params` with the defaults: every tuning field unset, every pointer
/// NULL, `struct_size` = `struct_size`.
///
/// @param params       caller memory of `struct_size` bytes, written during
///                     the call only.
/// @param struct_size  `sizeof(rkl_open_params)` as the caller compiled it.
///                     Bytes past what this library knows are zeroed.
/// @return ::RKL_OK; ::RKL_NULL_ARGUMENT; ::RKL_INVALID_ARGUMENT when
///         `struct_size` is smaller than the first version of the struct.
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_open_params_init(params: *mut rkl_open_params, struct_size: usize) -> rkl_status {
    ffi_fn!({
        // SAFETY: the caller promises `struct_size` writable bytes at `params`.
        unsafe { args::init_struct(params, struct_size, &rkl_open_params::defaults(), "params") }
    })
}

/// Loads the runtime (once per process and library path), checks the
/// parameters and opens the model.
///
/// Everything that can be checked before the runtime sees it is checked
/// first (model file readable, parameters in range, runtime release
/// identified with certainty), and a failure names what was wrong.
///
/// @param params  the settings; read only during the call (rkl copies every
///                string it keeps).
/// @param out     receives the new handle, only on success. The handle is
///                valid until rkl_close(); it is a token, not an address.
/// @return ::RKL_OK; ::RKL_NULL_ARGUMENT; ::RKL_INVALID_ARGUMENT;
///         ::RKL_MODEL_NOT_FOUND; ::RKL_RUNTIME_NOT_FOUND (also when
///         isolation mode cannot find `rkl-host`);
///         ::RKL_RUNTIME_UNSUPPORTED; ::RKL_MODEL_LOAD_FAILED;
///         ::RKL_RUNTIME_CRASHED (isolation mode: the worker died while
///         loading); ::RKL_RUNTIME_TIMEOUT (`call_timeout_ms` passed).
///
/// Thread-safe: models may be opened from several threads at once.
#[no_mangle]
pub unsafe extern "C" fn rkl_open(params: *const rkl_open_params, out: *mut *mut rkl_model) -> rkl_status {
    ffi_fn!({
        args::require(out, "out")?;
        // SAFETY: the caller promises a readable struct of `struct_size` bytes.
        let p = unsafe { args::read_struct(params, "params")? };
        // SAFETY: the strings in `p` are NUL-terminated and valid for the call.
        let model_path = unsafe { args::text(p.model_path, "params->model_path")? };
        // SAFETY: as above.
        let runtime_path = unsafe { args::optional_text(p.runtime_path, "params->runtime_path")? };
        // SAFETY: as above.
        let runtime_abi = unsafe { args::optional_text(p.runtime_abi, "params->runtime_abi")? };
        let runtime_abi = match runtime_abi.map(str::trim) {
            None | Some("") | Some("auto") => None,
            Some(abi) => {
                Some(abi.parse::<Family>().map_err(|e| FfiError::invalid(format!("params->runtime_abi: {e}")))?)
            }
        };
        let mut config = OpenConfig {
            model_path: PathBuf::from(model_path),
            runtime_path: runtime_path.map(PathBuf::from),
            runtime_abi,
            params: p.model_params()?,
            ..OpenConfig::default()
        };
        p.apply_reliability(&mut config)?;
        // SAFETY: the strings in `p` are NUL-terminated and valid for the call.
        unsafe { p.apply_media(&mut config)? };
        // SAFETY: as above.
        if let Some(dir) = unsafe { args::optional_text(p.cache_dir, "params->cache_dir")? } {
            config.auto_cache = Some(AutoCache { dir: PathBuf::from(dir), max_bytes: p.cache_max_bytes });
        } else if p.cache_max_bytes != 0 {
            return Err(FfiError::invalid("params->cache_max_bytes is set without params->cache_dir"));
        }
        let model = Model::open(&config)?;
        let entry = ModelEntry {
            model_path: CString::new(model_path).unwrap_or_default(),
            runtime_path: CString::new(model.runtime_path()).unwrap_or_default(),
            runtime_version: CString::new(model.runtime_version().unwrap_or_default()).unwrap_or_default(),
            model,
        };
        let value = MODELS.insert(entry)?;
        log::debug!("rkl_open: opened '{model_path}' as model handle {value:#x}");
        // SAFETY: `out` was checked non-NULL; the caller promises it writable.
        unsafe { args::put(out, handles::pointer(value)) };
        Ok(())
    })
}

/// Closes a model: aborts its generations (they end with
/// ::RKL_FINISH_ABORTED), waits for calls already queued on it, and frees
/// the runtime's handle. The handle is invalid afterwards; strings from
/// rkl_model_info() are freed. Streams opened on the model stay valid
/// handles (they report the abort) until rkl_stream_close(). In isolation
/// mode it returns within `abort_grace_ms` plus one second whatever the
/// worker does: a worker that has not exited by then is killed with
/// everything it started.
///
/// @param model  a handle from rkl_open(), or NULL (then nothing happens).
/// @return ::RKL_OK, also for NULL and for a handle that was already closed
///         (closing twice is harmless); ::RKL_BAD_HANDLE for a value that was
///         never a model handle; ::RKL_REENTRANT when called from inside a
///         token callback on a model of the same runtime (the model stays
///         open); ::RKL_RUNTIME_FAILED when the runtime's destroy failed (the
///         model is closed all the same).
///
/// Thread-safe: may be called while other threads generate on the model;
/// their rkl_generate() returns with ::RKL_FINISH_ABORTED, and their later
/// calls get ::RKL_BAD_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn rkl_close(model: *mut rkl_model) -> rkl_status {
    ffi_fn!({
        let value = handles::value(model);
        let Some(entry) = MODELS.get_for_close(value)? else { return Ok(()) };
        let result = entry.model.close();
        if let Err(e) = &result {
            if e.kind() == ErrorKind::Reentrant {
                return Err(e.clone().into());
            }
        }
        MODELS.remove(value)?;
        log::debug!("rkl_close: closed model handle {value:#x}");
        Ok(result?)
    })
}

/// Isolation mode: stops the model's worker process (its generations end
/// with ::RKL_FINISH_ABORTED, other calls in flight with ::RKL_ABORTED),
/// starts a new one and opens the model again, restoring the chat template,
/// function tools, LoRA adapters and loaded prompt cache — not the KV
/// history. Use it after the automatic restarts ran out
/// (`max_restarts`), or to start afresh. Resets the restart count.
///
/// @param model  a handle from rkl_open().
/// @return ::RKL_OK; ::RKL_BAD_HANDLE; ::RKL_CLOSED; ::RKL_REENTRANT;
///         ::RKL_NOT_SUPPORTED for an in-process model; the status of a
///         failed open (e.g. ::RKL_RUNTIME_CRASHED).
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_model_restart(model: *mut rkl_model) -> rkl_status {
    ffi_fn!({ Ok(model_entry(model)?.model.restart()?) })
}

/// Facts about an open model, from rkl_model_info().
///
/// An output struct: set `struct_size = sizeof(rkl_model_details)` first. The
/// strings are owned by the model: valid until rkl_close() on it, never NULL
/// (empty when unknown), UTF-8 and NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rkl_model_details {
    /// Set by the caller to `sizeof(rkl_model_details)`.
    pub struct_size: usize,
    /// The model file, as given to rkl_open().
    pub model_path: *const c_char,
    /// Where the runtime was loaded from (the path or loader name used).
    pub runtime_path: *const c_char,
    /// The runtime release family in use: "1.2" or "1.3".
    pub family: *const c_char,
    /// The runtime's version (e.g. "1.2.3"). The runtime has no function for
    /// it and only prints it to stdout at init, so rkl listens to file
    /// descriptor 1 during the first init on each runtime, passing every byte
    /// through unchanged; empty when the runtime printed no version.
    pub runtime_version: *const c_char,
}

// SAFETY: repr(C), starts with usize; only pointers follow.
unsafe impl Versioned for rkl_model_details {
    const NAME: &'static str = "rkl_model_details";
    // The first version is the current one; freeze this as a number when a
    // field is added.
    const V1_SIZE: usize = std::mem::size_of::<rkl_model_details>();
}

fn family_text(family: Family) -> &'static CStr {
    match family {
        Family::V1_2_0 => c"1.2.0",
        Family::V1_2 => c"1.2",
        Family::V1_3 => c"1.3",
    }
}

/// Describes an open model.
///
/// @param model  a handle from rkl_open().
/// @param out    caller struct with `struct_size` set; filled only on
///               success. Its strings stay valid until rkl_close(model).
/// @return ::RKL_OK; ::RKL_BAD_HANDLE; ::RKL_NULL_ARGUMENT;
///         ::RKL_INVALID_ARGUMENT for a bad `struct_size`.
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_model_info(model: *const rkl_model, out: *mut rkl_model_details) -> rkl_status {
    ffi_fn!({
        let entry = model_entry(model)?;
        // SAFETY: the caller promises a struct of `struct_size` bytes at `out`.
        unsafe { args::check_out_struct(out, "out")? };
        let info = rkl_model_details {
            struct_size: std::mem::size_of::<rkl_model_details>(),
            model_path: entry.model_path.as_ptr(),
            runtime_path: entry.runtime_path.as_ptr(),
            family: family_text(entry.model.family()).as_ptr(),
            runtime_version: entry.runtime_version.as_ptr(),
        };
        // SAFETY: checked above; the strings live in `entry`, which the
        // registry keeps until rkl_close.
        unsafe { args::write_struct(out, &info, "out") }
    })
}
