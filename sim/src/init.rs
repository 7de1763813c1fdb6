//! `rkllm_init` and `rkllm_destroy`.

use crate::abi::{CallbacksV13, ParamV12, ParamV13, ResultCallback, VoidResultCallback};
use crate::callback::ResultFn;
use crate::config::{self, Abi, OldRelease};
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
    let env = config::env();
    let abi = env.abi;
    // The default build prints its line first; the family-1-2-0 build once
    // the model file (whose `release` key wins) is read, or, when init
    // fails before that, with the environment's release.
    let mut announced = false;
    if env.old_release.is_none() {
        announce(Some(abi.version()));
        announced = true;
    }
    // SAFETY: forwarded from this function's contract.
    let result = unsafe { try_init(abi, param, cb, &mut announced) };
    if !announced {
        announce(env.old_release.and_then(OldRelease::version));
    }
    match result {
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

/// Prints the runtime's version line (`None`: the `silent` release, none).
fn announce(version: Option<&str>) {
    if let Some(v) = version {
        let _ =
            writeln!(std::io::stdout(), "I rkllm: rkllm-runtime version: {v} (simulator), rknpu driver version: sim");
    }
}

/// # Safety
/// As for [`init`].
unsafe fn try_init(
    abi: Abi,
    param: *const c_void,
    cb: *const c_void,
    announced: &mut bool,
) -> Result<Settings, String> {
    if param.is_null() {
        return Err("param is NULL".into());
    }
    // Read whole, in the release's size, so a smaller struct is an overread
    // that a memory checker reports.
    let old_family = config::env().old_release.is_some();
    let mut image_tag_addrs = [0usize; 3];
    let common = match abi {
        Abi::V1_2 => {
            // SAFETY: `param` points at a 1.2 RKLLMParam per the contract;
            // every field accepts any bits.
            let p = unsafe { std::ptr::read_unaligned(param as *const ParamV12) };
            image_tag_addrs = [p.img_start as usize, p.img_end as usize, p.img_content as usize];
            CommonParam::from_v12(&p, old_family)
        }
        // SAFETY: as above for 1.3.
        Abi::V1_3 => CommonParam::from_v13(&unsafe { std::ptr::read_unaligned(param as *const ParamV13) }),
    };
    check_param(&common)?;
    let mut tokenizer = None;
    let mut embedder = None;
    let (callback, result_userdata) = match abi {
        Abi::V1_2 => {
            if cb.is_null() {
                return Err("callback is NULL".into());
            }
            let f = if old_family {
                // SAFETY: in 1.2.0 and 1.2.1b1 the third argument is the
                // void-returning result callback.
                ResultFn::Void(unsafe { std::mem::transmute::<*const c_void, VoidResultCallback>(cb) })
            } else {
                // SAFETY: in 1.2 the third argument is the result callback itself.
                ResultFn::Int(unsafe { std::mem::transmute::<*const c_void, ResultCallback>(cb) })
            };
            (f, 0usize)
        }
        Abi::V1_3 => {
            if cb.is_null() {
                return Err("RKLLMCallback pointer is NULL".into());
            }
            // SAFETY: in 1.3 the third argument points at RKLLMCallback.
            let c = unsafe { std::ptr::read_unaligned(cb as *const CallbacksV13) };
            let f = c.result_callback.ok_or("RKLLMCallback.result_callback is NULL")?;
            tokenizer = c.tokenizer_callback.map(|t| (t, c.tokenizer_userdata as usize));
            embedder = c.embed_callback.map(|e| (e, c.embed_userdata as usize));
            (ResultFn::Int(f), c.result_userdata as usize)
        }
    };
    // SAFETY: check_param refused NULL; the caller passes a C string.
    let model_path = unsafe { CStr::from_ptr(common.model_path) }.to_owned();
    let path = Path::new(std::ffi::OsStr::from_bytes(model_path.to_bytes()));
    let model = model_file::load(path)?;
    let old_release = config::env().old_release.map(|env| model.release.unwrap_or(env));
    if let Some(release) = old_release {
        announce(release.version());
        *announced = true;
    }
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
        old_release,
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
        tokenizer,
        embedder,
        image_tag_addrs,
        use_cross_attn: common.extend.use_cross_attn == 1,
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
