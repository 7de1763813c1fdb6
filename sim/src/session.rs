//! The small per-handle calls: history, prompt caches, templates, tools, LoRA.

use crate::abi::LoraAdapter;
use crate::cache;
use crate::faults::{self, FaultKind, FaultPoint};
use crate::handle::Handle;
use std::ffi::{c_char, CStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A required C string as UTF-8; NULL or invalid UTF-8 is an error.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string.
unsafe fn required(ptr: *const c_char, what: &str) -> Result<String, String> {
    if ptr.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: non-NULL and NUL-terminated per the contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map(str::to_owned).map_err(|_| format!("{what} is not UTF-8"))
}

/// A required C string as a path.
///
/// # Safety
/// As for [`required`].
unsafe fn path(ptr: *const c_char, what: &str) -> Result<PathBuf, String> {
    if ptr.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: as above.
    let s = unsafe { CStr::from_ptr(ptr) };
    Ok(Path::new(std::ffi::OsStr::from_bytes(s.to_bytes())).to_path_buf())
}

/// Reports an error of `function` and gives its return code.
pub fn report(function: &str, result: Result<(), String>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("E rkllm-sim: {function}: {e}");
            -1
        }
    }
}

/// `rkllm_load_prompt_cache`: the history becomes the cached tokens, one turn.
///
/// # Safety
/// `path_ptr` is NULL or a C string.
pub unsafe fn load_prompt_cache(h: &Handle, path_ptr: *const c_char) -> Result<(), String> {
    if let Some(kind) = faults::at(&h.settings.model.faults, FaultPoint::CacheLoad) {
        faults::strike(kind, FaultPoint::CacheLoad);
        if kind == FaultKind::Error {
            return Err("injected fault at cache_load".into());
        }
    }
    // SAFETY: per the contract.
    let path = unsafe { path(path_ptr, "path") }?;
    let model = &h.settings.model;
    if model.cache_load_delay_ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(model.cache_load_delay_ms));
    }
    let tokens = cache::read_tokens(&path, model.kv_bytes_per_token, model.cache_check, &model.name)?;
    let mut s = h.session();
    if h.settings.model.sticky_kv {
        s.history_tokens += tokens;
        s.turns += 1;
    } else {
        s.history_tokens = tokens;
        s.turns = 1;
    }
    Ok(())
}

/// `rkllm_clear_kv_cache` and (unless `sticky_kv`) `rkllm_release_prompt_cache`:
/// empty history.
pub fn clear_history(h: &Handle) {
    let mut s = h.session();
    s.history_tokens = 0;
    s.turns = 0;
}

/// `rkllm_get_kv_cache_size`: writes the history token count to `sizes[0]`.
///
/// # Safety
/// `sizes` is NULL or writable for one `i32`.
#[cfg_attr(any(feature = "family-1-1", feature = "family-1-2-0"), allow(dead_code))]
pub unsafe fn kv_cache_size(h: &Handle, sizes: *mut i32) -> Result<(), String> {
    if sizes.is_null() {
        return Err("sizes is NULL".into());
    }
    let tokens = h.session().history_tokens;
    // SAFETY: non-NULL and writable per the contract.
    unsafe { sizes.write(i32::try_from(tokens).unwrap_or(i32::MAX)) };
    Ok(())
}

/// `rkllm_set_chat_template`: copies the three strings.
///
/// # Safety
/// Each pointer is NULL or a C string.
#[cfg_attr(feature = "family-1-1", allow(dead_code))] // 1.1 has no such export
pub unsafe fn set_chat_template(
    h: &Handle,
    system: *const c_char,
    prefix: *const c_char,
    postfix: *const c_char,
) -> Result<(), String> {
    // SAFETY: per the contract, for all three.
    let (system, prefix, postfix) = unsafe {
        (required(system, "system_prompt")?, required(prefix, "prompt_prefix")?, required(postfix, "prompt_postfix")?)
    };
    let mut s = h.session();
    s.system = system;
    s.prefix = prefix;
    s.postfix = postfix;
    Ok(())
}

/// `rkllm_set_function_tools`: checks the three strings, keeps `tools`.
///
/// # Safety
/// Each pointer is NULL or a C string.
#[cfg_attr(any(feature = "family-1-1", feature = "no-function-tools"), allow(dead_code))]
pub unsafe fn set_function_tools(
    h: &Handle,
    system: *const c_char,
    tools: *const c_char,
    tool_response: *const c_char,
) -> Result<(), String> {
    // SAFETY: per the contract, for all three.
    let tools = unsafe {
        required(system, "system_prompt")?;
        required(tool_response, "tool_response_str")?;
        required(tools, "tools")?
    };
    h.session().tools = tools;
    Ok(())
}

/// `rkllm_set_cross_attn_params`: checks the struct and keeps the pointer.
///
/// # Safety
/// `params` is NULL or points at a 40-byte `RKLLMCrossAttnParam`.
#[cfg_attr(any(feature = "family-1-1", feature = "family-1-2-0"), allow(dead_code))]
pub unsafe fn set_cross_attn(h: &Handle, params: *const std::ffi::c_void) -> Result<(), String> {
    if !h.settings.use_cross_attn {
        return Err("init's extend_param.use_cross_attn was 0".into());
    }
    if params.is_null() {
        return Err("params is NULL".into());
    }
    // SAFETY: non-NULL and of the 40-byte layout per the contract.
    let p = unsafe { std::ptr::read_unaligned(params as *const crate::abi::CrossAttnParam) };
    crate::run::check_cross_attn(&p)?;
    h.session().cross_attn_addr = Some(params as usize);
    Ok(())
}

/// `rkllm_load_lora`: the path must be an existing file, the name non-empty.
///
/// # Safety
/// `adapter` is NULL or points at an `RKLLMLoraAdapter` with C strings.
pub unsafe fn load_lora(h: &Handle, adapter: *const LoraAdapter) -> Result<(), String> {
    if adapter.is_null() {
        return Err("adapter is NULL".into());
    }
    // SAFETY: non-NULL and of the 24-byte layout per the contract.
    let a = unsafe { std::ptr::read_unaligned(adapter) };
    // SAFETY: the strings are NULL or C strings per the contract.
    let (path, name) = unsafe {
        (path(a.lora_adapter_path, "lora_adapter_path")?, required(a.lora_adapter_name, "lora_adapter_name")?)
    };
    if name.is_empty() {
        return Err("lora_adapter_name is empty".into());
    }
    if !a.scale.is_finite() {
        return Err(format!("scale = {} is not a finite number", a.scale));
    }
    if !path.is_file() {
        return Err(format!("'{}' is not an existing file", path.display()));
    }
    h.session().loras.insert(name, path);
    Ok(())
}
