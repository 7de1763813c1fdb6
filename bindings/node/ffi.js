'use strict';
// The C side of rkl for Node.js: include/rkl.h's structs and functions as
// koffi declarations. Loaded once per JS thread: by index.js on the main
// thread and by worker.js in each worker thread (koffi's types belong to the
// thread that declared them).

const koffi = require('koffi');

// rkl_status names by number, as in include/rkl.h without the RKL_ prefix.
const STATUS_NAMES = Object.freeze([
  'OK', 'INVALID_ARGUMENT', 'MODEL_NOT_FOUND', 'RUNTIME_NOT_FOUND', 'RUNTIME_UNSUPPORTED',
  'MODEL_LOAD_FAILED', 'RUNTIME_FAILED', 'CLOSED', 'REENTRANT', 'NOT_SUPPORTED', 'IO',
  'BAD_HANDLE', 'NULL_ARGUMENT', 'TIMEOUT', 'IN_PROGRESS', 'PANIC',
  'CACHE_NOT_FOUND', 'CACHE_INVALID', 'CACHE_VERSION', 'CACHE_TRUNCATED', 'CACHE_CORRUPT',
  'CACHE_MISMATCH', 'ABORTED', 'RUNTIME_CRASHED', 'RUNTIME_TIMEOUT', 'RESOURCE_EXHAUSTED',
  'CACHE_UNTRUSTED',
]);

/** "RKL_" + the name of a status; "RKL_STATUS_<n>" for a number rkl.h lacks. */
function statusCode(status) {
  return 'RKL_' + (STATUS_NAMES[status] || `STATUS_${status}`);
}

const FINISH = ['end', 'max_tokens', 'aborted', 'stopped', 'error'];
const VERDICTS = ['valid', 'stale', 'invalid'];
// rkl_cache_use by number.
const CACHE_USES = ['none', 'hit', 'saved'];

// A decoded rkl_stats as the JS Stats object.
function statsFrom(s) {
  return {
    finish: FINISH[s.finish] || String(s.finish),
    tokens: s.tokens,
    prefillTokens: s.prefill_tokens,
    decodeTokens: s.decode_tokens,
    ttftMs: s.ttft_ms,
    queueMs: s.queue_ms,
    totalMs: s.total_ms,
    prefillMs: s.prefill_ms,
    decodeMs: s.decode_ms,
    memoryMb: s.memory_mb,
    abortMs: s.abort_ms === undefined ? 0 : s.abort_ms,
    cacheUse: s.cache_use === undefined ? 'none' : (CACHE_USES[s.cache_use] || String(s.cache_use)),
  };
}

