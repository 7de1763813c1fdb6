//! Loading `librkllmrt.so` and resolving the functions rkl calls.

use super::layout_common::{CrossAttnParam, LlmHandle, LoraAdapter, RunFn, UntypedFn, UntypedInitFn};
use crate::error::{Error, ErrorKind, Result};
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use std::ffi::{c_char, c_void};

pub type HandleFn = unsafe extern "C" fn(LlmHandle) -> i32;
pub type PathFn = unsafe extern "C" fn(LlmHandle, *const c_char) -> i32;
pub type KvSizeFn = unsafe extern "C" fn(LlmHandle, *mut i32) -> i32;
pub type LoraFn = unsafe extern "C" fn(LlmHandle, *mut LoraAdapter) -> i32;
pub type ThreeStringsFn = unsafe extern "C" fn(LlmHandle, *const c_char, *const c_char, *const c_char) -> i32;
pub type CrossAttnFn = unsafe extern "C" fn(LlmHandle, *mut CrossAttnParam) -> i32;

/// Every runtime function rkl uses, resolved once per loaded runtime.
pub struct Api {
    /// Called only through `default_params`, which guards its result.
    pub create_default_param: UntypedFn,
    /// Called only through the detected release's layout file.
    pub init: UntypedInitFn,
    pub run: RunFn,
    pub abort: HandleFn,
    pub destroy: HandleFn,
    pub load_prompt_cache: PathFn,
    pub release_prompt_cache: HandleFn,
    /// Its arguments differ by release: called through the layout.
    pub clear_kv_cache: UntypedFn,
    pub load_lora: LoraFn,
    pub set_chat_template: ThreeStringsFn,
    /// From 1.2.1 on (these three are `None` for 1.2.0 and 1.2.1b1).
    pub get_kv_cache_size: Option<KvSizeFn>,
    pub set_function_tools: Option<ThreeStringsFn>,
    pub set_cross_attn_params: Option<CrossAttnFn>,
}

/// Symbols whose absence identifies an older release rather than a damaged file.
pub const CLEAR_KV_CACHE: &str = "rkllm_clear_kv_cache";
/// From 1.2.0 on.
pub const CHAT_TEMPLATE: &str = "rkllm_set_chat_template";
/// From 1.2.1 on.
pub const KV_CACHE_SIZE: &str = "rkllm_get_kv_cache_size";
/// From 1.2.1 on.
pub const FUNCTION_TOOLS: &str = "rkllm_set_function_tools";
/// From 1.2.1 on.
pub const CROSS_ATTN: &str = "rkllm_set_cross_attn_params";

/// Opens the runtime at `path` (a file path, or a bare name for the loader's
/// search). Symbols are bound now, so a broken library fails here.
pub fn open_library(path: &str) -> Result<Library> {
    // SAFETY: loading a shared library runs its initialisers; that is the
    // whole point of a runtime path and the caller chose it.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| Error::new(ErrorKind::RuntimeNotFound, format!("cannot load the RKLLM runtime '{path}': {e}")))
}

/// Whether `lib` exports `name`.
pub fn has_symbol(lib: &Library, name: &str) -> bool {
    // SAFETY: the symbol is only looked up, never called or read through.
    unsafe { lib.get::<*const c_void>(name.as_bytes()) }.is_ok()
}

struct Resolver<'a> {
    lib: &'a Library,
    missing: Vec<&'static str>,
}

impl Resolver<'_> {
    /// Resolves `name` as a function of type `T`, recording it when absent.
    ///
    /// # Safety
    /// `T` must be the function's real signature in the releases rkl supports.
    unsafe fn get<T: Copy>(&mut self, name: &'static str) -> Option<T> {
        // SAFETY: the caller guarantees `T` is the function's signature.
        match unsafe { self.lib.get::<T>(name.as_bytes()) } {
            Ok(sym) => Some(*sym),
            Err(_) => {
                self.missing.push(name);
                None
            }
        }
    }
}

/// Resolves every function rkl needs; the error names all that are missing.
/// `later_than_1_2_0`: the three functions 1.2.1 added are required too.
pub fn resolve(lib: &Library, path: &str, later_than_1_2_0: bool) -> Result<Api> {
    let mut r = Resolver { lib, missing: Vec::new() };
    // SAFETY: each type below is the signature the ABI tables give for the
    // name, with release-dependent struct pointers typed as void pointers (or,
    // for rkllm_init, untyped: only the detected release's layout file gives
    // it a signature and calls it). The library stays loaded for the life of
    // the process.
    let api = unsafe {
        (
            r.get("rkllm_createDefaultParam"),
            r.get("rkllm_init"),
            r.get("rkllm_run"),
            r.get("rkllm_abort"),
            r.get("rkllm_destroy"),
            r.get("rkllm_load_prompt_cache"),
            r.get("rkllm_release_prompt_cache"),
            r.get(CLEAR_KV_CACHE),
            r.get("rkllm_load_lora"),
            r.get(CHAT_TEMPLATE),
        )
    };
    // SAFETY: as above.
    let later: (Option<KvSizeFn>, Option<ThreeStringsFn>, Option<CrossAttnFn>) = if later_than_1_2_0 {
        unsafe { (r.get(KV_CACHE_SIZE), r.get(FUNCTION_TOOLS), r.get(CROSS_ATTN)) }
    } else {
        (None, None, None)
    };
    let later_complete = !later_than_1_2_0 || (later.0.is_some() && later.1.is_some() && later.2.is_some());
    match api {
        (
            Some(create_default_param),
            Some(init),
            Some(run),
            Some(abort),
            Some(destroy),
            Some(load_prompt_cache),
            Some(release_prompt_cache),
            Some(clear_kv_cache),
            Some(load_lora),
            Some(set_chat_template),
        ) if later_complete => Ok(Api {
            create_default_param,
            init,
            run,
            abort,
            destroy,
            load_prompt_cache,
            release_prompt_cache,
            clear_kv_cache,
            load_lora,
            set_chat_template,
            get_kv_cache_size: later.0,
            set_function_tools: later.1,
            set_cross_attn_params: later.2,
        }),
        _ => Err(Error::new(
            ErrorKind::RuntimeUnsupported,
            format!("'{path}' is not a usable RKLLM runtime: missing symbol(s) {}", r.missing.join(", ")),
        )),
    }
}
