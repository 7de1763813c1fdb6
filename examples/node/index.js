'use strict';
// rkl for Node.js: run LLMs on Rockchip NPUs through librkl, over koffi.
//
//   const rkl = require('rkl');
//   const model = rkl.open('qwen3-0.6b.rkllm');
//   for await (const text of model.stream('Hello!')) process.stdout.write(text);
//   model.close();
//
// librkl is loaded from RKL_LIBRARY (a path), else as librkl.so.0 through the
// dynamic loader (LD_LIBRARY_PATH, ldconfig). The runtime (librkllmrt.so) is
// found by librkl: the runtimePath option, else RKL_RUNTIME, else the loader.
//
// Tokens are pulled with rkl_stream_next() on koffi's worker threads
// (fn.async), so waiting for text never blocks the event loop. Every other
// call is short and synchronous, which also keeps librkl's per-thread error
// message on the thread that reads it.

const koffi = require('koffi');

const lib = koffi.load(process.env.RKL_LIBRARY || 'librkl.so.0');

// ------------------------------------------------------------------ statuses

const STATUS_NAMES = [
  'OK', 'INVALID_ARGUMENT', 'MODEL_NOT_FOUND', 'RUNTIME_NOT_FOUND', 'RUNTIME_UNSUPPORTED',
  'MODEL_LOAD_FAILED', 'RUNTIME_FAILED', 'CLOSED', 'REENTRANT', 'NOT_SUPPORTED', 'IO',
  'BAD_HANDLE', 'NULL_ARGUMENT', 'TIMEOUT', 'IN_PROGRESS', 'PANIC',
];
/** rkl_status numbers by name, e.g. Status.BAD_HANDLE === 11. */
const Status = Object.freeze(Object.fromEntries(STATUS_NAMES.map((name, i) => [name, i])));
const FINISH = ['end', 'max_tokens', 'aborted', 'stopped', 'error'];
const ROLES = { user: 0, tool: 1 };
const UNSET = -2147483648; // RKL_UNSET

// ------------------------------------------------------------------ C types
// Mirrors of include/rkl.h; their sizes are handed to librkl, which refuses
// a struct_size it does not know (see test/rkl.test.js).

const rkl_model = koffi.opaque('rkl_model');
const rkl_stream = koffi.opaque('rkl_stream');

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
});

const ModelDetails = koffi.struct('rkl_model_details', {
  struct_size: 'size_t',
  model_path: 'const char *',
  runtime_path: 'const char *',
  family: 'const char *',
  runtime_version: 'const char *',
});

const GenerateParams = koffi.struct('rkl_generate_params', {
  struct_size: 'size_t',
  prompt: 'const char *',
  lora: 'const char *',
  role: 'int32_t',
  max_new_tokens: 'uint32_t',
  enable_thinking: 'bool',
  keep_history: 'bool',
});

const CStats = koffi.struct('rkl_stats', {
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
});

const c = {
  version: lib.func('const char *rkl_version(void)'),
  status_str: lib.func('const char *rkl_status_str(int32_t status)'),
  last_error_message: lib.func('size_t rkl_last_error_message(_Out_ uint8_t *buf, size_t len)'),
  open_params_init: lib.func('int32_t rkl_open_params_init(_Out_ rkl_open_params *params, size_t size)'),
  open: lib.func('int32_t rkl_open(const rkl_open_params *params, _Out_ rkl_model **out)'),
  close: lib.func('int32_t rkl_close(rkl_model *model)'),
  model_info: lib.func('int32_t rkl_model_info(rkl_model *model, _Inout_ rkl_model_details *out)'),
  generate_params_init: lib.func('int32_t rkl_generate_params_init(_Out_ rkl_generate_params *params, size_t size)'),
  abort: lib.func('int32_t rkl_abort(rkl_model *model)'),
  stream_open: lib.func('int32_t rkl_stream_open(rkl_model *model, const rkl_generate_params *params, _Out_ rkl_stream **out)'),
  stream_next: lib.func('int32_t rkl_stream_next(rkl_stream *stream, int32_t timeout_ms, _Out_ const char **text, _Out_ size_t *len)'),
  stream_stats: lib.func('int32_t rkl_stream_stats(rkl_stream *stream, _Inout_ rkl_stats *out)'),
  stream_abort: lib.func('int32_t rkl_stream_abort(rkl_stream *stream)'),
  stream_close: lib.func('int32_t rkl_stream_close(rkl_stream *stream)'),
  clear_history: lib.func('int32_t rkl_clear_history(rkl_model *model, int keep_system_prompt)'),
  kv_cache_tokens: lib.func('int32_t rkl_kv_cache_tokens(rkl_model *model, _Out_ uint32_t *out)'),
  set_chat_template: lib.func('int32_t rkl_set_chat_template(rkl_model *model, const char *system, const char *prefix, const char *postfix)'),
  load_lora: lib.func('int32_t rkl_load_lora(rkl_model *model, const char *path, const char *name, float scale)'),
};

