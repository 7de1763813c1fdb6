//! `rkllm_run`: reading the request, generating the callbacks, keeping history.

use crate::abi::{
    call_state, InferParamV12, InferParamV13, InputV12, InputV13, LoraParam, PerfStat, PromptCacheParam, SamplingParam,
};
use crate::cache;
use crate::callback::Sink;
use crate::config::Abi;
use crate::faults::{self, FaultKind, FaultPoint};
use crate::handle::{Handle, CACHES_WRITTEN, RUNS_STARTED};
use crate::model_file::CallbackThread;
use crate::params::check_sampling;
use crate::reply::{self, ReplyContext};
use crate::timing::sleep_virtual;
use crate::tokens::{pieces, Piece};
use std::ffi::{c_char, c_void, CStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// One run's request, decoded from either release's structs.
struct Request {
    role: String,
    prompt: String,
    enable_thinking: bool,
    lora: Option<String>,
    /// `Some(address of prompt_cache_path)` when a save was asked for; the
    /// string is read only when the cache is written.
    save_path_addr: Option<usize>,
    keep_history: bool,
    /// 1.3's per-run `max_new_tokens` when > 0.
    max_new_tokens: Option<i32>,
    /// 1.3's per-run sampling parameters, when given.
    sampling: Option<SamplingParam>,
    userdata: usize,
}

/// Reads a C string that must be UTF-8.
///
/// # Safety
/// `ptr` is NULL or points at a NUL-terminated string.
unsafe fn utf8(ptr: *const c_char, what: &str) -> Result<Option<String>, String> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated, per this function's contract.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str().map(|s| Some(s.to_owned())).map_err(|_| format!("{what} is not UTF-8"))
}

/// The fields both releases' input and infer structs have.
struct RawRequest {
    role: *const c_char,
    enable_thinking: u8,
    input_type: i32,
    /// Valid only when `input_type` is 0.
    prompt: *const c_char,
    mode: i32,
    lora_params: *const LoraParam,
    prompt_cache_params: *const PromptCacheParam,
    keep_history: i32,
    max_new_tokens: i32,
    sampling: Option<SamplingParam>,
    sampling_error: Option<String>,
}

/// Reads the caller's structs in the layout of `abi`, whole, so that a
/// struct of the smaller release is an overread a memory checker reports.
///
/// # Safety
/// `input` and `infer` are non-NULL and point at structs of `abi`'s layout.
unsafe fn read_raw(abi: Abi, input: *const c_void, infer: *const c_void) -> RawRequest {
    match abi {
        Abi::V1_2 => {
            // SAFETY: per this function's contract.
            let (i, p) = unsafe { (ptr_read(input as *const InputV12), ptr_read(infer as *const InferParamV12)) };
            RawRequest {
                role: i.role,
                enable_thinking: i.enable_thinking,
                input_type: i.input_type,
                // SAFETY: every member of the union is plain data; the
                // pointer is used only when input_type says it is a prompt.
                prompt: unsafe { i.payload.prompt },
                mode: p.mode,
                lora_params: p.lora_params,
                prompt_cache_params: p.prompt_cache_params,
                keep_history: p.keep_history,
                max_new_tokens: 0,
                sampling: None,
                sampling_error: None,
            }
        }
        Abi::V1_3 => {
            // SAFETY: per this function's contract.
            let (i, p) = unsafe { (ptr_read(input as *const InputV13), ptr_read(infer as *const InferParamV13)) };
            let sampling = if p.sampling_params.is_null() {
                None
            } else {
                // SAFETY: a non-NULL sampling_params points at the 36-byte
                // struct (rkllm-abi.md).
                Some(unsafe { ptr_read(p.sampling_params) })
            };
            let sampling_error = sampling.as_ref().and_then(|s| check_sampling(s).err());
            RawRequest {
                role: i.role,
                enable_thinking: i.enable_thinking,
                input_type: i.input_type,
                // SAFETY: as for 1.2.
                prompt: unsafe { i.payload.prompt },
                mode: p.mode,
                lora_params: p.lora_params,
                prompt_cache_params: p.prompt_cache_params,
                keep_history: p.keep_history,
                max_new_tokens: p.max_new_tokens,
                sampling,
                sampling_error,
            }
        }
    }
}

