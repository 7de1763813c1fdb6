"""rkl for Python: run LLMs on Rockchip NPUs through librkl, with ctypes only.

    import rkl

    with rkl.Model("qwen3-0.6b.rkllm") as model:
        for text in model.stream("Hello!"):
            print(text, end="", flush=True)

Every struct this module hands to librkl is filled by the library's own
``rkl_*_params_init(ptr, size)`` with ``ctypes.sizeof`` of the Structure
below, so a layout this module got wrong is refused with a message instead of
being read past its end. Failures raise :class:`RklError` subclasses that carry
the ``rkl_status`` and the library's message; the common ones also derive from
the built-in exception a Python programmer expects (a missing model file is a
``FileNotFoundError``, a closed model a ``ValueError``).

Prompt caches: ``model.save_cache(path, system_prompt)`` once, then in any
later process ``model.load_cache(path)`` and requests that give the FULL
prompt (system prompt + question); ``inspect_cache(path)`` needs no model.
Automatic prompt caching does that by itself: ``Model(path, cache_dir=...)``,
then ``model.generate(system_prompt + question, cache_prefix=system_prompt)``
saves the prefix's cache the first time and reuses it afterwards
(``stats.cache_use`` is "saved", then "hit").
Per-request sampling (runtime release 1.3):
``model.generate(prompt, sampling=rkl.Sampling(temperature=0.25))``.
Isolation mode (``Model(path, isolated=True, call_timeout_ms=...)``) runs the
runtime in a worker process: its crashes raise RuntimeCrashedError, its hangs
RuntimeTimeoutError, and this process lives on.

The library is found through ``RKL_LIBRARY`` (a path), else as
``librkl.so.0`` by the dynamic loader (``LD_LIBRARY_PATH``, rpath, ldconfig),
else in the ``libdir`` pkg-config gives for ``rkl`` (``PKG_CONFIG_PATH``).
The runtime (``librkllmrt.so``) is found by librkl: ``runtime_path=``, else
``RKL_RUNTIME``, else the loader.

Thread-safety: a Model may be used from several threads at once; librkl runs
the generations one at a time. ctypes releases the GIL during every call, so
other Python threads run while one generates.
"""

from __future__ import annotations

import ctypes
import math
import os
import array
import atexit
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    byref,
    c_bool,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

__all__ = [
    "set_log_callback",
    "LOG_OFF",
    "LOG_ERROR",
    "LOG_WARN",
    "LOG_INFO",
    "LOG_DEBUG",
    "LOG_TRACE",
    "Model",
    "Stream",
    "Stats",
    "Sampling",
    "Images",
    "Videos",
    "CrossAttention",
    "Tensor",
    "ModelInfo",
    "Reply",
    "CacheInfo",
    "inspect_cache",
    "RklError",
    "InvalidArgumentError",
    "ModelNotFoundError",
    "RuntimeNotFoundError",
    "RuntimeUnsupportedError",
    "ModelLoadError",
    "RuntimeFailedError",
    "ClosedError",
    "ReentrantError",
    "NotSupportedError",
    "RklIOError",
    "BadHandleError",
    "NullArgumentError",
    "StreamTimeoutError",
    "InProgressError",
    "PanicError",
    "CacheError",
    "CacheNotFoundError",
    "CacheInvalidError",
    "CacheVersionError",
    "CacheTruncatedError",
    "CacheCorruptError",
    "CacheMismatchError",
    "CacheUntrustedError",
    "AbortedError",
    "RuntimeCrashedError",
    "RuntimeTimeoutError",
    "ResourceExhaustedError",
    "error_class",
    "error_for",
    "version",
    "status_str",
    "library",
]

# ----------------------------------------------------------------- statuses

OK = 0
INVALID_ARGUMENT = 1
MODEL_NOT_FOUND = 2
RUNTIME_NOT_FOUND = 3
RUNTIME_UNSUPPORTED = 4
MODEL_LOAD_FAILED = 5
RUNTIME_FAILED = 6
CLOSED = 7
REENTRANT = 8
NOT_SUPPORTED = 9
IO = 10
BAD_HANDLE = 11
NULL_ARGUMENT = 12
TIMEOUT = 13
IN_PROGRESS = 14
PANIC = 15
CACHE_NOT_FOUND = 16
CACHE_INVALID = 17
CACHE_VERSION = 18
CACHE_TRUNCATED = 19
CACHE_CORRUPT = 20
CACHE_MISMATCH = 21
ABORTED = 22
RUNTIME_CRASHED = 23
RUNTIME_TIMEOUT = 24
RESOURCE_EXHAUSTED = 25
CACHE_UNTRUSTED = 26

UNSET = -(2**31)  # RKL_UNSET: "runtime default" for integer open params

FINISH_END, FINISH_MAX_TOKENS, FINISH_ABORTED, FINISH_STOPPED, FINISH_ERROR = range(5)
FINISH_NAMES = {0: "end", 1: "max_tokens", 2: "aborted", 3: "stopped", 4: "error"}
ROLES = {"user": 0, "tool": 1}
OPEN_ISOLATED = 1  # RKL_OPEN_ISOLATED, a bit of rkl_open_params.flags
VERDICT_VALID, VERDICT_STALE, VERDICT_INVALID = range(3)
VERDICT_NAMES = {0: "valid", 1: "stale", 2: "invalid"}
CACHE_USE_NONE, CACHE_USE_HIT, CACHE_USE_SAVED = range(3)  # rkl_cache_use
CACHE_USE_NAMES = {0: "none", 1: "hit", 2: "saved"}


class RklError(Exception):
    """A failed rkl call. ``status`` is the rkl_status number, ``message``
    the library's message (it names the function and what was wrong).

    Every status but OK has its own subclass (see :func:`error_class`); the
    class attribute ``status`` tells which. Catch ``RklError`` for any
    failure, :class:`CacheError` for any problem with a prompt cache."""

    status: int = -1  # the class's status; instances carry the actual one

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(RklError, ValueError):
    """RKL_INVALID_ARGUMENT: a value out of range, bad text, wrong struct size."""
    status = INVALID_ARGUMENT


class ModelNotFoundError(RklError, FileNotFoundError):
    """RKL_MODEL_NOT_FOUND: the model (or LoRA) file cannot be read."""
    status = MODEL_NOT_FOUND


class RuntimeNotFoundError(RklError, OSError):
    """RKL_RUNTIME_NOT_FOUND: librkllmrt.so could not be loaded (or, in
    isolation mode, the worker program rkl-host was not found)."""
    status = RUNTIME_NOT_FOUND


class RuntimeUnsupportedError(RklError, OSError):
    """RKL_RUNTIME_UNSUPPORTED: a runtime release rkl does not speak."""
    status = RUNTIME_UNSUPPORTED


class ModelLoadError(RklError):
    """RKL_MODEL_LOAD_FAILED: the runtime could not load the model."""
    status = MODEL_LOAD_FAILED


class RuntimeFailedError(RklError, RuntimeError):
    """RKL_RUNTIME_FAILED: a runtime call or a generation failed."""
    status = RUNTIME_FAILED


class ClosedError(RklError, ValueError):
    """RKL_CLOSED: the model was closed while the call waited."""
    status = CLOSED


class ReentrantError(RklError, RuntimeError):
    """RKL_REENTRANT: called from inside a token callback."""
    status = REENTRANT


class NotSupportedError(RklError, NotImplementedError):
    """RKL_NOT_SUPPORTED: the runtime release lacks this feature (or
    restart() on a model that is not isolated)."""
    status = NOT_SUPPORTED


class RklIOError(RklError, OSError):
    """RKL_IO: a file operation failed."""
    status = IO


class BadHandleError(RklError, ValueError):
    """RKL_BAD_HANDLE: the model or stream is closed (or was never valid)."""
    status = BAD_HANDLE


class NullArgumentError(RklError, ValueError):
    """RKL_NULL_ARGUMENT: a required pointer was NULL (a bug in this module if
    it ever shows)."""
    status = NULL_ARGUMENT


