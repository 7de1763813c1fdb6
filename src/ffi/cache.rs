//! Prompt caches: `rkl_cache_info`, `rkl_cache_save`, `rkl_cache_load`,
//! `rkl_cache_release`, `rkl_cache_inspect`, `rkl_cache_info_free`.
//!
//! The work is done by the safe core (`crate::cache`); this module checks
//! arguments and turns a [`CacheInfo`] into the C struct. The struct is
//! caller memory; its strings and its `save_stats` live in one block per
//! filled struct that rkl keeps in a registry under a token (the struct's
//! `storage` field), until `rkl_cache_info_free`. The registry is the one
//! handles have (`handles.rs`), with its own tag. Because the token is looked
//! up rather than followed, freeing twice, freeing a copy after the original,
//! or freeing a struct rkl never filled is refused instead of crashing.

use super::args::{self, Versioned};
use super::error::{FfiError, FfiResult};
use super::handles::{Registry, CACHE_TAG};
use super::model::{model_entry, rkl_model};
use super::request::{read_request, rkl_generate_params};
use super::stats::rkl_stats;
use super::status::{rkl_status, RKL_OK};
use crate::{CacheInfo, Verdict};
use std::ffi::{c_char, c_void, CString};
use std::mem::offset_of;
use std::path::Path;
use std::ptr;

/// What rkl_cache_inspect() concluded about a cache (also set by
/// rkl_cache_save() and rkl_cache_load(), always to ::RKL_VERDICT_VALID).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rkl_cache_verdict {
    /// The files are whole, the checksum matches, and the model file the
    /// manifest names is unchanged: rkl_cache_load() with that model would
    /// accept it (unless the runtime release differs).
    RKL_VERDICT_VALID = 0,
    /// The files are whole, but the model file the manifest names changed or
    /// is gone (`verdict_status` ::RKL_CACHE_MISMATCH; `verdict_message` says
    /// which). Loading it into the changed model is refused.
    RKL_VERDICT_STALE = 1,
    /// Unusable: `verdict_status` is the status rkl_cache_load() would
    /// return for it (::RKL_CACHE_TRUNCATED, ::RKL_CACHE_CORRUPT, ...) and
    /// `verdict_message` says why.
    RKL_VERDICT_INVALID = 2,
}