/// `ptr::read_unaligned` of a caller's struct.
///
/// # Safety
/// `ptr` points at `size_of::<T>()` readable bytes, and `T` accepts any bits.
unsafe fn ptr_read<T>(ptr: *const T) -> T {
    // SAFETY: per this function's contract.
    unsafe { std::ptr::read_unaligned(ptr) }
}

/// Decodes and checks a run's arguments.
///
/// # Safety
/// Non-NULL pointers point at structs of `abi`'s layout and valid C strings.
unsafe fn decode(
    abi: Abi,
    input: *const c_void,
    infer: *const c_void,
    userdata: usize,
    h: &Handle,
) -> Result<Request, String> {
    if input.is_null() || infer.is_null() {
        return Err("input or infer_params is NULL".into());
    }
    // SAFETY: non-NULL, and of `abi`'s layout per this function's contract.
    let raw = unsafe { read_raw(abi, input, infer) };
    if raw.input_type != 0 {
        return Err(format!("input_type {} is not supported (only 0, prompt)", raw.input_type));
    }
    if raw.mode != 0 {
        return Err(format!("mode {} is not supported (only 0, generate)", raw.mode));
    }
    if raw.enable_thinking > 1 {
        return Err(format!("enable_thinking = {} is not a bool", raw.enable_thinking));
    }
    if !(0..=1).contains(&raw.keep_history) {
        return Err(format!("keep_history = {} is not 0 or 1", raw.keep_history));
    }
    if let Some(e) = raw.sampling_error {
        return Err(format!("sampling_params: {e}"));
    }
    // SAFETY: the strings are NULL or valid C strings per the contract.
    let prompt = unsafe { utf8(raw.prompt, "prompt") }?.ok_or("prompt is NULL")?;
    // SAFETY: as above.
    let role = unsafe { utf8(raw.role, "role") }?.unwrap_or_else(|| "user".into());
    let lora = if raw.lora_params.is_null() {
        None
    } else {
        // SAFETY: a non-NULL lora_params points at an RKLLMLoraParam, whose
        // name is NULL or a C string.
        unsafe { utf8(ptr_read(raw.lora_params).lora_adapter_name, "lora_adapter_name") }?
    };
    let save_path_addr = if raw.prompt_cache_params.is_null() {
        None
    } else {
        // SAFETY: a non-NULL prompt_cache_params points at the 16-byte struct.
        let c = unsafe { ptr_read(raw.prompt_cache_params) };
        match c.save_prompt_cache {
            0 => None,
            1 => Some(c.prompt_cache_path as usize),
            other => return Err(format!("save_prompt_cache = {other} is not 0 or 1")),
        }
    };
    let userdata = match abi {
        Abi::V1_3 if userdata == 0 => h.settings.result_userdata,
        _ => userdata,
    };
    Ok(Request {
        role,
        prompt,
        enable_thinking: raw.enable_thinking == 1,
        lora,
        save_path_addr,
        keep_history: raw.keep_history == 1,
        max_new_tokens: (raw.max_new_tokens > 0).then_some(raw.max_new_tokens),
        sampling: raw.sampling,
        userdata,
    })
}

/// How generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// End of reply or token limit: FINISH was sent.
    Finished,
    /// The callback returned 1.
    Paused,
    Aborted,
    /// ERROR was sent.
    Failed,
}

struct Outcome {
    ending: Ending,
    /// Whether the prompt was prefilled (it then counts in history).
    prefilled: bool,
    emitted: u64,
}

/// Everything generation needs, owned, so it can run on another thread.
struct Generation<'a> {
    handle: &'a Handle,
    sink: Sink,
    pieces: Vec<Piece>,
    prompt_tokens: u64,
    history_before: u64,
    max_tokens: Option<u64>,
    save_path_addr: Option<usize>,
}

/// Bytes leaked by `grow_kb_per_run`, kept reachable so leak checkers do not
/// report them, but resident, so memory use really grows.
static LEAKED: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());
static LEAKED_BYTES: AtomicU64 = AtomicU64::new(0);

const MIB: f64 = 1024.0 * 1024.0;

