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
// Nothing long runs on the event loop's thread:
// - text is taken in batches with rkl_stream_read(): all the text queued
//   at the moment of a call, in one crossing. A look that does not wait runs
//   on the main thread; waiting runs on koffi's worker threads (fn.async),
//   in short slices;
// - prompt-cache save/load/inspect and model restart run on worker threads
//   of our own (worker.js), where the call's error message can be read on
//   the thread that made the call (librkl keeps it per thread);
// - every other call is short and synchronous, on the main thread, which
//   also reads its message there.

const path = require('node:path');
const { Worker } = require('node:worker_threads');
const ffi = require('./ffi');

const { STATUS_NAMES, statusCode, statsFrom } = ffi;
const LIBRARY = process.env.RKL_LIBRARY || 'librkl.so.0';
const { koffi, c, types, lastErrorMessage, streamErrorMessage } = ffi.declare(LIBRARY);
const { OpenParams, GenerateParams, SamplingParams, CStats, ModelDetails } = types;

// ------------------------------------------------------------------ statuses

/** rkl_status numbers by name, e.g. Status.BAD_HANDLE === 11. */
const Status = Object.freeze(Object.fromEntries(STATUS_NAMES.map((name, i) => [name, i])));
const ROLES = Object.freeze({ user: 0, tool: 1 });
const UNSET = -2147483648; // RKL_UNSET
const OPEN_ISOLATED = 1; // RKL_OPEN_ISOLATED

// ------------------------------------------------------------------ errors

/** A failed rkl call: `status` (number), `code` ("RKL_BAD_HANDLE", ...) and
 *  the library's message, which names the function and what was wrong. */
class RklError extends Error {
  constructor(status, message) {
    super(message || statusStr(status));
    this.name = new.target.name;
    this.status = status;
    this.code = statusCode(status);
  }

  /** The error for `status`, of the most specific class: CacheError for
   *  RKL_CACHE_NOT_FOUND .. RKL_CACHE_MISMATCH and RKL_CACHE_UNTRUSTED,
   *  RuntimeCrashedError, RuntimeTimeoutError, ResourceExhaustedError, else
   *  RklError. `message` defaults to the library's description of the
   *  status. */
  static fromStatus(status, message) {
    const cache = (status >= Status.CACHE_NOT_FOUND && status <= Status.CACHE_MISMATCH)
      || status === Status.CACHE_UNTRUSTED;
    const Class = cache ? CacheError
      : status === Status.RUNTIME_CRASHED ? RuntimeCrashedError
        : status === Status.RUNTIME_TIMEOUT ? RuntimeTimeoutError
          : status === Status.RESOURCE_EXHAUSTED ? ResourceExhaustedError
            : RklError;
    return new Class(status, message);
  }
}

/** A prompt cache was refused: RKL_CACHE_NOT_FOUND, _INVALID, _VERSION,
 *  _TRUNCATED, _CORRUPT, _MISMATCH or _UNTRUSTED (see `code`). */
class CacheError extends RklError {}

/** Isolation mode: the runtime's worker process died during the call (the
 *  message names the signal). The model restarts on the next call. */
class RuntimeCrashedError extends RklError {}

/** The runtime made no progress for `callTimeoutMs`. */
class RuntimeTimeoutError extends RklError {}

/** The system ran out of file descriptors, memory, processes or threads
 *  (the message says which). The call may succeed once resources are freed. */
class ResourceExhaustedError extends RklError {}

function statusStr(status) {
  return c.status_str(status);
}

// Throws for a failed call made just now on this thread.
function check(status) {
  if (status !== Status.OK) throw RklError.fromStatus(status, lastErrorMessage() || statusStr(status));
}

// A string for C: the text is cut at a NUL there, so one inside is refused.
function cText(what, value) {
  if (typeof value !== 'string') throw new TypeError(`${what} must be a string`);
  if (value.includes('\0')) throw new RklError(Status.INVALID_ARGUMENT, `${what} contains a NUL character`);
  return value;
}

// ------------------------------------------------------------------ workers

