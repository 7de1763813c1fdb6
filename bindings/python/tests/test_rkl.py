"""Tests of the ctypes binding against the simulator."""
import ctypes
import math
import threading

import pytest

import rkl
from conftest import expected


# ------------------------------------------------------------ struct layouts
# The prompt-cache segfault happened in a Python binding whose structs were
# guesses. These tests show the sizes and offsets this module uses are the
# ones the library reads and writes.


def test_open_params_size_is_accepted_by_the_library():
    p = rkl.OpenParams()
    size = ctypes.sizeof(p)
    assert rkl._open_params_init(ctypes.byref(p), size) == rkl.OK
    assert p.struct_size == size
    # Every field holds what the library writes as its default, so every
    # offset agrees with the library's: a shifted field would show the
    # neighbour's value (or padding).
    for name in ("max_context_len", "max_new_tokens", "top_k", "n_keep", "mirostat",
                 "skip_special_token", "embed_flash", "enabled_cpus_num", "base_domain_id"):
        assert getattr(p, name) == rkl.UNSET, name
    for name in ("top_p", "temperature", "repeat_penalty", "frequency_penalty",
                 "presence_penalty", "mirostat_tau", "mirostat_eta"):
        assert math.isnan(getattr(p, name)), name
    assert p.enabled_cpus_mask == 0
    assert p.model_path is None and p.runtime_path is None and p.runtime_abi is None
    # Version 2 of the struct (isolation mode): 0 means "default".
    assert (p._reserved, p.flags, p.call_timeout_ms, p.abort_grace_ms, p.max_restarts) == (0, 0, 0, 0, 0)
    # Version 3 (automatic prompt caching): off.
    assert (p.cache_dir, p.cache_max_bytes) == (None, 0)
    assert (rkl.OpenParams.cache_dir.offset, rkl.OpenParams.cache_max_bytes.offset) == (120, 128)
    assert size == 224  # version 4 (tests/test_inputs.py checks its fields)


def test_wrong_struct_sizes_are_refused():
    p = rkl.OpenParams()
    # Anything shorter than version 1 (which ends where `flags` starts) is refused.
    v1 = rkl.OpenParams.flags.offset
    for size in (0, 4, v1 - 1):
        assert rkl._open_params_init(ctypes.byref(p), size) == rkl.INVALID_ARGUMENT
        assert "struct_size" in rkl.last_error_message()
    # A version-1 caller is served: the library writes no version-2 field.
    buf = (ctypes.c_ubyte * ctypes.sizeof(p))(*([0x55] * ctypes.sizeof(p)))
    assert rkl._open_params_init(ctypes.cast(buf, ctypes.POINTER(rkl.OpenParams)), v1) == rkl.OK
    assert bytes(buf[v1:]) == b"\x55" * (ctypes.sizeof(p) - v1)
    g = rkl.GenerateParams()
    # Version 1 of rkl_generate_params ended where cache_prefix_bytes starts.
    g1 = rkl.GenerateParams.cache_prefix_bytes.offset
    assert (g1, rkl.GenerateParams.sampling.offset, ctypes.sizeof(g)) == (40, 48, 128)
    assert rkl._generate_params_init(ctypes.byref(g), g1 - 1) == rkl.INVALID_ARGUMENT
    assert rkl._generate_params_init(ctypes.byref(g), g1) == rkl.OK
    assert rkl._generate_params_init(ctypes.byref(g), ctypes.sizeof(g)) == rkl.OK
    assert g.struct_size == ctypes.sizeof(g)
    assert (g.prompt, g.lora, g.role, g.max_new_tokens, g.enable_thinking, g.keep_history,
            g.cache_prefix_bytes, bool(g.sampling)) == (None, None, 0, 0, False, False, 0, False)