/// Everything a prompt cache's manifest records, plus a verdict. Filled by
/// rkl_cache_save(), rkl_cache_load() and rkl_cache_inspect().
///
/// An output struct: set `struct_size = sizeof(rkl_cache_info)` before
/// passing it (C99: `rkl_cache_info info = { .struct_size = sizeof info };`).
/// rkl writes it only on success, never past `struct_size`, and leaves
/// `struct_size` as it was.
///
/// **Ownership.** The strings and `save_stats` belong to rkl: they stay
/// valid, unchanged, until rkl_cache_info_free() on this struct (also after
/// the model is closed) and no longer. Every filled struct must be passed to
/// rkl_cache_info_free() once; rkl does not free what a struct held when it
/// fills it again, so free it before reusing it. Copying the struct copies
/// the pointers, not the strings: free exactly one of the copies (freeing
/// another copy afterwards returns ::RKL_INVALID_ARGUMENT and touches
/// nothing). Strings are UTF-8, NUL-terminated and never NULL while the
/// struct is filled (empty when unknown); after rkl_cache_info_free() every
/// pointer is NULL and every number 0.
///
/// Thread-safety: a filled struct may be read from any thread; freeing it
/// while another thread reads it is the caller's race.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rkl_cache_info {
    /// Set by the caller to `sizeof(rkl_cache_info)`.
    pub struct_size: usize,
    /// rkl's token for the storage of the strings; NULL when the struct owns
    /// nothing. Not an address: do not change it or free it yourself.
    pub storage: *mut c_void,
    /// ::RKL_VERDICT_VALID, ::RKL_VERDICT_STALE or ::RKL_VERDICT_INVALID.
    pub verdict: rkl_cache_verdict,
    /// ::RKL_OK when valid; ::RKL_CACHE_MISMATCH when stale; when invalid,
    /// the status rkl_cache_load() would fail with.
    pub verdict_status: rkl_status,
    /// Why the cache is stale or invalid; empty when valid.
    pub verdict_message: *const c_char,
    /// The manifest's path (the `path` given to the call).
    pub manifest_path: *const c_char,
    /// The manifest's format version (this library writes and reads 1).
    pub format_version: u32,
    /// The context window the model was opened with
    /// (rkl_open_params.max_context_len); 0 when it was left unset.
    pub max_context_len: i32,
    /// Version of the rkl that wrote the cache ("0.1.0").
    pub library_version: *const c_char,
    /// The runtime release family it was saved with: "1.2" or "1.3".
    pub runtime_family: *const c_char,
    /// The runtime's own version string; empty when it was not known.
    pub runtime_version: *const c_char,
    /// The model file the cache belongs to, as it was given to rkl_open().
    pub model_path: *const c_char,
    /// That model file's size in bytes when the cache was saved.
    pub model_size: u64,
    /// Its modification time then, in nanoseconds since the Unix epoch.
    pub model_mtime_ns: u64,
    /// Its fingerprint (hex xxh3-128 of the size and three sampled 1 MiB
    /// blocks); this, not the path, decides whether a model matches.
    pub model_fingerprint: *const c_char,
    /// Hex xxh3-128 of the cached prompt's UTF-8 bytes.
    pub prompt_hash: *const c_char,
    /// Length of the cached prompt in bytes: a request made while the cache
    /// is loaded must be longer than this and start with that prompt.
    pub prompt_bytes: u64,
    /// The prompt's first characters (at most 80), for people.
    pub prompt_preview: *const c_char,
    /// The role the prompt was saved with: "user" or "tool".
    pub role: *const c_char,
    /// Whether thinking mode was on.
    pub enable_thinking: bool,
    /// Whether a chat template was set with rkl_set_chat_template() when the
    /// cache was saved (then the three `chat_*` strings hold it).
    pub has_chat_template: bool,
    /// The chat template's system prompt; empty when none was set.
    pub chat_system: *const c_char,
    /// The chat template's prompt prefix; empty when none was set.
    pub chat_prefix: *const c_char,
    /// The chat template's prompt postfix; empty when none was set.
    pub chat_postfix: *const c_char,
    /// The runtime's payload file, beside the manifest.
    pub payload_path: *const c_char,
    /// The payload's size in bytes as recorded.
    pub payload_size: u64,
    /// Hex xxh3-128 of the payload as recorded.
    pub payload_checksum: *const c_char,
    /// When the cache was written, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// From rkl_cache_save() only: the figures of the prefill run that wrote
    /// the cache (`prefill_tokens`, `prefill_ms`, `ttft_ms`, ...); NULL from
    /// rkl_cache_load() and rkl_cache_inspect(). Owned like the strings. Its
    /// `struct_size` is this library's `sizeof(rkl_stats)`: a caller built
    /// against a newer header reads fields past it only if it covers them.
    pub save_stats: *const rkl_stats,
}

// SAFETY: repr(C), starts with usize. An output struct: rkl never reads its
// fields from C except `struct_size` and `storage` (a pointer-sized token,
// valid for any bit pattern), so `verdict`, `verdict_status` and the bools
// are only ever written.
unsafe impl Versioned for rkl_cache_info {
    const NAME: &'static str = "rkl_cache_info";
    // The first version is the current one; freeze this as a number when a
    // field is added.
    const V1_SIZE: usize = std::mem::size_of::<rkl_cache_info>();
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<rkl_cache_info>() == 208);

impl rkl_cache_info {
    /// Every pointer NULL, every number 0 (what rkl_cache_info_free() leaves).
    fn empty() -> rkl_cache_info {
        rkl_cache_info {
            struct_size: std::mem::size_of::<rkl_cache_info>(),
            storage: ptr::null_mut(),
            verdict: rkl_cache_verdict::RKL_VERDICT_VALID,
            verdict_status: RKL_OK,
            verdict_message: ptr::null(),
            manifest_path: ptr::null(),
            format_version: 0,
            max_context_len: 0,
            library_version: ptr::null(),
            runtime_family: ptr::null(),
            runtime_version: ptr::null(),
            model_path: ptr::null(),
            model_size: 0,
            model_mtime_ns: 0,
            model_fingerprint: ptr::null(),
            prompt_hash: ptr::null(),
            prompt_bytes: 0,
            prompt_preview: ptr::null(),
            role: ptr::null(),
            enable_thinking: false,
            has_chat_template: false,
            chat_system: ptr::null(),
            chat_prefix: ptr::null(),
            chat_postfix: ptr::null(),
            payload_path: ptr::null(),
            payload_size: 0,
            payload_checksum: ptr::null(),
            created_unix: 0,
            save_stats: ptr::null(),
        }
    }
}

