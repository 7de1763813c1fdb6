//! Runs that return floats instead of text: `rkl_tensor`,
//! `rkl_hidden_states`, `rkl_logits`, `rkl_tensor_free`.

use super::args::{self, Versioned};
use super::error::{FfiError, FfiResult};
use super::handles::{Registry, TENSOR_TAG};
use super::model::{model_entry, rkl_model};
use super::request::{read_request, rkl_generate_params};
use super::stats::rkl_stats;
use super::status::rkl_status;
use crate::{Stats, Tensor};
use std::ffi::c_void;
use std::mem::offset_of;
use std::ptr;

/// Floats the runtime computed: `tokens` rows of `dim` values, row after
/// row, at `data`. Filled by rkl_hidden_states() and rkl_logits(); the
/// values belong to rkl until rkl_tensor_free(). Set `struct_size` before
/// the call (`sizeof(rkl_tensor)`); compatibility rules as for
/// ::rkl_open_params.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rkl_tensor {
    /// Size of the struct as the caller knows it.
    pub struct_size: usize,
    /// `tokens * dim` floats; NULL when the struct owns nothing.
    pub data: *const f32,
    /// Rows: one per token.
    pub tokens: usize,
    /// Values per row: the embedding size (hidden states) or the
    /// vocabulary size (logits).
    pub dim: usize,
    /// rkl's token for the values' storage; NULL when the struct owns
    /// nothing. Never dereferenced.
    pub storage: *mut c_void,
}

// SAFETY: repr(C), starts with usize; pointers and integers are valid for
// any bit pattern.
unsafe impl Versioned for rkl_tensor {
    const NAME: &'static str = "rkl_tensor";
    // The first version is the current one.
    const V1_SIZE: usize = std::mem::size_of::<rkl_tensor>();
}

impl rkl_tensor {
    fn empty() -> rkl_tensor {
        rkl_tensor {
            struct_size: std::mem::size_of::<rkl_tensor>(),
            data: ptr::null(),
            tokens: 0,
            dim: 0,
            storage: ptr::null_mut(),
        }
    }
}

/// Live tensors' values by token.
static STORAGE: Registry<Vec<f32>> = Registry::new(TENSOR_TAG, "rkl_tensor storage");

/// Checks the arguments, runs the request for `output` and delivers it.
///
/// # Safety
/// As the exports' contracts say.
unsafe fn run(
    model: *mut rkl_model,
    params: *const rkl_generate_params,
    out: *mut rkl_tensor,
    stats: *mut rkl_stats,
    output: fn(&crate::Model, &crate::GenerateRequest) -> crate::Result<(Tensor, Stats)>,
) -> FfiResult {
    let entry = model_entry(model)?;
    args::require(out, "out")?;
    // SAFETY: the caller promises a struct of `struct_size` bytes.
    unsafe { args::check_out_struct(out, "out")? };
    if !stats.is_null() {
        // SAFETY: as above.
        unsafe { args::check_out_struct(stats, "stats")? };
    }
    // SAFETY: the caller promises a readable params struct.
    let request = unsafe { read_request(params)? };
    let (tensor, figures) = output(&entry.model, &request)?;
    if !stats.is_null() {
        // SAFETY: checked above.
        unsafe { args::write_struct(stats, &rkl_stats::from(&figures), "stats")? };
    }
    let (values, tokens, dim) = (tensor.values, tensor.tokens, tensor.dim);
    let data = values.as_ptr();
    // Moving the vector into the registry leaves its heap block where it is.
    let token = STORAGE.insert(values)?;
    let view = rkl_tensor { struct_size: 0, data, tokens, dim, storage: token as *mut c_void };
    // SAFETY: checked above.
    let written = unsafe { args::write_struct(out, &view, "out") };
    if written.is_err() {
        let _ = STORAGE.remove(token);
    }
    written
}