def test_sampling_params_layout():
    s = rkl.SamplingParams()
    size = ctypes.sizeof(s)
    assert rkl._sampling_params_init(ctypes.byref(s), size) == rkl.OK
    assert s.struct_size == size
    # Every field unset after init: every offset agrees with the library's.
    assert (s.top_k, s.mirostat) == (rkl.UNSET, rkl.UNSET)
    for name in ("top_p", "temperature", "repeat_penalty", "frequency_penalty",
                 "presence_penalty", "mirostat_tau", "mirostat_eta"):
        assert math.isnan(getattr(s, name)), name
    assert (rkl.SamplingParams.mirostat.offset, rkl.SamplingParams.mirostat_eta.offset, size) == (32, 40, 48)
    assert rkl._sampling_params_init(ctypes.byref(s), size - 1) == rkl.INVALID_ARGUMENT
    assert "struct_size" in rkl.last_error_message()


def test_a_larger_struct_is_zeroed_past_what_the_library_knows():
    size = ctypes.sizeof(rkl.OpenParams)
    buf = (ctypes.c_ubyte * (size + 16))(*([0x77] * (size + 16)))
    p = ctypes.cast(buf, ctypes.POINTER(rkl.OpenParams))
    assert rkl._open_params_init(p, size + 16) == rkl.OK
    assert p.contents.struct_size == size + 16
    assert bytes(buf[size:]) == bytes(16)


def test_output_struct_sizes(fast_model):
    with rkl.Model(fast_model) as m:
        g = rkl._request("x", 0, False, False, "user", None)
        st = rkl.CStats()
        st.struct_size = 8
        assert rkl._generate(m._handle, ctypes.byref(g), rkl.TOKEN_FN(0), None,
                             ctypes.byref(st)) == rkl.INVALID_ARGUMENT
        st.struct_size = ctypes.sizeof(st)
        assert rkl._generate(m._handle, ctypes.byref(g), rkl.TOKEN_FN(0), None,
                             ctypes.byref(st)) == rkl.OK
        assert st.struct_size == ctypes.sizeof(st)
        assert st.abort_ms == 0  # version 2's field
        assert st.cache_use == rkl.CACHE_USE_NONE  # version 3's, at the end
        assert (rkl.CStats.cache_use.offset, ctypes.sizeof(st)) == (80, 88)
        assert st.finish == rkl.FINISH_END and st.tokens > 0 and st.total_ms > 0
        d = rkl.ModelDetails()
        d.struct_size = 0
        assert rkl._model_info(m._handle, ctypes.byref(d)) == rkl.INVALID_ARGUMENT
        assert m.info.model_path == fast_model


def test_fields_land_where_the_library_reads_them(fast_model):
    # rkl_open_params.max_new_tokens (after three pointers and two ints)...
    with rkl.Model(fast_model, max_new_tokens=5) as m:
        reply = m.generate("limit")
        assert reply.stats.finish == "max_tokens" and reply.stats.tokens == 5
        assert expected("limit").startswith(reply.text) and reply.text != expected("limit")
        # ...and rkl_generate_params.max_new_tokens (after the role).
        reply = m.generate("limit", max_new_tokens=3)
        assert reply.stats.finish == "max_tokens" and reply.stats.tokens == 3
    # A value out of range is refused by name, so the field is the one meant.
    with pytest.raises(rkl.InvalidArgumentError, match="top_p"):
        rkl.Model(fast_model, top_p=1.5)
    with pytest.raises(rkl.InvalidArgumentError, match="enabled_cpus_num"):
        rkl.Model(fast_model, enabled_cpus_num=9)
    # Version 2: `flags` (after the padding of version 1).
    with pytest.raises(rkl.InvalidArgumentError, match="flags"):
        rkl.Model(fast_model, flags=2)


# ------------------------------------------------------------ generation


