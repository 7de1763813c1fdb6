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

The library is found through ``RKL_LIBRARY`` (a path), else as
``librkl.so.0`` by the dynamic loader (``LD_LIBRARY_PATH``, rpath, ldconfig).
The runtime (``librkllmrt.so``) is found by librkl: ``runtime_path=``, else
``RKL_RUNTIME``, else the loader.

Thread-safety: a Model may be used from several threads at once; librkl runs
the generations one at a time. ctypes releases the GIL during every call, so
other Python threads run while one generates.
"""

from __future__ import annotations

import ctypes
import os
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
    c_size_t,
    c_uint32,
    c_void_p,
)
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

__all__ = [
    "Model",
    "Stream",
    "Stats",
    "ModelInfo",
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
    "PanicError",
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

UNSET = -(2**31)  # RKL_UNSET: "runtime default" for integer open params

FINISH_END, FINISH_MAX_TOKENS, FINISH_ABORTED, FINISH_STOPPED, FINISH_ERROR = range(5)
FINISH_NAMES = {0: "end", 1: "max_tokens", 2: "aborted", 3: "stopped", 4: "error"}
ROLES = {"user": 0, "tool": 1}


class RklError(Exception):
    """A failed rkl call. ``status`` is the rkl_status number, ``message``
    the library's message (it names the function and what was wrong)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(RklError, ValueError):
    """RKL_INVALID_ARGUMENT: a value out of range, bad text, wrong struct size."""


class ModelNotFoundError(RklError, FileNotFoundError):
    """RKL_MODEL_NOT_FOUND: the model (or LoRA) file cannot be read."""


class RuntimeNotFoundError(RklError, OSError):
    """RKL_RUNTIME_NOT_FOUND: librkllmrt.so could not be loaded."""


class RuntimeUnsupportedError(RklError, OSError):
    """RKL_RUNTIME_UNSUPPORTED: a runtime release rkl does not speak."""


class ModelLoadError(RklError):
    """RKL_MODEL_LOAD_FAILED: the runtime could not load the model."""


class RuntimeFailedError(RklError, RuntimeError):
    """RKL_RUNTIME_FAILED: a runtime call or a generation failed."""


class ClosedError(RklError, ValueError):
    """RKL_CLOSED: the model was closed while the call waited."""


class ReentrantError(RklError, RuntimeError):
    """RKL_REENTRANT: called from inside a token callback."""


class NotSupportedError(RklError, NotImplementedError):
    """RKL_NOT_SUPPORTED: the runtime release lacks this feature."""


class RklIOError(RklError, OSError):
    """RKL_IO: a file operation failed."""


class BadHandleError(RklError, ValueError):
    """RKL_BAD_HANDLE: the model or stream is closed (or was never valid)."""


class NullArgumentError(RklError, ValueError):
    """RKL_NULL_ARGUMENT (a bug in this module if it ever shows)."""


class PanicError(RklError):
    """RKL_PANIC: a bug inside librkl; the message says where."""


_ERRORS = {
    INVALID_ARGUMENT: InvalidArgumentError,
    MODEL_NOT_FOUND: ModelNotFoundError,
    RUNTIME_NOT_FOUND: RuntimeNotFoundError,
    RUNTIME_UNSUPPORTED: RuntimeUnsupportedError,
    MODEL_LOAD_FAILED: ModelLoadError,
    RUNTIME_FAILED: RuntimeFailedError,
    CLOSED: ClosedError,
    REENTRANT: ReentrantError,
    NOT_SUPPORTED: NotSupportedError,
    IO: RklIOError,
    BAD_HANDLE: BadHandleError,
    NULL_ARGUMENT: NullArgumentError,
    PANIC: PanicError,
}

# ----------------------------------------------------------------- structs
# Mirrors of include/rkl.h. Their sizes are given to the library, which
# refuses a struct_size it does not know (tests/test_rkl.py checks this).


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
    ]


class ModelDetails(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("model_path", c_char_p),
        ("runtime_path", c_char_p),
        ("family", c_char_p),
        ("runtime_version", c_char_p),
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
    ]


