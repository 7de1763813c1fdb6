//! Runtime releases 1.2.0 and 1.2.1b1: their struct layouts, and the code
//! that builds them for `rkllm_init` and `rkllm_run` ([`V1_2_0`]).
//!
//! Both write 1.2.1's `RKLLMParam` (208 bytes), but their `RKLLMInput` has
//! no role and no thinking flag (`input_type` at 0, the union at 8), their
//! result has no `perf` and their callback returns nothing, and
//! `rkllm_clear_kv_cache` takes two arguments. Their symbols are the same,
//! and they differ from each other only in the multimodal member: 1.2.0's
//! is 24 bytes (one image, no size), 1.2.1b1's is 1.2.1's 48. Only the
//! version the runtime prints at init tells them apart, so multimodal input
//! is passed only once that version is known.

use super::layout_common::{
    apply_params, check_run_v1_2, EmbedInput, InitFeatures, InitInput, Layout, LlmHandle, LoraParam, MultimodalV1_2,
    ProbeSignals, PromptCacheParam, RunFn, RunInput, RunPayload, RunShape, TokenInput, UntypedFn, UntypedInitFn,
};
use super::layout_v1_2::{InferParam, Param};
use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};
use std::ptr;

/// 1.2.0's multimodal member (24 bytes): one image.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MultimodalV1_2_0 {
    pub prompt: *const c_char,
    pub image_embed: *const f32,
    pub n_image_tokens: usize,
}

/// The input union of both releases: 1.2.1b1's size (48); 1.2.0 reads its
/// own 24 of it.
#[repr(C)]
pub union InputPayload {
    pub prompt: *const c_char,
    pub tokens: TokenInput,
    pub embed: EmbedInput,
    pub multimodal_v1_2_0: MultimodalV1_2_0,
    pub multimodal_v1_2_1b1: MultimodalV1_2,
    pub raw: [u64; 6],
}

/// `RKLLMInput` of 1.2.1b1 (56 bytes); 1.2.0's is its first 32.
#[repr(C)]
pub struct Input {
    pub input_type: i32,
    pub payload: InputPayload,
}

/// 1.2.0's `rkllm_init`: the third argument is the result callback, which
/// returns nothing.
pub type InitFn = unsafe extern "C" fn(
    handle: *mut *mut c_void,
    param: *mut Param,
    callback: super::layout_common::VoidResultCallback,
) -> i32;

/// Their clear call: handle and `keep_system_prompt` only.
type ClearFn = unsafe extern "C" fn(LlmHandle, i32) -> i32;

/// Which multimodal member a printed version means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MultimodalLayout {
    V1_2_0,
    V1_2_1b1,
}

fn multimodal_layout(version: Option<&str>) -> Result<MultimodalLayout, String> {
    match version {
        Some("1.2.0") => Ok(MultimodalLayout::V1_2_0),
        Some("1.2.1b1") => Ok(MultimodalLayout::V1_2_1b1),
        Some(other) => Err(format!(
            "the runtime printed version {other}, which is neither 1.2.0 nor 1.2.1b1; \
             their multimodal layouts differ, so rkl passes no multimodal input to it"
        )),
        None => Err("the runtime printed no version at init; releases 1.2.0 and 1.2.1b1 lay multimodal input out \
             differently and only the version tells them apart, so rkl passes no multimodal input to it"
            .into()),
    }
}

/// The layout of family 1.2.0 (releases 1.2.0 and 1.2.1b1).
pub struct V1_2_0;

/// What their `rkllm_init` is given and the runtime may keep pointers into.
struct InitStructs {
    param: Param,
}

// SAFETY: as for 1.2's: static default strings, or strings the owner keeps.
unsafe impl Send for InitStructs {}

impl Layout for V1_2_0 {
    fn limits_tokens_per_run(&self) -> bool {
        false
    }

    fn samples_per_run(&self) -> bool {
        false
    }

    fn check_run(&self, shape: &RunShape, version: Option<&str>) -> Result<(), String> {
        check_run_v1_2(shape, "1.2.0/1.2.1b1")?;
        if shape.tool_role || shape.thinking {
            return Err("releases 1.2.0 and 1.2.1b1 take neither a role nor thinking mode; use 1.2.1 or later".into());
        }
        if shape.images > 0 {
            let layout = multimodal_layout(version)?;
            if layout == MultimodalLayout::V1_2_0 && (shape.images > 1 || shape.image_size) {
                return Err("release 1.2.0 takes one image per request and no image size; use 1.2.1 or later".into());
            }
        }
        Ok(())
    }

    fn check_init(&self, features: &InitFeatures) -> Result<(), String> {
        if features.cross_attn {
            return Err("cross-attention needs runtime 1.2.1 or later; this one is 1.2.0/1.2.1b1".into());
        }
        if features.hooks {
            return Err("tokenizer and embedding callbacks need a 1.3 runtime; this one is 1.2.0/1.2.1b1".into());
        }
        Ok(())
    }

    unsafe fn clear_kv_cache(&self, clear: UntypedFn, handle: LlmHandle, keep_system_prompt: bool) -> i32 {
        // SAFETY: the caller promises this runtime's rkllm_clear_kv_cache,
        // which takes two arguments in these releases.
        let clear = unsafe { std::mem::transmute::<UntypedFn, ClearFn>(clear) };
        // SAFETY: live handle.
        unsafe { clear(handle, keep_system_prompt as i32) }
    }

