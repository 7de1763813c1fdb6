"""Fixtures: simulator model files (sim/README.md) and their expected replies.

The make rule sets RKL_RUNTIME to the simulator's librkllmrt.so, puts the
staged librkl on LD_LIBRARY_PATH and chooses RKLLM_SIM_ABI. The package is
imported from the venv it was installed into (`pip install bindings/python`),
never from the source tree: the rule checks that `rkl.__file__` is there.
"""
import os

import pytest

# The simulator's reply is this template with {prompt} replaced by the prompt.
REPLY = "R[{prompt}] héllo wörld ✓ 🚀 日本語 ünïcödé, and a few more words to stream"


def expected(prompt: str) -> str:
    return REPLY.replace("{prompt}", prompt)


def write_model(directory, name: str, extra: str = "") -> str:
    path = os.path.join(str(directory), name + ".sim")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"RKLLM-SIM 1\nreply = {REPLY}\n{extra}")
    return path


@pytest.fixture
def fast_model(tmp_path):
    """Generation is instant."""
    return write_model(tmp_path, "fast", "time_scale = 0\n")


@pytest.fixture
def slow_model(tmp_path):
    """About 4 ms per token (~50 tokens): long enough to stop mid-way."""
    return write_model(tmp_path, "slow", "time_scale = 1\nprefill_us_per_token = 1000\n"
                                         "decode_us_per_token = 4000\n")


@pytest.fixture
def abi():
    return os.environ.get("RKLLM_SIM_ABI") or "1.3"


@pytest.fixture
def rewrite():
    """Rewrites a model file in place (a restarted worker reads it again)."""
    def rewrite(path: str, extra: str = "") -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"RKLLM-SIM 1\nreply = {REPLY}\n{extra}")
    return rewrite