/// The memory behind one filled struct: its strings and its stats. Moving it
/// (into the registry) does not move the heap blocks the struct points at.
struct Owned {
    strings: Vec<CString>,
    _stats: Option<Box<rkl_stats>>,
}

impl Owned {
    /// Keeps `text` (cut at a NUL byte, which a hand-edited manifest could
    /// hold) and returns its address.
    fn text(&mut self, text: &str) -> *const c_char {
        let cut = text.find('\0').map_or(text, |at| &text[..at]);
        let owned = CString::new(cut).expect("cut at the first NUL");
        let ptr = owned.as_ptr();
        self.strings.push(owned);
        ptr
    }
}

/// Live storage blocks by token. The tag in the token's high bits makes
/// garbage rarely match (and, on 64-bit, the token not a usable address).
static STORAGE: Registry<Owned> = Registry::new(CACHE_TAG, "rkl_cache_info storage");

/// Builds the C view of `info` and the block its pointers point into.
fn c_view(info: &CacheInfo) -> (rkl_cache_info, Owned) {
    let mut owned = Owned { strings: Vec::new(), _stats: None };
    let mut out = rkl_cache_info::empty();
    let (verdict, status, message) = match &info.verdict {
        Verdict::Valid => (rkl_cache_verdict::RKL_VERDICT_VALID, RKL_OK, String::new()),
        Verdict::Stale(why) => (rkl_cache_verdict::RKL_VERDICT_STALE, rkl_status::RKL_CACHE_MISMATCH, why.clone()),
        Verdict::Invalid(e) => {
            (rkl_cache_verdict::RKL_VERDICT_INVALID, rkl_status::from_kind(e.kind()), e.message().to_string())
        }
    };
    out.verdict = verdict;
    out.verdict_status = status;
    out.verdict_message = owned.text(&message);
    out.manifest_path = owned.text(&info.path.to_string_lossy());
    out.payload_path = owned.text(&info.payload_path.as_deref().map(|p| p.to_string_lossy()).unwrap_or_default());
    // Without a manifest (only when rkl_cache_inspect fails, which does not
    // deliver) every manifest string is empty rather than NULL.
    let none = owned.text("");
    for field in [
        &mut out.library_version,
        &mut out.runtime_family,
        &mut out.runtime_version,
        &mut out.model_path,
        &mut out.model_fingerprint,
        &mut out.prompt_hash,
        &mut out.prompt_preview,
        &mut out.role,
        &mut out.chat_system,
        &mut out.chat_prefix,
        &mut out.chat_postfix,
        &mut out.payload_checksum,
    ] {
        *field = none;
    }
    if let Some(m) = &info.manifest {
        out.format_version = m.format;
        out.max_context_len = m.settings.max_context_len.unwrap_or(0);
        out.library_version = owned.text(&m.library_version);
        out.runtime_family = owned.text(&m.runtime_family);
        out.runtime_version = owned.text(m.runtime_version.as_deref().unwrap_or(""));
        out.model_path = owned.text(&m.model.path);
        out.model_size = m.model.size;
        out.model_mtime_ns = m.model.mtime_ns;
        out.model_fingerprint = owned.text(&m.model.fingerprint);
        out.prompt_hash = owned.text(&m.prompt.hash);
        out.prompt_bytes = m.prompt.bytes;
        out.prompt_preview = owned.text(&m.prompt.preview);
        out.role = owned.text(&m.settings.role);
        out.enable_thinking = m.settings.enable_thinking;
        if let Some([system, prefix, postfix]) = &m.settings.chat_template {
            out.has_chat_template = true;
            out.chat_system = owned.text(system);
            out.chat_prefix = owned.text(prefix);
            out.chat_postfix = owned.text(postfix);
        }
        out.payload_size = m.payload.size;
        out.payload_checksum = owned.text(&m.payload.checksum);
        out.created_unix = m.created_unix;
    }
    if let Some(stats) = &info.save_stats {
        let boxed = Box::new(rkl_stats::from(stats));
        out.save_stats = &*boxed;
        owned._stats = Some(boxed);
    }
    (out, owned)
}