def test_per_request_sampling(tmp_path, abi):
    # The simulator's {sampling} shows the run's own sampling values.
    path = tmp_path / "sampling.sim"
    path.write_text("RKLLM-SIM 1\nreply = [{sampling}]\ntime_scale = 0\n", encoding="utf-8")
    own = rkl.Sampling(temperature=0.25)
    with rkl.Model(str(path), top_k=7) as m:
        assert m.info.family == abi
        if abi == "1.3":
            text = m.generate("x", sampling=own).text
            # The set field over the model's top_k and the runtime's top_p.
            assert "temperature=0.25" in text and "top_k=7 top_p=0.9 " in text, text
            assert "temperature=0.25" in m.stream("x", sampling=own).text()
        else:
            with pytest.raises(rkl.NotSupportedError, match="1.3"):
                m.generate("x", sampling=own)
            with pytest.raises(rkl.NotSupportedError):
                m.stream("x", sampling=own)
        assert m.generate("x").text == "[init]"
        with pytest.raises(rkl.InvalidArgumentError, match="top_p"):
            m.generate("x", sampling=rkl.Sampling(top_p=2))
        for bad in (rkl.Sampling(temperature=math.nan), rkl.Sampling(mirostat=3), rkl.Sampling(top_k=2**31)):
            with pytest.raises(rkl.InvalidArgumentError):
                m.generate("x", sampling=bad)
        with pytest.raises(TypeError):
            m.generate("x", sampling={"temperature": 0.25})


def test_generate_text_equals_the_reply(fast_model, abi):
    pieces = []
    with rkl.Model(fast_model) as m:
        assert m.info.family == abi
        reply = m.generate("hello", pieces.append)
    assert reply.text == expected("hello")
    assert "".join(pieces) == reply.text and len(pieces) > 3
    assert reply.stats.finish == "end" and reply.stats.tokens >= len(pieces)


def test_stream_text_equals_the_reply(fast_model):
    with rkl.Model(fast_model) as m:
        with m.stream("streamed") as s:
            pieces = list(s)
            assert "".join(pieces) == expected("streamed")
            assert s.stats.finish == "end"
        # A stream that is never read, closed at once; then a normal one.
        m.stream("dropped").close()
        assert m.stream("again").text() == expected("again")


def test_callback_can_stop_and_exceptions_propagate(fast_model):
    with rkl.Model(fast_model) as m:
        seen = []
        reply = m.generate("stop", lambda t: seen.append(t) or len(seen) < 2)
        assert reply.stats.finish == "stopped" and len(seen) == 2

        def boom(_):
            raise KeyError("from the callback")

        with pytest.raises(KeyError, match="from the callback"):
            m.generate("boom", boom)
        assert m.generate("after").text == expected("after")


# ------------------------------------------------------------ abort


def test_abort_mid_stream(slow_model):
    with rkl.Model(slow_model) as m:
        s = m.stream("abort me")
        pieces = []
        for piece in s:
            pieces.append(piece)
            if len(pieces) == 2:
                m.abort()
        text = "".join(pieces)
        assert expected("abort me").startswith(text) and len(text) < len(expected("abort me"))
        assert s.stats.finish == "aborted"
        s.close()
        # The model is free again.
        assert m.generate("next", max_new_tokens=2).stats.finish == "max_tokens"


def test_stream_abort_and_early_break(slow_model):
    with rkl.Model(slow_model) as m:
        with m.stream("one") as s:
            first = s.next()
            s.abort()
            rest = s.text()
            assert len(first + rest) < len(expected("one"))
            assert s.stats.finish == "aborted"
        # Leaving the loop early closes the stream and aborts its generation.
        for _ in m.stream("two"):
            break
        assert m.generate("three").text == expected("three")


def test_abort_from_another_thread_stops_generate(slow_model):
    with rkl.Model(slow_model) as m:
        started = threading.Event()
        aborter = threading.Thread(target=lambda: (started.wait(5), m.abort()))
        aborter.start()
        reply = m.generate("stop me", lambda _: started.set())
        aborter.join()
        assert reply.stats.finish == "aborted"
        assert len(reply.text) < len(expected("stop me"))