    fn looks_like(&self, _signals: &ProbeSignals) -> bool {
        // Their default params are 1.2.1's: the symbols, not the probe,
        // choose this family (see `detect.rs`).
        false
    }

    unsafe fn init(&self, init: UntypedInitFn, input: InitInput<'_>, handle: &mut LlmHandle) -> (i32, Box<dyn Send>) {
        let mut structs = Box::new(InitStructs {
            // SAFETY: the image is 8-aligned and at least 208 bytes; these
            // releases write 1.2.1's Param there (bools held as u8).
            param: unsafe { ptr::read(input.defaults.0.as_ptr() as *const Param) },
        });
        let p = &mut structs.param;
        apply_params!(&mut *p, input.params);
        p.model_path = input.model_path.as_ptr();
        if let Some([start, end, content]) = input.image_tags {
            (p.img_start, p.img_end, p.img_content) = (start.as_ptr(), end.as_ptr(), content.as_ptr());
        }
        // SAFETY: the caller promises a 1.2.0-family rkllm_init.
        let init = unsafe { std::mem::transmute::<UntypedInitFn, InitFn>(init) };
        // SAFETY: the param is boxed and kept by the caller until after
        // rkllm_destroy; the callback returns nothing, as these releases expect.
        let code = unsafe { init(handle, p, input.void_callback) };
        (code, structs)
    }

    unsafe fn run(&self, run: RunFn, handle: LlmHandle, input: RunInput<'_>, userdata: *mut c_void) -> i32 {
        debug_assert!(input.sampling.is_none(), "per-run sampling on a 1.2.0 runtime");
        let mut union = InputPayload { raw: [0; 6] };
        match &input.payload {
            RunPayload::Prompt(prompt) => union.prompt = prompt.as_ptr(),
            RunPayload::Tokens(_) => union.tokens = input.payload.tokens().expect("tokens"),
            RunPayload::Embeddings { .. } => union.embed = input.payload.embeddings().expect("embeddings"),
            RunPayload::Multimodal { .. } => {
                let member = input.payload.multimodal_v1_2().expect("multimodal");
                // Callers check `check_run` with the same version first; a
                // layout that is not known is never guessed.
                match multimodal_layout(input.release) {
                    Ok(MultimodalLayout::V1_2_1b1) => union.multimodal_v1_2_1b1 = member,
                    Ok(MultimodalLayout::V1_2_0) if member.n_image == 1 => {
                        union.multimodal_v1_2_0 = MultimodalV1_2_0 {
                            prompt: member.prompt,
                            image_embed: member.image_embed,
                            n_image_tokens: member.n_image_tokens,
                        }
                    }
                    _ => {
                        log::error!("refused a multimodal run whose layout is not known");
                        return -1;
                    }
                }
            }
        }
        let mut prompt = Input { input_type: input.payload.input_type(), payload: union };
        let mut infer = InferParam {
            mode: input.mode,
            lora_params: input.lora.map_or(ptr::null_mut(), |l| l as *mut LoraParam),
            prompt_cache_params: input.prompt_cache.map_or(ptr::null_mut(), |c| c as *mut PromptCacheParam),
            keep_history: input.keep_history as i32,
        };
        // SAFETY: the structs are these releases' layouts and the caller
        // promises such a runtime; they and everything they point to live on
        // this frame or in the caller's `input` until rkllm_run has returned.
        unsafe { run(handle, &mut prompt as *mut _ as *mut c_void, &mut infer as *mut _ as *mut c_void, userdata) }
    }
}

const _: () = {
    assert!(size_of::<MultimodalV1_2_0>() == 24);
    assert!(offset_of!(MultimodalV1_2_0, prompt) == 0);
    assert!(offset_of!(MultimodalV1_2_0, image_embed) == 8);
    assert!(offset_of!(MultimodalV1_2_0, n_image_tokens) == 16);
    assert!(size_of::<InputPayload>() == 48);
    assert!(size_of::<Input>() == 56);
    assert!(offset_of!(Input, input_type) == 0);
    assert!(offset_of!(Input, payload) == 8);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multimodal_only_with_a_known_version() {
        let one = RunShape { images: 1, ..RunShape::default() };
        assert!(V1_2_0.check_run(&one, Some("1.2.0")).is_ok());
        assert!(V1_2_0.check_run(&one, Some("1.2.1b1")).is_ok());
        assert!(V1_2_0.check_run(&one, None).unwrap_err().contains("printed no version"));
        assert!(V1_2_0.check_run(&one, Some("1.2.1")).unwrap_err().contains("neither"));
        let two = RunShape { images: 2, ..RunShape::default() };
        assert!(V1_2_0.check_run(&two, Some("1.2.0")).unwrap_err().contains("one image"));
        assert!(V1_2_0.check_run(&two, Some("1.2.1b1")).is_ok());
        assert!(V1_2_0.check_run(&RunShape::default(), None).is_ok(), "text needs no version");
        let video = RunShape { videos: true, ..RunShape::default() };
        assert!(V1_2_0.check_run(&video, Some("1.2.1b1")).unwrap_err().contains("1.3"));
    }
}
