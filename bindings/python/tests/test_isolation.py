"""Isolation mode: the runtime in a worker process (rkl-host, staged in
../libexec from librkl), so its crashes and hangs raise instead of taking
pytest down."""
import os
import time

import pytest

import rkl
from conftest import expected, write_model

FAST = "time_scale = 0\n"


def staged_host() -> str:
    """The rkl-host in ../libexec from the librkl this process loaded."""
    with open("/proc/self/maps", encoding="utf-8") as f:
        # The path is the sixth field; " (deleted)" follows it when the
        # file was replaced since (a concurrent `make stage`).
        paths = [line.split(maxsplit=5)[-1].strip() for line in f if line.count(" ") >= 5]
    lib = next(p for p in paths if os.path.basename(p).startswith("librkl.so"))
    lib = lib.removesuffix(" (deleted)")
    return os.path.normpath(os.path.join(os.path.dirname(lib), "..", "libexec", "rkl-host"))


def test_isolated_generation_works(fast_model, abi):
    with rkl.Model(fast_model, isolated=True) as m:
        assert m.info.family == abi
        pieces = []
        reply = m.generate("isolated", pieces.append)
        assert reply.text == expected("isolated") and "".join(pieces) == reply.text
        assert reply.stats.finish == "end" and reply.stats.tokens >= len(pieces) > 3
        assert m.stream("streamed").text() == expected("streamed")
        m.restart()  # a fresh worker, and the model works on
        assert m.generate("again").text == expected("again")


def test_a_segfault_raises_and_the_model_restarts(tmp_path, rewrite):
    path = write_model(tmp_path, "crash", FAST + "fault = segv@token:3\n")
    with rkl.Model(path, isolated=True) as m:
        pieces = []
        with pytest.raises(rkl.RuntimeCrashedError, match="died of SIGSEGV") as e:
            m.generate("crash", pieces.append)
        assert isinstance(e.value, RuntimeError) and e.value.status == rkl.RUNTIME_CRASHED
        # Whatever text came before the crash is the reply's beginning.
        assert expected("crash").startswith("".join(pieces))
        # A stream reports it too (the next call restarted the worker).
        with pytest.raises(rkl.RuntimeCrashedError, match="SIGSEGV"):
            m.stream("crash").text()
        # The fault gone, the next call restarts the worker by itself.
        rewrite(path, FAST)
        assert m.generate("alive").text == expected("alive")
    assert os.getpid()  # still here


def test_a_hang_times_out_and_restart_recovers(tmp_path, rewrite):
    path = write_model(tmp_path, "hang", FAST + "fault = hang@prefill\n")
    with rkl.Model(path, isolated=True, call_timeout_ms=300) as m:
        started = time.monotonic()
        with pytest.raises(rkl.RuntimeTimeoutError, match="no progress for 300 ms") as e:
            m.generate("hang")
        assert 0.25 < time.monotonic() - started < 10
        assert isinstance(e.value, TimeoutError) and e.value.status == rkl.RUNTIME_TIMEOUT
        rewrite(path, FAST)
        m.restart()
        assert m.generate("after").text == expected("after")


def test_a_hang_at_open_times_out(tmp_path):
    path = write_model(tmp_path, "hang-init", "fault = hang@init\n")
    with pytest.raises(rkl.RuntimeTimeoutError):
        rkl.Model(path, isolated=True, call_timeout_ms=300)


def test_max_restarts_zero_means_never_automatically(tmp_path, rewrite):
    path = write_model(tmp_path, "policy", FAST + "fault = abort@prefill\n")
    with rkl.Model(path, isolated=True, max_restarts=0) as m:
        with pytest.raises(rkl.RuntimeCrashedError, match="SIGABRT"):
            m.generate("one")
        rewrite(path, FAST)
        # No automatic restart: the model stays down until restart().
        with pytest.raises(rkl.RuntimeCrashedError, match="not restarted automatically"):
            m.generate("two")
        m.restart()
        assert m.generate("three").text == expected("three")


def test_abort_grace_kills_a_runtime_that_stops_late(tmp_path, rewrite):
    # The runtime honours an abort only after 5 s, and would need about 4 s
    # (~40 tokens at 100 ms) to end on its own.
    path = write_model(tmp_path, "late", "time_scale = 1\ndecode_us_per_token = 100000\n"
                                         "slow_abort_ms = 5000\n")
    with rkl.Model(path, isolated=True, abort_grace_ms=150) as m:
        reply = m.generate("late", lambda _: m.abort())
        assert reply.stats.finish == "aborted"
        assert reply.text and expected("late").startswith(reply.text)
        # Killed after the grace, not when the runtime would have stopped.
        assert 100 <= reply.stats.abort_ms < 2000, reply.stats
        rewrite(path, FAST)  # the next call starts a new worker
        assert m.generate("fine").text == expected("fine")


def test_restart_needs_isolation(fast_model):
    with rkl.Model(fast_model) as m:
        with pytest.raises(rkl.NotSupportedError) as e:
            m.restart()
        assert isinstance(e.value, NotImplementedError)
    with pytest.raises(rkl.BadHandleError):
        m.restart()


def test_the_worker_program_can_be_named(fast_model, monkeypatch):
    host = staged_host()
    assert os.access(host, os.X_OK), host
    monkeypatch.setenv("RKL_HOST", host)
    with rkl.Model(fast_model, isolated=True) as m:
        assert m.generate("named").text == expected("named")
    monkeypatch.setenv("RKL_HOST", "/nonexistent/rkl-host")
    with pytest.raises(rkl.RuntimeNotFoundError, match="RKL_HOST"):
        rkl.Model(fast_model, isolated=True)
    # In-process models do not need it.
    with rkl.Model(fast_model) as m:
        assert m.generate("plain").text == expected("plain")
