'use strict';
// A worker thread for rkl's long calls: prompt-cache save, load and inspect,
// model restart, hidden states and logits. index.js keeps a small pool of these (see Pool there).
//
// Why not koffi's fn.async, as the token stream uses: librkl keeps the
// message of a failure per thread, and fn.async runs on whichever libuv pool
// thread is free, so the message would stay behind on a thread no later call
// can choose. Here the call runs synchronously on this worker's own thread,
// and the message is read right after it, on the same thread.
//
// Requests: { id, op, args }. Replies: { id, status, message, value } or
// { id, thrown } when something in JS went wrong.

const { parentPort, workerData } = require('node:worker_threads');
const { declare, statsFrom, statusCode, VERDICTS } = require('./ffi');

const { koffi, c, types, lastErrorMessage } = declare(workerData.library);
const INFO_SIZE = koffi.sizeof(types.CacheInfo);

// uint64 fields decode as a Number, or as a BigInt beyond 2^53.
const num = (v) => Number(v);

function cacheInfoFrom(raw) {
  let saveStats = null;
  if (raw.save_stats) {
    // Its struct_size is the library's sizeof(rkl_stats): read only the
    // fields it covers.
    const size = Number(koffi.decode(raw.save_stats, 'size_t'));
    const type = size >= koffi.sizeof(types.CStats) ? types.CStats
      : size >= koffi.sizeof(types.CStatsV2) ? types.CStatsV2 : types.CStatsV1;
    saveStats = statsFrom(koffi.decode(raw.save_stats, type));
  }
  return {
    verdict: VERDICTS[raw.verdict] || String(raw.verdict),
    verdictStatus: raw.verdict_status,
    verdictCode: statusCode(raw.verdict_status),
    verdictMessage: raw.verdict_message,
    manifestPath: raw.manifest_path,
    formatVersion: raw.format_version,
    maxContextLen: raw.max_context_len,
    libraryVersion: raw.library_version,
    runtimeFamily: raw.runtime_family,
    runtimeVersion: raw.runtime_version,
    modelPath: raw.model_path,
    modelSize: num(raw.model_size),
    modelMtimeNs: BigInt(raw.model_mtime_ns),
    modelFingerprint: raw.model_fingerprint,
    promptHash: raw.prompt_hash,
    promptBytes: num(raw.prompt_bytes),
    promptPreview: raw.prompt_preview,
    role: raw.role,
    enableThinking: raw.enable_thinking,
    chatTemplate: raw.has_chat_template
      ? { system: raw.chat_system, prefix: raw.chat_prefix, postfix: raw.chat_postfix }
      : null,
    payloadPath: raw.payload_path,
    payloadSize: num(raw.payload_size),
    payloadChecksum: raw.payload_checksum,
    createdUnix: num(raw.created_unix),
    saveStats,
  };
}

// Runs `call(out)` with an rkl_cache_info in C memory. On success its
// contents are copied into JS values and rkl_cache_info_free() is called on
// exactly the struct rkl filled.
function withCacheInfo(call) {
  const out = koffi.alloc(types.CacheInfo, 1);
  try {
    new Uint8Array(koffi.view(out, INFO_SIZE)).fill(0);
    koffi.encode(out, 'size_t', INFO_SIZE);
    const status = call(out);
    if (status !== 0) return { status, message: lastErrorMessage() };
    let value;
    try {
      value = cacheInfoFrom(koffi.decode(out, types.CacheInfo));
    } finally {
      const freed = c.cache_info_free(out);
      if (freed !== 0) throw new Error(`rkl_cache_info_free: ${lastErrorMessage()}`);
    }
    return { status, value };
  } finally {
    koffi.free(out);
  }
}

// Runs rkl_hidden_states or rkl_logits with an rkl_tensor in C memory and
// copies its values into a Float32Array before rkl_tensor_free().
function tensor(fn, model, params) {
  const size = koffi.sizeof(types.Tensor);
  const out = koffi.alloc(types.Tensor, 1);
  try {
    new Uint8Array(koffi.view(out, size)).fill(0);
    koffi.encode(out, 'size_t', size);
    const stats = { struct_size: koffi.sizeof(types.CStats) };
    const status = fn(model, params, out, stats);
    if (status !== 0) return { status, message: lastErrorMessage() };
    try {
      const t = koffi.decode(out, types.Tensor);
      const tokens = Number(t.tokens);
      const dim = Number(t.dim);
      const n = tokens * dim;
      const values = new Float32Array(n);
      if (n > 0) values.set(new Float32Array(koffi.view(t.data, 4 * n)));
      return { status, value: { values, tokens, dim, stats: statsFrom(stats) } };
    } finally {
      const freed = c.tensor_free(out);
      if (freed !== 0) throw new Error(`rkl_tensor_free: ${lastErrorMessage()}`);
    }
  } finally {
    koffi.free(out);
  }
}

// What a status-only call returns.
function plain(status) {
  return status === 0 ? { status } : { status, message: lastErrorMessage() };
}

const ops = {
  cacheSave: (model, params, path) => withCacheInfo((out) => c.cache_save(model, params, path, out)),
  cacheLoad: (model, path) => withCacheInfo((out) => c.cache_load(model, path, out)),
  cacheInspect: (path) => withCacheInfo((out) => c.cache_inspect(path, out)),
  modelRestart: (model) => plain(c.model_restart(model)),
  hiddenStates: (model, params) => tensor(c.hidden_states, model, params),
  logits: (model, params) => tensor(c.logits, model, params),
};

parentPort.on('message', ({ id, op, args }) => {
  let reply;
  try {
    reply = { id, ...ops[op](...args) };
  } catch (err) {
    reply = { id, thrown: (err && err.stack) || String(err) };
  }
  parentPort.postMessage(reply);
});
