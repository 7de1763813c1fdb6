//! One run: the request with every string it needs owned, and the job that
//! makes the `rkllm_run` call on the dispatcher and reports how it ended.

use super::layout_common::{
    CrossAttnParam, HandleAddr, Layout, LlmHandle, LoraParam, MediaRun, PromptCacheParam, RunInput, RunPayload,
};
use super::params::SamplingValues;
use super::run_queue::RunEvent;
use super::symbols::Api;
use super::trampoline::RunShared;
use std::ffi::{c_void, CString};
use std::sync::{Arc, Mutex};

/// What a run feeds the runtime, owned until `rkllm_run` returns.
pub enum RunData {
    /// Prompt text.
    Prompt(CString),
    /// Token ids.
    Tokens(Arc<[i32]>),
    /// `n_tokens` embedding rows.
    Embeddings { values: Arc<[f32]>, n_tokens: usize },
    /// A prompt with image and video embeddings.
    Multimodal { prompt: CString, images: Option<MediaData>, videos: Option<MediaData> },
}

/// Image or video embeddings of a multimodal run.
pub struct MediaData {
    pub values: Arc<[f32]>,
    /// Images or videos.
    pub count: usize,
    /// Frames per video (1 for images).
    pub frames: usize,
    /// Embedding tokens per image or frame.
    pub tokens: usize,
    pub width: usize,
    pub height: usize,
    /// Start, end, content.
    pub tags: [CString; 3],
}

impl MediaData {
    fn borrow(&self) -> MediaRun<'_> {
        MediaRun {
            values: &self.values,
            count: self.count,
            frames: self.frames,
            tokens: self.tokens,
            width: self.width,
            height: self.height,
            tags: [&self.tags[0], &self.tags[1], &self.tags[2]],
        }
    }
}

impl RunData {
    fn borrow(&self) -> RunPayload<'_> {
        match self {
            RunData::Prompt(prompt) => RunPayload::Prompt(prompt),
            RunData::Tokens(ids) => RunPayload::Tokens(ids),
            RunData::Embeddings { values, n_tokens } => RunPayload::Embeddings { values, n_tokens: *n_tokens },
            RunData::Multimodal { prompt, images, videos } => RunPayload::Multimodal {
                prompt,
                images: images.as_ref().map(MediaData::borrow),
                videos: videos.as_ref().map(MediaData::borrow),
            },
        }
    }
}

/// The encoder state of a cross-attention run.
pub struct CrossAttnBuffers {
    pub k_cache: Arc<[f32]>,
    pub v_cache: Arc<[f32]>,
    pub mask: Arc<[f32]>,
    pub positions: Arc<[i32]>,
}

/// The last cross-attention parameters given to a handle. The runtime may
/// keep the pointer, so they stay at this address until the next ones are
/// set or the handle is destroyed.
pub struct KeptCrossAttn {
    param: CrossAttnParam,
    _buffers: CrossAttnBuffers,
}

// SAFETY: the param's pointers point into the buffers it is kept with,
// which are shared, immutable arrays.
unsafe impl Send for KeptCrossAttn {}

/// Where a handle's [`KeptCrossAttn`] lives.
pub type CrossAttnSlot = Arc<Mutex<Option<Box<KeptCrossAttn>>>>;

/// One request to `rkllm_run`, with everything it needs owned.
pub struct RunRequest {
    /// What is fed.
    pub data: RunData,
    /// An `infer_mode` value.
    pub mode: i32,
    /// Encoder state to set before the run (cross-attention models).
    pub cross_attn: Option<CrossAttnBuffers>,
    /// "user" or "tool".
    pub role: CString,
    /// Qwen3 thinking mode.
    pub enable_thinking: bool,
    /// Keep this turn in the KV history.
    pub keep_history: bool,
    /// Per-run token limit (1.3 passes it on; 0 = the init value).
    pub max_new_tokens: i32,
    /// A loaded LoRA adapter to apply.
    pub lora: Option<CString>,
    /// Save the prompt's KV cache to this path during the run.
    pub save_cache_path: Option<CString>,
    /// The run's own sampling values (1.3; see `Runtime::samples_per_run`).
    pub sampling: Option<SamplingValues>,
}

/// The dispatcher job of one run: starts it in the runtime unless an abort
/// came first, and tells `shared`'s reader how it ended in every case (also
/// when the job is dropped unrun or unwinds, see [`EndGuard`]).
pub fn job(target: RunTarget, request: RunRequest, shared: Arc<RunShared>) -> impl FnOnce() + Send + 'static {
    let end = EndGuard(Some(shared.clone()));
    move || {
        let target = target;
        shared.send(RunEvent::Started);
        let outcome = shared.execute(|| execute(&target, &request, shared.userdata()));
        // `request` (prompt, role, cache path...) is dropped only after
        // rkllm_run returned, and so after its last callback.
        drop(request);
        end.report(match outcome {
            Some(code) => RunEvent::Returned(code),
            None => RunEvent::Skipped,
        });
    }
}

