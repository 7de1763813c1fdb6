// Type declarations of rkl for Node.js (index.js).

/// <reference types="node" />

/** rkl_status numbers by name. */
export declare const Status: Readonly<{
  OK: 0;
  INVALID_ARGUMENT: 1;
  MODEL_NOT_FOUND: 2;
  RUNTIME_NOT_FOUND: 3;
  RUNTIME_UNSUPPORTED: 4;
  MODEL_LOAD_FAILED: 5;
  RUNTIME_FAILED: 6;
  CLOSED: 7;
  REENTRANT: 8;
  NOT_SUPPORTED: 9;
  IO: 10;
  BAD_HANDLE: 11;
  NULL_ARGUMENT: 12;
  TIMEOUT: 13;
  IN_PROGRESS: 14;
  PANIC: 15;
  CACHE_NOT_FOUND: 16;
  CACHE_INVALID: 17;
  CACHE_VERSION: 18;
  CACHE_TRUNCATED: 19;
  CACHE_CORRUPT: 20;
  CACHE_MISMATCH: 21;
  ABORTED: 22;
  RUNTIME_CRASHED: 23;
  RUNTIME_TIMEOUT: 24;
  RESOURCE_EXHAUSTED: 25;
  CACHE_UNTRUSTED: 26;
}>;

/** RKL_UNSET: "the runtime's default" for integer open parameters. */
export declare const UNSET: -2147483648;

/** A failed rkl call; `message` is rkl's own (it names the function). */
export declare class RklError extends Error {
  constructor(status: number, message?: string);
  /** The rkl_status number. */
  readonly status: number;
  /** "RKL_" + the status name, e.g. "RKL_MODEL_NOT_FOUND" ("RKL_STATUS_<n>"
   *  for a number this module does not know). */
  readonly code: string;
  /** The error of the most specific class for `status` (CacheError for
   *  16..21 and 26, RuntimeCrashedError, RuntimeTimeoutError,
   *  ResourceExhaustedError, else RklError); `message` defaults to
   *  statusStr(status). */
  static fromStatus(status: number, message?: string): RklError;
}

/** A prompt cache was refused: code RKL_CACHE_NOT_FOUND, _INVALID,
 *  _VERSION, _TRUNCATED, _CORRUPT, _MISMATCH or _UNTRUSTED. */
export declare class CacheError extends RklError {}

/** Isolation mode: the runtime's worker process died during the call
 *  (RKL_RUNTIME_CRASHED). The model restarts on the next call. */
export declare class RuntimeCrashedError extends RklError {}

/** The runtime made no progress for `callTimeoutMs` (RKL_RUNTIME_TIMEOUT). */
export declare class RuntimeTimeoutError extends RklError {}

/** The system ran out of file descriptors, memory, processes or threads
 *  (RKL_RESOURCE_EXHAUSTED). The call may succeed once resources are freed. */
export declare class ResourceExhaustedError extends RklError {}

