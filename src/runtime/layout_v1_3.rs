//! Runtime release 1.3.0: its struct layouts, and the code that builds them
//! for `rkllm_init` and `rkllm_run` ([`V1_3`]).

use super::layout_common::{
    apply_params, ExtendParam, InitInput, Layout, LlmHandle, LoraParam, ProbeSignals, PromptCacheParam, ResultCallback,
    RunFn, RunInput, UntypedInitFn,
};
use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};
use std::ptr;

/// `RKLLMParam` as 1.3 lays it out (184 bytes). C `bool` fields are held as
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
    pub ignore_eos_token: u8,
    pub is_async: u8,
    pub extend_param: ExtendParam,
}

/// `RKLLMInput` as 1.3 lays it out (160 bytes); the union is 144 bytes.
#[repr(C)]
pub struct Input {
    pub role: *const c_char,
    pub enable_thinking: u8,
    pub input_type: i32,
    pub payload: InputPayload,
}

/// The input union of 1.3: only the prompt member is used by rkl, the rest is
/// padding of the size of the largest member (multimodal, 144 bytes).
#[repr(C)]
pub union InputPayload {
    pub prompt: *const c_char,
    pub raw: [u64; 18],
}

/// `RKLLMSamplingParam` (36 bytes): per-run sampling overrides.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SamplingParam {
    pub top_k: i32,
    pub top_p: f32,
    pub temperature: f32,
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub mirostat: i32,
    pub mirostat_tau: f32,
    pub mirostat_eta: f32,
}

/// `RKLLMInferParam` as 1.3 lays it out (40 bytes).
#[repr(C)]
pub struct InferParam {
    pub mode: i32,
    pub lora_params: *mut LoraParam,
    pub prompt_cache_params: *mut PromptCacheParam,
    pub sampling_params: *mut SamplingParam,
    pub keep_history: i32,
    pub max_new_tokens: i32,
}

/// `RKLLMCallback` (48 bytes): the third argument of 1.3's `rkllm_init`.
#[repr(C)]
pub struct Callbacks {
    pub result_callback: Option<ResultCallback>,
    pub result_userdata: *mut c_void,
    pub tokenizer_callback: *const c_void,
    pub tokenizer_userdata: *mut c_void,
    pub embed_callback: *const c_void,
    pub embed_userdata: *mut c_void,
}

/// 1.3's `rkllm_init`: the third argument points at [`Callbacks`].
pub type InitFn = unsafe extern "C" fn(handle: *mut *mut c_void, param: *mut Param, callbacks: *mut Callbacks) -> i32;

/// The layout of family 1.3.
pub struct V1_3;

/// What 1.3's `rkllm_init` is given and the runtime may keep pointers into.
struct InitStructs {
    param: Param,
    callbacks: Callbacks,
}

// SAFETY: the raw pointers inside point at the runtime's static default
// strings, at the model path its owner keeps, or are NULL; nothing here is
// thread-affine.
unsafe impl Send for InitStructs {}

impl Layout for V1_3 {
    fn limits_tokens_per_run(&self) -> bool {
        true
    }

    fn samples_per_run(&self) -> bool {
        true
    }

    fn looks_like(&self, signals: &ProbeSignals) -> bool {
        // In 1.3, bytes 64 and 65 are extend_param.embed_flash and
        // enabled_cpus_num, byte 72 is n_batch and 74.. is `reserved`.
        let embed_flash = signals.word_64 & 0xff;
        let cpus = (signals.word_64 >> 8) & 0xff;
        let n_batch = signals.word_72 & 0xff;
        embed_flash == 1
            && cpus == 4
            && n_batch <= 8
            && signals.byte_92 == 0
            && signals.byte_93 == 0
            && !signals.tail_nonzero
    }