/// Tells a run's reader how the run ended. If the job holding it ends
/// without saying (it unwound, or was dropped without running), the reader
/// gets `Returned(i32::MIN)` (a failed run) instead of waiting for an end
/// that cannot come.
struct EndGuard(Option<Arc<RunShared>>);

impl EndGuard {
    fn report(mut self, event: RunEvent) {
        if let Some(shared) = self.0.take() {
            shared.send(event);
        }
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.send(RunEvent::Returned(i32::MIN));
        }
    }
}

/// Where a run goes: the runtime's functions and layout, the handle, and
/// what the handle keeps.
pub struct RunTarget {
    pub api: Arc<Api>,
    pub layout: &'static dyn Layout,
    pub handle: HandleAddr,
    /// The version the runtime printed, if it did.
    pub release: Option<String>,
    pub cross_attn: CrossAttnSlot,
}

/// Sets a run's cross-attention parameters, keeping them (and dropping the
/// previous ones) once the runtime took them. Returns its code.
fn set_cross_attn(target: &RunTarget, buffers: &CrossAttnBuffers) -> i32 {
    let Some(set) = target.api.set_cross_attn_params else {
        log::error!("refused cross-attention parameters: the runtime has no rkllm_set_cross_attn_params");
        return -1;
    };
    let mut kept = Box::new(KeptCrossAttn {
        param: CrossAttnParam {
            encoder_k_cache: buffers.k_cache.as_ptr(),
            encoder_v_cache: buffers.v_cache.as_ptr(),
            encoder_mask: buffers.mask.as_ptr(),
            encoder_pos: buffers.positions.as_ptr(),
            num_tokens: buffers.mask.len() as i32,
        },
        _buffers: CrossAttnBuffers {
            k_cache: buffers.k_cache.clone(),
            v_cache: buffers.v_cache.clone(),
            mask: buffers.mask.clone(),
            positions: buffers.positions.clone(),
        },
    });
    // SAFETY: live handle on the dispatcher; the param and the arrays it
    // points to are kept in the handle's slot until replaced or destroyed.
    let code = unsafe { set(target.handle.0, &mut kept.param) };
    if code == 0 {
        let previous = target.cross_attn.lock().unwrap_or_else(|p| p.into_inner()).replace(kept);
        // The runtime points at the new ones now.
        drop(previous);
    } else {
        log::warn!("rkllm_set_cross_attn_params returned {code}");
    }
    code
}

/// Builds the release's input structs on this stack frame and calls `rkllm_run`.
fn execute(target: &RunTarget, req: &RunRequest, userdata: *mut c_void) -> i32 {
    let (api, layout, handle): (&Api, &dyn Layout, LlmHandle) = (&target.api, target.layout, target.handle.0);
    if let Some(buffers) = &req.cross_attn {
        let code = set_cross_attn(target, buffers);
        if code != 0 {
            return code;
        }
    }
    let mut cache = req
        .save_cache_path
        .as_ref()
        .map(|path| PromptCacheParam { save_prompt_cache: 1, prompt_cache_path: path.as_ptr() });
    let mut lora = req.lora.as_ref().map(|name| LoraParam { lora_adapter_name: name.as_ptr() });
    let input = RunInput {
        payload: req.data.borrow(),
        mode: req.mode,
        release: target.release.as_deref(),
        role: &req.role,
        enable_thinking: req.enable_thinking,
        keep_history: req.keep_history,
        max_new_tokens: req.max_new_tokens,
        lora: lora.as_mut(),
        prompt_cache: cache.as_mut(),
        sampling: req.sampling,
    };
    // SAFETY: `layout` is the one of this runtime's detected release and the
    // handle is live on the dispatcher; `cache`, `lora` and `req` outlive the
    // call.
    unsafe { layout.run(api.run, handle, input, userdata) }
}

#[cfg(test)]
mod end_guard_tests {
    use super::super::run_queue::Batch;
    use super::*;
    use std::time::Duration;

    fn next(shared: &RunShared) -> Option<RunEvent> {
        shared.next_event(Duration::ZERO, &mut Batch::default(), &mut Vec::new())
    }

    #[test]
    fn a_job_that_ends_without_reporting_reports_a_failed_run() {
        let shared = RunShared::new(0);
        let job = {
            let end = EndGuard(Some(shared.clone()));
            move || end.report(RunEvent::Returned(0))
        };
        drop(job); // never ran
        assert!(matches!(next(&shared), Some(RunEvent::Returned(i32::MIN))));
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe({
            let end = EndGuard(Some(shared.clone()));
            move || {
                let _end = end;
                panic!("the job unwinds");
            }
        }));
        assert!(unwound.is_err());
        assert!(matches!(next(&shared), Some(RunEvent::Returned(i32::MIN))));
        assert!(next(&shared).is_none());
    }

    #[test]
    fn a_reported_end_is_the_only_one() {
        let shared = RunShared::new(0);
        EndGuard(Some(shared.clone())).report(RunEvent::Returned(7));
        assert!(matches!(next(&shared), Some(RunEvent::Returned(7))));
        assert!(next(&shared).is_none());
    }
}