impl Generation<'_> {
    fn error(&self, prefilled: bool, emitted: u64) -> Outcome {
        self.sink.send(call_state::ERROR, None, -1, PerfStat::default());
        Outcome { ending: Ending::Failed, prefilled, emitted }
    }

    /// Runs the fault listed for `point`, if any; `true` means "fail now".
    fn fault(&self, point: FaultPoint) -> bool {
        match faults::at(&self.handle.settings.model.faults, point) {
            Some(kind) => {
                faults::strike(kind, point);
                kind == FaultKind::Error
            }
            None => false,
        }
    }

    fn aborted(&self) -> bool {
        self.handle.abort.in_effect(self.handle.settings.model.slow_abort_ms)
    }

    fn sleep(&self, virtual_us: u64) -> bool {
        let s = &self.handle.settings;
        sleep_virtual(virtual_us, s.time_scale, &self.handle.abort, s.model.slow_abort_ms)
    }

    fn run(&self) -> Outcome {
        let model = &self.handle.settings.model;
        if self.fault(FaultPoint::Prefill) {
            return self.error(false, 0);
        }
        if !self.sleep(self.prompt_tokens.saturating_mul(model.prefill_us_per_token)) {
            return Outcome { ending: Ending::Aborted, prefilled: false, emitted: 0 };
        }
        let mut ending = Ending::Finished;
        let mut emitted = 0u64;
        for piece in &self.pieces {
            if self.max_tokens.is_some_and(|max| emitted >= max) {
                break;
            }
            if self.aborted() {
                ending = Ending::Aborted;
                break;
            }
            if self.fault(FaultPoint::Token(emitted)) {
                return self.error(true, emitted);
            }
            if !self.sleep(model.decode_us_per_token) {
                ending = Ending::Aborted;
                break;
            }
            let (state, text) = match piece {
                Piece::Waiting(text) => (call_state::WAITING, text.as_deref()),
                Piece::Normal(text) => (call_state::NORMAL, Some(text.as_slice())),
            };
            let code = self.sink.send(state, text, emitted as i32, PerfStat::default());
            emitted += 1;
            if code == 1 {
                ending = Ending::Paused;
                break;
            }
        }
        // An abort asked for during the last callback still suppresses FINISH.
        if ending == Ending::Finished && self.aborted() {
            ending = Ending::Aborted;
        }
        if let Some(addr) = self.save_path_addr {
            if let Err(e) = self.save_cache(addr) {
                eprintln!("E rkllm-sim: rkllm_run: {e}");
                return self.error(true, emitted);
            }
        }
        if ending == Ending::Finished {
            let kv_tokens = self.history_before + self.prompt_tokens + emitted;
            let perf = PerfStat {
                prefill_time_ms: (self.prompt_tokens as f64 * model.prefill_us_per_token as f64 / 1000.0) as f32,
                prefill_tokens: self.prompt_tokens as i32,
                generate_time_ms: (emitted as f64 * model.decode_us_per_token as f64 / 1000.0) as f32,
                generate_tokens: emitted as i32,
                memory_usage_mb: ((self.handle.settings.model_file_bytes as f64
                    + kv_tokens as f64 * model.kv_bytes_per_token as f64
                    + LEAKED_BYTES.load(Ordering::SeqCst) as f64)
                    / MIB) as f32,
            };
            self.sink.send(call_state::FINISH, None, -1, perf);
        }
        Outcome { ending, prefilled: true, emitted }
    }

    /// Reads the kept path pointer now, at the end of the run, and writes.
    fn save_cache(&self, addr: usize) -> Result<(), String> {
        if self.fault(FaultPoint::CacheSave) {
            return Err("injected fault at cache_save".into());
        }
        if addr == 0 {
            return Err("prompt_cache_path is NULL".into());
        }
        // SAFETY: the caller must keep prompt_cache_path alive until
        // rkllm_run returns (rkllm-abi.md); reading it here is the check.
        let path = unsafe { CStr::from_ptr(addr as *const c_char) };
        let path = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
        let model = &self.handle.settings.model;
        cache::write(path, self.prompt_tokens, model.kv_bytes_per_token, &model.name)?;
        CACHES_WRITTEN.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Decrements the handle's running count however the run ends.
struct Running<'a>(&'a Handle);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `rkllm_run` (and `rkllm_run_async`) on a live handle.
///
/// # Safety
/// The pointers are what the imitated release's `rkllm_run` takes.
pub unsafe fn run(h: &Handle, input: *const c_void, infer: *const c_void, userdata: *mut c_void) -> i32 {
    let settings = &h.settings;
    // SAFETY: forwarded from this function's contract.
    let request = match unsafe { decode(settings.abi, input, infer, userdata as usize, h) } {
        Ok(r) => r,
        Err(e) => {
            eprintln!("E rkllm-sim: rkllm_run: {e}");
            return -1;
        }
    };
    h.touch_model_path("rkllm_run");
    // A snapshot: the session lock is never held while callbacks run.
    let session = h.session().clone();
    let lora = match &request.lora {
        Some(name) if !session.loras.contains_key(name) => {
            eprintln!("E rkllm-sim: rkllm_run: no LoRA adapter named {name:?} is loaded");
            return -1;
        }
        Some(name) => name.as_str(),
        None => "",
    };

    RUNS_STARTED.fetch_add(1, Ordering::SeqCst);
    h.abort.clear();
    h.running.fetch_add(1, Ordering::SeqCst);
    let _running = Running(h);
    let sink = Sink { callback: settings.callback, userdata: request.userdata };
    let prefilled = reply::prefilled_text(
        session.history_tokens == 0,
        &session.system,
        &session.prefix,
        &request.prompt,
        &session.postfix,
    );
    let prompt_tokens = reply::prompt_token_count(&prefilled);
    if session.history_tokens + prompt_tokens > settings.max_context_len as u64 {
        eprintln!(
            "E rkllm-sim: rkllm_run: {} history + {prompt_tokens} prompt tokens exceed max_context_len {}",
            session.history_tokens, settings.max_context_len
        );
        sink.send(call_state::ERROR, None, -1, PerfStat::default());
        return -1;
    }
    let text = reply::expand(
        &settings.model.reply,
        &ReplyContext {
            prompt: &request.prompt,
            turn: session.turns + 1,
            role: &request.role,
            system: &session.system,
            tools: &session.tools,
            lora,
            enable_thinking: request.enable_thinking,
            sampling: &request.sampling.as_ref().map_or_else(|| "init".to_string(), reply::describe_sampling),
        },
    );
    let max_tokens = request.max_new_tokens.unwrap_or(settings.max_new_tokens);
    let generation = Generation {
        handle: h,
        sink,
        pieces: pieces(&text, settings.waiting),
        prompt_tokens,
        history_before: session.history_tokens,
        max_tokens: (max_tokens > 0).then_some(max_tokens as u64),
        save_path_addr: request.save_path_addr,
    };
    let outcome = match settings.model.callback_thread {
        CallbackThread::Caller => generation.run(),
        CallbackThread::Foreign => {
            let joined = std::thread::scope(|scope| {
                std::thread::Builder::new()
                    .name("rkllm-sim-cb".into())
                    .spawn_scoped(scope, || generation.run())
                    .map(|t| t.join())
            });
            match joined {
                Ok(Ok(outcome)) => outcome,
                _ => {
                    eprintln!("E rkllm-sim: rkllm_run: the callback thread could not run");
                    return -1;
                }
            }
        }
    };

    let sticky_save = settings.model.sticky_kv && request.save_path_addr.is_some();
    if (request.keep_history || sticky_save) && outcome.prefilled && outcome.ending != Ending::Failed {
        let mut s = h.session();
        s.history_tokens = session.history_tokens + prompt_tokens + outcome.emitted;
        s.turns = session.turns + 1;
    }
    grow(settings.model.grow_kb_per_run);
    if outcome.ending == Ending::Failed {
        -1
    } else {
        0
    }
}

/// Leaks `kb` KiB (made resident) as releases with growing memory did.
fn grow(kb: u64) {
    if kb == 0 {
        return;
    }
    let block = vec![0xA5u8; (kb * 1024) as usize].into_boxed_slice();
    LEAKED_BYTES.fetch_add(block.len() as u64, Ordering::SeqCst);
    LEAKED.lock().unwrap_or_else(PoisonError::into_inner).push(block);
}