    unsafe fn init(&self, init: UntypedInitFn, input: InitInput<'_>, handle: &mut LlmHandle) -> (i32, Box<dyn Send>) {
        let mut structs = Box::new(InitStructs {
            // SAFETY: the image is 8-aligned and at least 184 bytes; the 1.3
            // runtime wrote a 1.3 Param there (bools held as u8).
            param: unsafe { ptr::read(input.defaults.0.as_ptr() as *const Param) },
            callbacks: Callbacks {
                result_callback: Some(input.callback),
                result_userdata: ptr::null_mut(),
                tokenizer_callback: ptr::null(),
                tokenizer_userdata: ptr::null_mut(),
                embed_callback: ptr::null(),
                embed_userdata: ptr::null_mut(),
            },
        });
        let InitStructs { param: p, callbacks } = &mut *structs;
        apply_params!(&mut *p, input.params);
        p.model_path = input.model_path.as_ptr();
        // SAFETY: the caller promises a 1.3 runtime's rkllm_init, and this is
        // its signature.
        let init = unsafe { std::mem::transmute::<UntypedInitFn, InitFn>(init) };
        // SAFETY: 1.3's init takes a pointer to the callback struct; it and
        // the param are boxed and kept by the caller until after rkllm_destroy.
        let code = unsafe { init(handle, p, callbacks) };
        (code, structs)
    }

    unsafe fn run(&self, run: RunFn, handle: LlmHandle, input: RunInput<'_>, userdata: *mut c_void) -> i32 {
        let mut sampling = input.sampling.map(|s| SamplingParam {
            top_k: s.top_k,
            top_p: s.top_p,
            temperature: s.temperature,
            repeat_penalty: s.repeat_penalty,
            frequency_penalty: s.frequency_penalty,
            presence_penalty: s.presence_penalty,
            mirostat: s.mirostat,
            mirostat_tau: s.mirostat_tau,
            mirostat_eta: s.mirostat_eta,
        });
        let mut prompt = Input {
            role: input.role.as_ptr(),
            enable_thinking: input.enable_thinking as u8,
            input_type: 0,
            payload: InputPayload { raw: [0; 18] },
        };
        prompt.payload.prompt = input.prompt.as_ptr();
        let mut infer = InferParam {
            mode: 0,
            lora_params: input.lora.map_or(ptr::null_mut(), |l| l as *mut LoraParam),
            prompt_cache_params: input.prompt_cache.map_or(ptr::null_mut(), |c| c as *mut PromptCacheParam),
            sampling_params: sampling.as_mut().map_or(ptr::null_mut(), |s| s as *mut SamplingParam),
            keep_history: input.keep_history as i32,
            max_new_tokens: input.max_new_tokens,
        };
        // SAFETY: the structs are 1.3 layouts and the caller promises a 1.3
        // runtime; they and every string they point to live on this frame or
        // in the caller's `input` until rkllm_run has returned.
        unsafe { run(handle, &mut prompt as *mut _ as *mut c_void, &mut infer as *mut _ as *mut c_void, userdata) }
    }
}

const _: () = {
    assert!(size_of::<Param>() == 184);
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
    assert!(offset_of!(Param, ignore_eos_token) == 57);
    assert!(offset_of!(Param, is_async) == 58);
    assert!(offset_of!(Param, extend_param) == 60);

    assert!(size_of::<InputPayload>() == 144);
    assert!(size_of::<Input>() == 160);
    assert!(offset_of!(Input, role) == 0);
    assert!(offset_of!(Input, enable_thinking) == 8);
    assert!(offset_of!(Input, input_type) == 12);
    assert!(offset_of!(Input, payload) == 16);

    assert!(size_of::<SamplingParam>() == 36);
    assert!(offset_of!(SamplingParam, top_k) == 0);
    assert!(offset_of!(SamplingParam, mirostat_eta) == 32);

    assert!(size_of::<InferParam>() == 40);
    assert!(offset_of!(InferParam, mode) == 0);
    assert!(offset_of!(InferParam, lora_params) == 8);
    assert!(offset_of!(InferParam, prompt_cache_params) == 16);
    assert!(offset_of!(InferParam, sampling_params) == 24);
    assert!(offset_of!(InferParam, keep_history) == 32);
    assert!(offset_of!(InferParam, max_new_tokens) == 36);

    assert!(size_of::<Callbacks>() == 48);
    assert!(offset_of!(Callbacks, result_callback) == 0);
    assert!(offset_of!(Callbacks, result_userdata) == 8);
    assert!(offset_of!(Callbacks, tokenizer_callback) == 16);
    assert!(offset_of!(Callbacks, embed_userdata) == 40);
};