// Worker threads (worker.js) for the long calls. A call takes an idle worker,
// or starts one while fewer than MAX_WORKERS run, or waits in line. At most
// MAX_IDLE idle workers are kept, unref'd, so they never hold the process
// open. Calls on different workers run concurrently, as librkl allows (it
// orders the calls on one runtime itself).
const MAX_WORKERS = 4;
const MAX_IDLE = 1;
const idle = [];
const waiting = []; // calls without a worker yet: { op, args, resolve, reject }
let live = 0; // workers started and not ended
let nextId = 1;

function startWorker() {
  const worker = new Worker(path.join(__dirname, 'worker.js'), { workerData: { library: LIBRARY } });
  live++;
  worker.pending = null; // the call it runs
  worker.on('message', (reply) => {
    const call = worker.pending;
    if (!call || reply.id !== call.id) return;
    worker.pending = null;
    release(worker);
    if (reply.thrown) call.reject(new Error(`rkl worker: ${reply.thrown}`));
    else call.resolve(reply);
  });
  const fail = (err) => {
    if (worker.ended) return;
    worker.ended = true;
    live--;
    const i = idle.indexOf(worker);
    if (i >= 0) idle.splice(i, 1);
    const call = worker.pending;
    worker.pending = null;
    if (call) call.reject(err instanceof Error ? err : new Error(`rkl worker exited with code ${err}`));
    dispatch();
  };
  worker.on('error', fail);
  worker.on('exit', fail);
  return worker;
}

// Hands waiting calls to idle or new workers.
function dispatch() {
  while (waiting.length > 0) {
    let worker = idle.pop();
    if (!worker) {
      if (live >= MAX_WORKERS) return;
      worker = startWorker();
    }
    const call = waiting.shift();
    call.id = nextId++;
    worker.pending = call;
    worker.ref(); // a call in flight keeps the process alive
    worker.postMessage({ id: call.id, op: call.op, args: call.args });
  }
}

function release(worker) {
  if (worker.ended) return;
  worker.unref();
  idle.push(worker);
  dispatch();
  while (idle.length > MAX_IDLE) {
    const extra = idle.shift();
    extra.ended = true;
    live--;
    void extra.terminate();
  }
}

// Runs worker.js's `op` with `args`: resolves to { status, message, value }.
function onWorker(op, ...args) {
  return new Promise((resolve, reject) => {
    waiting.push({ op, args, resolve, reject });
    dispatch();
  });
}

// Models with a cache save in flight (handle -> count). Node joins its
// worker threads when the process exits, so a save running on one would
// hold process.exit() up for as long as its prefill takes: at exit, saves
// are aborted (what a kill would do anyway; rkl never leaves a half cache).
const saving = new Map();
let exitHookInstalled = false;

function abortSavesAtExit() {
  for (const handle of saving.keys()) c.abort(handle);
}

async function whileSaving(handle, work) {
  if (!exitHookInstalled) {
    process.once('exit', abortSavesAtExit);
    exitHookInstalled = true;
  }
  saving.set(handle, (saving.get(handle) || 0) + 1);
  try {
    return await work();
  } finally {
    const n = saving.get(handle) - 1;
    if (n > 0) saving.set(handle, n);
    else saving.delete(handle);
  }
}

// The value of a worker call, or its failure as an RklError.
async function workerValue(op, ...args) {
  const r = await onWorker(op, ...args);
  if (r.status !== Status.OK) throw RklError.fromStatus(r.status, r.message || statusStr(r.status));
  return r.value;
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
  // Version 2 of rkl_open_params: isolation and time limits.
  isolated: 'flags',
  callTimeoutMs: 'call_timeout_ms',
  abortGraceMs: 'abort_grace_ms',
  maxRestarts: 'max_restarts',
  // Version 3: automatic prompt caching.
  cacheDir: 'cache_dir',
  cacheMaxBytes: 'cache_max_bytes',
  // Version 4: cross-attention models and media tags.
  useCrossAttn: 'use_cross_attn',
  imageTags: 'image_',
  videoTags: 'video_',
};

// Fields koffi would wrap silently when out of range: checked here.
const RANGES = {
  call_timeout_ms: [0, 0xffffffff],
  abort_grace_ms: [0, 0xffffffff],
  max_restarts: [-0x80000000, 0x7fffffff],
  cache_max_bytes: [0, Number.MAX_SAFE_INTEGER],
};

