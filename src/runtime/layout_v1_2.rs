//! Runtime releases 1.2.1 – 1.2.3: their struct layouts, and the code that
//! builds them for `rkllm_init` and `rkllm_run` ([`V1_2`]).

use super::layout_common::{
    apply_params, check_run_v1_2, EmbedInput, ExtendParam, InitFeatures, InitInput, Layout, LlmHandle, LoraParam,
    MultimodalV1_2, ProbeSignals, PromptCacheParam, RunFn, RunInput, RunPayload, RunShape, TokenInput, UntypedFn,
    UntypedInitFn, MIN_POINTER,
};
use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};
use std::ptr;

/// `RKLLMParam` as 1.2 lays it out (208 bytes). C `bool` fields are held as
/// `u8` so that an unexpected byte value can never be undefined behaviour here.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Param {
    pub model_path: *const c_char,
    pub max_context_len: i32,
    pub max_new_tokens: i32,
    pub top_k: i32,
    pub n_keep: i32,
    pub top_p: f32,
    pub temperature: f32,
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub mirostat: i32,
    pub mirostat_tau: f32,
    pub mirostat_eta: f32,
    pub skip_special_token: u8,
    pub is_async: u8,
    pub img_start: *const c_char,
    pub img_end: *const c_char,
    pub img_content: *const c_char,
    pub extend_param: ExtendParam,
}

/// `RKLLMInput` as 1.2 lays it out (64 bytes); the union is 48 bytes.
#[repr(C)]
pub struct Input {
    pub role: *const c_char,
    pub enable_thinking: u8,
    pub input_type: i32,
    pub payload: InputPayload,
}

/// The input union of 1.2 (48 bytes, the multimodal member's size).
#[repr(C)]
pub union InputPayload {
    pub prompt: *const c_char,
    pub tokens: TokenInput,
    pub embed: EmbedInput,
    pub multimodal: MultimodalV1_2,
    pub raw: [u64; 6],
}

/// `RKLLMInferParam` as 1.2 lays it out (32 bytes).
#[repr(C)]
pub struct InferParam {
    pub mode: i32,
    pub lora_params: *mut LoraParam,
    pub prompt_cache_params: *mut PromptCacheParam,
    pub keep_history: i32,
}

/// 1.2's `rkllm_init`: the third argument is the result callback itself.
pub type InitFn = unsafe extern "C" fn(
    handle: *mut *mut c_void,
    param: *mut Param,
    callback: super::layout_common::ResultCallback,
) -> i32;

/// The layout of family 1.2.
pub struct V1_2;

/// What 1.2's `rkllm_init` is given and the runtime may keep pointers into.
struct InitStructs {
    param: Param,
}

/// The clear call of 1.2.1 and later.
type ClearFn = unsafe extern "C" fn(LlmHandle, i32, *mut i32, *mut i32) -> i32;

impl InputPayload {
    /// The union member for `payload`.
    pub fn of(payload: &RunPayload<'_>) -> InputPayload {
        let mut union = InputPayload { raw: [0; 6] };
        match payload {
            RunPayload::Prompt(prompt) => union.prompt = prompt.as_ptr(),
            RunPayload::Tokens(_) => union.tokens = payload.tokens().expect("tokens"),
            RunPayload::Embeddings { .. } => union.embed = payload.embeddings().expect("embeddings"),
            RunPayload::Multimodal { .. } => union.multimodal = payload.multimodal_v1_2().expect("multimodal"),
        }
        union
    }
}

// SAFETY: the raw pointers inside point at the runtime's static default
// strings or at the model path its owner keeps; nothing here is thread-affine.
unsafe impl Send for InitStructs {}

impl Layout for V1_2 {
    fn limits_tokens_per_run(&self) -> bool {
        false
    }

    fn samples_per_run(&self) -> bool {
        false
    }

    fn check_run(&self, shape: &RunShape, _version: Option<&str>) -> Result<(), String> {
        check_run_v1_2(shape, "1.2")
    }

    fn check_init(&self, features: &InitFeatures) -> Result<(), String> {
        if features.hooks {
            return Err("tokenizer and embedding callbacks need a 1.3 runtime; this one is 1.2".into());
        }
        Ok(())
    }

    unsafe fn clear_kv_cache(&self, clear: UntypedFn, handle: LlmHandle, keep_system_prompt: bool) -> i32 {
        // SAFETY: the caller promises this runtime's rkllm_clear_kv_cache,
        // which takes four arguments from 1.2.1 on.
        let clear = unsafe { std::mem::transmute::<UntypedFn, ClearFn>(clear) };
        // SAFETY: live handle; NULL ranges mean "everything".
        unsafe { clear(handle, keep_system_prompt as i32, ptr::null_mut(), ptr::null_mut()) }
    }