/** Settings of open(); those not given keep the runtime's defaults. */
export interface OpenOptions {
  /** The runtime library (else RKL_RUNTIME, else the loader's search). */
  runtimePath?: string;
  /** "1.2" or "1.3" (else detected). */
  runtimeAbi?: string;
  maxContextLen?: number;
  /** Tokens per request; -1: until the end. */
  maxNewTokens?: number;
  topK?: number;
  nKeep?: number;
  topP?: number;
  temperature?: number;
  repeatPenalty?: number;
  frequencyPenalty?: number;
  presencePenalty?: number;
  mirostat?: 0 | 1 | 2;
  mirostatTau?: number;
  mirostatEta?: number;
  skipSpecialToken?: boolean;
  embedFlash?: boolean;
  /** CPU cores the runtime may use, 1..8. */
  cpus?: number;
  cpuMask?: number;
  baseDomainId?: number;
  /** Run the runtime in a worker process (rkl-host): its crashes and hangs
   *  reject the call instead of taking this process down (RKL_OPEN_ISOLATED;
   *  RKL_ISOLATED=1 turns it on for every model). */
  isolated?: boolean;
  /** A call on which the runtime makes no progress for this long fails with
   *  RKL_RUNTIME_TIMEOUT (0, the default: no limit). Must exceed the longest
   *  prefill. In-process, the runtime then stays stuck for good. */
  callTimeoutMs?: number;
  /** How long the runtime may take to stop after an abort (0: 2000 ms);
   *  isolation mode then kills its worker. */
  abortGraceMs?: number;
  /** Isolation mode: automatic restarts per minute (0: 3; negative: never,
   *  only Model.restart()). */
  maxRestarts?: number;
  /** Automatic prompt caching: a directory (made owner-only when missing)
   *  where requests with a `cachePrefix` find the prefix's cache, or save it
   *  the first time. Keyed by the model file's content, the runtime release,
   *  the chat template, the prefix and the settings that shape the KV state;
   *  several models and processes may share it. Unset: off. */
  cacheDir?: string;
  /** The most bytes the directory's automatic caches may take together; the
   *  least recently used are removed past it. 0 (default): no cap. Refused
   *  without `cacheDir`. */
  cacheMaxBytes?: number;
  /** A cross-attention model: requests pass `crossAttn` (runtime 1.2.1+). */
  useCrossAttn?: boolean;
  /** [start, end, content]: the tags the runtime puts around and inside
   *  each image of a multimodal prompt (default: the runtime's on 1.2,
   *  empty on 1.3). */
  imageTags?: [string, string, string];
  /** As `imageTags`, for videos (runtime release 1.3). */
  videoTags?: [string, string, string];
}

/** Images or videos of a multimodal request, as the vision encoder made
 *  them: `count` items (one `<image>` / `<video>` marker each in the
 *  prompt), `frames` per video, `tokens` rows per image or frame, `dim`
 *  floats per row; `values` holds count * max(frames, 1) * tokens * dim. */
export interface Media {
  values: Float32Array | number[];
  count: number;
  frames?: number;
  tokens: number;
  dim: number;
  width?: number;
  height?: number;
}

/** The encoder state of a cross-attention model (open() `useCrossAttn`);
 *  the runtime keeps the last one given until another request gives one. */
export interface CrossAttention {
  kCache: Float32Array | number[];
  vCache: Float32Array | number[];
  /** One per encoder token. */
  mask: Float32Array | number[];
  /** One per encoder token. */
  positions: Int32Array | number[];
}

/** A request's input other than the prompt text: one of `tokens`,
 *  `embeddings` (with `embeddingDim`), or `images` and/or `videos` (with a
 *  prompt holding their markers; videos need runtime 1.3, else
 *  RKL_NOT_SUPPORTED); and `crossAttn`. Wrong element types throw
 *  TypeError; wrong shapes RklError RKL_INVALID_ARGUMENT. */
export interface InputOptions {
  tokens?: Int32Array | number[];
  embeddings?: Float32Array | number[];
  embeddingDim?: number;
  images?: Media;
  videos?: Media;
  crossAttn?: CrossAttention;
}

/** A request of hiddenStates() and logits(). */
export interface TensorRequest extends InputOptions {
  /** The text ('' for token and embedding input). */
  prompt?: string;
  role?: 'user' | 'tool';
  lora?: string;
  cachePrefix?: string;
  /** Aborting it stops the call through Model.abort(). */
  signal?: AbortSignal;
}

/** Rows of floats from hiddenStates() / logits(). */
export interface Tensor {
  /** `tokens * dim` values, row after row. */
  values: Float32Array;
  tokens: number;
  dim: number;
  stats: Stats;
}

/** Sampling settings of one request (rkl_sampling_params): those not given
 *  keep the model's values (its open() options, else the runtime's
 *  defaults); the ranges are those of open(). A 1.2 runtime refuses them
 *  (RklError RKL_NOT_SUPPORTED); a value out of range, a NaN or a
 *  non-integer topK or mirostat throws RKL_INVALID_ARGUMENT. */