// ------------------------------------------------------------------ errors

/** A failed rkl call: `status` (number), `code` ("RKL_BAD_HANDLE", ...) and
 *  the library's message, which names the function and what was wrong. */
class RklError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'RklError';
    this.status = status;
    this.code = 'RKL_' + (STATUS_NAMES[status] || `STATUS_${status}`);
  }
}

function statusStr(status) {
  return c.status_str(status);
}

// This thread's last error message. Only meaningful right after a failed
// synchronous call: librkl keeps the message per thread.
function lastErrorMessage() {
  const n = Number(c.last_error_message(null, 0));
  if (n === 0) return '';
  const buf = Buffer.alloc(n + 1);
  c.last_error_message(buf, n + 1);
  return buf.toString('utf8', 0, n);
}

function check(status) {
  if (status !== Status.OK) throw new RklError(status, lastErrorMessage() || statusStr(status));
}

// A string for C: the text is cut at a NUL there, so one inside is refused.
function cText(what, value) {
  if (typeof value !== 'string') throw new TypeError(`${what} must be a string`);
  if (value.includes('\0')) throw new RklError(Status.INVALID_ARGUMENT, `${what} contains a NUL character`);
  return value;
}

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
  };
}

// ------------------------------------------------------------------ model

// open() option name -> rkl_open_params field.
const OPEN_OPTIONS = {
  runtimePath: 'runtime_path',
  runtimeAbi: 'runtime_abi',
  maxContextLen: 'max_context_len',
  maxNewTokens: 'max_new_tokens',
  topK: 'top_k',
  nKeep: 'n_keep',
  topP: 'top_p',
  temperature: 'temperature',
  repeatPenalty: 'repeat_penalty',
  frequencyPenalty: 'frequency_penalty',
  presencePenalty: 'presence_penalty',
  mirostat: 'mirostat',
  mirostatTau: 'mirostat_tau',
  mirostatEta: 'mirostat_eta',
  skipSpecialToken: 'skip_special_token',
  embedFlash: 'embed_flash',
  cpus: 'enabled_cpus_num',
  cpuMask: 'enabled_cpus_mask',
  baseDomainId: 'base_domain_id',
};

function openParams(modelPath, options = {}) {
  const p = {};
  check(c.open_params_init(p, koffi.sizeof(OpenParams)));
  p.model_path = cText('modelPath', modelPath);
  for (const [key, value] of Object.entries(options)) {
    const field = OPEN_OPTIONS[key];
    if (!field) throw new TypeError(`unknown option ${key}; known: ${Object.keys(OPEN_OPTIONS).join(', ')}`);
    if (value === undefined || value === null) continue;
    if (typeof value === 'string') p[field] = cText(key, value);
    else if (typeof value === 'boolean') p[field] = value ? 1 : 0;
    else p[field] = value;
  }
  return p;
}

/**
 * Opens a model. Synchronous: it loads the runtime (once per process) and
 * the model, which takes seconds on a device, so call it at startup.
 */
function open(modelPath, options) {
  const params = openParams(modelPath, options);
  const out = [null];
  check(c.open(params, out));
  return new Model(out[0]);
}

function generateParams(prompt, opts = {}) {
  cText('prompt', prompt);
  const g = {};
  check(c.generate_params_init(g, koffi.sizeof(GenerateParams)));
  g.prompt = prompt;
  if (opts.maxNewTokens !== undefined) g.max_new_tokens = opts.maxNewTokens;
  if (opts.keepHistory !== undefined) g.keep_history = !!opts.keepHistory;
  if (opts.enableThinking !== undefined) g.enable_thinking = !!opts.enableThinking;
  if (opts.lora !== undefined) g.lora = cText('lora', opts.lora);
  if (opts.role !== undefined) {
    if (!(opts.role in ROLES)) throw new TypeError(`role must be one of ${Object.keys(ROLES).join(', ')}`);
    g.role = ROLES[opts.role];
  }
  return g;
}

class Model {
  // The handle is a token checked by librkl, never reused: after close() it
  // stays, and later calls get RKL_BAD_HANDLE from the library.
  #h;

  constructor(handle) {
    this.#h = handle;
    this.closed = false;
  }

