"""Prompt caches: Model.save_cache / load_cache / release_cache, inspect_cache,
and the rkl_cache_info struct this module mirrors."""
import ctypes
import json
import os
import time

import pytest

import rkl
from conftest import expected, write_model

SYSTEM = ("You are a careful assistant for a Rockchip board. Answer briefly and exactly, "
          "in the user's language, and say so when you do not know. ")
QUESTION = "What is an NPU?"
# Small payloads: 16 bytes + 64 per cached token.
KV = "time_scale = 0\nkv_bytes_per_token = 64\n"


@pytest.fixture
def model(tmp_path):
    return write_model(tmp_path, "cached", KV)


@pytest.fixture
def other_model(tmp_path):
    return write_model(tmp_path, "other", KV + "name = other\n")


@pytest.fixture
def cache(tmp_path, model):
    """A cache of SYSTEM saved with `model`: (manifest path, CacheInfo)."""
    path = str(tmp_path / "system ✓.rklcache")
    with rkl.Model(model) as m:
        return path, m.save_cache(path, SYSTEM)


# ------------------------------------------------------------ the struct
# A wrong rkl_cache_info in a Python binding is where the runtime's prompt
# cache crash was first seen. These show the library reads and writes
# exactly the struct this module declares.


def _sentinel_info(extra: int = 0):
    size = ctypes.sizeof(rkl.CCacheInfo) + extra
    buf = (ctypes.c_ubyte * size)(*([0x77] * size))
    return buf, ctypes.cast(buf, ctypes.POINTER(rkl.CCacheInfo))


def test_cache_info_struct_size_agrees_with_the_library(cache, model):
    path, _ = cache
    size = ctypes.sizeof(rkl.CCacheInfo)
    # Too small by even one byte: refused, and the struct is not touched.
    for wrong in (0, 8, size - 8, size - 1):
        buf, info = _sentinel_info()
        info.contents.struct_size = wrong
        assert rkl._cache_inspect(path.encode(), info) == rkl.INVALID_ARGUMENT
        assert "struct_size" in rkl.last_error_message()
        assert bytes(buf[8:]) == b"\x77" * (size - 8)
        assert rkl._cache_info_free(info) == rkl.INVALID_ARGUMENT
    # Larger: accepted, and nothing is written past this module's size, so
    # the library's struct is exactly as large as ours.
    buf, info = _sentinel_info(extra=32)
    info.contents.struct_size = size + 32
    assert rkl._cache_inspect(path.encode(), info) == rkl.OK
    assert bytes(buf[size:]) == b"\x77" * 32
    c = info.contents
    assert c.struct_size == size + 32
    # Every field where the library put it: numbers that can be checked
    # from outside, strings that must be what they are.
    assert (c.verdict, c.verdict_status, c.verdict_message) == (rkl.VERDICT_VALID, rkl.OK, b"")
    assert c.manifest_path == path.encode()
    assert c.format_version == 1 and c.max_context_len == 0
    assert c.library_version.decode() == rkl.version()
    assert c.model_path == model.encode() and c.model_size == os.path.getsize(model)
    assert c.model_mtime_ns == os.stat(model).st_mtime_ns
    assert len(c.model_fingerprint) == 32 and len(c.prompt_hash) == 32 and len(c.payload_checksum) == 32
    assert c.prompt_bytes == len(SYSTEM.encode())
    assert SYSTEM.startswith(c.prompt_preview.decode())
    assert c.role == b"user" and c.enable_thinking is False and c.has_chat_template is False
    assert (c.chat_system, c.chat_prefix, c.chat_postfix) == (b"", b"", b"")
    assert c.payload_size == os.path.getsize(c.payload_path)
    assert abs(c.created_unix - time.time()) < 600
    assert not c.save_stats
    # A copy of the struct shares the strings: only one may be freed.
    copy = rkl.CCacheInfo.from_buffer_copy(c)
    assert rkl._cache_info_free(info) == rkl.OK
    assert not c.storage and c.manifest_path is None and c.payload_size == 0
    assert c.struct_size == size + 32
    assert rkl._cache_info_free(info) == rkl.OK  # owns nothing now: harmless
    assert rkl._cache_info_free(copy) == rkl.INVALID_ARGUMENT