export interface Sampling {
  /** >= 0; 0 disables top-k. */
  topK?: number;
  /** 0..1. */
  topP?: number;
  /** >= 0. */
  temperature?: number;
  /** >= 0. */
  repeatPenalty?: number;
  /** -100..100. */
  frequencyPenalty?: number;
  /** -100..100. */
  presencePenalty?: number;
  mirostat?: 0 | 1 | 2;
  /** > 0. */
  mirostatTau?: number;
  /** > 0. */
  mirostatEta?: number;
}

/** Settings of one request. */
export interface GenerateOptions extends InputOptions {
  /** Stop after this many tokens (0: the model's limit). */
  maxNewTokens?: number;
  /** Keep this turn in the KV history. */
  keepHistory?: boolean;
  enableThinking?: boolean;
  role?: 'user' | 'tool';
  /** A name given to Model.loadLora(). */
  lora?: string;
  /** Automatic prompt caching (a model opened with `cacheDir`): the start
   *  of the prompt that stays the same from request to request (a system
   *  prompt, say). Its KV state is saved the first time and reused by every
   *  later request with the same prefix. It must be a prefix of the prompt,
   *  shorter than it, ending on a character boundary (else RklError
   *  RKL_INVALID_ARGUMENT); '' or unset: none. Ignored without `cacheDir`. */
  cachePrefix?: string;
  /** This request's own sampling settings (runtime release 1.3). */
  sampling?: Sampling;
  /** Aborting it stops this generation; the loop then throws its reason. */
  signal?: AbortSignal;
  /** How long one wait for text on a worker thread lasts (default 200 ms). */
  pollMs?: number;
}

export type FinishReason = 'end' | 'max_tokens' | 'aborted' | 'stopped' | 'error';

/** What automatic prompt caching did for a request: 'none' (no `cacheDir`
 *  or no `cachePrefix`), 'hit' (the prefix's cache was found) or 'saved'
 *  (there was none: it was saved, then loaded). */
export type CacheUse = 'none' | 'hit' | 'saved';

/** Figures of one generation; times in milliseconds. */
export interface Stats {
  finish: FinishReason;
  tokens: number;
  prefillTokens: number;
  decodeTokens: number;
  ttftMs: number;
  queueMs: number;
  totalMs: number;
  prefillMs: number;
  decodeMs: number;
  memoryMb: number;
  /** Time from the first abort request to the end of the run (0 when not
   *  aborted); beyond abortGraceMs the runtime stopped late. */
  abortMs: number;
  /** What automatic prompt caching did; with a cache saved or loaded,
   *  ttftMs and totalMs include that work. */
  cacheUse: CacheUse;
}

/** What inspectCache() concluded: 'stale' when the model file the manifest
 *  names changed or is gone; 'invalid' when a load would fail. */
export type CacheVerdict = 'valid' | 'stale' | 'invalid';

/** Everything a prompt cache's manifest records, plus a verdict. */
export interface CacheInfo {
  verdict: CacheVerdict;
  /** Status.OK when valid; CACHE_MISMATCH when stale; when invalid, the
   *  status loadCache() would fail with. */
  verdictStatus: number;
  /** The same as "RKL_" + name, e.g. "RKL_CACHE_TRUNCATED". */
  verdictCode: string;
  /** Why it is stale or invalid; "" when valid. */
  verdictMessage: string;
  manifestPath: string;
  formatVersion: number;
  /** The maxContextLen the model was opened with; 0 when unset. */
  maxContextLen: number;
  libraryVersion: string;
  /** The runtime release family it needs: "1.2" or "1.3". */
  runtimeFamily: string;
  runtimeVersion: string;
  /** The model file, as given to open() when saving. */
  modelPath: string;
  modelSize: number;
  /** The model file's modification time then, in ns since the epoch. */
  modelMtimeNs: bigint;
  /** Decides whether a model matches (not its path). */
  modelFingerprint: string;
  promptHash: string;
  /** Length of the cached prompt in UTF-8 bytes. */
  promptBytes: number;
  /** Its first characters (at most 80). */
  promptPreview: string;
  role: 'user' | 'tool';
  enableThinking: boolean;
  /** The chat template set when saving, or null. */
  chatTemplate: { system: string; prefix: string; postfix: string } | null;
  payloadPath: string;
  payloadSize: number;
  payloadChecksum: string;
  /** When it was written, in seconds since the epoch. */
  createdUnix: number;
  /** From saveCache() only: the figures of the prefill run that wrote it. */
  saveStats: Stats | null;
}

