//! `rkllm_init` and `rkllm_destroy`.

use crate::abi::{CallbacksV13, ParamV12, ParamV13, ResultCallback};
use crate::config::{self, Abi};
use crate::faults::{self, FaultKind, FaultPoint};
use crate::handle::{self, Handle, Settings};
use crate::model_file;
use crate::params::{check_param, CommonParam};
use std::ffi::{c_void, CStr};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `rkllm_init(out, param, cb)` in the layout of the imitated release.
///
/// # Safety
/// `out` is NULL or writable; `param` is NULL or points at that release's
/// `RKLLMParam`; `cb` is the release's third argument (1.2: the callback,
/// 1.3: NULL or a pointer to `RKLLMCallback`).
pub unsafe fn init(out: *mut *mut c_void, param: *const c_void, cb: *const c_void) -> i32 {
    let abi = config::env().abi;
    let _ = writeln!(
        std::io::stdout(),
        "I rkllm: rkllm-runtime version: {} (simulator), rknpu driver version: sim",
        abi.version()
    );
    // SAFETY: forwarded from this function's contract.
    match unsafe { try_init(abi, param, cb) } {
        Ok(settings) => {
            if out.is_null() {
                eprintln!("E rkllm-sim: rkllm_init: handle pointer is NULL");
                return -1;
            }
            let value = handle::register(Handle::new(settings));
            // SAFETY: `out` is non-NULL and writable per the contract.
            unsafe { out.write(value) };
            0
        }
        Err(e) => {
            eprintln!("E rkllm-sim: rkllm_init: {e}");
            -1
        }
    }
}

/// # Safety
/// As for [`init`].
unsafe fn try_init(abi: Abi, param: *const c_void, cb: *const c_void) -> Result<Settings, String> {
    if param.is_null() {
        return Err("param is NULL".into());
    }
    // Read whole, in the release's size, so a smaller struct is an overread
    // that a memory checker reports.
    let common = match abi {
        // SAFETY: `param` points at a 1.2 RKLLMParam per the contract; every
        // field accepts any bits.
        Abi::V1_2 => CommonParam::from_v12(&unsafe { std::ptr::read_unaligned(param as *const ParamV12) }),
        // SAFETY: as above for 1.3.
        Abi::V1_3 => CommonParam::from_v13(&unsafe { std::ptr::read_unaligned(param as *const ParamV13) }),
    };
    check_param(&common)?;
    let (callback, result_userdata) = match abi {
        Abi::V1_2 => {
            if cb.is_null() {
                return Err("callback is NULL".into());
            }
            // SAFETY: in 1.2 the third argument is the result callback itself.
            let f = unsafe { std::mem::transmute::<*const c_void, ResultCallback>(cb) };
            (f, 0usize)
        }
        Abi::V1_3 => {
            if cb.is_null() {
                return Err("RKLLMCallback pointer is NULL".into());
            }
            // SAFETY: in 1.3 the third argument points at RKLLMCallback.
            let c = unsafe { std::ptr::read_unaligned(cb as *const CallbacksV13) };
            let f = c.result_callback.ok_or("RKLLMCallback.result_callback is NULL")?;
            (f, c.result_userdata as usize)
        }
    };
    // SAFETY: check_param refused NULL; the caller passes a C string.
    let model_path = unsafe { CStr::from_ptr(common.model_path) }.to_owned();
    let path = Path::new(std::ffi::OsStr::from_bytes(model_path.to_bytes()));
    let model = model_file::load(path)?;
    let model_file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);

    let mut broken = false;
    if let Some(kind) = faults::at(&model.faults, FaultPoint::Init) {
        faults::strike(kind, FaultPoint::Init);
        match kind {
            FaultKind::Error => return Err("injected fault at init".into()),
            FaultKind::Broken => broken = true,
            _ => {}
        }
    }
    let env = config::env();
    Ok(Settings {
        abi,
        broken,
        model_path_addr: common.model_path as usize,
        model_path,
        model_file_bytes,
        waiting: model.waiting.unwrap_or(env.waiting),
        time_scale: model.time_scale.unwrap_or(env.time_scale),
        max_context_len: common.max_context_len,
        max_new_tokens: common.max_new_tokens,
        callback,
        result_userdata,
        model,
    })
}

/// `rkllm_destroy`: a handle that is not live is a double free in the real
/// runtime, so it is reported and the process aborts.
pub fn destroy(value: *mut c_void) -> i32 {
    match handle::unregister(value) {
        Some(h) => {
            h.touch_model_path("rkllm_destroy");
            0
        }
        None => {
            eprintln!("E rkllm-sim: rkllm_destroy: {value:p} is not a live handle (double destroy?); aborting as the runtime would crash");
            std::process::abort();
        }
    }
}