def test_save_stats_are_the_librarys_rkl_stats(tmp_path, model):
    info = rkl.CCacheInfo()
    info.struct_size = ctypes.sizeof(info)
    params = rkl._request(SYSTEM, 0, False, False, "user", None)
    with rkl.Model(model) as m:
        path = str(tmp_path / "raw.rklcache")
        assert rkl._cache_save(m._handle, params, path.encode(), info) == rkl.OK
    try:
        assert info.save_stats.contents.struct_size == ctypes.sizeof(rkl.CStats)
        assert info.verdict == rkl.VERDICT_VALID
    finally:
        assert rkl._cache_info_free(info) == rkl.OK
    assert not info.save_stats


def test_a_bad_struct_size_is_refused_before_anything_is_written(tmp_path, model):
    path = str(tmp_path / "never.rklcache")
    info = rkl.CCacheInfo()
    info.struct_size = ctypes.sizeof(info) - 1
    params = rkl._request(SYSTEM, 0, False, False, "user", None)
    with rkl.Model(model) as m:
        assert rkl._cache_save(m._handle, params, path.encode(), info) == rkl.INVALID_ARGUMENT
        assert "struct_size" in rkl.last_error_message()
    assert os.listdir(tmp_path) == [os.path.basename(model)]


# ------------------------------------------------------------ save and load


@pytest.mark.parametrize("isolated", [False, True], ids=["in-process", "isolated"])
def test_a_saved_system_prompt_is_loaded_by_a_fresh_model(tmp_path, model, abi, isolated):
    path = tmp_path / "system.rklcache"
    with rkl.Model(model, isolated=isolated) as m:
        cold = m.generate(SYSTEM + QUESTION)
        saved = m.save_cache(path, SYSTEM)  # a PathLike is fine
    assert cold.text == expected(SYSTEM + QUESTION)
    assert saved.valid and saved.verdict == "valid" and saved.error is None
    assert saved.manifest_path == str(path) and saved.model_path == model
    assert saved.runtime_family == abi and saved.prompt_bytes == len(SYSTEM.encode())
    assert saved.role == "user" and not saved.enable_thinking
    assert os.path.getsize(saved.payload_path) == saved.payload_size > 16
    assert saved.save_stats is not None and saved.save_stats.total_ms > 0
    if saved.save_stats.prefill_tokens:  # 1.2 may report none for the stopped run
        assert saved.payload_size == 16 + 64 * saved.save_stats.prefill_tokens

    with rkl.Model(model, isolated=isolated) as m:
        loaded = m.load_cache(str(path))
        assert loaded.valid and loaded.save_stats is None
        assert (loaded.prompt_hash, loaded.payload_checksum) == (saved.prompt_hash, saved.payload_checksum)
        warm = m.generate(SYSTEM + QUESTION)
        # The runtime got only the continuation: its reply names just that,
        # and it prefilled far fewer tokens.
        assert warm.text == expected(QUESTION)
        assert warm.stats.finish == "end"
        assert 0 < warm.stats.prefill_tokens < cold.stats.prefill_tokens / 2
        assert warm.stats.prefill_ms < cold.stats.prefill_ms / 2
        assert m.stream(SYSTEM + "And a GPU?").text() == expected("And a GPU?")
        # The prefix rule: the full prompt, always, and more than the cached part.
        with pytest.raises(rkl.CacheMismatchError):
            m.generate(QUESTION)
        with pytest.raises(rkl.CacheMismatchError):
            m.generate(SYSTEM)
        with pytest.raises(rkl.CacheMismatchError):
            m.stream(SYSTEM[:-2] + QUESTION)
        # Saving while a cache is loaded is refused.
        with pytest.raises(rkl.InvalidArgumentError, match="release"):
            m.save_cache(tmp_path / "second.rklcache", SYSTEM)
        m.release_cache()
        assert m.generate(QUESTION).text == expected(QUESTION)
        m.release_cache()  # twice: harmless