  /** Closes the model: its generations end as aborted; later calls throw
   *  RklError RKL_BAD_HANDLE. Closing twice is harmless. */
  close() {
    this.closed = true;
    check(c.close(this.#h));
  }

  /** Stops every running or queued generation of this model. */
  abort() {
    check(c.abort(this.#h));
  }

  /** Starts a generation; iterate the returned stream with `for await`. */
  stream(prompt, options = {}) {
    const params = generateParams(prompt, options);
    const { signal } = options;
    if (signal && signal.aborted) throw signal.reason;
    const out = [null];
    check(c.stream_open(this.#h, params, out));
    return new TokenStream(out[0], signal, options.pollMs);
  }

  /** Generates a whole reply: resolves to { text, stats }. `onText` gets
   *  each piece as it comes. */
  async generate(prompt, options = {}) {
    const stream = this.stream(prompt, options);
    let text = '';
    try {
      for await (const piece of stream) {
        text += piece;
        if (options.onText) options.onText(piece);
      }
    } finally {
      stream.close();
    }
    return { text, stats: stream.stats };
  }

  /** { modelPath, runtimePath, family, runtimeVersion } */
  get info() {
    const d = { struct_size: koffi.sizeof(ModelDetails) };
    check(c.model_info(this.#h, d));
    return { modelPath: d.model_path, runtimePath: d.runtime_path, family: d.family, runtimeVersion: d.runtime_version };
  }

  clearHistory(keepSystemPrompt = false) {
    check(c.clear_history(this.#h, keepSystemPrompt ? 1 : 0));
  }

  kvCacheTokens() {
    const out = [0];
    check(c.kv_cache_tokens(this.#h, out));
    return out[0];
  }

  setChatTemplate(system, prefix, postfix) {
    check(c.set_chat_template(this.#h, cText('system', system), cText('prefix', prefix), cText('postfix', postfix)));
  }

  loadLora(path, name, scale = 1.0) {
    check(c.load_lora(this.#h, cText('path', path), cText('name', name), scale));
  }
}

// ------------------------------------------------------------------ stream

// One rkl_stream_next() on a koffi worker thread.
function pull(handle, timeoutMs) {
  return new Promise((resolve, reject) => {
    const text = [null];
    const len = [0];
    c.stream_next.async(handle, timeoutMs, text, len, (err, status) => {
      if (err) reject(err);
      else resolve({ status, text: text[0] });
    });
  });
}

/**
 * A generation's text as an async iterable. Iterating it to the end (or
 * leaving the loop early) closes it; `stats` is then available. `abort()`
 * makes the iteration end; an AbortSignal given to Model.stream() does the
 * same and then the loop throws the signal's reason.
 */
class TokenStream {
  #h;
  #signal;
  #onAbort = null;
  #pending = false; // an rkl_stream_next() is running on a worker
  #closeWanted = false;
  #closed = false;
  #stats = null;

  constructor(handle, signal, pollMs = 200) {
    this.#h = handle;
    this.#signal = signal;
    /** How long one wait on a worker thread lasts before the loop looks
     *  again at whether it was closed. */
    this.pollMs = pollMs;
    if (signal) {
      this.#onAbort = () => this.abort();
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  async *[Symbol.asyncIterator]() {
    try {
      for (;;) {
        if (this.#closeWanted || this.#closed) return;
        this.#pending = true;
        let r;
        try {
          r = await pull(this.#h, this.pollMs);
        } finally {
          this.#pending = false;
        }
        // The text is valid until the next call on the stream, and close()
        // waits (#closeWanted) while a call runs, so it is still valid here.
        if (this.#closeWanted) return;
        if (r.status === Status.TIMEOUT) continue;
        if (r.status !== Status.OK) {
          // The worker thread holds the message; ask again on this thread.
          const again = c.stream_next(this.#h, 0, [null], [0]);
          if (again !== Status.OK && again !== Status.TIMEOUT) check(again);
          throw new RklError(r.status, `rkl_stream_next: ${statusStr(r.status)}`);
        }
        if (r.text === null) {
          this.#stats = this.#readStats();
          if (this.#signal && this.#signal.aborted) throw this.#signal.reason;
          return;
        }
        yield r.text;
      }
    } finally {
      this.close();
    }
  }

  #readStats() {
    const s = { struct_size: koffi.sizeof(CStats) };
    check(c.stream_stats(this.#h, s));
    return statsFrom(s);
  }

  /** The figures, once the stream was read to its end (else null). */
  get stats() {
    return this.#stats;
  }

  /** Asks the generation to stop; iteration then ends. */
  abort() {
    if (!this.#closed) check(c.stream_abort(this.#h));
  }

  /** Closes the stream, aborting an unfinished generation. Harmless twice. */
  close() {
    if (this.#closed) return;
    if (this.#signal) this.#signal.removeEventListener('abort', this.#onAbort);
    if (this.#pending) {
      // A worker is inside rkl_stream_next(): stop the generation now, and
      // close when that call is back (the loop sees #closeWanted).
      this.#closeWanted = true;
      c.stream_abort(this.#h);
      return;
    }
    this.#closed = true;
    check(c.stream_close(this.#h));
  }
}

module.exports = {
  open,
  Model,
  TokenStream,
  RklError,
  Status,
  UNSET,
  version: () => c.version(),
  statusStr,
  // For tests and the curious: the C structs and functions as declared here.
  _c: c,
  _types: { OpenParams, GenerateParams, CStats, ModelDetails },
  _lastErrorMessage: lastErrorMessage,
};