class StreamTimeoutError(RklError, TimeoutError):
    """RKL_TIMEOUT: no text within the wait. Stream.next() returns "" for it
    instead; only error_for(TIMEOUT) makes one."""
    status = TIMEOUT


class InProgressError(RklError):
    """RKL_IN_PROGRESS: Stream.stats asked for before the stream's end."""
    status = IN_PROGRESS


class PanicError(RklError):
    """RKL_PANIC: a bug inside librkl; the message says where."""
    status = PANIC


class CacheError(RklError):
    """Base of the prompt-cache statuses 16..21 and 26 (never raised itself)."""


class CacheNotFoundError(CacheError, FileNotFoundError):
    """RKL_CACHE_NOT_FOUND: no prompt-cache manifest at the path."""
    status = CACHE_NOT_FOUND


class CacheInvalidError(CacheError, ValueError):
    """RKL_CACHE_INVALID: the manifest is unreadable, malformed or not a file."""
    status = CACHE_INVALID


class CacheVersionError(CacheError):
    """RKL_CACHE_VERSION: a manifest format this librkl does not know."""
    status = CACHE_VERSION


class CacheTruncatedError(CacheError):
    """RKL_CACHE_TRUNCATED: the payload is missing or not the recorded size."""
    status = CACHE_TRUNCATED


class CacheCorruptError(CacheError):
    """RKL_CACHE_CORRUPT: the payload does not match its checksum."""
    status = CACHE_CORRUPT


class CacheMismatchError(CacheError, ValueError):
    """RKL_CACHE_MISMATCH: the cache belongs to another model or runtime
    release, or (while a cache is loaded) the prompt does not start with the
    cached prompt or is only the cached prompt."""
    status = CACHE_MISMATCH


class CacheUntrustedError(CacheError):
    """RKL_CACHE_UNTRUSTED: the manifest or payload, or its directory,
    belongs to another user or is writable by others (a directory: without
    the sticky bit), so it is not handed to the runtime. RKL_CACHE_TRUST=any
    in the environment allows such caches."""
    status = CACHE_UNTRUSTED


class AbortedError(RklError):
    """RKL_ABORTED: the operation (e.g. save_cache, a call during restart())
    was aborted before it completed."""
    status = ABORTED


class RuntimeCrashedError(RklError, RuntimeError):
    """RKL_RUNTIME_CRASHED: isolation mode, the worker process running the
    runtime died during the call (the message names the signal, e.g. "died of
    SIGSEGV"). This process is unharmed; the model restarts on the next call
    (or restart())."""
    status = RUNTIME_CRASHED


class RuntimeTimeoutError(RklError, TimeoutError):
    """RKL_RUNTIME_TIMEOUT: the runtime made no progress for
    ``call_timeout_ms``. Isolation mode: the worker was killed and the model
    restarts on the next call. In-process: the runtime stays stuck and every
    model on it fails with this from then on."""
    status = RUNTIME_TIMEOUT


class ResourceExhaustedError(RklError, OSError):
    """RKL_RESOURCE_EXHAUSTED: the system ran out of file descriptors,
    memory, processes or threads (the message says which). The arguments were
    fine; the call may succeed once resources are freed."""
    status = RESOURCE_EXHAUSTED


_ERRORS = {
    cls.status: cls
    for cls in (InvalidArgumentError, ModelNotFoundError, RuntimeNotFoundError,
                RuntimeUnsupportedError, ModelLoadError, RuntimeFailedError, ClosedError,
                ReentrantError, NotSupportedError, RklIOError, BadHandleError,
                NullArgumentError, StreamTimeoutError, InProgressError, PanicError,
                CacheNotFoundError, CacheInvalidError, CacheVersionError, CacheTruncatedError,
                CacheCorruptError, CacheMismatchError, AbortedError, RuntimeCrashedError,
                RuntimeTimeoutError, ResourceExhaustedError, CacheUntrustedError)
}


def error_class(status: int) -> type:
    """The exception class for a status (RklError for unknown numbers)."""
    return _ERRORS.get(status, RklError)


# ----------------------------------------------------------------- structs
# Mirrors of include/rkl.h. Their sizes are given to the library, which
# refuses a struct_size it does not know (tests/test_rkl.py checks this).


# rkl_tokenize_fn and rkl_embed_fn (rkl_open_params.tokenizer / embedder).
TOKENIZE_FN = CFUNCTYPE(c_int64, POINTER(c_char), c_size_t, POINTER(c_int32), c_size_t, c_void_p)
EMBED_FN = CFUNCTYPE(c_int, POINTER(c_int32), c_size_t, POINTER(c_float), c_size_t, c_void_p)


class OpenParams(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("model_path", c_char_p),
        ("runtime_path", c_char_p),
        ("runtime_abi", c_char_p),
        ("max_context_len", c_int32),
        ("max_new_tokens", c_int32),
        ("top_k", c_int32),
        ("n_keep", c_int32),
        ("top_p", c_float),
        ("temperature", c_float),
        ("repeat_penalty", c_float),
        ("frequency_penalty", c_float),
        ("presence_penalty", c_float),
        ("mirostat", c_int32),
        ("mirostat_tau", c_float),
        ("mirostat_eta", c_float),
        ("skip_special_token", c_int32),
        ("embed_flash", c_int32),
        ("enabled_cpus_num", c_int32),
        ("enabled_cpus_mask", c_uint32),
        ("base_domain_id", c_int32),
        ("_reserved", c_uint32),
        # Version 2 (isolation mode).
        ("flags", c_uint32),
        ("call_timeout_ms", c_uint32),
        ("abort_grace_ms", c_uint32),
        ("max_restarts", c_int32),
        # Version 3 (automatic prompt caching).
        ("cache_dir", c_char_p),
        ("cache_max_bytes", c_uint64),
        # Version 4 (other inputs, cross-attention, the caller's tokenizer).
        ("use_cross_attn", c_int32),
        ("_reserved4", c_uint32),
        ("image_start", c_char_p),
        ("image_end", c_char_p),
        ("image_content", c_char_p),
        ("video_start", c_char_p),
        ("video_end", c_char_p),
        ("video_content", c_char_p),
        ("tokenizer", TOKENIZE_FN),
        ("tokenizer_userdata", c_void_p),
        ("embedder", EMBED_FN),
        ("embedder_userdata", c_void_p),
    ]


class ModelDetails(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("model_path", c_char_p),
        ("runtime_path", c_char_p),
        ("family", c_char_p),
        ("runtime_version", c_char_p),
    ]


class SamplingParams(Structure):
    """rkl_sampling_params: UNSET (ints) and NaN (floats) are unset."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("temperature", c_float),
        ("repeat_penalty", c_float),
        ("frequency_penalty", c_float),
        ("presence_penalty", c_float),
        ("mirostat", c_int32),
        ("mirostat_tau", c_float),
        ("mirostat_eta", c_float),
    ]


class MediaInput(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("embeddings", POINTER(c_float)),
        ("count", c_size_t),
        ("frames", c_size_t),
        ("tokens", c_size_t),
        ("dim", c_size_t),
        ("width", c_size_t),
        ("height", c_size_t),
    ]


class CrossAttnParams(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("k_cache", POINTER(c_float)),
        ("v_cache", POINTER(c_float)),
        ("cache_floats", c_size_t),
        ("mask", POINTER(c_float)),
        ("positions", POINTER(c_int32)),
        ("num_tokens", c_size_t),
    ]


class CTensor(Structure):
    """rkl_tensor: the values belong to librkl until rkl_tensor_free();
    Tensor is the Python copy."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("data", POINTER(c_float)),
        ("tokens", c_size_t),
        ("dim", c_size_t),
        ("storage", c_void_p),
    ]