/// Registers the storage of `info`'s C view and writes it to `out` (checked
/// before with `check_out_struct`).
///
/// # Safety
/// `out` points to `struct_size` writable bytes.
unsafe fn deliver(out: *mut rkl_cache_info, info: &CacheInfo) -> FfiResult {
    let (mut view, owned) = c_view(info);
    // Moving `owned` into the registry leaves the blocks the view points at.
    let token = STORAGE.insert(owned)?;
    view.storage = token as *mut c_void;
    // SAFETY: forwarded from the caller.
    let written = unsafe { args::write_struct(out, &view, "out") };
    if written.is_err() {
        // The token was issued just now, so this only takes the block back.
        let _ = STORAGE.remove(token);
    }
    written
}

/// Checks an optional output struct up front.
///
/// # Safety
/// `out` is NULL or points to a struct starting with a readable `size_t`.
unsafe fn check_optional_out(out: *mut rkl_cache_info) -> FfiResult {
    if out.is_null() {
        return Ok(());
    }
    // SAFETY: forwarded from the caller.
    unsafe { args::check_out_struct(out, "out") }
}

/// Saves a prompt cache: prefills `params->prompt` (with its role and
/// thinking flag, through the model's chat template, as rkl_generate() would)
/// with saving on, stops after the first generated token, and writes the
/// runtime's payload plus a manifest at `path`.
///
/// The model's KV history is emptied first, so the cache holds this prompt
/// alone (and the history is empty afterwards). `params->max_new_tokens` and
/// `params->keep_history` are ignored; a `params->lora` is refused with
/// ::RKL_INVALID_ARGUMENT (the manifest cannot record adapters yet).
///
/// The payload is written under a temporary name in `path`'s directory,
/// synced, and the manifest is renamed to `path` last: a crash, a kill or a
/// failure at any point leaves the previous cache at `path` (if any) whole
/// and never a half-written file under the final names. The payload is a
/// file beside the manifest, named `<file name>.<16 hex digits>.kv` (unique
/// per save, so a concurrent save never replaces it); temporary
/// files are named `.<file name>.<pid>-<n>.<kind>.tmp`. Both are created
/// with mode 0600 (a cache holds its prompt's state). The `rkl-cache` tool
/// lists and cleans such directories.
///
/// A save replaces only an rkl prompt cache: when `path` holds anything
/// else (a file that is not an rkl manifest, a symbolic link, a FIFO, a
/// device, a directory) it is refused with ::RKL_INVALID_ARGUMENT and
/// nothing is touched. Of the manifest it replaces, it removes only the
/// payload rkl made for it, never another file the manifest names. Saves
/// to one path from several threads or processes, and `rkl-cache clean`,
/// may run at once: the commit takes a lock on the directory, so the last
/// save wins whole and no payload is left behind.
///
/// @param model   a handle from rkl_open().
/// @param params  the prompt to cache (prefixes of later requests); read
///                only during the call. Use the same role and thinking flag
///                as the requests that will use the cache.
/// @param path    where to write the manifest, UTF-8; its directory must
///                exist and its file name be at most 220 bytes. Copied at
///                the start of the call: rkl never reads the caller's buffer
///                afterwards, not even while the runtime writes the cache
///                (the runtime is given rkl's own copy, kept until the run
///                has ended and its last callback has fired).
/// @param out     NULL, or a caller struct with `struct_size` set; filled
///                only on success (verdict ::RKL_VERDICT_VALID and
///                `save_stats` set). Free it with rkl_cache_info_free().
/// @return ::RKL_OK; ::RKL_BAD_HANDLE; ::RKL_NULL_ARGUMENT;
///         ::RKL_INVALID_ARGUMENT (bad struct, empty prompt, bad path, `path`
///         holds something that is not an rkl cache, or a cache is loaded on
///         the model: release it first); ::RKL_IO (the
///         directory is missing or not writable, the disk is full; nothing
///         at `path` is damaged); ::RKL_ABORTED (rkl_abort() or rkl_close()
///         stopped the run; nothing at `path` is damaged); ::RKL_CLOSED;
///         ::RKL_REENTRANT (called from a token callback);
///         ::RKL_RUNTIME_FAILED (the runtime failed or wrote nothing);
///         ::RKL_RUNTIME_TIMEOUT; ::RKL_RUNTIME_CRASHED (isolation mode).
///
/// Thread-safe; the run queues behind other calls on the runtime like a
/// generation. Generating on the same model from another thread meanwhile
/// is allowed but meaningless: the save empties the model's history.
#[no_mangle]
pub unsafe extern "C" fn rkl_cache_save(
    model: *mut rkl_model,
    params: *const rkl_generate_params,
    path: *const c_char,
    out: *mut rkl_cache_info,
) -> rkl_status {
    ffi_fn!({
        let entry = model_entry(model)?;
        // SAFETY: the caller promises a struct of `struct_size` bytes or NULL.
        unsafe { check_optional_out(out)? };
        // SAFETY: the caller promises a readable params struct.
        let request = unsafe { read_request(params)? };
        // SAFETY: the caller promises a NUL-terminated string; it is copied
        // here and never read again.
        let path = unsafe { args::text(path, "path")? }.to_string();
        let info = entry.model.cache_save(&request, Path::new(&path))?;
        if !out.is_null() {
            // SAFETY: checked above.
            unsafe { deliver(out, &info)? };
        }
        Ok(())
    })
}

