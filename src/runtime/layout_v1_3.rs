//! Runtime release 1.3.0: its struct layouts, and the code that builds them
//! for `rkllm_init` and `rkllm_run` ([`V1_3`]).

use super::layout_common::{
    apply_params, EmbedCallback, EmbedInput, ExtendParam, InitFeatures, InitInput, Layout, LlmHandle, LoraParam,
    MediaRun, ProbeSignals, PromptCacheParam, ResultCallback, RunFn, RunInput, RunPayload, RunShape, TokenInput,
    TokenizerCallback, UntypedFn, UntypedInitFn,
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

/// The image part of 1.3's multimodal input (64 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ImagePart {
    pub image_embed: *const f32,
    pub n_image_tokens: usize,
    pub n_image: usize,
    pub image_start: *const c_char,
    pub image_end: *const c_char,
    pub image_content: *const c_char,
    pub image_width: usize,
    pub image_height: usize,
}

/// The video part of 1.3's multimodal input (72 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VideoPart {
    pub video_embed: *const f32,
    pub n_frame_tokens: usize,
    pub n_frame_per_video: usize,
    pub n_video: usize,
    pub video_start: *const c_char,
    pub video_end: *const c_char,
    pub video_content: *const c_char,
    pub frame_width: usize,
    pub frame_height: usize,
}

/// 1.3's multimodal input (144 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Multimodal {
    pub prompt: *const c_char,
    pub image: ImagePart,
    pub video: VideoPart,
}

/// The input union of 1.3 (144 bytes, the multimodal member's size).
#[repr(C)]
pub union InputPayload {
    pub prompt: *const c_char,
    pub tokens: TokenInput,
    pub embed: EmbedInput,
    pub multimodal: Multimodal,
    pub raw: [u64; 18],
}

impl ImagePart {
    fn of(part: Option<&MediaRun<'_>>) -> ImagePart {
        let tag = |i: usize| part.map_or(ptr::null(), |p| p.tags[i].as_ptr());
        ImagePart {
            image_embed: part.map_or(ptr::null(), |p| p.values.as_ptr()),
            n_image_tokens: part.map_or(0, |p| p.tokens),
            n_image: part.map_or(0, |p| p.count),
            image_start: tag(0),
            image_end: tag(1),
            image_content: tag(2),
            image_width: part.map_or(0, |p| p.width),
            image_height: part.map_or(0, |p| p.height),
        }
    }
}

impl VideoPart {
    fn of(part: Option<&MediaRun<'_>>) -> VideoPart {
        let tag = |i: usize| part.map_or(ptr::null(), |p| p.tags[i].as_ptr());
        VideoPart {
            video_embed: part.map_or(ptr::null(), |p| p.values.as_ptr()),
            n_frame_tokens: part.map_or(0, |p| p.tokens),
            n_frame_per_video: part.map_or(0, |p| p.frames),
            n_video: part.map_or(0, |p| p.count),
            video_start: tag(0),
            video_end: tag(1),
            video_content: tag(2),
            frame_width: part.map_or(0, |p| p.width),
            frame_height: part.map_or(0, |p| p.height),
        }
    }
}

impl InputPayload {
    /// The union member for `payload`.
    fn of(payload: &RunPayload<'_>) -> InputPayload {
        let mut union = InputPayload { raw: [0; 18] };
        match payload {
            RunPayload::Prompt(prompt) => union.prompt = prompt.as_ptr(),
            RunPayload::Tokens(_) => union.tokens = payload.tokens().expect("tokens"),
            RunPayload::Embeddings { .. } => union.embed = payload.embeddings().expect("embeddings"),
            RunPayload::Multimodal { prompt, images, videos } => {
                union.multimodal = Multimodal {
                    prompt: prompt.as_ptr(),
                    image: ImagePart::of(images.as_ref()),
                    video: VideoPart::of(videos.as_ref()),
                }
            }
        }
        union
    }
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
    pub tokenizer_callback: Option<TokenizerCallback>,
    pub tokenizer_userdata: *mut c_void,
    pub embed_callback: Option<EmbedCallback>,
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
// strings, at the model path or the hooks its owner keeps, or are NULL;
// nothing here is thread-affine.
unsafe impl Send for InitStructs {}

/// The clear call of 1.3.
type ClearFn = unsafe extern "C" fn(LlmHandle, i32, *mut i32, *mut i32) -> i32;

impl Layout for V1_3 {
    fn limits_tokens_per_run(&self) -> bool {
        true
    }