class GenerateParams(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("prompt", c_char_p),
        ("lora", c_char_p),
        ("role", c_int32),
        ("max_new_tokens", c_uint32),
        ("enable_thinking", c_bool),
        ("keep_history", c_bool),
        # Version 2 (automatic prompt caching, per-request sampling).
        ("cache_prefix_bytes", c_size_t),
        ("sampling", POINTER(SamplingParams)),
        # Version 3 (other inputs, cross-attention).
        ("input_kind", c_int32),
        ("tokens", POINTER(c_int32)),
        ("n_tokens", c_size_t),
        ("embeddings", POINTER(c_float)),
        ("n_embedding_tokens", c_size_t),
        ("embedding_dim", c_size_t),
        ("images", POINTER(MediaInput)),
        ("videos", POINTER(MediaInput)),
        ("cross_attn", POINTER(CrossAttnParams)),
    ]


class CStats(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("finish", c_int32),
        ("tokens", c_uint32),
        ("prefill_tokens", c_uint32),
        ("decode_tokens", c_uint32),
        ("ttft_ms", c_double),
        ("queue_ms", c_double),
        ("total_ms", c_double),
        ("prefill_ms", c_double),
        ("decode_ms", c_double),
        ("memory_mb", c_double),
        # Version 2.
        ("abort_ms", c_double),
        # Version 3: an rkl_cache_use.
        ("cache_use", c_int32),
    ]