/// Validates the prompt cache at `path` and loads it into the model, so that
/// later requests skip prefilling its prompt.
///
/// Before the runtime sees the payload, rkl checks, in this order, each with
/// its own status: the manifest exists (::RKL_CACHE_NOT_FOUND), is a readable
/// manifest (::RKL_CACHE_INVALID) of a format this library knows
/// (::RKL_CACHE_VERSION) that names the payload rkl made for it, beside it
/// (`<file name>.<16 hex digits>.kv`; any other name is ::RKL_CACHE_INVALID
/// and that file is never read); manifest, payload and directory pass the
/// trust rule (::RKL_CACHE_UNTRUSTED: a file owned by another user than the
/// caller or root, or writable by group or others; a directory of such an
/// owner, or writable by group or others without the sticky bit; the
/// environment variable `RKL_CACHE_TRUST=any` turns the rule off); the
/// payload exists with the recorded size
/// (::RKL_CACHE_TRUNCATED) and checksum (::RKL_CACHE_CORRUPT); the cache
/// belongs to this model file (by fingerprint and size, not path) and this
/// runtime release family (::RKL_CACHE_MISMATCH, the message says what
/// differs). Only then is the runtime asked to load it, from a sealed
/// private copy in memory that rkl made while hashing the payload: the
/// runtime reads exactly the bytes that were checked, even if the file is
/// rewritten meanwhile. The last such copy is kept (in RAM, the payload's
/// size), so loading the same unchanged file again (device, inode, size,
/// mtime, ctime) neither reads nor hashes it.
///
/// **The prefix rule.** While a cache is loaded, every request
/// (rkl_generate(), rkl_stream_open()) gives the FULL prompt: the cached
/// prompt, byte for byte, followed by the new part. rkl checks the start
/// against the cached prompt's hash and sends only the continuation to the
/// runtime. A prompt that does not start with the cached prompt, or is only
/// the cached prompt, fails with ::RKL_CACHE_MISMATCH and nothing runs (never a
/// silently doubled prefix). This holds for every thread using the
/// model, and also for turns kept with `keep_history`.
///
/// A loaded cache stays until rkl_cache_release(), rkl_clear_history(),
/// another rkl_cache_load() (which replaces it) or rkl_close(). While it is
/// loaded the KV history holds the cache and what follows it, never an
/// earlier history under it: rkl empties the history just before the
/// runtime loads the cache. A load refused by rkl's checks leaves the
/// model's state as it was; one the runtime refuses leaves the history
/// empty and no cache loaded.
///
/// @param model  a handle from rkl_open().
/// @param path   the manifest (as given to rkl_cache_save()), UTF-8; read
///               only during the call.
/// @param out    NULL, or a caller struct with `struct_size` set; filled
///               only on success (verdict ::RKL_VERDICT_VALID). Free it with
///               rkl_cache_info_free().
/// @return ::RKL_OK; ::RKL_BAD_HANDLE; ::RKL_NULL_ARGUMENT;
///         ::RKL_INVALID_ARGUMENT; the ::RKL_CACHE_NOT_FOUND ..
///         ::RKL_CACHE_MISMATCH and ::RKL_CACHE_UNTRUSTED statuses above;
///         ::RKL_IO (a file could not
///         be read); ::RKL_CLOSED; ::RKL_REENTRANT; ::RKL_RUNTIME_FAILED
///         (the runtime refused the payload); ::RKL_RUNTIME_TIMEOUT;
///         ::RKL_RUNTIME_CRASHED (isolation mode).
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_cache_load(
    model: *mut rkl_model,
    path: *const c_char,
    out: *mut rkl_cache_info,
) -> rkl_status {
    ffi_fn!({
        let entry = model_entry(model)?;
        // SAFETY: the caller promises a struct of `struct_size` bytes or NULL.
        unsafe { check_optional_out(out)? };
        // SAFETY: the caller promises a NUL-terminated string valid for the call.
        let path = unsafe { args::text(path, "path")? };
        let info = entry.model.cache_load(Path::new(path))?;
        if !out.is_null() {
            // SAFETY: checked above.
            unsafe { deliver(out, &info)? };
        }
        Ok(())
    })
}