    fn looks_like(&self, signals: &ProbeSignals) -> bool {
        // img_start and img_end are pointers; extend_param.embed_flash and
        // enabled_cpus_num are at 92 and 93.
        signals.word_64 >= MIN_POINTER
            && signals.word_72 >= MIN_POINTER
            && signals.byte_92 == 1
            && signals.byte_93 == 4
            && signals.tail_nonzero
    }

    unsafe fn init(&self, init: UntypedInitFn, input: InitInput<'_>, handle: &mut LlmHandle) -> (i32, Box<dyn Send>) {
        let mut structs = Box::new(InitStructs {
            // SAFETY: the image is 8-aligned and at least 208 bytes; the 1.2
            // runtime wrote a 1.2 Param there (bools held as u8).
            param: unsafe { ptr::read(input.defaults.0.as_ptr() as *const Param) },
        });
        let p = &mut structs.param;
        apply_params!(&mut *p, input.params);
        p.model_path = input.model_path.as_ptr();
        if let Some([start, end, content]) = input.image_tags {
            // The caller keeps the strings until after rkllm_destroy.
            (p.img_start, p.img_end, p.img_content) = (start.as_ptr(), end.as_ptr(), content.as_ptr());
        }
        // SAFETY: the caller promises a 1.2 runtime's rkllm_init, and this is
        // its signature.
        let init = unsafe { std::mem::transmute::<UntypedInitFn, InitFn>(init) };
        // SAFETY: 1.2's init takes the param and the callback itself; the
        // param is boxed and kept by the caller until after rkllm_destroy.
        let code = unsafe { init(handle, p, input.callback) };
        (code, structs)
    }

    unsafe fn run(&self, run: RunFn, handle: LlmHandle, input: RunInput<'_>, userdata: *mut c_void) -> i32 {
        // Callers check `samples_per_run` first: 1.2 has nowhere to put them.
        debug_assert!(input.sampling.is_none(), "per-run sampling on a 1.2 runtime");
        let mut prompt = Input {
            role: input.role.as_ptr(),
            enable_thinking: input.enable_thinking as u8,
            input_type: input.payload.input_type(),
            payload: InputPayload::of(&input.payload),
        };
        let mut infer = InferParam {
            mode: input.mode,
            lora_params: input.lora.map_or(ptr::null_mut(), |l| l as *mut LoraParam),
            prompt_cache_params: input.prompt_cache.map_or(ptr::null_mut(), |c| c as *mut PromptCacheParam),
            keep_history: input.keep_history as i32,
        };
        // SAFETY: the structs are 1.2 layouts and the caller promises a 1.2
        // runtime; they and every string they point to live on this frame or
        // in the caller's `input` until rkllm_run has returned.
        unsafe { run(handle, &mut prompt as *mut _ as *mut c_void, &mut infer as *mut _ as *mut c_void, userdata) }
    }
}

const _: () = {
    assert!(size_of::<Param>() == 208);
    assert!(offset_of!(Param, model_path) == 0);
    assert!(offset_of!(Param, max_context_len) == 8);
    assert!(offset_of!(Param, max_new_tokens) == 12);
    assert!(offset_of!(Param, top_k) == 16);
    assert!(offset_of!(Param, n_keep) == 20);
    assert!(offset_of!(Param, top_p) == 24);
    assert!(offset_of!(Param, temperature) == 28);
    assert!(offset_of!(Param, repeat_penalty) == 32);
    assert!(offset_of!(Param, frequency_penalty) == 36);
    assert!(offset_of!(Param, presence_penalty) == 40);
    assert!(offset_of!(Param, mirostat) == 44);
    assert!(offset_of!(Param, mirostat_tau) == 48);
    assert!(offset_of!(Param, mirostat_eta) == 52);
    assert!(offset_of!(Param, skip_special_token) == 56);
    assert!(offset_of!(Param, is_async) == 57);
    assert!(offset_of!(Param, img_start) == 64);
    assert!(offset_of!(Param, img_end) == 72);
    assert!(offset_of!(Param, img_content) == 80);
    assert!(offset_of!(Param, extend_param) == 88);

    assert!(size_of::<InputPayload>() == 48);
    assert!(size_of::<Input>() == 64);
    assert!(offset_of!(Input, role) == 0);
    assert!(offset_of!(Input, enable_thinking) == 8);
    assert!(offset_of!(Input, input_type) == 12);
    assert!(offset_of!(Input, payload) == 16);

    assert!(size_of::<InferParam>() == 32);
    assert!(offset_of!(InferParam, mode) == 0);
    assert!(offset_of!(InferParam, lora_params) == 8);
    assert!(offset_of!(InferParam, prompt_cache_params) == 16);
    assert!(offset_of!(InferParam, keep_history) == 24);
};