# ------------------------------------------------------------ misuse


def test_bad_model_path_is_file_not_found():
    with pytest.raises(FileNotFoundError, match="/nonexistent/model.rkllm") as e:
        rkl.Model("/nonexistent/model.rkllm")
    assert isinstance(e.value, rkl.RklError) and e.value.status == rkl.MODEL_NOT_FOUND
    assert e.value.message.startswith("rkl_open")


def test_bad_runtime_path(fast_model):
    with pytest.raises(rkl.RuntimeNotFoundError, match="/nonexistent/librkllmrt.so"):
        rkl.Model(fast_model, runtime_path="/nonexistent/librkllmrt.so")
    with pytest.raises(TypeError, match="unknown setting"):
        rkl.Model(fast_model, no_such_setting=1)
    with pytest.raises(rkl.InvalidArgumentError, match="NUL"):
        rkl.Model(fast_model + "\0.txt")


def test_text_with_nul_is_refused(fast_model):
    with rkl.Model(fast_model) as m:
        with pytest.raises(rkl.InvalidArgumentError, match="prompt contains a NUL"):
            m.generate("a\0b")


def test_use_after_close_raises(fast_model):
    m = rkl.Model(fast_model)
    s = m.stream("orphan")
    m.close()
    m.close()  # twice: harmless
    with pytest.raises(rkl.BadHandleError, match="closed") as e:
        m.generate("x")
    assert isinstance(e.value, ValueError) and e.value.status == rkl.BAD_HANDLE
    with pytest.raises(rkl.BadHandleError):
        m.stream("x")
    with pytest.raises(rkl.BadHandleError):
        m.abort()
    with pytest.raises(rkl.BadHandleError):
        m.info
    # The stream outlived its model: it reports the end, then closes.
    s.text()
    assert s.stats.finish in ("aborted", "end")
    s.close()
    s.close()
    with pytest.raises(rkl.BadHandleError, match="closed"):
        s.next()


# ------------------------------------------------------------ concurrency


def test_concurrent_generations_are_serialised(slow_model):
    prompts = ["first", "second"]
    replies = {}
    barrier = threading.Barrier(2)
    with rkl.Model(slow_model) as m:
        def run(prompt):
            barrier.wait()
            replies[prompt] = m.generate(prompt)

        threads = [threading.Thread(target=run, args=(p,)) for p in prompts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for p in prompts:
        assert replies[p].text == expected(p)
        assert replies[p].stats.finish == "end"
    # One ran while the other waited its turn: the later one queued for
    # about as long as the earlier one took.
    a, b = sorted((replies[p].stats for p in prompts), key=lambda s: s.queue_ms)
    assert b.queue_ms >= 0.7 * (a.total_ms - a.queue_ms), (a, b)


def test_log_callback_receives_rkls_messages(fast_model):
    got = []
    lock = threading.Lock()

    def receive(level: int, target: str, message: str) -> None:
        with lock:
            got.append((level, target, message))
        raise RuntimeError("dropped, never unwinds into librkl")

    rkl.set_log_callback(receive, rkl.LOG_DEBUG)
    try:
        with rkl.Model(fast_model) as m:
            assert m.generate("logged").text == expected("logged")
    finally:
        rkl.set_log_callback(None)
    with lock:
        seen = list(got)
    assert any("rkl_open" in message for _, _, message in seen), seen
    assert all(rkl.LOG_ERROR <= level <= rkl.LOG_DEBUG and target.startswith("rkl") for level, target, _ in seen)
    # Removed: nothing more arrives.
    with rkl.Model(fast_model) as m:
        m.generate("quiet")
    assert len(got) == len(seen)
    with pytest.raises(rkl.InvalidArgumentError):
        rkl.set_log_callback(receive, 9)
    with pytest.raises(TypeError):
        rkl.set_log_callback("not callable")  # type: ignore[arg-type]
