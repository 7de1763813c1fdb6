//! One run: the request with every string it needs owned, and the job that
//! makes the `rkllm_run` call on the dispatcher and reports how it ended.

use super::layout_common::{HandleAddr, Layout, LlmHandle, LoraParam, PromptCacheParam, RunInput};
use super::params::SamplingValues;
use super::run_queue::RunEvent;
use super::symbols::Api;
use super::trampoline::RunShared;
use std::ffi::{c_void, CString};
use std::sync::Arc;

/// One request to `rkllm_run`, with every string it needs owned.
pub struct RunRequest {
    /// The prompt text.
    pub prompt: CString,
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
pub fn job(
    api: Arc<Api>,
    layout: &'static dyn Layout,
    handle: HandleAddr,
    request: RunRequest,
    shared: Arc<RunShared>,
) -> impl FnOnce() + Send + 'static {
    let end = EndGuard(Some(shared.clone()));
    move || {
        let h = handle;
        shared.send(RunEvent::Started);
        let outcome = shared.execute(|| execute(&api, layout, h.0, &request, shared.userdata()));
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

/// Builds the release's input structs on this stack frame and calls `rkllm_run`.
fn execute(api: &Api, layout: &dyn Layout, handle: LlmHandle, req: &RunRequest, userdata: *mut c_void) -> i32 {
    let mut cache = req
        .save_cache_path
        .as_ref()
        .map(|path| PromptCacheParam { save_prompt_cache: 1, prompt_cache_path: path.as_ptr() });
    let mut lora = req.lora.as_ref().map(|name| LoraParam { lora_adapter_name: name.as_ptr() });
    let input = RunInput {
        prompt: &req.prompt,
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