// Declares everything against the librkl named `library` (a path, or a name
// for the dynamic loader).
function declare(library) {
  const lib = koffi.load(library);

  koffi.opaque('rkl_model');
  koffi.opaque('rkl_stream');

  const OpenParams = koffi.struct('rkl_open_params', {
    struct_size: 'size_t',
    model_path: 'const char *',
    runtime_path: 'const char *',
    runtime_abi: 'const char *',
    max_context_len: 'int32_t',
    max_new_tokens: 'int32_t',
    top_k: 'int32_t',
    n_keep: 'int32_t',
    top_p: 'float',
    temperature: 'float',
    repeat_penalty: 'float',
    frequency_penalty: 'float',
    presence_penalty: 'float',
    mirostat: 'int32_t',
    mirostat_tau: 'float',
    mirostat_eta: 'float',
    skip_special_token: 'int32_t',
    embed_flash: 'int32_t',
    enabled_cpus_num: 'int32_t',
    enabled_cpus_mask: 'uint32_t',
    base_domain_id: 'int32_t',
    _reserved: 'uint32_t',
    // Version 2.
    flags: 'uint32_t',
    call_timeout_ms: 'uint32_t',
    abort_grace_ms: 'uint32_t',
    max_restarts: 'int32_t',
    // Version 3: automatic prompt caching.
    cache_dir: 'const char *',
    cache_max_bytes: 'uint64_t',
    // Version 4: cross-attention, media tags; the tokenizer and embedder
    // callbacks stay NULL (see README: not exposed).
    use_cross_attn: 'int32_t',
    _reserved4: 'uint32_t',
    image_start: 'const char *',
    image_end: 'const char *',
    image_content: 'const char *',
    video_start: 'const char *',
    video_end: 'const char *',
    video_content: 'const char *',
    tokenizer: 'void *',
    tokenizer_userdata: 'void *',
    embedder: 'void *',
    embedder_userdata: 'void *',
  });

  const ModelDetails = koffi.struct('rkl_model_details', {
    struct_size: 'size_t',
    model_path: 'const char *',
    runtime_path: 'const char *',
    family: 'const char *',
    runtime_version: 'const char *',
  });

  // Sampling settings for one request: RKL_UNSET (ints) and NaN (floats)
  // are unset.
  const SamplingParams = koffi.struct('rkl_sampling_params', {
    struct_size: 'size_t',
    top_k: 'int32_t',
    top_p: 'float',
    temperature: 'float',
    repeat_penalty: 'float',
    frequency_penalty: 'float',
    presence_penalty: 'float',
    mirostat: 'int32_t',
    mirostat_tau: 'float',
    mirostat_eta: 'float',
  });

  // Images or videos; `embeddings` (a Float32Array) is copied by koffi to
  // memory it keeps for the call, as are these structs themselves.
  const MediaInput = koffi.struct('rkl_media_input', {
    struct_size: 'size_t',
    embeddings: 'const float *',
    count: 'size_t',
    frames: 'size_t',
    tokens: 'size_t',
    dim: 'size_t',
    width: 'size_t',
    height: 'size_t',
  });

  const CrossAttnParams = koffi.struct('rkl_cross_attn_params', {
    struct_size: 'size_t',
    k_cache: 'const float *',
    v_cache: 'const float *',
    cache_floats: 'size_t',
    mask: 'const float *',
    positions: 'const int32_t *',
    num_tokens: 'size_t',
  });

  // Filled by rkl_hidden_states / rkl_logits in C memory (koffi.alloc), so
  // that rkl_tensor_free sees exactly the struct rkl filled.
  const Tensor = koffi.struct('rkl_tensor', {
    struct_size: 'size_t',
    data: 'void *',
    tokens: 'size_t',
    dim: 'size_t',
    storage: 'void *',
  });

  const GenerateParams = koffi.struct('rkl_generate_params', {
    struct_size: 'size_t',
    prompt: 'const char *',
    lora: 'const char *',
    role: 'int32_t',
    max_new_tokens: 'uint32_t',
    enable_thinking: 'bool',
    keep_history: 'bool',
    // Version 2: automatic prompt caching.
    cache_prefix_bytes: 'size_t',
    // A JS object here is copied to memory koffi keeps for the call.
    sampling: 'const rkl_sampling_params *',
    // Version 3: other inputs (typed arrays, read during the call).
    input_kind: 'int32_t',
    tokens: 'const int32_t *',
    n_tokens: 'size_t',
    embeddings: 'const float *',
    n_embedding_tokens: 'size_t',
    embedding_dim: 'size_t',
    images: 'const rkl_media_input *',
    videos: 'const rkl_media_input *',
    cross_attn: 'const rkl_cross_attn_params *',
  });

  const statsFields = {
    struct_size: 'size_t',
    finish: 'int32_t',
    tokens: 'uint32_t',
    prefill_tokens: 'uint32_t',
    decode_tokens: 'uint32_t',
    ttft_ms: 'double',
    queue_ms: 'double',
    total_ms: 'double',
    prefill_ms: 'double',
    decode_ms: 'double',
    memory_mb: 'double',
  };
  // Versions 1 and 2 of rkl_stats: what a library without abort_ms, or
  // without cache_use, fills.
  const CStatsV1 = koffi.struct('rkl_stats_v1', statsFields);
  const CStatsV2 = koffi.struct('rkl_stats_v2', { ...statsFields, abort_ms: 'double' });
  const CStats = koffi.struct('rkl_stats', { ...statsFields, abort_ms: 'double', cache_use: 'int32_t' });

  const CacheInfo = koffi.struct('rkl_cache_info', {
    struct_size: 'size_t',
    storage: 'void *',
    verdict: 'int32_t',
    verdict_status: 'int32_t',
    verdict_message: 'const char *',
    manifest_path: 'const char *',
    format_version: 'uint32_t',
    max_context_len: 'int32_t',
    library_version: 'const char *',
    runtime_family: 'const char *',
    runtime_version: 'const char *',
    model_path: 'const char *',
    model_size: 'uint64_t',
    model_mtime_ns: 'uint64_t',
    model_fingerprint: 'const char *',
    prompt_hash: 'const char *',
    prompt_bytes: 'uint64_t',
    prompt_preview: 'const char *',
    role: 'const char *',
    enable_thinking: 'bool',
    has_chat_template: 'bool',
    chat_system: 'const char *',
    chat_prefix: 'const char *',
    chat_postfix: 'const char *',
    payload_path: 'const char *',
    payload_size: 'uint64_t',
    payload_checksum: 'const char *',
    created_unix: 'uint64_t',
    save_stats: 'void *', // const rkl_stats *, decoded by its own struct_size
  });

  const c = {
    version: lib.func('const char *rkl_version(void)'),
    status_str: lib.func('const char *rkl_status_str(int32_t status)'),
    last_error_message: lib.func('size_t rkl_last_error_message(_Out_ uint8_t *buf, size_t len)'),
    open_params_init: lib.func('int32_t rkl_open_params_init(_Out_ rkl_open_params *params, size_t size)'),
    open: lib.func('int32_t rkl_open(const rkl_open_params *params, _Out_ rkl_model **out)'),
    close: lib.func('int32_t rkl_close(rkl_model *model)'),
    model_restart: lib.func('int32_t rkl_model_restart(rkl_model *model)'),
    model_info: lib.func('int32_t rkl_model_info(rkl_model *model, _Inout_ rkl_model_details *out)'),
    generate_params_init: lib.func('int32_t rkl_generate_params_init(_Out_ rkl_generate_params *params, size_t size)'),
    sampling_params_init: lib.func('int32_t rkl_sampling_params_init(_Out_ rkl_sampling_params *params, size_t size)'),
    abort: lib.func('int32_t rkl_abort(rkl_model *model)'),
    stream_open: lib.func('int32_t rkl_stream_open(rkl_model *model, const rkl_generate_params *params, _Out_ rkl_stream **out)'),
    stream_next: lib.func('int32_t rkl_stream_next(rkl_stream *stream, int32_t timeout_ms, _Out_ const char **text, _Out_ size_t *len)'),
    // Takes all the text queued at the moment of the call, in one crossing.
    stream_read: lib.func('int32_t rkl_stream_read(rkl_stream *stream, int32_t timeout_ms, _Out_ uint8_t *buf, size_t cap, _Out_ size_t *len)'),
    stream_stats: lib.func('int32_t rkl_stream_stats(rkl_stream *stream, _Inout_ rkl_stats *out)'),
    stream_abort: lib.func('int32_t rkl_stream_abort(rkl_stream *stream)'),
    stream_close: lib.func('int32_t rkl_stream_close(rkl_stream *stream)'),
    stream_error_message: lib.func('size_t rkl_stream_error_message(rkl_stream *stream, _Out_ uint8_t *buf, size_t len)'),
    clear_history: lib.func('int32_t rkl_clear_history(rkl_model *model, int keep_system_prompt)'),
    kv_cache_tokens: lib.func('int32_t rkl_kv_cache_tokens(rkl_model *model, _Out_ uint32_t *out)'),
    set_chat_template: lib.func('int32_t rkl_set_chat_template(rkl_model *model, const char *system, const char *prefix, const char *postfix)'),
    set_function_tools: lib.func('int32_t rkl_set_function_tools(rkl_model *model, const char *system, const char *tools, const char *tool_response)'),
    load_lora: lib.func('int32_t rkl_load_lora(rkl_model *model, const char *path, const char *name, float scale)'),
    // The cache functions take the rkl_cache_info as memory rkl fills and
    // later frees (koffi.alloc), never as a JS object: rkl_cache_info_free
    // must see exactly the struct rkl filled.
    cache_save: lib.func('int32_t rkl_cache_save(rkl_model *model, const rkl_generate_params *params, const char *path, rkl_cache_info *out)'),
    cache_load: lib.func('int32_t rkl_cache_load(rkl_model *model, const char *path, rkl_cache_info *out)'),
    cache_release: lib.func('int32_t rkl_cache_release(rkl_model *model)'),
    cache_inspect: lib.func('int32_t rkl_cache_inspect(const char *path, rkl_cache_info *out)'),
    cache_info_free: lib.func('int32_t rkl_cache_info_free(rkl_cache_info *info)'),
    media_input_init: lib.func('int32_t rkl_media_input_init(_Out_ rkl_media_input *input, size_t size)'),
    cross_attn_params_init: lib.func('int32_t rkl_cross_attn_params_init(_Out_ rkl_cross_attn_params *params, size_t size)'),
    hidden_states: lib.func('int32_t rkl_hidden_states(rkl_model *model, const rkl_generate_params *params, rkl_tensor *out, _Inout_ rkl_stats *stats)'),
    logits: lib.func('int32_t rkl_logits(rkl_model *model, const rkl_generate_params *params, rkl_tensor *out, _Inout_ rkl_stats *stats)'),
    tensor_free: lib.func('int32_t rkl_tensor_free(rkl_tensor *tensor)'),
  };

  // This thread's last error message: only meaningful right after a failed
  // call on this same thread (librkl keeps it per thread).
  function lastErrorMessage() {
    const n = Number(c.last_error_message(null, 0));
    if (n === 0) return '';
    const buf = Buffer.alloc(n + 1);
    c.last_error_message(buf, n + 1);
    return buf.toString('utf8', 0, n);
  }

  // The failure of a stream, whichever thread pulled it.
  function streamErrorMessage(stream) {
    const n = Number(c.stream_error_message(stream, null, 0));
    if (n === 0) return '';
    const buf = Buffer.alloc(n + 1);
    c.stream_error_message(stream, buf, n + 1);
    return buf.toString('utf8', 0, n);
  }

  return {
    koffi,
    lib,
    c,
    types: { OpenParams, GenerateParams, SamplingParams, MediaInput, CrossAttnParams, Tensor, CStats, CStatsV1, CStatsV2, ModelDetails, CacheInfo },
    lastErrorMessage,
    streamErrorMessage,
  };
}

module.exports = { declare, STATUS_NAMES, statusCode, FINISH, VERDICTS, CACHE_USES, statsFrom };