class CCacheInfo(Structure):
    """rkl_cache_info: an output struct whose strings belong to librkl until
    rkl_cache_info_free(); CacheInfo is the Python copy."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("storage", c_void_p),
        ("verdict", c_int32),
        ("verdict_status", c_int32),
        ("verdict_message", c_char_p),
        ("manifest_path", c_char_p),
        ("format_version", c_uint32),
        ("max_context_len", c_int32),
        ("library_version", c_char_p),
        ("runtime_family", c_char_p),
        ("runtime_version", c_char_p),
        ("model_path", c_char_p),
        ("model_size", c_uint64),
        ("model_mtime_ns", c_uint64),
        ("model_fingerprint", c_char_p),
        ("prompt_hash", c_char_p),
        ("prompt_bytes", c_uint64),
        ("prompt_preview", c_char_p),
        ("role", c_char_p),
        ("enable_thinking", c_bool),
        ("has_chat_template", c_bool),
        ("chat_system", c_char_p),
        ("chat_prefix", c_char_p),
        ("chat_postfix", c_char_p),
        ("payload_path", c_char_p),
        ("payload_size", c_uint64),
        ("payload_checksum", c_char_p),
        ("created_unix", c_uint64),
        ("save_stats", POINTER(CStats)),
    ]


TOKEN_FN = CFUNCTYPE(c_int, POINTER(c_char), c_size_t, c_void_p)

# ----------------------------------------------------------------- the library


def _pkg_config_libdir() -> Optional[str]:
    """pkg-config's libdir of rkl, or None without pkg-config or rkl.pc."""
    import shutil
    import subprocess

    tool = os.environ.get("PKG_CONFIG") or shutil.which("pkg-config")
    if not tool:
        return None
    try:
        done = subprocess.run(
            [tool, "--variable=libdir", "rkl"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    libdir = done.stdout.strip()
    return libdir if done.returncode == 0 and libdir else None


def _load() -> ctypes.CDLL:
    """librkl from RKL_LIBRARY (a path), else the loader, else pkg-config's libdir."""
    path = os.environ.get("RKL_LIBRARY")
    if path:
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            raise ImportError(f"rkl: cannot load librkl from RKL_LIBRARY={path}: {e}") from e
    tried = []
    for name in ("librkl.so.0", "librkl.so"):
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            tried.append(f"{name}: {e}")
    libdir = _pkg_config_libdir()
    if libdir:
        for name in ("librkl.so.0", "librkl.so"):
            candidate = os.path.join(libdir, name)
            try:
                return ctypes.CDLL(candidate)
            except OSError as e:
                tried.append(f"{candidate}: {e}")
    else:
        tried.append("pkg-config: no rkl.pc (set PKG_CONFIG_PATH)")
    raise ImportError("rkl: cannot load librkl (set RKL_LIBRARY to its path); tried " + "; ".join(tried))


library = _load()
_lib = library


def _fn(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_version = _fn("rkl_version", c_char_p)
_status_str = _fn("rkl_status_str", c_char_p, c_int32)
_last_error = _fn("rkl_last_error_message", c_size_t, c_char_p, c_size_t)
_open_params_init = _fn("rkl_open_params_init", c_int32, POINTER(OpenParams), c_size_t)
_open = _fn("rkl_open", c_int32, POINTER(OpenParams), POINTER(c_void_p))
_close = _fn("rkl_close", c_int32, c_void_p)
_model_info = _fn("rkl_model_info", c_int32, c_void_p, POINTER(ModelDetails))
_generate_params_init = _fn("rkl_generate_params_init", c_int32, POINTER(GenerateParams), c_size_t)
_sampling_params_init = _fn("rkl_sampling_params_init", c_int32, POINTER(SamplingParams), c_size_t)
_generate = _fn("rkl_generate", c_int32, c_void_p, POINTER(GenerateParams), TOKEN_FN, c_void_p, POINTER(CStats))
_abort = _fn("rkl_abort", c_int32, c_void_p)
_stream_open = _fn("rkl_stream_open", c_int32, c_void_p, POINTER(GenerateParams), POINTER(c_void_p))
_stream_next = _fn("rkl_stream_next", c_int32, c_void_p, c_int32, POINTER(POINTER(c_char)), POINTER(c_size_t))
_stream_stats = _fn("rkl_stream_stats", c_int32, c_void_p, POINTER(CStats))
_stream_abort = _fn("rkl_stream_abort", c_int32, c_void_p)
_stream_close = _fn("rkl_stream_close", c_int32, c_void_p)
_clear_history = _fn("rkl_clear_history", c_int32, c_void_p, c_int)
_kv_cache_tokens = _fn("rkl_kv_cache_tokens", c_int32, c_void_p, POINTER(c_uint32))
_set_chat_template = _fn("rkl_set_chat_template", c_int32, c_void_p, c_char_p, c_char_p, c_char_p)
_set_function_tools = _fn("rkl_set_function_tools", c_int32, c_void_p, c_char_p, c_char_p, c_char_p)
_load_lora = _fn("rkl_load_lora", c_int32, c_void_p, c_char_p, c_char_p, c_float)
_model_restart = _fn("rkl_model_restart", c_int32, c_void_p)
_cache_save = _fn("rkl_cache_save", c_int32, c_void_p, POINTER(GenerateParams), c_char_p, POINTER(CCacheInfo))
_cache_load = _fn("rkl_cache_load", c_int32, c_void_p, c_char_p, POINTER(CCacheInfo))
_cache_release = _fn("rkl_cache_release", c_int32, c_void_p)
_cache_inspect = _fn("rkl_cache_inspect", c_int32, c_char_p, POINTER(CCacheInfo))
_cache_info_free = _fn("rkl_cache_info_free", c_int32, POINTER(CCacheInfo))
_media_input_init = _fn("rkl_media_input_init", c_int32, POINTER(MediaInput), c_size_t)
_cross_attn_params_init = _fn("rkl_cross_attn_params_init", c_int32, POINTER(CrossAttnParams), c_size_t)
_hidden_states = _fn("rkl_hidden_states", c_int32, c_void_p, POINTER(GenerateParams), POINTER(CTensor),
                     POINTER(CStats))
_logits = _fn("rkl_logits", c_int32, c_void_p, POINTER(GenerateParams), POINTER(CTensor), POINTER(CStats))
_tensor_free = _fn("rkl_tensor_free", c_int32, POINTER(CTensor))


# rkl_log_level: a callback gets messages at its level and more severe.
LOG_OFF, LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE = range(6)
LOG_FN = CFUNCTYPE(None, c_int32, c_char_p, c_char_p, c_void_p)
_set_log_callback = _fn("rkl_set_log_callback", c_int32, LOG_FN, c_int32, c_void_p)
# The installed callback's ctypes thunk: librkl holds its address, so it must
# live until the callback is replaced or removed.
_log_thunk: Optional[Any] = None


def set_log_callback(callback: Optional[Callable[[int, str, str], None]], max_level: int = LOG_INFO) -> None:
    """Routes librkl's log messages to ``callback(level, target, message)``
    (``level`` one of LOG_ERROR .. LOG_TRACE, ``target`` e.g.
    "rkl::runtime"), for messages at ``max_level`` and more severe; ``None``
    removes it (stderr again). It runs on whichever thread logs, rkl's own
    threads included, so it must be thread-safe; an exception it raises is
    dropped (a log call must not fail), and it must not call rkl functions
    other than version(). Removed again at interpreter exit. To forward to
    ``logging``: ``rkl.set_log_callback(lambda lv, t, m: log.log(50 - 10 * lv, m))``."""
    global _log_thunk
    if callback is None:
        _check(_set_log_callback(LOG_FN(), LOG_OFF, None))
        _log_thunk = None
        return
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")

    def deliver(level: int, target: Optional[bytes], message: Optional[bytes], _userdata: Any) -> None:
        try:
            callback(level, (target or b"").decode("utf-8", "replace"), (message or b"").decode("utf-8", "replace"))
        except BaseException:  # noqa: BLE001 - nothing may unwind into librkl's logger
            pass

    thunk = LOG_FN(deliver)
    _check(_set_log_callback(thunk, int(max_level), None))
    _log_thunk = thunk  # the old thunk is no longer called once the call returned


def _remove_log_callback_at_exit() -> None:
    # rkl's threads may log while the interpreter shuts down; a ctypes
    # thunk called then would run Python code that is being torn down.
    if _log_thunk is not None:
        _set_log_callback(LOG_FN(), LOG_OFF, None)


atexit.register(_remove_log_callback_at_exit)


def version() -> str:
    """The loaded librkl's version, "MAJOR.MINOR.PATCH"."""
    return _version().decode()


def status_str(status: int) -> str:
    """The library's short description of a status."""
    return _status_str(status).decode()


def last_error_message() -> str:
    """The message of the last failed rkl call on this thread ("" if none)."""
    n = _last_error(None, 0)
    if n == 0:
        return ""
    buf = ctypes.create_string_buffer(n + 1)
    _last_error(buf, n + 1)
    return buf.value.decode("utf-8", "replace")


def error_for(status: int) -> RklError:
    """The exception for a failed call, with this thread's last message.
    Call right after the failing call, on the same thread."""
    message = last_error_message() or status_str(status)
    return error_class(status)(status, message)


def _check(status: int) -> None:
    if status != OK:
        raise error_for(status)


def _text(value: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if "\0" in value:  # C would see the text cut at the NUL
        raise InvalidArgumentError(INVALID_ARGUMENT, f"{what} contains a NUL character")
    return value.encode("utf-8")


# ----------------------------------------------------------------- results


@dataclass(frozen=True)
class Stats:
    """Figures of one generation (rkl_stats). Times in milliseconds."""

    finish: str  # "end", "max_tokens", "aborted", "stopped" or "error"
    tokens: int
    prefill_tokens: int
    decode_tokens: int
    ttft_ms: float
    queue_ms: float
    total_ms: float
    prefill_ms: float
    decode_ms: float
    memory_mb: float
    abort_ms: float = 0.0  # from the first abort request to the end (0: not aborted)
    # What automatic prompt caching did: "none", "hit" (the prefix's cache was
    # found) or "saved" (there was none: it was saved, then loaded). With a
    # cache saved or loaded, ttft_ms and total_ms include that work.
    cache_use: str = "none"

    @classmethod
    def _from(cls, s: CStats) -> "Stats":
        return cls(
            finish=FINISH_NAMES.get(s.finish, str(s.finish)),
            tokens=s.tokens,
            prefill_tokens=s.prefill_tokens,
            decode_tokens=s.decode_tokens,
            ttft_ms=s.ttft_ms,
            queue_ms=s.queue_ms,
            total_ms=s.total_ms,
            prefill_ms=s.prefill_ms,
            decode_ms=s.decode_ms,
            memory_mb=s.memory_mb,
            abort_ms=s.abort_ms,
            cache_use=CACHE_USE_NAMES.get(s.cache_use, str(s.cache_use)),
        )


def _new_stats() -> CStats:
    s = CStats()
    s.struct_size = ctypes.sizeof(CStats)
    return s


@dataclass(frozen=True)
class Sampling:
    """Sampling settings for one request (``sampling=`` of generate() and
    stream()): a field left None keeps the model's value (its Model setting
    of the same name, else the runtime's default); only the set ones are
    passed. The ranges are those of the Model settings; a value out of range
    (or NaN) raises InvalidArgumentError. A 1.3 runtime takes them; a 1.2
    runtime refuses them with NotSupportedError."""

    top_k: Optional[int] = None  # >= 0; 0 disables top-k
    top_p: Optional[float] = None  # 0..1
    temperature: Optional[float] = None  # >= 0
    repeat_penalty: Optional[float] = None  # >= 0
    frequency_penalty: Optional[float] = None  # -100..100
    presence_penalty: Optional[float] = None  # -100..100
    mirostat: Optional[int] = None  # 0 off, 1 or 2
    mirostat_tau: Optional[float] = None  # > 0
    mirostat_eta: Optional[float] = None  # > 0

    def _params(self) -> SamplingParams:
        s = SamplingParams()
        _check(_sampling_params_init(byref(s), ctypes.sizeof(s)))
        for name, ctype in SamplingParams._fields_[1:]:
            value = getattr(self, name)
            if value is None:
                continue
            # ctypes would wrap an integer out of range, and NaN is how C
            # marks a float unset (the model's value): refused here instead.
            if ctype is c_int32:
                if isinstance(value, bool) or not isinstance(value, int) or not UNSET < value < 2**31:
                    raise InvalidArgumentError(INVALID_ARGUMENT,
                                               f"sampling {name} must be a 32-bit integer, not {value!r}")
            elif isinstance(value, float) and math.isnan(value):
                raise InvalidArgumentError(INVALID_ARGUMENT, f"sampling {name} is NaN")
            setattr(s, name, value)
        return s


@dataclass(frozen=True)
class ModelInfo:
    model_path: str
    runtime_path: str
    family: str  # "1.2" or "1.3"
    runtime_version: str


@dataclass(frozen=True)
class Reply:
    """What Model.generate() returns: the whole text and the figures."""

    text: str
    stats: Stats

    def __str__(self) -> str:
        return self.text


def _str(value: Optional[bytes]) -> str:
    return value.decode("utf-8", "replace") if value else ""


@dataclass(frozen=True)
class CacheInfo:
    """A prompt cache's manifest and verdict (rkl_cache_info), copied into
    Python values. From Model.save_cache(), Model.load_cache() and
    inspect_cache()."""

    verdict: str  # "valid", "stale" (the model file changed) or "invalid"
    verdict_status: int  # OK; CACHE_MISMATCH when stale; when invalid what load would fail with
    verdict_message: str  # why it is stale or invalid; "" when valid
    manifest_path: str
    format_version: int
    max_context_len: int  # as the model was opened; 0 when left unset
    library_version: str
    runtime_family: str  # "1.2" or "1.3": the release the cache needs
    runtime_version: str
    model_path: str
    model_size: int
    model_mtime_ns: int
    model_fingerprint: str
    prompt_hash: str
    prompt_bytes: int  # requests made while it is loaded must start with that prompt
    prompt_preview: str
    role: str
    enable_thinking: bool
    has_chat_template: bool
    chat_system: str
    chat_prefix: str
    chat_postfix: str
    payload_path: str
    payload_size: int
    payload_checksum: str
    created_unix: int
    save_stats: Optional[Stats]  # the save run's figures; only from save_cache()

    @property
    def valid(self) -> bool:
        return self.verdict == "valid"

    @property
    def error(self) -> Optional[RklError]:
        """The exception load_cache() would raise for this verdict (a
        CacheTruncatedError, ...; CacheMismatchError when stale), None when
        valid."""
        if self.verdict_status == OK:
            return None
        return error_class(self.verdict_status)(self.verdict_status, self.verdict_message)

    @classmethod
    def _from(cls, c: CCacheInfo) -> "CacheInfo":
        save_stats = None
        if c.save_stats:
            # The library's rkl_stats may be older (smaller) than CStats.
            s = _new_stats()
            n = min(c.save_stats.contents.struct_size, ctypes.sizeof(CStats))
            ctypes.memmove(ctypes.addressof(s), c.save_stats, n)
            s.struct_size = ctypes.sizeof(CStats)
            save_stats = Stats._from(s)
        values = {}
        for name, ctype in CCacheInfo._fields_:
            if name in ("struct_size", "storage", "save_stats"):
                continue
            value = getattr(c, name)
            values[name] = _str(value) if ctype is c_char_p else value
        values["verdict"] = VERDICT_NAMES.get(c.verdict, str(c.verdict))
        return cls(save_stats=save_stats, **values)


def _cache_call(call: Callable[[CCacheInfo], int]) -> CacheInfo:
    """Runs ``call(info)`` on a fresh rkl_cache_info and copies the result
    out. The struct is handed to rkl_cache_info_free() on every path (after
    a failure it owns nothing and the free does nothing)."""
    info = CCacheInfo()
    info.struct_size = ctypes.sizeof(CCacheInfo)
    status = call(info)
    if status != OK:
        error = error_for(status)  # the message, before the free clears it
        _cache_info_free(byref(info))  # owns nothing after a failure: does nothing
        raise error
    try:
        return CacheInfo._from(info)
    finally:
        _check(_cache_info_free(byref(info)))


def _path(value, what: str) -> bytes:
    value = os.fspath(value)
    if isinstance(value, bytes):
        if b"\0" in value:
            raise InvalidArgumentError(INVALID_ARGUMENT, f"{what} contains a NUL character")
        return value
    return _text(value, what)


def inspect_cache(path) -> CacheInfo:
    """Reads a prompt cache without a model (rkl_cache_inspect): everything
    its manifest records plus a verdict. A damaged payload or a changed model
    file does not raise: it shows in ``verdict``, ``verdict_status``,
    ``verdict_message`` (and ``error``). Raises CacheNotFoundError,
    CacheInvalidError, CacheVersionError or RklIOError when there is no
    manifest to report on. The verdict does not consider the runtime
    release: ``runtime_family`` says which one the cache needs."""
    raw = _path(path, "path")
    return _cache_call(lambda info: _cache_inspect(raw, byref(info)))


def _request(prompt: str, max_new_tokens: int, keep_history: bool, enable_thinking: bool,
             role: str, lora: Optional[str], cache_prefix: Optional[str] = None,
             sampling: Optional[Sampling] = None, inputs: Optional[dict] = None) -> GenerateParams:
    p = GenerateParams()
    _check(_generate_params_init(byref(p), ctypes.sizeof(p)))
    p.prompt = _text(prompt, "prompt")
    if cache_prefix is not None:
        # rkl wants the prefix's length in UTF-8 bytes (it checks the boundary).
        prefix = _text(cache_prefix, "cache_prefix")
        if not prompt.startswith(cache_prefix):
            raise InvalidArgumentError(INVALID_ARGUMENT, "cache_prefix is not a prefix of the prompt")
        p.cache_prefix_bytes = len(prefix)
    p.max_new_tokens = max_new_tokens
    p.keep_history = keep_history
    p.enable_thinking = enable_thinking
    if role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}, not {role!r}")
    p.role = ROLES[role]
    if lora is not None:
        p.lora = _text(lora, "lora")
    if sampling is not None:
        if not isinstance(sampling, Sampling):
            raise TypeError(f"sampling must be rkl.Sampling, not {type(sampling).__name__}")
        p.sampling = ctypes.pointer(sampling._params())  # kept alive by p
    if inputs:
        p._keep = _inputs(p, **inputs)  # the buffers, alive as long as p
    return p


# ----------------------------------------------------------------- inputs
# Arrays go to librkl as pointers into the caller's buffer (rkl copies them
# during the call): any C-contiguous buffer of float32 / int32 items, a
# bytes-like object holding them, or a list of numbers.

INPUT_TEXT, INPUT_TOKENS, INPUT_EMBEDDINGS, INPUT_MULTIMODAL = 0, 1, 2, 3
_MAX_SIZE = 2**63 - 1  # beyond any buffer; keeps a size_t from wrapping


def _size(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= _MAX_SIZE:
        raise InvalidArgumentError(INVALID_ARGUMENT, f"{what} must be in 0..2^63-1, not {value}")
    return value


class _Array:
    """A buffer's items as a C array: ``pointer`` (NULL when empty) and
    ``count``; holds what the pointer points into."""

    def __init__(self, obj, code: str, what: str):
        ctype = c_float if code == "f" else c_int32
        kind = "float32" if code == "f" else "int32"
        if isinstance(obj, (list, tuple)):
            try:
                obj = array.array(code, obj)
            except (TypeError, OverflowError) as e:
                raise TypeError(f"{what}: a list of {kind} values expected ({e})") from None
        try:
            view = memoryview(obj)
        except TypeError:
            raise TypeError(f"{what} must be a buffer of {kind} (array.array('{code}'), a numpy array, "
                            f"memoryview, bytes) or a list, not {type(obj).__name__}") from None
        if not view.c_contiguous:
            raise ValueError(f"{what} must be C-contiguous")
        fmt = view.format.lstrip("@=<")
        if view.itemsize == 1 and fmt in ("B", "b", "c"):
            if view.nbytes % 4:
                raise ValueError(f"{what}: {view.nbytes} bytes are not a whole number of {kind} values")
        elif view.itemsize != 4 or fmt not in (("f",) if code == "f" else ("i", "l")):
            raise TypeError(f"{what} must hold {kind} values, not items of format {view.format!r} "
                            f"({view.itemsize} bytes)")
        elif view.format.startswith(">"):
            raise TypeError(f"{what} must be little-endian {kind}, not {view.format!r}")
        self.shape: Tuple[int, ...] = tuple(view.shape or ())
        self.count = view.nbytes // 4
        self.pointer = POINTER(ctype)()
        if self.count:
            raw = view.cast("B")
            try:
                self._data: Any = (ctype * self.count).from_buffer(raw)
            except TypeError:  # read-only (bytes): librkl copies anyway
                self._data = (ctype * self.count).from_buffer_copy(raw)
            self.pointer = ctypes.cast(self._data, POINTER(ctype))


class _Media:
    _what = "media"

    def __init__(self, values, count: int, tokens: int, dim: int, frames: int = 0,
                 width: int = 0, height: int = 0):
        self.values = values
        self.count, self.frames, self.tokens, self.dim = count, frames, tokens, dim
        self.width, self.height = width, height

    def _c(self) -> Tuple[MediaInput, _Array]:
        m = MediaInput()
        _check(_media_input_init(byref(m), ctypes.sizeof(m)))
        w = self._what
        a = _Array(self.values, "f", f"{w}.values")
        for name in ("count", "frames", "tokens", "dim", "width", "height"):
            setattr(m, name, _size(getattr(self, name), f"{w}.{name}"))
        want = self.count * max(self.frames, 1) * self.tokens * self.dim
        if a.count != want:
            raise InvalidArgumentError(INVALID_ARGUMENT, f"{w}: {a.count} values for {want} "
                                       f"(count x frames x tokens x dim)")
        m.embeddings = a.pointer
        return m, a


class Images(_Media):
    """The images of a multimodal request, as the vision encoder made them:
    ``count`` images of ``tokens`` rows of ``dim`` floats (``values``, any
    float32 buffer, image after image); the prompt holds one ``<image>``
    marker per image. ``width`` / ``height`` (pixels) are optional."""

    _what = "images"

    def __init__(self, values, count: int, tokens: int, dim: int, width: int = 0, height: int = 0):
        super().__init__(values, count, tokens, dim, 0, width, height)


class Videos(_Media):
    """The videos of a multimodal request (runtime release 1.3; a 1.2
    runtime raises NotSupportedError): ``count`` videos of ``frames`` frames
    of ``tokens`` rows of ``dim`` floats; one ``<video>`` marker each."""

    _what = "videos"

    def __init__(self, values, count: int, frames: int, tokens: int, dim: int, width: int = 0,
                 height: int = 0):
        super().__init__(values, count, tokens, dim, frames, width, height)


@dataclass
class CrossAttention:
    """The encoder state of a cross-attention model (``Model(...,
    use_cross_attn=True)``) for a request: ``k_cache`` and ``v_cache`` of
    the same length (a multiple of the encoder tokens), one ``mask`` float
    and one ``positions`` int32 per encoder token. The runtime keeps using
    the last state given until a request gives another."""

    k_cache: Any
    v_cache: Any
    mask: Any
    positions: Any


class Tensor:
    """What hidden_states() and logits() return: ``tokens`` rows of ``dim``
    floats in ``values`` (an ``array.array('f')``, row after row, owned by
    Python), and the run's ``stats``."""

    def __init__(self, values: "array.array[float]", tokens: int, dim: int, stats: Stats):
        self.values = values
        self.tokens = tokens
        self.dim = dim
        self.stats = stats

    def row(self, i: int) -> "array.array[float]":
        """Row ``i`` (a copy); negative ``i`` counts from the end."""
        if i < 0:
            i += self.tokens
        if not 0 <= i < self.tokens:
            raise IndexError(f"row {i} of {self.tokens}")
        return self.values[i * self.dim:(i + 1) * self.dim]

    def __repr__(self) -> str:
        return f"rkl.Tensor(tokens={self.tokens}, dim={self.dim})"


_INPUT_NAMES = ("tokens", "embeddings", "embedding_dim", "images", "videos", "cross_attn")


def _input_args(inputs: dict) -> dict:
    unknown = set(inputs) - set(_INPUT_NAMES)
    if unknown:
        raise TypeError(f"unknown argument {sorted(unknown)[0]!r}")
    return {name: inputs.get(name) for name in _INPUT_NAMES}


def _inputs(p: GenerateParams, tokens, embeddings, embedding_dim: Optional[int],
            images: Optional[Images], videos: Optional[Videos],
            cross_attn: Optional[CrossAttention]) -> list:
    """Points p at the inputs; returns what must stay alive for the call."""
    keep: list = []
    given = [n for n, v in (("tokens", tokens), ("embeddings", embeddings),
                            ("images/videos", images if images is not None else videos)) if v is not None]
    if len(given) > 1:
        raise InvalidArgumentError(INVALID_ARGUMENT, f"a request has one input, not {' and '.join(given)}")
    if tokens is not None:
        a = _Array(tokens, "i", "tokens")
        p.input_kind, p.tokens, p.n_tokens = INPUT_TOKENS, a.pointer, a.count
        keep.append(a)
    if embeddings is not None:
        a = _Array(embeddings, "f", "embeddings")
        if embedding_dim is None:
            if len(a.shape) != 2:
                raise TypeError("embeddings: give embedding_dim= (or a 2-D array of rows)")
            embedding_dim = a.shape[1]
        dim = _size(embedding_dim, "embedding_dim")
        if dim == 0 or a.count % dim:
            raise InvalidArgumentError(INVALID_ARGUMENT, f"embeddings: {a.count} values are not whole "
                                       f"rows of embedding_dim {dim}")
        p.input_kind, p.embeddings = INPUT_EMBEDDINGS, a.pointer
        p.n_embedding_tokens, p.embedding_dim = a.count // dim, dim
        keep.append(a)
    for name, media, cls in (("images", images, Images), ("videos", videos, Videos)):
        if media is None:
            continue
        if not isinstance(media, cls):
            raise TypeError(f"{name} must be rkl.{cls.__name__}, not {type(media).__name__}")
        m, a = media._c()
        p.input_kind = INPUT_MULTIMODAL
        setattr(p, name, ctypes.pointer(m))
        keep += [m, a]
    if cross_attn is not None:
        if not isinstance(cross_attn, CrossAttention):
            raise TypeError(f"cross_attn must be rkl.CrossAttention, not {type(cross_attn).__name__}")
        c = CrossAttnParams()
        _check(_cross_attn_params_init(byref(c), ctypes.sizeof(c)))
        k = _Array(cross_attn.k_cache, "f", "cross_attn.k_cache")
        v = _Array(cross_attn.v_cache, "f", "cross_attn.v_cache")
        mask = _Array(cross_attn.mask, "f", "cross_attn.mask")
        pos = _Array(cross_attn.positions, "i", "cross_attn.positions")
        if k.count != v.count:
            raise InvalidArgumentError(INVALID_ARGUMENT, "cross_attn: k_cache and v_cache differ in length")
        if mask.count != pos.count:
            raise InvalidArgumentError(INVALID_ARGUMENT, "cross_attn: mask and positions differ in length "
                                       "(one each per encoder token)")
        c.k_cache, c.v_cache, c.cache_floats = k.pointer, v.pointer, k.count
        c.mask, c.positions, c.num_tokens = mask.pointer, pos.pointer, mask.count
        p.cross_attn = ctypes.pointer(c)
        keep += [c, k, v, mask, pos]
    return keep


# ----------------------------------------------------------------- model


class Model:
    """An open model. Use as a context manager, or call close().

    Keyword arguments set rkl_open_params fields of the same name
    (``runtime_path``, ``runtime_abi``, ``max_context_len``,
    ``max_new_tokens``, ``top_k``, ``top_p``, ``temperature``, ...); the others
    keep the runtime's defaults. None means "not set".

    Isolation mode (the runtime runs in a worker process, ``rkl-host``, so
    its crashes and hangs cannot take this process down):

    - ``isolated=True`` sets RKL_OPEN_ISOLATED in ``flags`` (the environment
      variable ``RKL_ISOLATED=1`` turns it on for every model). A crash then
      raises RuntimeCrashedError and the model restarts on the next call.
    - ``call_timeout_ms``: a call or generation on which the runtime makes
      no progress for this long raises RuntimeTimeoutError (None or 0: no
      limit). Must exceed the longest prefill.
    - ``abort_grace_ms``: how long the runtime may take to stop after
      abort() before its worker is killed (None or 0: 2000).
    - ``max_restarts``: automatic restarts per minute after the worker
      died; past it calls raise RuntimeCrashedError until restart(). None:
      the library's default (3); 0 (or negative): never restart
      automatically. (Note: the C field uses -1 for "never" and 0 for the
      default; this keyword translates.)

    Automatic prompt caching:

    - ``cache_dir``: a directory (made owner-only when missing) where
      requests that pass ``cache_prefix=`` find the prefix's cache, or save
      it the first time; every later request with the same prefix, in any
      process sharing the directory, skips prefilling it. Caches are keyed
      by the model file's content, the runtime release, the chat template,
      the prefix and the settings that shape the KV state. None: off.
    - ``cache_max_bytes``: the most bytes the directory's automatic caches
      may take together; the least recently used are removed past it.
      None or 0: no cap. Refused (InvalidArgumentError) without
      ``cache_dir``.
    """

    _settings = frozenset(name for name, _ in OpenParams._fields_) - {
        "struct_size", "model_path", "_reserved", "_reserved4", "tokenizer_userdata",
        "embedder_userdata"} | {"isolated", "image_tags", "video_tags"}
    _strings = ("runtime_path", "runtime_abi", "cache_dir", "image_start", "image_end", "image_content",
                "video_start", "video_end", "video_content")

    def __init__(self, model_path, **settings):
        params = OpenParams()
        _check(_open_params_init(byref(params), ctypes.sizeof(params)))
        params.model_path = _path(model_path, "model_path")
        isolated = settings.pop("isolated", None)
        for kind in ("image", "video"):
            tags = settings.pop(kind + "_tags", None)
            if tags is not None:
                if isinstance(tags, (str, bytes)) or len(tags) != 3:
                    raise TypeError(f"{kind}_tags must be (start, end, content), not {tags!r}")
                for part, value in zip(("start", "end", "content"), tags):
                    settings[f"{kind}_{part}"] = value
        # The callbacks stay referenced by the model object for its whole
        # life: librkl keeps the function pointers until rkl_close(), which
        # __del__ calls before the object (and they) go away.
        self._hook_errors: list = []
        self._hooks = (self._tokenize_fn(settings.pop("tokenizer", None)),
                       self._embed_fn(settings.pop("embedder", None)))
        params.tokenizer, params.embedder = self._hooks
        for name, value in settings.items():
            if name not in self._settings:
                raise TypeError(f"unknown setting {name!r}; known: {', '.join(sorted(self._settings))}")
            if value is None:
                continue
            if name == "max_restarts" and value <= 0:
                value = -1  # never; the C field's 0 would mean "the default"
            if name in self._strings:
                value = _path(value, name)
            if name == "use_cross_attn":
                value = int(bool(value))
            if name == "cache_max_bytes" and not (isinstance(value, int) and 0 <= value < 2**64):
                raise InvalidArgumentError(INVALID_ARGUMENT,
                                           f"cache_max_bytes must be an integer in 0..2^64-1, not {value!r}")
            setattr(params, name, value)
        if isolated:
            params.flags |= OPEN_ISOLATED
        handle = c_void_p()
        _check(_open(byref(params), byref(handle)))
        # The handle is a token the library checks, never reused: after
        # close() it stays here, and later calls get BadHandleError from rkl.
        self._handle = handle
        self.closed = False

    def _tokenize_fn(self, tokenizer):
        if tokenizer is None:
            return TOKENIZE_FN()
        if not callable(tokenizer):
            raise TypeError("tokenizer must be callable: text -> token ids")
        errors = self._hook_errors

        def tokenize(text, length, out, max_tokens, _userdata):
            try:  # on the runtime's thread: nothing may unwind through C
                ids = _Array(tokenizer(ctypes.string_at(text, length).decode("utf-8")), "i",
                             "the tokenizer's result")
                if ids.count > max_tokens:
                    raise ValueError(f"the tokenizer returned {ids.count} ids, room for {max_tokens}")
                if ids.count:
                    ctypes.memmove(out, ids.pointer, 4 * ids.count)
                return ids.count
            except BaseException as e:
                errors.append(e)
                return -1

        return TOKENIZE_FN(tokenize)

    def _embed_fn(self, embedder):
        if embedder is None:
            return EMBED_FN()
        if not callable(embedder):
            raise TypeError("embedder must be callable: token ids -> float32 rows")
        errors = self._hook_errors

        def embed(tokens, n_tokens, out, n_floats, _userdata):
            try:
                rows = _Array(embedder(list(tokens[:n_tokens])), "f", "the embedder's result")
                if rows.count != n_floats:
                    raise ValueError(f"the embedder returned {rows.count} floats for {n_floats}")
                if rows.count:
                    ctypes.memmove(out, rows.pointer, 4 * rows.count)
                return 0
            except BaseException as e:
                errors.append(e)
                return -1

        return EMBED_FN(embed)

    def _check(self, status: int) -> None:
        """_check, chaining an exception a tokenizer or embedder raised."""
        if status != OK and self._hook_errors:
            cause = self._hook_errors[0]
            self._hook_errors.clear()
            raise error_for(status) from cause
        self._hook_errors.clear()
        _check(status)

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        # A forgotten model is closed; errors are moot at this point.
        try:
            if not self.closed:
                _close(self._handle)
        except Exception:
            pass

    def close(self) -> None:
        """Closes the model: running generations end as aborted; later calls
        raise BadHandleError. Closing twice is harmless."""
        if hasattr(self, "_handle"):
            self.closed = True
            _check(_close(self._handle))

    def abort(self) -> None:
        """Stops every queued or running generation of this model (from any
        thread, also from inside a callback); they end as "aborted"."""
        _check(_abort(self._handle))

    def generate(self, prompt: str = "", on_text: Optional[Callable[[str], object]] = None, *,
                 max_new_tokens: int = 0, keep_history: bool = False,
                 enable_thinking: bool = False, role: str = "user",
                 lora: Optional[str] = None, cache_prefix: Optional[str] = None,
                 sampling: Optional[Sampling] = None, **inputs: Any) -> Reply:
        """Generates a reply, blocking until it ends. ``on_text`` (optional)
        gets each piece of text as it comes, on this thread; returning False
        from it stops the generation, and an exception it raises stops the
        generation and is re-raised here.

        ``cache_prefix`` (a model opened with ``cache_dir``): the start of
        ``prompt`` that stays the same from request to request (a system
        prompt, say). Its KV state is saved the first time and reused by
        every later request with the same prefix (``stats.cache_use`` says
        "saved" or "hit"). It must be a prefix of ``prompt``, shorter than
        it, ending on a character boundary (else InvalidArgumentError, and
        nothing runs); None or "": none. Ignored without ``cache_dir``.

        ``sampling``: this request's own sampling settings (a
        :class:`Sampling`; runtime release 1.3, NotSupportedError on 1.2);
        None: the model's.

        Other inputs, instead of the prompt text (see hidden_states()):
        ``tokens=``, ``embeddings=`` (with ``embedding_dim=``), ``images=``
        / ``videos=``; and ``cross_attn=``."""
        params = _request(prompt, max_new_tokens, keep_history, enable_thinking, role, lora, cache_prefix,
                          sampling, _input_args(inputs))
        pieces: list[str] = []
        failure: list[BaseException] = []

        def token(text, length, _userdata):
            try:
                piece = ctypes.string_at(text, length).decode("utf-8")
                pieces.append(piece)
                if on_text is not None and on_text(piece) is False:
                    return 1
                return 0
            except BaseException as e:  # never let an exception unwind through C
                failure.append(e)
                return 1

        callback = TOKEN_FN(token)
        stats = _new_stats()
        status = _generate(self._handle, byref(params), callback, None, byref(stats))
        if failure:
            raise failure[0]
        self._check(status)
        return Reply("".join(pieces), Stats._from(stats))

    def stream(self, prompt: str = "", *, max_new_tokens: int = 0, keep_history: bool = False,
               enable_thinking: bool = False, role: str = "user",
               lora: Optional[str] = None, cache_prefix: Optional[str] = None,
               sampling: Optional[Sampling] = None, **inputs: Any) -> "Stream":
        """Starts a generation and returns a Stream to iterate for its text
        (``cache_prefix``, ``sampling`` and the other inputs as for
        generate())."""
        params = _request(prompt, max_new_tokens, keep_history, enable_thinking, role, lora, cache_prefix,
                          sampling, _input_args(inputs))
        handle = c_void_p()
        _check(_stream_open(self._handle, byref(params), byref(handle)))
        return Stream(handle)

    def _tensor(self, fn, prompt: str, role: str, lora: Optional[str], cache_prefix: Optional[str],
                inputs: dict) -> Tensor:
        params = _request(prompt, 0, False, False, role, lora, cache_prefix, None, _input_args(inputs))
        t = CTensor()
        t.struct_size = ctypes.sizeof(t)
        stats = _new_stats()
        self._check(fn(self._handle, byref(params), byref(t), byref(stats)))
        try:
            values = array.array("f")
            n = t.tokens * t.dim
            if n:
                values.frombytes(ctypes.string_at(t.data, 4 * n))
            return Tensor(values, t.tokens, t.dim, Stats._from(stats))
        finally:
            _tensor_free(byref(t))

    def hidden_states(self, prompt: str = "", *, role: str = "user", lora: Optional[str] = None,
                      cache_prefix: Optional[str] = None, tokens=None, embeddings=None,
                      embedding_dim: Optional[int] = None, images: Optional[Images] = None,
                      videos: Optional[Videos] = None,
                      cross_attn: Optional[CrossAttention] = None) -> Tensor:
        """Runs a request and returns the last hidden layer of its input, one
        row of the model's embedding size per token (the vectors retrieval
        uses); nothing is generated. The input is ``prompt`` (text), or one
        of: ``tokens`` (int32 token ids), ``embeddings`` (float32 rows of
        ``embedding_dim``, or a 2-D array), ``images`` / ``videos``
        (:class:`Images`, :class:`Videos`, with a prompt holding their
        markers). Arrays are any C-contiguous buffer of the item type
        (``array.array``, numpy, memoryview, bytes) or lists; a wrong item
        type raises TypeError, a wrong shape ValueError
        (InvalidArgumentError), videos on a 1.2 runtime NotSupportedError."""
        return self._tensor(_hidden_states, prompt, role, lora, cache_prefix, dict(
            tokens=tokens, embeddings=embeddings, embedding_dim=embedding_dim, images=images, videos=videos,
            cross_attn=cross_attn))

    def logits(self, prompt: str = "", *, role: str = "user", lora: Optional[str] = None,
               cache_prefix: Optional[str] = None, tokens=None, embeddings=None,
               embedding_dim: Optional[int] = None, images: Optional[Images] = None,
               videos: Optional[Videos] = None, cross_attn: Optional[CrossAttention] = None) -> Tensor:
        """Runs a request and returns the logits the runtime computed (rows
        of the vocabulary's size: the last token's); inputs as for
        hidden_states()."""
        return self._tensor(_logits, prompt, role, lora, cache_prefix, dict(
            tokens=tokens, embeddings=embeddings, embedding_dim=embedding_dim, images=images, videos=videos,
            cross_attn=cross_attn))

    @property
    def info(self) -> ModelInfo:
        d = ModelDetails()
        d.struct_size = ctypes.sizeof(d)
        _check(_model_info(self._handle, byref(d)))
        return ModelInfo(*(getattr(d, f).decode() for f in
                           ("model_path", "runtime_path", "family", "runtime_version")))

    def clear_history(self, keep_system_prompt: bool = False) -> None:
        _check(_clear_history(self._handle, int(keep_system_prompt)))

    def kv_cache_tokens(self) -> int:
        n = c_uint32()
        _check(_kv_cache_tokens(self._handle, byref(n)))
        return n.value

    def set_chat_template(self, system: str, prefix: str, postfix: str) -> None:
        _check(_set_chat_template(self._handle, _text(system, "system"), _text(prefix, "prefix"),
                                  _text(postfix, "postfix")))

    def set_function_tools(self, system: str, tools: str, tool_response: str) -> None:
        """Function calling: the system prompt, the tools as JSON (the
        model's schema) and the text that introduces a tool's answer; later
        requests with ``role="tool"`` carry tool results."""
        _check(_set_function_tools(self._handle, _text(system, "system"), _text(tools, "tools"),
                                   _text(tool_response, "tool_response")))

    def load_lora(self, path: str, name: str, scale: float = 1.0) -> None:
        _check(_load_lora(self._handle, _path(path, "path"), _text(name, "name"), scale))

    def restart(self) -> None:
        """Isolation mode: stops the worker process (running generations end
        as "aborted", other calls in flight raise AbortedError), starts a new
        one and opens the model again, restoring the chat template, function
        tools, LoRA adapters and loaded prompt cache, not the KV history.
        Resets the restart count. NotSupportedError for an in-process model."""
        _check(_model_restart(self._handle))

    # -------------------------------------------------------- prompt caches

    def save_cache(self, path, prompt: str, *, enable_thinking: bool = False,
                   role: str = "user") -> CacheInfo:
        """Saves a prompt cache of ``prompt`` (e.g. a long system prompt) at
        ``path`` (rkl_cache_save): empties the KV history, prefills the
        prompt through the chat template, writes the runtime's payload beside
        the manifest, and renames the manifest into place last, so a failure
        never damages an earlier cache at ``path``. Use the same role and
        thinking flag as the requests that will use the cache. Raises
        InvalidArgumentError while a cache is loaded (release it first),
        RklIOError when the directory is missing or not writable,
        AbortedError when abort() or close() stopped it. The result has
        ``save_stats``, the figures of the prefill."""
        params = _request(prompt, 0, False, enable_thinking, role, None)
        raw = _path(path, "path")
        return _cache_call(lambda info: _cache_save(self._handle, byref(params), raw, byref(info)))

    def load_cache(self, path) -> CacheInfo:
        """Validates the prompt cache at ``path`` and loads it (rkl_cache_load),
        so that later requests skip prefilling its prompt. Checked before the
        runtime sees a byte, each with its own exception: CacheNotFoundError,
        CacheInvalidError, CacheVersionError, CacheUntrustedError (another
        user's, or writable by others), CacheTruncatedError,
        CacheCorruptError, CacheMismatchError (another model file or runtime
        release). A failed load leaves the model as it was.

        While it is loaded, give every request the FULL prompt: the cached
        prompt, exactly, followed by the new part. rkl sends only the new
        part; a prompt that does not start with the cached one, or is only
        the cached one, raises CacheMismatchError and nothing runs. It stays
        loaded until release_cache(), clear_history(), another load_cache()
        or close()."""
        raw = _path(path, "path")
        return _cache_call(lambda info: _cache_load(self._handle, raw, byref(info)))

    def release_cache(self) -> None:
        """Unloads the prompt cache and empties the KV history (harmless
        without a cache); requests give plain prompts again."""
        _check(_cache_release(self._handle))


# ----------------------------------------------------------------- stream


class Stream:
    """A generation read by pulling: iterate it for pieces of text.

    Iterating waits in slices of ``poll_ms`` so Ctrl-C and abort() from other
    threads take effect promptly. Leaving the loop early (break, exception,
    garbage collection of the generator) closes the stream, which aborts the
    generation. ``stats`` is available once the text has been read to its end.
    """

    poll_ms = 100

    def __init__(self, handle: c_void_p):
        self._handle = handle
        self._stats: Optional[Stats] = None
        self.closed = False

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            if not self.closed:
                _stream_close(self._handle)
        except Exception:
            pass

    def __iter__(self) -> Iterator[str]:
        try:
            while True:
                piece = self.next(self.poll_ms)
                if piece is None:
                    return
                if piece:
                    yield piece
        except GeneratorExit:
            self.close()
            raise

    def next(self, timeout_ms: int = -1) -> Optional[str]:
        """The next piece of text; "" when none came within ``timeout_ms``
        (negative: wait without limit); None at the end."""
        text = POINTER(c_char)()
        length = c_size_t()
        status = _stream_next(self._handle, timeout_ms, byref(text), byref(length))
        if status == TIMEOUT:
            return ""
        _check(status)
        if not text:
            return None
        return ctypes.string_at(text, length.value).decode("utf-8")

    def text(self) -> str:
        """Reads the rest of the stream and returns it."""
        return "".join(self)

    @property
    def stats(self) -> Stats:
        """The figures, once the text was read to its end (before that:
        InProgressError)."""
        if self._stats is None:
            s = _new_stats()
            _check(_stream_stats(self._handle, byref(s)))
            self._stats = Stats._from(s)
        return self._stats

    def abort(self) -> None:
        """Asks the generation to stop; iteration then ends (finish "aborted")."""
        _check(_stream_abort(self._handle))

    def close(self) -> None:
        """Closes the stream (an unfinished generation is aborted). Twice is harmless."""
        self.closed = True
        _check(_stream_close(self._handle))