    fn samples_per_run(&self) -> bool {
        true
    }

    fn check_run(&self, _shape: &RunShape, _version: Option<&str>) -> Result<(), String> {
        Ok(())
    }

    fn check_init(&self, _features: &InitFeatures) -> Result<(), String> {
        Ok(())
    }

    unsafe fn clear_kv_cache(&self, clear: UntypedFn, handle: LlmHandle, keep_system_prompt: bool) -> i32 {
        // SAFETY: the caller promises this runtime's rkllm_clear_kv_cache,
        // which takes four arguments in 1.3.
        let clear = unsafe { std::mem::transmute::<UntypedFn, ClearFn>(clear) };
        // SAFETY: live handle; NULL ranges mean "everything".
        unsafe { clear(handle, keep_system_prompt as i32, ptr::null_mut(), ptr::null_mut()) }
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
                tokenizer_callback: input.tokenizer.map(|(f, _)| f),
                tokenizer_userdata: input.tokenizer.map_or(ptr::null_mut(), |(_, ud)| ud),
                embed_callback: input.embedder.map(|(f, _)| f),
                embed_userdata: input.embedder.map_or(ptr::null_mut(), |(_, ud)| ud),
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
            input_type: input.payload.input_type(),
            payload: InputPayload::of(&input.payload),
        };
        let mut infer = InferParam {
            mode: input.mode,
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

    assert!(size_of::<ImagePart>() == 64);
    assert!(size_of::<VideoPart>() == 72);
    assert!(size_of::<Multimodal>() == 144);
    assert!(offset_of!(Multimodal, prompt) == 0);
    assert!(offset_of!(Multimodal, image) + offset_of!(ImagePart, image_embed) == 8);
    assert!(offset_of!(Multimodal, image) + offset_of!(ImagePart, n_image_tokens) == 16);
    assert!(offset_of!(Multimodal, image) + offset_of!(ImagePart, n_image) == 24);
    assert!(offset_of!(Multimodal, image) + offset_of!(ImagePart, image_start) == 32);
    assert!(offset_of!(Multimodal, image) + offset_of!(ImagePart, image_end) == 40);
    assert!(offset_of!(Multimodal, image) + offset_of!(ImagePart, image_content) == 48);
    assert!(offset_of!(Multimodal, image) + offset_of!(ImagePart, image_width) == 56);
    assert!(offset_of!(Multimodal, image) + offset_of!(ImagePart, image_height) == 64);
    assert!(offset_of!(Multimodal, video) + offset_of!(VideoPart, video_embed) == 72);
    assert!(offset_of!(Multimodal, video) + offset_of!(VideoPart, n_frame_tokens) == 80);
    assert!(offset_of!(Multimodal, video) + offset_of!(VideoPart, n_frame_per_video) == 88);
    assert!(offset_of!(Multimodal, video) + offset_of!(VideoPart, n_video) == 96);
    assert!(offset_of!(Multimodal, video) + offset_of!(VideoPart, video_start) == 104);
    assert!(offset_of!(Multimodal, video) + offset_of!(VideoPart, video_end) == 112);
    assert!(offset_of!(Multimodal, video) + offset_of!(VideoPart, video_content) == 120);
    assert!(offset_of!(Multimodal, video) + offset_of!(VideoPart, frame_width) == 128);
    assert!(offset_of!(Multimodal, video) + offset_of!(VideoPart, frame_height) == 136);

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
    assert!(offset_of!(Callbacks, tokenizer_userdata) == 24);
    assert!(offset_of!(Callbacks, embed_callback) == 32);
    assert!(offset_of!(Callbacks, embed_userdata) == 40);
};
