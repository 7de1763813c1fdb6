//! `rkllm_run`: reading the request, generating the callbacks, keeping history.

use crate::abi::{
    call_state, CrossAttnParam, InferParamV12, InferParamV13, InputPayloadV12, InputPayloadV120, InputPayloadV13,
    InputV12, InputV120, InputV121b1, InputV13, LoraParam, PerfStat, PromptCacheParam, SamplingParam,
};
use crate::cache;
use crate::callback::{FloatRows, Sink};
use crate::config::{Abi, OldRelease};
use crate::faults::{self, FaultKind, FaultPoint};
use crate::handle::{Handle, Session, CACHES_WRITTEN, RUNS_STARTED};
use crate::input::{self, copy_in, Fnv, Payload};
use crate::model_file::CallbackThread;
use crate::params::check_sampling;
use crate::reply::{self, ReplyContext};
use crate::timing::sleep_virtual;
use crate::tokens::{pieces, Piece};
use std::ffi::{c_char, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Infer modes.
const MODE_GENERATE: i32 = 0;
const MODE_HIDDEN: i32 = 1;
const MODE_LOGITS: i32 = 2;

/// One run's request, decoded from either release's structs.
struct Request {
    role: String,
    payload: Payload,
    mode: i32,
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

/// The input union of the imitated release, copied whole.
#[derive(Clone, Copy)]
enum RawPayload {
    V120(InputPayloadV120),
    V12(InputPayloadV12),
    V13(InputPayloadV13),
}

/// The fields both releases' input and infer structs have.
struct RawRequest {
    role: *const c_char,
    enable_thinking: u8,
    input_type: i32,
    payload: RawPayload,
    mode: i32,
    lora_params: *const LoraParam,
    prompt_cache_params: *const PromptCacheParam,
    keep_history: i32,
    max_new_tokens: i32,
    sampling: Option<SamplingParam>,
    sampling_error: Option<String>,
}

/// Reads the caller's structs in the layout of the imitated release, whole,
/// so that a struct of a smaller release is an overread a memory checker
/// reports.
///
/// # Safety
/// `input` and `infer` are non-NULL and point at structs of that layout.
unsafe fn read_raw(abi: Abi, old: Option<OldRelease>, input: *const c_void, infer: *const c_void) -> RawRequest {
    match abi {
        Abi::V1_2 => {
            // SAFETY: per this function's contract.
            let p = unsafe { ptr_read(infer as *const InferParamV12) };
            let (role, enable_thinking, input_type, payload) = match old {
                None => {
                    // SAFETY: per this function's contract.
                    let i = unsafe { ptr_read(input as *const InputV12) };
                    (i.role, i.enable_thinking, i.input_type, RawPayload::V12(i.payload))
                }
                Some(OldRelease::V1_2_0) => {
                    // SAFETY: per this function's contract (1.2.0's 32 bytes).
                    let i = unsafe { ptr_read(input as *const InputV120) };
                    (std::ptr::null(), 0, i.input_type, RawPayload::V120(i.payload))
                }
                Some(OldRelease::V1_2_1b1 | OldRelease::Silent) => {
                    // SAFETY: per this function's contract (1.2.1b1's 56 bytes).
                    let i = unsafe { ptr_read(input as *const InputV121b1) };
                    (std::ptr::null(), 0, i.input_type, RawPayload::V12(i.payload))
                }
            };
            RawRequest {
                role,
                enable_thinking,
                input_type,
                payload,
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
                payload: RawPayload::V13(i.payload),
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

/// Decodes the union as `input_type` says and checks it.
///
/// # Safety
/// The union's pointers are NULL or valid for what they describe.
unsafe fn decode_payload(input_type: i32, raw: RawPayload, h: &Handle) -> Result<Payload, String> {
    let model = &h.settings.model;
    let tags = h.settings.image_tag_addrs;
    // SAFETY: (all arms) every union member is plain data, read as the
    // member input_type names; its pointers are valid per the contract.
    unsafe {
        match (input_type, raw) {
            (0, RawPayload::V120(u)) => Ok(Payload::Prompt(utf8(u.prompt, "prompt")?.ok_or("prompt is NULL")?)),
            (0, RawPayload::V12(u)) => Ok(Payload::Prompt(utf8(u.prompt, "prompt")?.ok_or("prompt is NULL")?)),
            (0, RawPayload::V13(u)) => Ok(Payload::Prompt(utf8(u.prompt, "prompt")?.ok_or("prompt is NULL")?)),
            (1, RawPayload::V120(u)) => input::read_tokens(u.tokens, model.vocab_size),
            (1, RawPayload::V12(u)) => input::read_tokens(u.tokens, model.vocab_size),
            (1, RawPayload::V13(u)) => input::read_tokens(u.tokens, model.vocab_size),
            (2, RawPayload::V120(u)) => input::read_embed(u.embed, model.hidden_size),
            (2, RawPayload::V12(u)) => input::read_embed(u.embed, model.hidden_size),
            (2, RawPayload::V13(u)) => input::read_embed(u.embed, model.hidden_size),
            (3, RawPayload::V120(u)) => input::read_v120(u.multimodal, tags, model.hidden_size),
            (3, RawPayload::V12(u)) => input::read_v12(u.multimodal, tags, model.hidden_size),
            (3, RawPayload::V13(u)) => input::read_v13(u.multimodal, model.hidden_size),
            (other, _) => Err(format!("input_type {other} is not 0, 1, 2 or 3")),
        }
    }
}

/// Decodes and checks a run's arguments.
///
/// # Safety
/// Non-NULL pointers point at structs of the imitated release's layout and
/// valid C strings.
unsafe fn decode(input: *const c_void, infer: *const c_void, userdata: usize, h: &Handle) -> Result<Request, String> {
    if input.is_null() || infer.is_null() {
        return Err("input or infer_params is NULL".into());
    }
    let abi = h.settings.abi;
    // SAFETY: non-NULL, and of the release's layout per this function's contract.
    let raw = unsafe { read_raw(abi, h.settings.old_release, input, infer) };
    if !(0..=3).contains(&raw.input_type) {
        return Err(format!("input_type {} is not 0, 1, 2 or 3", raw.input_type));
    }
    if !(MODE_GENERATE..=MODE_LOGITS).contains(&raw.mode) {
        return Err(format!("mode {} is not 0 (generate), 1 (last hidden layer) or 2 (logits)", raw.mode));
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
    // SAFETY: the union's pointers are valid per the contract.
    let payload = unsafe { decode_payload(raw.input_type, raw.payload, h) }?;
    // SAFETY: the strings are NULL or valid C strings per the contract.
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
        payload,
        mode: raw.mode,
        enable_thinking: raw.enable_thinking == 1,
        lora,
        save_path_addr,
        keep_history: raw.keep_history == 1,
        max_new_tokens: (raw.max_new_tokens > 0).then_some(raw.max_new_tokens),
        sampling: raw.sampling,
        userdata,
    })
}

/// Reads the kept `RKLLMCrossAttnParam` again, whole, and gives its
/// `{cross_attn}` text.
///
/// # Safety
/// `addr` is the pointer given to `rkllm_set_cross_attn_params`, which the
/// caller keeps valid (with all its arrays) for later runs.
pub unsafe fn read_cross_attn(addr: usize, floats_per_token: u64) -> Result<String, String> {
    // SAFETY: per the contract.
    let p = unsafe { ptr_read(addr as *const CrossAttnParam) };
    check_cross_attn(&p)?;
    let n = p.num_tokens as usize;
    let kv = (n as u64).checked_mul(floats_per_token).filter(|v| *v <= 1 << 28).ok_or("cross-attention: too large")?;
    // SAFETY: non-NULL (checked) and of these lengths per the contract.
    let (k, v, mask, pos) = unsafe {
        (
            copy_in(p.encoder_k_cache, kv as usize),
            copy_in(p.encoder_v_cache, kv as usize),
            copy_in(p.encoder_mask, n),
            copy_in(p.encoder_pos, n),
        )
    };
    let h = Fnv::default().f32s(&k).f32s(&v).f32s(&mask).i32s(&pos);
    Ok(format!("tokens={n} fnv={}", h.hex()))
}

/// num_tokens >= 1 and no NULL pointer.
pub fn check_cross_attn(p: &CrossAttnParam) -> Result<(), String> {
    if p.num_tokens < 1 {
        return Err(format!("cross-attention: num_tokens = {} is not >= 1", p.num_tokens));
    }
    let ptrs = [
        ("encoder_k_cache", p.encoder_k_cache.is_null()),
        ("encoder_v_cache", p.encoder_v_cache.is_null()),
        ("encoder_mask", p.encoder_mask.is_null()),
        ("encoder_pos", p.encoder_pos.is_null()),
    ];
    match ptrs.iter().find(|(_, null)| *null) {
        Some((name, _)) => Err(format!("cross-attention: {name} is NULL")),
        None => Ok(()),
    }
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
    /// This run's prefill tokens (0 when it failed before counting them).
    prompt_tokens: u64,
}

/// What the prefill of a run amounts to, after the 1.3 callbacks.
struct Prefill {
    tokens: u64,
    /// `{tokenizer}`.
    tokenizer: String,
    /// `{embed}`.
    embed: String,
}

/// Everything generation needs, so it can run on another thread.
struct Generation<'a> {
    handle: &'a Handle,
    sink: Sink,
    request: &'a Request,
    /// The session as it was when the run started.
    session: &'a Session,
    lora: &'a str,
    /// `{cross_attn}`, read before the run started.
    cross_attn: String,
    max_tokens: Option<u64>,
}

/// Bytes leaked by `grow_kb_per_run`, kept reachable so leak checkers do not
/// report them, but resident, so memory use really grows.
static LEAKED: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());
static LEAKED_BYTES: AtomicU64 = AtomicU64::new(0);

const MIB: f64 = 1024.0 * 1024.0;

impl Generation<'_> {
    fn error(&self, prefilled: bool, emitted: u64, prompt_tokens: u64) -> Outcome {
        self.sink.send(call_state::ERROR, None, -1, PerfStat::default());
        Outcome { ending: Ending::Failed, prefilled, emitted, prompt_tokens }
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

    /// Counts the prefill: the text through the tokenizer callback or the
    /// built-in rule, ids and text ids through the embedding callback.
    fn prefill(&self) -> Result<Prefill, String> {
        let settings = &self.handle.settings;
        let payload = &self.request.payload;
        let mut ids: Option<Vec<i32>> = match payload {
            Payload::Tokens(ids) => Some(ids.clone()),
            _ => None,
        };
        let mut tokenizer = "builtin".to_string();
        let mut text_tokens = 0u64;
        if let Some(text) = payload.text() {
            let s = self.session;
            let full = reply::prefilled_text(s.history_tokens == 0, &s.system, &s.prefix, &text, &s.postfix);
            match settings.tokenizer {
                None => text_tokens = reply::prompt_token_count(&full),
                Some((f, userdata)) => {
                    let got = call_tokenizer(f, userdata, &full, settings.model.vocab_size)?;
                    text_tokens = got.len() as u64;
                    tokenizer = format!("n={} fnv={}", got.len(), Fnv::default().i32s(&got).hex());
                    ids = Some(got);
                }
            }
        }
        let mut embed = "builtin".to_string();
        if let (Some((f, userdata)), Some(ids)) = (settings.embedder, ids) {
            let floats = call_embedder(f, userdata, ids, settings.model.hidden_size)?;
            embed = format!("fnv={}", Fnv::default().f32s(&floats).hex());
        }
        Ok(Prefill { tokens: text_tokens + payload.fixed_tokens(), tokenizer, embed })
    }

    fn run(&self) -> Outcome {
        let settings = &self.handle.settings;
        let model = &settings.model;
        let prefill = match self.prefill() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("E rkllm-sim: rkllm_run: {e}");
                return self.error(false, 0, 0);
            }
        };
        let prompt_tokens = prefill.tokens;
        let history_before = self.session.history_tokens;
        if history_before + prompt_tokens > settings.max_context_len as u64 {
            eprintln!(
                "E rkllm-sim: rkllm_run: {history_before} history + {prompt_tokens} prompt tokens exceed max_context_len {}",
                settings.max_context_len
            );
            return self.error(false, 0, 0);
        }
        if self.fault(FaultPoint::Prefill) {
            return self.error(false, 0, 0);
        }
        if !self.sleep(prompt_tokens.saturating_mul(model.prefill_us_per_token)) {
            return Outcome { ending: Ending::Aborted, prefilled: false, emitted: 0, prompt_tokens };
        }
        let (mut ending, emitted) = match self.request.mode {
            MODE_GENERATE => self.generate(&prefill),
            mode => self.rows(mode, prompt_tokens),
        };
        if ending == Ending::Failed {
            return Outcome { ending, prefilled: true, emitted, prompt_tokens };
        }
        // An abort asked for during the last callback still suppresses FINISH.
        if ending == Ending::Finished && self.aborted() {
            ending = Ending::Aborted;
        }
        if let Some(addr) = self.request.save_path_addr {
            if let Err(e) = self.save_cache(addr, prompt_tokens) {
                eprintln!("E rkllm-sim: rkllm_run: {e}");
                return self.error(true, emitted, prompt_tokens);
            }
        }
        if ending == Ending::Finished {
            let kv_tokens = history_before + prompt_tokens + emitted;
            let perf = PerfStat {
                prefill_time_ms: (prompt_tokens as f64 * model.prefill_us_per_token as f64 / 1000.0) as f32,
                prefill_tokens: prompt_tokens as i32,
                generate_time_ms: (emitted as f64 * model.decode_us_per_token as f64 / 1000.0) as f32,
                generate_tokens: emitted as i32,
                memory_usage_mb: ((settings.model_file_bytes as f64
                    + kv_tokens as f64 * model.kv_bytes_per_token as f64
                    + LEAKED_BYTES.load(Ordering::SeqCst) as f64)
                    / MIB) as f32,
            };
            self.sink.send(call_state::FINISH, None, -1, perf);
        }
        Outcome { ending, prefilled: true, emitted, prompt_tokens }
    }

    /// Mode 0: the reply's tokens. Returns how it ended and the callbacks sent.
    fn generate(&self, prefill: &Prefill) -> (Ending, u64) {
        let settings = &self.handle.settings;
        let request = self.request;
        let session = self.session;
        let text = reply::expand(
            &settings.model.reply,
            &ReplyContext {
                prompt: request.payload.prompt(),
                turn: session.turns + 1,
                role: &request.role,
                system: &session.system,
                tools: &session.tools,
                lora: self.lora,
                enable_thinking: request.enable_thinking,
                sampling: &request.sampling.as_ref().map_or_else(|| "init".to_string(), reply::describe_sampling),
                input: &request.payload.describe(settings.model.hidden_size),
                prefill: prefill.tokens,
                tokenizer: &prefill.tokenizer,
                embed: &prefill.embed,
                cross_attn: &self.cross_attn,
            },
        );
        let mut ending = Ending::Finished;
        let mut emitted = 0u64;
        for piece in &pieces(&text, settings.waiting) {
            if self.max_tokens.is_some_and(|max| emitted >= max) {
                break;
            }
            if self.aborted() {
                ending = Ending::Aborted;
                break;
            }
            if self.fault(FaultPoint::Token(emitted)) {
                self.sink.send(call_state::ERROR, None, -1, PerfStat::default());
                return (Ending::Failed, emitted);
            }
            if !self.sleep(settings.model.decode_us_per_token) {
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
        (ending, emitted)
    }

    /// Modes 1 and 2: one callback with the last hidden layer (all prefill
    /// tokens) or the logits (the last token), then nothing generated.
    fn rows(&self, mode: i32, prompt_tokens: u64) -> (Ending, u64) {
        if self.aborted() {
            return (Ending::Aborted, 0);
        }
        let model = &self.handle.settings.model;
        let (rows, width) =
            if mode == MODE_HIDDEN { (prompt_tokens, model.hidden_size) } else { (1, model.vocab_size) };
        let mut data = input::rows(self.request.payload.hash(), rows, width);
        let block = FloatRows { data: &data, width: width as i32, rows: rows as i32 };
        let code = if mode == MODE_HIDDEN {
            self.sink.send_rows(Some(block), None)
        } else {
            self.sink.send_rows(None, Some(block))
        };
        for v in data.iter_mut() {
            // SAFETY: `v` is a valid exclusive reference; volatile so the
            // store is not removed as dead before the free.
            unsafe { std::ptr::write_volatile(v, f32::NAN) };
        }
        drop(data);
        (if code == 1 { Ending::Paused } else { Ending::Finished }, 0)
    }

    /// Reads the kept path pointer now, at the end of the run, and writes.
    fn save_cache(&self, addr: usize, prompt_tokens: u64) -> Result<(), String> {
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
        cache::write(path, prompt_tokens, model.kv_bytes_per_token, &model.name)?;
        CACHES_WRITTEN.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Calls 1.3's tokenizer callback once on `text` and checks its answer.
fn call_tokenizer(
    f: crate::abi::TokenizerCallback,
    userdata: usize,
    text: &str,
    vocab_size: u64,
) -> Result<Vec<i32>, String> {
    let len = i32::try_from(text.len())
        .ok()
        .filter(|l| *l <= i32::MAX - 16)
        .ok_or("prompt text too long for the tokenizer")?;
    let max = len + 16;
    let c = CString::new(text).map_err(|_| "prompt text holds a NUL byte")?;
    let mut buf = vec![0i32; max as usize];
    // SAFETY: the callback was registered at init with this signature; the
    // text is NUL-terminated and `buf` holds `max` ints.
    let n = unsafe { f(userdata as *mut c_void, c.as_ptr(), len, buf.as_mut_ptr(), max) };
    if n < 0 || n > max {
        return Err(format!("tokenizer_callback returned {n} (not in 0..={max})"));
    }
    buf.truncate(n as usize);
    input::check_ids(&buf, vocab_size).map_err(|e| format!("tokenizer_callback: {e}"))?;
    Ok(buf)
}

/// Calls 1.3's embedding callback once for `ids` and checks what it wrote.
fn call_embedder(
    f: crate::abi::EmbedCallback,
    userdata: usize,
    mut ids: Vec<i32>,
    hidden: u64,
) -> Result<Vec<f32>, String> {
    let n = (ids.len() as u64).checked_mul(hidden).filter(|n| *n <= 1 << 28).ok_or("too many tokens to embed")?;
    let mut buf = vec![f32::NAN; n as usize];
    // SAFETY: the callback was registered at init with this signature; the
    // ids and the buffer (len_bytes bytes) are valid for the call.
    let rc = unsafe {
        f(userdata as *mut c_void, ids.as_mut_ptr(), ids.len() as u64, buf.as_mut_ptr() as *mut c_void, n * 4)
    };
    if rc != 0 {
        return Err(format!("embed_callback returned {rc}"));
    }
    if let Some(i) = buf.iter().position(|v| !v.is_finite()) {
        return Err(format!("embed_callback left float {i} = {} (not finite)", buf[i]));
    }
    Ok(buf)
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
    let request = match unsafe { decode(input, infer, userdata as usize, h) } {
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
    let cross_attn = match session.cross_attn_addr {
        None => "none".to_string(),
        // SAFETY: the pointer given to rkllm_set_cross_attn_params, which the
        // caller keeps valid for the runs after it.
        Some(addr) => match unsafe { read_cross_attn(addr, settings.model.cross_attn_floats_per_token) } {
            Ok(text) => text,
            Err(e) => {
                eprintln!("E rkllm-sim: rkllm_run: {e}");
                return -1;
            }
        },
    };

    RUNS_STARTED.fetch_add(1, Ordering::SeqCst);
    h.abort.clear();
    h.running.fetch_add(1, Ordering::SeqCst);
    let _running = Running(h);
    let max_tokens = request.max_new_tokens.unwrap_or(settings.max_new_tokens);
    let generation = Generation {
        handle: h,
        sink: Sink { callback: settings.callback, userdata: request.userdata },
        request: &request,
        session: &session,
        lora,
        cross_attn,
        max_tokens: (max_tokens > 0).then_some(max_tokens as u64),
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
        s.history_tokens = session.history_tokens + outcome.prompt_tokens + outcome.emitted;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_attention_is_checked_and_hashed_in_order() {
        let (k, v, mask, pos) = ([1.0f32, 2.0], [3.0f32, 4.0], [0.5f32], [7i32]);
        let p = CrossAttnParam {
            encoder_k_cache: k.as_ptr(),
            encoder_v_cache: v.as_ptr(),
            encoder_mask: mask.as_ptr(),
            encoder_pos: pos.as_ptr(),
            num_tokens: 1,
        };
        assert!(check_cross_attn(&p).is_ok());
        assert!(check_cross_attn(&CrossAttnParam { num_tokens: 0, ..p }).unwrap_err().contains("num_tokens"));
        let no_pos = CrossAttnParam { encoder_pos: std::ptr::null(), ..p };
        assert!(check_cross_attn(&no_pos).unwrap_err().contains("encoder_pos"));
        let want = Fnv::default().f32s(&k).f32s(&v).f32s(&mask).i32s(&pos).hex();
        // SAFETY: `p` and its arrays live for the call; 2 floats per token.
        let got = unsafe { read_cross_attn(&p as *const CrossAttnParam as usize, 2) };
        assert_eq!(got.unwrap(), format!("tokens=1 fnv={want}"));
    }
}