/// Runs a request and returns the last hidden layer of its input, one row
/// per token: the embedding vectors retrieval (RAG) uses. Nothing is
/// generated. Takes every input kind of ::rkl_generate_params.
///
/// @param model   a handle from rkl_open().
/// @param params  the request; read only during the call (rkl copies it).
/// @param out     caller struct with `struct_size` set; filled only on
///                success. Free it with rkl_tensor_free().
/// @param stats   NULL, or caller stats with `struct_size` set; filled only
///                on success.
/// @return ::RKL_OK; ::RKL_BAD_HANDLE; ::RKL_NULL_ARGUMENT;
///         ::RKL_INVALID_ARGUMENT; ::RKL_NOT_SUPPORTED (an input the
///         runtime's release cannot take); ::RKL_CLOSED; ::RKL_REENTRANT;
///         ::RKL_ABORTED (rkl_abort() stopped it); ::RKL_CACHE_MISMATCH;
///         ::RKL_RUNTIME_FAILED (also when the runtime returned no hidden
///         states); ::RKL_RUNTIME_TIMEOUT; ::RKL_RUNTIME_CRASHED.
///
/// Thread-safe, queued like rkl_generate().
#[no_mangle]
pub unsafe extern "C" fn rkl_hidden_states(
    model: *mut rkl_model,
    params: *const rkl_generate_params,
    out: *mut rkl_tensor,
    stats: *mut rkl_stats,
) -> rkl_status {
    ffi_fn!({
        // SAFETY: forwarded from the caller.
        unsafe { run(model, params, out, stats, crate::Model::hidden_states) }
    })
}

/// Runs a request and returns the logits the runtime computed (rows of the
/// vocabulary's size). Nothing is generated.
///
/// @param model   a handle from rkl_open().
/// @param params  the request; read only during the call (rkl copies it).
/// @param out     caller struct with `struct_size` set; filled only on
///                success. Free it with rkl_tensor_free().
/// @param stats   NULL, or caller stats with `struct_size` set.
/// @return as rkl_hidden_states().
///
/// Thread-safe, queued like rkl_generate().
#[no_mangle]
pub unsafe extern "C" fn rkl_logits(
    model: *mut rkl_model,
    params: *const rkl_generate_params,
    out: *mut rkl_tensor,
    stats: *mut rkl_stats,
) -> rkl_status {
    ffi_fn!({
        // SAFETY: forwarded from the caller.
        unsafe { run(model, params, out, stats, crate::Model::logits) }
    })
}

/// Frees the values of a struct filled by rkl_hidden_states() or
/// rkl_logits() and sets every field but `struct_size` to NULL/0.
///
/// @param tensor  the struct, or NULL (then nothing happens). A struct that
///                owns nothing (`storage` NULL) is left alone.
/// @return ::RKL_OK, also for NULL and for a struct that owns nothing;
///         ::RKL_INVALID_ARGUMENT for a bad `struct_size`, or when `storage`
///         is not a live token of rkl (freed already through a copy, or
///         never filled by rkl): nothing is freed or written then.
///
/// Thread-safe; each struct must be freed once, by one thread.
#[no_mangle]
pub unsafe extern "C" fn rkl_tensor_free(tensor: *mut rkl_tensor) -> rkl_status {
    ffi_fn!({
        if tensor.is_null() {
            return Ok(());
        }
        // SAFETY: the caller promises a struct of `struct_size` bytes.
        unsafe { args::check_out_struct(tensor, "tensor")? };
        // SAFETY: `storage` lies inside the first version, which the check
        // proved the caller has; any bit pattern is a valid usize.
        let token =
            unsafe { tensor.cast::<u8>().add(offset_of!(rkl_tensor, storage)).cast::<usize>().read_unaligned() };
        if token == 0 {
            return Ok(());
        }
        let Ok(Some(values)) = STORAGE.remove(token) else {
            return Err(FfiError::invalid(format!(
                "tensor->storage ({token:#x}) holds nothing of rkl: the struct was freed already (through a copy?) \
                 or never filled by rkl"
            )));
        };
        // SAFETY: checked above; the caller's struct_size is kept.
        let cleared = unsafe { args::write_struct(tensor, &rkl_tensor::empty(), "tensor") };
        drop(values);
        cleared
    })
}