def test_settings_are_recorded(tmp_path, model):
    with rkl.Model(model, max_context_len=1024) as m:
        m.set_chat_template("sys ✓", "<u>", "</u>")
        info = m.save_cache(tmp_path / "t.rklcache", SYSTEM, enable_thinking=True, role="tool")
    assert (info.role, info.enable_thinking, info.max_context_len) == ("tool", True, 1024)
    assert info.has_chat_template
    assert (info.chat_system, info.chat_prefix, info.chat_postfix) == ("sys ✓", "<u>", "</u>")
    assert rkl.inspect_cache(tmp_path / "t.rklcache") == \
        rkl.CacheInfo(**{**info.__dict__, "save_stats": None})


def test_save_errors(tmp_path, model):
    with rkl.Model(model) as m:
        with pytest.raises(rkl.RklIOError) as e:
            m.save_cache(tmp_path / "no such dir" / "c.rklcache", SYSTEM)
        assert isinstance(e.value, OSError) and e.value.status == rkl.IO
        with pytest.raises(rkl.InvalidArgumentError):
            m.save_cache(tmp_path / "empty.rklcache", "")
        with pytest.raises(rkl.InvalidArgumentError, match="NUL"):
            m.save_cache(tmp_path / "c\0.rklcache", SYSTEM)
        with pytest.raises(ValueError, match="role"):
            m.save_cache(tmp_path / "c.rklcache", SYSTEM, role="system")
    assert os.listdir(tmp_path) == [os.path.basename(model)]


# ------------------------------------------------------------ verdicts and refusals


def test_inspect_a_valid_cache(cache):
    path, saved = cache
    seen = rkl.inspect_cache(path)
    assert seen.valid and seen.verdict_status == rkl.OK and seen.verdict_message == ""
    assert seen.save_stats is None
    assert seen == rkl.CacheInfo(**{**saved.__dict__, "save_stats": None})


def test_a_changed_model_makes_the_cache_stale(cache, model):
    path, _ = cache
    with open(model, "a", encoding="utf-8") as f:
        f.write("# edited\n")
    seen = rkl.inspect_cache(path)
    assert seen.verdict == "stale" and seen.verdict_status == rkl.CACHE_MISMATCH
    assert seen.verdict_message and isinstance(seen.error, rkl.CacheMismatchError)
    with rkl.Model(model) as m, pytest.raises(rkl.CacheMismatchError):
        m.load_cache(path)


def test_a_truncated_payload(cache, model):
    path, saved = cache
    with open(saved.payload_path, "r+b") as f:
        f.truncate(saved.payload_size - 1)
    seen = rkl.inspect_cache(path)
    assert seen.verdict == "invalid" and seen.verdict_status == rkl.CACHE_TRUNCATED
    assert isinstance(seen.error, rkl.CacheTruncatedError) and seen.verdict_message
    assert seen.prompt_hash == saved.prompt_hash  # the manifest is still reported
    with rkl.Model(model) as m:
        with pytest.raises(rkl.CacheTruncatedError) as e:
            m.load_cache(path)
        assert isinstance(e.value, rkl.CacheError) and e.value.status == rkl.CACHE_TRUNCATED
        # A failed load leaves the model as it was: plain prompts work.
        assert m.generate(QUESTION).text == expected(QUESTION)
    os.remove(saved.payload_path)
    with rkl.Model(model) as m, pytest.raises(rkl.CacheTruncatedError):
        m.load_cache(path)