function openParams(modelPath, options = {}) {
  const p = {};
  check(c.open_params_init(p, koffi.sizeof(OpenParams)));
  p.model_path = cText('modelPath', modelPath);
  for (const [key, value] of Object.entries(options)) {
    const field = OPEN_OPTIONS[key];
    if (!field) throw new TypeError(`unknown option ${key}; known: ${Object.keys(OPEN_OPTIONS).join(', ')}`);
    if (value === undefined || value === null) continue;
    if (field === 'image_' || field === 'video_') {
      // [start, end, content]: all three or none.
      if (!Array.isArray(value) || value.length !== 3) throw new TypeError(`${key} must be [start, end, content]`);
      ['start', 'end', 'content'].forEach((part, i) => { p[field + part] = cText(`${key}[${i}]`, value[i]); });
    } else if (field === 'flags') {
      if (typeof value !== 'boolean') throw new TypeError('isolated must be a boolean');
      p.flags = value ? OPEN_ISOLATED : 0;
    } else if (RANGES[field]) {
      const [lo, hi] = RANGES[field];
      if (!Number.isInteger(value) || value < lo || value > hi) {
        throw new RklError(Status.INVALID_ARGUMENT, `${key} must be an integer in ${lo}..${hi}, not ${value}`);
      }
      p[field] = value;
    } else if (typeof value === 'string') p[field] = cText(key, value);
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

// The `sampling` option's names -> rkl_sampling_params fields.
const SAMPLING_OPTIONS = {
  topK: 'top_k',
  topP: 'top_p',
  temperature: 'temperature',
  repeatPenalty: 'repeat_penalty',
  frequencyPenalty: 'frequency_penalty',
  presencePenalty: 'presence_penalty',
  mirostat: 'mirostat',
  mirostatTau: 'mirostat_tau',
  mirostatEta: 'mirostat_eta',
};
const SAMPLING_INTS = new Set(['top_k', 'mirostat']);

// An rkl_sampling_params with the given fields set, the others unset.
function samplingParams(sampling) {
  if (typeof sampling !== 'object') throw new TypeError('sampling must be an object');
  const s = {};
  check(c.sampling_params_init(s, koffi.sizeof(SamplingParams)));
  for (const [key, value] of Object.entries(sampling)) {
    const field = SAMPLING_OPTIONS[key];
    if (!field) throw new TypeError(`unknown sampling option ${key}; known: ${Object.keys(SAMPLING_OPTIONS).join(', ')}`);
    if (value === undefined || value === null) continue;
    if (typeof value !== 'number') throw new TypeError(`sampling.${key} must be a number`);
    // koffi would cut a fraction or wrap an integer, and NaN is C's mark of
    // an unset float (the model's value): refused here instead.
    if (SAMPLING_INTS.has(field)) {
      if (!Number.isInteger(value) || value <= UNSET || value > 0x7fffffff) {
        throw new RklError(Status.INVALID_ARGUMENT, `sampling.${key} must be a 32-bit integer, not ${value}`);
      }
    } else if (Number.isNaN(value)) {
      throw new RklError(Status.INVALID_ARGUMENT, `sampling.${key} is NaN`);
    }
    s[field] = value;
  }
  return s;
}

const INPUT = Object.freeze({ text: 0, tokens: 1, embeddings: 2, multimodal: 3 });

const invalid = (message) => new RklError(Status.INVALID_ARGUMENT, message);

// A count for a size_t field: a non-negative safe integer (koffi would wrap
// or round anything else).
function count(what, value) {
  if (value === undefined || value === null) return 0;
  if (!Number.isSafeInteger(value) || value < 0) throw invalid(`${what} must be a non-negative integer, not ${value}`);
  return value;
}

// An Int32Array or Float32Array (`Type`) for a C array: the typed array
// itself, or a plain array of numbers converted after a check (a value the
// type cannot hold exactly is refused, not rounded or wrapped).
function typedArray(what, Type, value) {
  if (value instanceof Type) return value;
  if (ArrayBuffer.isView(value)) throw new TypeError(`${what} must be a ${Type.name} or an array, not a ${value.constructor.name}`);
  if (!Array.isArray(value)) throw new TypeError(`${what} must be a ${Type.name} or an array of numbers`);
  const out = Type.from(value);
  value.forEach((v, i) => {
    if (typeof v !== 'number') throw new TypeError(`${what}[${i}] is not a number`);
    if (Type === Int32Array && out[i] !== v) throw invalid(`${what}[${i}] = ${v} is not a 32-bit integer`);
  });
  return out;
}

// Points the rkl_generate_params `g` at a request's other inputs.
function inputParams(g, opts) {
  const given = ['tokens', 'embeddings', 'images', 'videos'].filter((k) => opts[k] !== undefined && opts[k] !== null);
  if (given.length > 1 && !(given.length === 2 && given.includes('images') && given.includes('videos'))) {
    throw invalid(`a request has one input, not ${given.join(' and ')}`);
  }
  if (given.includes('tokens')) {
    const t = typedArray('tokens', Int32Array, opts.tokens);
    g.input_kind = INPUT.tokens;
    g.tokens = t.length ? t : null;
    g.n_tokens = t.length;
  }
  if (given.includes('embeddings')) {
    const e = typedArray('embeddings', Float32Array, opts.embeddings);
    const dim = count('embeddingDim', opts.embeddingDim);
    if (dim === 0 || e.length % dim !== 0) {
      throw invalid(`embeddings: ${e.length} values are not whole rows of embeddingDim ${dim}`);
    }
    g.input_kind = INPUT.embeddings;
    g.embeddings = e.length ? e : null;
    g.n_embedding_tokens = e.length / dim;
    g.embedding_dim = dim;
  }
  for (const name of ['images', 'videos']) {
    const m = opts[name];
    if (m === undefined || m === null) continue;
    if (typeof m !== 'object') throw new TypeError(`${name} must be { values, count, tokens, dim, ... }`);
    const values = typedArray(`${name}.values`, Float32Array, m.values === undefined ? [] : m.values);
    const media = {};
    check(c.media_input_init(media, koffi.sizeof(types.MediaInput)));
    for (const f of ['count', 'frames', 'tokens', 'dim', 'width', 'height']) media[f] = count(`${name}.${f}`, m[f]);
    if (name === 'images' && media.frames > 1) throw invalid('images have no frames');
    // Exact, with BigInt: a product past 2^53 must not round to the length.
    const want = BigInt(media.count) * BigInt(Math.max(media.frames, 1)) * BigInt(media.tokens) * BigInt(media.dim);
    if (BigInt(values.length) !== want) {
      throw invalid(`${name}: ${values.length} values for ${want} (count x frames x tokens x dim)`);
    }
    media.embeddings = values.length ? values : null;
    g.input_kind = INPUT.multimodal;
    g[name] = media;
  }
  const x = opts.crossAttn;
  if (x !== undefined && x !== null) {
    if (typeof x !== 'object') throw new TypeError('crossAttn must be { kCache, vCache, mask, positions }');
    const k = typedArray('crossAttn.kCache', Float32Array, x.kCache);
    const v = typedArray('crossAttn.vCache', Float32Array, x.vCache);
    const mask = typedArray('crossAttn.mask', Float32Array, x.mask);
    const pos = typedArray('crossAttn.positions', Int32Array, x.positions);
    if (k.length !== v.length) throw invalid('crossAttn: kCache and vCache differ in length');
    if (mask.length !== pos.length) throw invalid('crossAttn: mask and positions differ in length (one each per encoder token)');
    const p = {};
    check(c.cross_attn_params_init(p, koffi.sizeof(types.CrossAttnParams)));
    Object.assign(p, {
      k_cache: k.length ? k : null,
      v_cache: v.length ? v : null,
      cache_floats: k.length,
      mask: mask.length ? mask : null,
      positions: pos.length ? pos : null,
      num_tokens: mask.length,
    });
    g.cross_attn = p;
  }
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
    if (!Object.hasOwn(ROLES, opts.role)) throw new TypeError(`role must be one of ${Object.keys(ROLES).join(', ')}`);
    g.role = ROLES[opts.role];
  }
  if (opts.cachePrefix !== undefined && opts.cachePrefix !== null) {
    // rkl wants the prefix's length in UTF-8 bytes (it checks the boundary).
    cText('cachePrefix', opts.cachePrefix);
    if (!prompt.startsWith(opts.cachePrefix)) {
      throw new RklError(Status.INVALID_ARGUMENT, 'cachePrefix is not a prefix of the prompt');
    }
    g.cache_prefix_bytes = Buffer.byteLength(opts.cachePrefix, 'utf8');
  }
  if (opts.sampling !== undefined && opts.sampling !== null) g.sampling = samplingParams(opts.sampling);
  inputParams(g, opts);
  return g;
}

/**
 * Reads a prompt cache without a model: everything its manifest records and
 * a verdict ('valid', 'stale' or 'invalid' with verdictCode and
 * verdictMessage). Resolves whenever the manifest could be read, whatever
 * the verdict; rejects (CacheError RKL_CACHE_NOT_FOUND, _INVALID, _VERSION,
 * or RklError RKL_IO) when there is no manifest to report on. Runs on a
 * worker thread: it checksums the payload.
 */
async function inspectCache(manifestPath) {
  return workerValue('cacheInspect', cText('path', manifestPath));
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

  /** Stops every running or queued generation of this model (and a cache
   *  save in progress, which then rejects with RKL_ABORTED). */
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

  /**
   * Runs a request and resolves to the last hidden layer of its input:
   * { values: Float32Array (tokens rows of dim), tokens, dim, stats }.
   * Nothing is generated. `req` has `prompt` (text) or one of `tokens`,
   * `embeddings` (+ `embeddingDim`), `images` / `videos`, and optionally
   * `crossAttn`, `role`, `lora`, `cachePrefix`, `signal` (aborting it
   * stops the call through abort(), so the model's other generations stop
   * too). Runs on a worker thread: the event loop is not blocked.
   */
  async hiddenStates(req = {}) {
    return this.#tensor('hiddenStates', req);
  }

  /** Runs a request and resolves to its logits (rows of the vocabulary's
   *  size: the last token's), as hiddenStates(). */
  async logits(req = {}) {
    return this.#tensor('logits', req);
  }

  async #tensor(op, req) {
    if (req === null || typeof req !== 'object') throw new TypeError('the request must be an object');
    const { signal } = req;
    const params = generateParams(req.prompt === undefined ? '' : req.prompt, { ...req, maxNewTokens: undefined });
    if (signal && signal.aborted) throw signal.reason;
    const h = this.#h;
    const onAbort = () => c.abort(h);
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await workerValue(op, h, params);
    } catch (err) {
      if (signal && signal.aborted && err instanceof RklError && err.status === Status.ABORTED) throw signal.reason;
      throw err;
    } finally {
      if (signal) signal.removeEventListener('abort', onAbort);
    }
  }

  /** { modelPath, runtimePath, family, runtimeVersion } */
  get info() {
    const d = { struct_size: koffi.sizeof(ModelDetails) };
    check(c.model_info(this.#h, d));
    return { modelPath: d.model_path, runtimePath: d.runtime_path, family: d.family, runtimeVersion: d.runtime_version };
  }

  /** Empties the KV history (and unloads a loaded prompt cache). */
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

  /**
   * Function calling: the system prompt, the tools as JSON (the model's
   * schema) and the text that introduces a tool's answer; later requests
   * with role 'tool' carry tool results.
   */
  setFunctionTools(system, tools, toolResponse) {
    check(c.set_function_tools(this.#h, cText('system', system), cText('tools', tools),
      cText('toolResponse', toolResponse)));
  }

  loadLora(path, name, scale = 1.0) {
    check(c.load_lora(this.#h, cText('path', path), cText('name', name), scale));
  }

  /**
   * Saves a prompt cache of `prompt` at `manifestPath` (a manifest, plus
   * the runtime's payload beside it): prefills the prompt through the chat
   * template, as a request with the same `role` and `enableThinking` would,
   * and resolves to the cache's CacheInfo (with `saveStats`). Empties the
   * model's history first and leaves it empty. Refused (RKL_INVALID_ARGUMENT)
   * while a cache is loaded on the model, and with `lora`. A failure never
   * damages a cache already at `manifestPath`. Runs on a worker thread.
   */
  async saveCache(manifestPath, prompt, options = {}) {
    const params = generateParams(prompt, options);
    const file = cText('path', manifestPath);
    return whileSaving(this.#h, () => workerValue('cacheSave', this.#h, params, file));
  }

  /**
   * Validates the prompt cache at `manifestPath` and loads it; resolves to
   * its CacheInfo. Rejects with a CacheError (RKL_CACHE_NOT_FOUND,
   * _INVALID, _VERSION, _UNTRUSTED (another user's, or writable by others),
   * _TRUNCATED, _CORRUPT, _MISMATCH: another model or runtime release)
   * before the runtime sees the payload. While it is
   * loaded, every request gives the FULL prompt, starting with the cached
   * one; only the rest is prefilled. Await it before generating.
   */
  async loadCache(manifestPath) {
    return workerValue('cacheLoad', this.#h, cText('path', manifestPath));
  }

  /** Unloads the prompt cache and empties the KV history; requests give
   *  plain prompts again. Harmless without a cache. */
  releaseCache() {
    check(c.cache_release(this.#h));
  }

  /**
   * Isolation mode: stops the model's worker process (its generations end
   * as aborted), starts a new one and opens the model again, restoring the
   * chat template, function tools, LoRA adapters and loaded prompt cache,
   * not the KV history; resets the restart count. Rejects with
   * RKL_NOT_SUPPORTED for an in-process model. Runs on a worker thread.
   */
  async restart() {
    await workerValue('modelRestart', this.#h);
  }
}

// ------------------------------------------------------------------ stream

// How much text one rkl_stream_read() takes at most: a batch this size
// costs one crossing instead of one per token.
const READ_CAP = 64 * 1024;
// Batches taken in a row on the main thread before a turn of the event loop.
const MAX_LOOKS = 16;

// One rkl_stream_read() on a koffi worker thread: waits up to `timeoutMs`
// for text, then takes everything queued. Resolves to { status, len }.
function pull(handle, timeoutMs, buf, lenOut) {
  return new Promise((resolve, reject) => {
    c.stream_read.async(handle, timeoutMs, buf, buf.length, lenOut, (err, status) => {
      if (err) reject(err);
      else resolve(status);
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
  #pending = false; // an rkl_stream_read() is running on a worker
  #buf = Buffer.allocUnsafe(READ_CAP); // written by librkl during a read only
  #len = [0];
  #looks = 0; // batches taken in a row without a turn of the event loop
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
        // First a look without waiting, on this thread (it returns at once:
        // what is queued, or RKL_TIMEOUT); only when nothing is queued, a
        // wait on a worker thread. Either way all queued text comes in one
        // call, so a batch of tokens costs one crossing.
        // After a run of batches taken without waiting, one turn of the event
        // loop, so that a fast generation cannot starve timers and I/O.
        if (++this.#looks > MAX_LOOKS) {
          this.#looks = 0;
          await new Promise(setImmediate);
          if (this.#closeWanted || this.#closed) return;
        }
        let status = c.stream_read(this.#h, 0, this.#buf, this.#buf.length, this.#len);
        if (status === Status.TIMEOUT) {
          this.#looks = 0;
          this.#pending = true;
          try {
            status = await pull(this.#h, this.pollMs, this.#buf, this.#len);
          } finally {
            this.#pending = false;
          }
          if (this.#closeWanted) return;
          if (status === Status.TIMEOUT) continue;
        }
        const r = { status };
        if (r.status !== Status.OK) {
          // The pool thread holds its last error message; the stream keeps
          // a failed generation's. Other failures (a closed handle) are
          // reported again on this thread by a look at the stream.
          const message = streamErrorMessage(this.#h);
          if (message) throw RklError.fromStatus(r.status, message);
          const again = c.stream_read(this.#h, 0, this.#buf, this.#buf.length, [0]);
          if (again !== Status.OK && again !== Status.TIMEOUT) check(again);
          throw RklError.fromStatus(r.status, `rkl_stream_read: ${statusStr(r.status)}`);
        }
        const n = Number(this.#len[0]);
        if (n === 0) {
          this.#stats = this.#readStats();
          if (this.#signal && this.#signal.aborted) throw this.#signal.reason;
          return;
        }
        // Whole UTF-8 characters: every batch decodes on its own.
        yield this.#buf.toString('utf8', 0, n);
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
      // A worker is inside rkl_stream_read(): stop the generation now, and
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
  inspectCache,
  Model,
  TokenStream,
  RklError,
  CacheError,
  RuntimeCrashedError,
  RuntimeTimeoutError,
  ResourceExhaustedError,
  Status,
  UNSET,
  version: () => c.version(),
  statusStr,
  // For tests and the curious: the C structs and functions as declared here.
  _c: c,
  _types: types,
  _lastErrorMessage: lastErrorMessage,
};