/// Unloads the model's prompt cache and empties its KV history; requests
/// then give plain prompts again. Harmless when no cache is loaded (the
/// history is emptied all the same).
///
/// @param model  a handle from rkl_open().
/// @return ::RKL_OK; ::RKL_BAD_HANDLE; ::RKL_CLOSED; ::RKL_REENTRANT;
///         ::RKL_RUNTIME_FAILED; ::RKL_RUNTIME_TIMEOUT; ::RKL_RUNTIME_CRASHED
///         (isolation mode).
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_cache_release(model: *mut rkl_model) -> rkl_status {
    ffi_fn!({
        model_entry(model)?.model.cache_release()?;
        Ok(())
    })
}

/// Reads a prompt cache without a model: everything its manifest records
/// plus a verdict (see ::rkl_cache_verdict).
///
/// Returns ::RKL_OK whenever the manifest could be read and parsed, whatever
/// the verdict: a truncated or corrupt payload, or a changed model file, is
/// reported in `out->verdict`, `out->verdict_status` and
/// `out->verdict_message`, with every manifest field filled. When there is
/// no manifest to report on it returns the problem's status instead and
/// leaves `out` alone: ::RKL_CACHE_NOT_FOUND (no file at `path`),
/// ::RKL_CACHE_INVALID (not a manifest, malformed, or not a regular file),
/// ::RKL_CACHE_VERSION (a format this library does not know), ::RKL_IO (it
/// could not be read). A cache that fails the trust rule of
/// rkl_cache_load() has the verdict ::RKL_VERDICT_INVALID with
/// ::RKL_CACHE_UNTRUSTED. Only regular files are opened, without blocking:
/// a manifest naming a FIFO or a device as its model gets a stale verdict.
///
/// The verdict does not consider the runtime release (there is no model):
/// `runtime_family` says which release the cache needs. The payload is
/// checked as rkl_cache_load() checks it, by making and keeping its sealed
/// copy, so loading the same unchanged cache next in this process reuses it.
///
/// @param path  the manifest, UTF-8; read only during the call.
/// @param out   caller struct with `struct_size` set; filled only when
///              ::RKL_OK is returned. Free it with rkl_cache_info_free().
/// @return ::RKL_OK; ::RKL_NULL_ARGUMENT; ::RKL_INVALID_ARGUMENT (bad
///         `struct_size`, `path` not UTF-8); ::RKL_CACHE_NOT_FOUND;
///         ::RKL_CACHE_INVALID; ::RKL_CACHE_VERSION; ::RKL_IO.
///
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn rkl_cache_inspect(path: *const c_char, out: *mut rkl_cache_info) -> rkl_status {
    ffi_fn!({
        args::require(out, "out")?;
        // SAFETY: the caller promises a struct of `struct_size` bytes.
        unsafe { args::check_out_struct(out, "out")? };
        // SAFETY: the caller promises a NUL-terminated string valid for the call.
        let path = unsafe { args::text(path, "path")? };
        let info = crate::cache::inspect(Path::new(path));
        if info.manifest.is_none() {
            return Err(match info.verdict {
                Verdict::Invalid(e) => e.into(),
                // Without a manifest the core always says why; keep a status anyway.
                _ => FfiError::new(
                    rkl_status::RKL_CACHE_INVALID,
                    format!("prompt cache '{path}' has no readable manifest"),
                ),
            });
        }
        // SAFETY: checked above.
        unsafe { deliver(out, &info) }
    })
}