def test_a_corrupt_payload(cache, model):
    path, saved = cache
    with open(saved.payload_path, "r+b") as f:
        f.seek(saved.payload_size // 2)
        byte = f.read(1)
        f.seek(saved.payload_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert os.path.getsize(saved.payload_path) == saved.payload_size
    seen = rkl.inspect_cache(path)
    assert seen.verdict == "invalid" and isinstance(seen.error, rkl.CacheCorruptError)
    with rkl.Model(model) as m, pytest.raises(rkl.CacheCorruptError):
        m.load_cache(path)


def test_a_cache_of_another_model(cache, other_model):
    path, _ = cache
    with rkl.Model(other_model) as m:
        with pytest.raises(rkl.CacheMismatchError, match="model"):
            m.load_cache(path)
        assert m.generate(QUESTION).text == expected(QUESTION)


def test_manifest_problems(tmp_path, cache, model):
    path, _ = cache
    missing = tmp_path / "absent.rklcache"
    with pytest.raises(rkl.CacheNotFoundError) as e:
        rkl.inspect_cache(missing)
    assert isinstance(e.value, FileNotFoundError) and "absent.rklcache" in str(e.value)
    with rkl.Model(model) as m:
        with pytest.raises(rkl.CacheNotFoundError):
            m.load_cache(missing)
        # Not JSON, not a file, or a format from the future.
        garbage = tmp_path / "garbage.rklcache"
        garbage.write_text("not a manifest\n")
        with pytest.raises(rkl.CacheInvalidError):
            m.load_cache(garbage)
        with pytest.raises(rkl.CacheInvalidError):
            rkl.inspect_cache(tmp_path)
        future = tmp_path / "future.rklcache"
        manifest = json.loads(open(path, encoding="utf-8").read())
        manifest["rkl_prompt_cache"] = 99
        future.write_text(json.dumps(manifest))
        with pytest.raises(rkl.CacheVersionError, match="99"):
            m.load_cache(future)
        with pytest.raises(rkl.CacheVersionError):
            rkl.inspect_cache(future)
        # None of that disturbed the model or the good cache.
        m.load_cache(path)
        assert m.generate(SYSTEM + QUESTION).text == expected(QUESTION)


def test_the_readme_snippet(tmp_path, model, monkeypatch, capsys):
    readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Prompt caches"):]
    code = section[section.index("```python\n") + 10:]
    code = code[:code.index("```")]
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.chdir(tmp_path)
    names = {}
    exec(compile(code.replace("qwen3-0.6b.rkllm", model), "README.md", "exec"), names)
    reply, tokens = capsys.readouterr().out.strip().splitlines()[-1].rsplit(" ", 1)
    assert reply == expected("What is an NPU?")
    with rkl.Model(model) as m:
        cold = m.generate(names["SYSTEM"] + "What is an NPU?").stats.prefill_tokens
    assert 0 < int(tokens) < cold
    assert rkl.inspect_cache(tmp_path / "system.rklcache").valid


# ------------------------------------------------------------ automatic caching


def test_automatic_caching_saves_then_hits(tmp_path, model):
    store = tmp_path / "auto"  # made by the model
    with rkl.Model(model, cache_dir=store, cache_max_bytes=64 << 20) as m:
        # generate(): the first request saves the prefix's cache; the
        # runtime sees only the question.
        first = m.generate(SYSTEM + QUESTION, cache_prefix=SYSTEM)
        assert first.stats.cache_use == "saved"
        assert first.text == expected(QUESTION)
        assert os.listdir(store)
        # stream(): the same prefix finds it.
        with m.stream(SYSTEM + "And a GPU?", cache_prefix=SYSTEM) as s:
            assert s.text() == expected("And a GPU?")
            assert s.stats.cache_use == "hit"
        # No prefix: none, and the whole prompt runs.
        plain = m.generate(QUESTION)
        assert (plain.stats.cache_use, plain.text) == ("none", expected(QUESTION))

        # A prefix that does not start the prompt is refused before anything runs.
        with pytest.raises(rkl.InvalidArgumentError, match="cache_prefix"):
            m.generate(QUESTION, cache_prefix=SYSTEM)
        with pytest.raises(rkl.InvalidArgumentError, match="cache_prefix"):
            m.stream(QUESTION, cache_prefix=SYSTEM)
        # The whole prompt is no prefix either (librkl's check).
        with pytest.raises(rkl.InvalidArgumentError):
            m.generate(SYSTEM, cache_prefix=SYSTEM)
    # A cap without a directory, or a negative one, is refused.
    with pytest.raises(rkl.InvalidArgumentError, match="cache_dir"):
        rkl.Model(model, cache_max_bytes=1)
    with pytest.raises(rkl.InvalidArgumentError, match="cache_max_bytes"):
        rkl.Model(model, cache_dir=store, cache_max_bytes=-1)