/** How to save a cache: the role and thinking flag of the requests that
 *  will use it. */
export interface SaveCacheOptions {
  role?: 'user' | 'tool';
  enableThinking?: boolean;
}

export interface ModelInfo {
  modelPath: string;
  runtimePath: string;
  /** "1.2" or "1.3". */
  family: string;
  runtimeVersion: string;
}

/** A generation's text, pulled without blocking the event loop. */
export declare class TokenStream implements AsyncIterable<string> {
  [Symbol.asyncIterator](): AsyncGenerator<string, void, undefined>;
  /** The figures, once read to the end; else null. */
  readonly stats: Stats | null;
  pollMs: number;
  /** Asks the generation to stop; iteration then ends. */
  abort(): void;
  /** Closes the stream (aborting an unfinished generation). */
  close(): void;
}

/** An open model. */
export declare class Model {
  private constructor();
  readonly closed: boolean;
  /** Closes the model; later calls throw RklError RKL_BAD_HANDLE. */
  close(): void;
  /** Stops every running or queued generation of this model. */
  abort(): void;
  /** Starts a generation: `for await (const text of model.stream(p))`. */
  stream(prompt: string, options?: GenerateOptions): TokenStream;
  /** Generates a whole reply; onText gets each piece as it comes. */
  generate(
    prompt: string,
    options?: GenerateOptions & { onText?: (text: string) => void },
  ): Promise<{ text: string; stats: Stats }>;
  /** The last hidden layer of the request's input, one row per token;
   *  nothing is generated. Off the event loop. */
  hiddenStates(req: TensorRequest): Promise<Tensor>;
  /** The request's logits (the last token's row); off the event loop. */
  logits(req: TensorRequest): Promise<Tensor>;
  readonly info: ModelInfo;
  clearHistory(keepSystemPrompt?: boolean): void;
  kvCacheTokens(): number;
  setChatTemplate(system: string, prefix: string, postfix: string): void;
  /** Function calling: system prompt, tools JSON, the text before a tool's answer; requests with role 'tool' carry results. */
  setFunctionTools(system: string, tools: string, toolResponse: string): void;
  loadLora(path: string, name: string, scale?: number): void;
  /** Saves a prompt cache of `prompt` (prefilled as a request would be) at
   *  `manifestPath`; leaves the history empty. Refused while a cache is
   *  loaded. Off the event loop. */
  saveCache(manifestPath: string, prompt: string, options?: SaveCacheOptions): Promise<CacheInfo>;
  /** Validates and loads a prompt cache (rejects with a CacheError). While
   *  it is loaded, every request gives the FULL prompt, starting with the
   *  cached one. Await it before generating. Off the event loop. */
  loadCache(manifestPath: string): Promise<CacheInfo>;
  /** Unloads the prompt cache and empties the history. */
  releaseCache(): void;
  /** Isolation mode: a new worker process, the model reopened with its
   *  chat template, tools, LoRA and loaded cache (not the history).
   *  RKL_NOT_SUPPORTED in-process. */
  restart(): Promise<void>;
}

/** Reads a prompt cache without a model; resolves with any verdict,
 *  rejects when there is no manifest to report on. Off the event loop. */
export declare function inspectCache(manifestPath: string): Promise<CacheInfo>;

/** Opens a model (synchronously: it loads the runtime and the model). */
export declare function open(modelPath: string, options?: OpenOptions): Model;

/** The loaded librkl's version, "MAJOR.MINOR.PATCH". */
export declare function version(): string;

/** The library's short description of a status. */
export declare function statusStr(status: number): string;