/// Frees the strings and stats of a struct filled by rkl_cache_save(),
/// rkl_cache_load() or rkl_cache_inspect(), and sets every field but
/// `struct_size` to NULL/0.
///
/// @param info  the struct, or NULL (then nothing happens). A struct that
///              owns nothing (`storage` NULL: zero-initialised, or freed
///              already) is left alone.
/// @return ::RKL_OK, also for NULL and for a struct that owns nothing;
///         ::RKL_INVALID_ARGUMENT for a bad `struct_size`, or when `storage`
///         is not a live token of rkl (a copy whose original was freed
///         already, or memory rkl never filled): nothing is freed or
///         written then.
///
/// Thread-safe; each struct must be freed once, by one thread.
#[no_mangle]
pub unsafe extern "C" fn rkl_cache_info_free(info: *mut rkl_cache_info) -> rkl_status {
    ffi_fn!({
        if info.is_null() {
            return Ok(());
        }
        // SAFETY: the caller promises a struct of `struct_size` bytes.
        unsafe { args::check_out_struct(info, "info")? };
        // SAFETY: `storage` lies inside the first version of the struct,
        // which check_out_struct proved the caller has; any bit pattern is a
        // valid pointer-sized value, and it is never dereferenced.
        let token =
            unsafe { info.cast::<u8>().add(offset_of!(rkl_cache_info, storage)).cast::<usize>().read_unaligned() };
        if token == 0 {
            return Ok(());
        }
        // Freed already (Ok(None)) or never issued (Err): refused alike.
        let Ok(Some(owned)) = STORAGE.remove(token) else {
            return Err(FfiError::invalid(format!(
                "info->storage ({token:#x}) holds nothing of rkl: the struct was freed already (through a copy?) \
                 or never filled by rkl"
            )));
        };
        // SAFETY: checked above; the caller's struct_size is kept.
        let cleared = unsafe { args::write_struct(info, &rkl_cache_info::empty(), "info") };
        drop(owned);
        cleared
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::inspect;
    use std::ffi::CStr;

    #[test]
    fn a_missing_cache_is_an_error_and_out_stays_untouched() {
        let mut info = rkl_cache_info::empty();
        info.format_version = 77;
        let path = c"/nonexistent-rkl-dir/none.rklcache";
        // SAFETY: valid struct and string.
        let status = unsafe { rkl_cache_inspect(path.as_ptr(), &mut info) };
        assert_eq!(status, rkl_status::RKL_CACHE_NOT_FOUND);
        assert_eq!(info.format_version, 77);
        assert!(info.storage.is_null());
    }

    #[test]
    fn views_own_their_strings_until_freed() {
        let info = inspect(Path::new("/nonexistent-rkl-dir/none.rklcache"));
        let (view, owned) = c_view(&info);
        // SAFETY: the view's strings live in `owned`.
        let message = unsafe { CStr::from_ptr(view.verdict_message) }.to_str().unwrap();
        assert!(message.contains("no prompt cache"), "{message}");
        assert_eq!(view.verdict, rkl_cache_verdict::RKL_VERDICT_INVALID);
        assert_eq!(view.verdict_status, rkl_status::RKL_CACHE_NOT_FOUND);
        assert!(view.save_stats.is_null());
        drop(owned);
    }

    #[test]
    fn freeing_checks_the_token() {
        let mut info = rkl_cache_info::empty();
        // SAFETY: valid, empty struct.
        assert_eq!(unsafe { rkl_cache_info_free(&mut info) }, RKL_OK);
        let token = STORAGE.insert(Owned { strings: Vec::new(), _stats: None }).unwrap();
        info.storage = (token + 0xdead_beef) as *mut c_void;
        // SAFETY: as above; a token never issued is refused, not followed.
        assert_eq!(unsafe { rkl_cache_info_free(&mut info) }, rkl_status::RKL_INVALID_ARGUMENT);
        info.storage = token as *mut c_void;
        // SAFETY: as above; a live token is freed and the struct cleared.
        assert_eq!(unsafe { rkl_cache_info_free(&mut info) }, RKL_OK);
        assert!(info.storage.is_null());
        info.storage = token as *mut c_void;
        // SAFETY: as above; a token freed already is refused.
        assert_eq!(unsafe { rkl_cache_info_free(&mut info) }, rkl_status::RKL_INVALID_ARGUMENT);
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { rkl_cache_info_free(ptr::null_mut()) }, RKL_OK);
    }
}
