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
}>;

/** RKL_UNSET: "the runtime's default" for integer open parameters. */
export declare const UNSET: -2147483648;

/** A failed rkl call. */
export declare class RklError extends Error {
  /** The rkl_status number. */
  readonly status: number;
  /** "RKL_" + the status name, e.g. "RKL_MODEL_NOT_FOUND". */
  readonly code: string;
}

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
}

/** Settings of one request. */
export interface GenerateOptions {
  /** Stop after this many tokens (0: the model's limit). */
  maxNewTokens?: number;
  /** Keep this turn in the KV history. */
  keepHistory?: boolean;
  enableThinking?: boolean;
  role?: 'user' | 'tool';
  /** A name given to Model.loadLora(). */
  lora?: string;
  /** Aborting it stops this generation; the loop then throws its reason. */
  signal?: AbortSignal;
  /** How long one wait for text on a worker thread lasts (default 200 ms). */
  pollMs?: number;
}

export type FinishReason = 'end' | 'max_tokens' | 'aborted' | 'stopped' | 'error';

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
  readonly info: ModelInfo;
  clearHistory(keepSystemPrompt?: boolean): void;
  kvCacheTokens(): number;
  setChatTemplate(system: string, prefix: string, postfix: string): void;
  loadLora(path: string, name: string, scale?: number): void;
}

/** Opens a model (synchronously: it loads the runtime and the model). */
export declare function open(modelPath: string, options?: OpenOptions): Model;

/** The loaded librkl's version, "MAJOR.MINOR.PATCH". */
export declare function version(): string;

/** The library's short description of a status. */
export declare function statusStr(status: number): string;