TOKEN_FN = CFUNCTYPE(c_int, POINTER(c_char), c_size_t, c_void_p)

# ----------------------------------------------------------------- the library


def _load() -> ctypes.CDLL:
    path = os.environ.get("RKL_LIBRARY")
    names = [path] if path else ["librkl.so.0", "librkl.so"]
    last: Optional[OSError] = None
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            last = e
    raise ImportError(f"rkl: cannot load librkl ({'; '.join(names)}): {last}")


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
_load_lora = _fn("rkl_load_lora", c_int32, c_void_p, c_char_p, c_char_p, c_float)


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
    return _ERRORS.get(status, RklError)(status, message)


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
        )


def _new_stats() -> CStats:
    s = CStats()
    s.struct_size = ctypes.sizeof(CStats)
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


def _request(prompt: str, max_new_tokens: int, keep_history: bool, enable_thinking: bool,
             role: str, lora: Optional[str]) -> GenerateParams:
    p = GenerateParams()
    _check(_generate_params_init(byref(p), ctypes.sizeof(p)))
    p.prompt = _text(prompt, "prompt")
    p.max_new_tokens = max_new_tokens
    p.keep_history = keep_history
    p.enable_thinking = enable_thinking
    if role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}, not {role!r}")
    p.role = ROLES[role]
    if lora is not None:
        p.lora = _text(lora, "lora")
    return p


# ----------------------------------------------------------------- model


class Model:
    """An open model. Use as a context manager, or call close().

    Keyword arguments set rkl_open_params fields of the same name
    (``runtime_path``, ``runtime_abi``, ``max_context_len``,
    ``max_new_tokens``, ``top_k``, ``top_p``, ``temperature``, ...); the others
    keep the runtime's defaults.
    """

    def __init__(self, model_path: str, **settings):
        params = OpenParams()
        _check(_open_params_init(byref(params), ctypes.sizeof(params)))
        params.model_path = _text(os.fspath(model_path), "model_path")
        known = {name for name, _ in OpenParams._fields_} - {"struct_size", "model_path"}
        for name, value in settings.items():
            if name not in known:
                raise TypeError(f"unknown setting {name!r}; known: {', '.join(sorted(known))}")
            if value is None:
                continue
            if name in ("runtime_path", "runtime_abi"):
                value = _text(os.fspath(value), name)
            setattr(params, name, value)
        handle = c_void_p()
        _check(_open(byref(params), byref(handle)))
        # The handle is a token the library checks, never reused: after
        # close() it stays here, and later calls get BadHandleError from rkl.
        self._handle = handle
        self.closed = False

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

    def generate(self, prompt: str, on_text: Optional[Callable[[str], object]] = None, *,
                 max_new_tokens: int = 0, keep_history: bool = False,
                 enable_thinking: bool = False, role: str = "user",
                 lora: Optional[str] = None) -> Reply:
        """Generates a reply, blocking until it ends. ``on_text`` (optional)
        gets each piece of text as it comes, on this thread; returning False
        from it stops the generation, and an exception it raises stops the
        generation and is re-raised here."""
        params = _request(prompt, max_new_tokens, keep_history, enable_thinking, role, lora)
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
        _check(status)
        return Reply("".join(pieces), Stats._from(stats))

    def stream(self, prompt: str, *, max_new_tokens: int = 0, keep_history: bool = False,
               enable_thinking: bool = False, role: str = "user",
               lora: Optional[str] = None) -> "Stream":
        """Starts a generation and returns a Stream to iterate for its text."""
        params = _request(prompt, max_new_tokens, keep_history, enable_thinking, role, lora)
        handle = c_void_p()
        _check(_stream_open(self._handle, byref(params), byref(handle)))
        return Stream(handle)

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

    def load_lora(self, path: str, name: str, scale: float = 1.0) -> None:
        _check(_load_lora(self._handle, _text(os.fspath(path), "path"), _text(name, "name"), scale))


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
        RklError with status IN_PROGRESS)."""
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
