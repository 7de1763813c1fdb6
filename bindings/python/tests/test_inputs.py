"""Every input kind, both float outputs, cross-attention, media tags and the
caller's tokenizer/embedder, against the simulator (sim/README.md, "The
reply" and "Infer modes")."""
import array
import os
import struct

import pytest

import rkl

DIM = 8


def model_file(tmp_path, reply: str, name: str = "inputs") -> str:
    path = os.path.join(str(tmp_path), name + ".sim")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"RKLLM-SIM 1\nreply = {reply}\nhidden_size = {DIM}\nvocab_size = 50\ntime_scale = 0\n")
    return path


def fnv(data: bytes) -> str:
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def sim_value(h: str, t: int, j: int) -> float:
    """The simulator's element [t][j] for input hash h (u32 arithmetic)."""
    x = int(h, 16)
    seed = (x ^ (x >> 32)) & 0xFFFFFFFF
    return ((seed + 131 * t + 7 * j) % 2**32 % 2003 - 1001.0) / 1024.0


def floats(n: int, salt: float = 0.0) -> array.array:
    return array.array("f", (i * 0.25 - salt for i in range(n)))


def test_struct_sizes_are_accepted_by_the_library():
    for cls, init in ((rkl.MediaInput, rkl._media_input_init), (rkl.CrossAttnParams, rkl._cross_attn_params_init),
                      (rkl.GenerateParams, rkl._generate_params_init), (rkl.OpenParams, rkl._open_params_init)):
        s = cls()
        assert init(rkl.byref(s), rkl.ctypes.sizeof(s)) == rkl.OK, cls
        assert s.struct_size == rkl.ctypes.sizeof(s)
    assert (rkl.ctypes.sizeof(rkl.MediaInput), rkl.ctypes.sizeof(rkl.CrossAttnParams),
            rkl.ctypes.sizeof(rkl.CTensor)) == (64, 56, 40)
    assert (rkl.GenerateParams.input_kind.offset, rkl.GenerateParams.cross_attn.offset,
            rkl.ctypes.sizeof(rkl.GenerateParams)) == (56, 120, 128)
    assert (rkl.OpenParams.use_cross_attn.offset, rkl.OpenParams.tokenizer.offset,
            rkl.ctypes.sizeof(rkl.OpenParams)) == (136, 192, 224)


def test_tokens_and_embeddings_arrive_exactly(tmp_path):
    with rkl.Model(model_file(tmp_path, "[{input}|{prefill}]")) as m:
        ids = [3, 1, 4, 1, 5]
        raw = struct.pack("<5i", *ids)
        want = f"[tokens n=5 fnv={fnv(raw)}|5]"
        # Any int32 buffer, or a list.
        for given in (ids, array.array("i", ids), memoryview(array.array("i", ids)), raw, bytearray(raw)):
            assert m.generate(tokens=given).text == want, type(given)
        rows = floats(3 * DIM, 1.0)
        want = f"[embed n=3 dim={DIM} fnv={fnv(rows.tobytes())}|3]"
        assert m.generate(embeddings=rows, embedding_dim=DIM).text == want
        assert m.generate(embeddings=rows.tobytes(), embedding_dim=DIM).text == want
        assert "".join(m.stream(embeddings=list(rows), embedding_dim=DIM)) == want
        try:
            import numpy as np  # optional: never required
        except ImportError:
            return
        assert m.generate(embeddings=np.asarray(rows, dtype=np.float32).reshape(3, DIM)).text == want
        assert m.generate(tokens=np.array(ids, dtype=np.int32)).text.startswith("[tokens n=5 ")
        with pytest.raises(TypeError):
            m.generate(tokens=np.array(ids, dtype=np.int64))
        with pytest.raises(ValueError):
            m.generate(embeddings=np.zeros((DIM, 6), dtype=np.float32)[:, ::2], embedding_dim=3)


def test_images_arrive_with_their_shape_and_tags(tmp_path):
    with rkl.Model(model_file(tmp_path, "[{input}|{prompt}]"), image_tags=("<|vs|>", "<|ve|>", "<|pad|>")) as m:
        values = floats(2 * 4 * DIM, 0.5)
        prompt = "<image><image>Compare."
        got = m.generate(prompt, images=rkl.Images(values, count=2, tokens=4, dim=DIM, width=448, height=336)).text
        h = fnv(prompt.encode() + values.tobytes())
        assert got == f"[multimodal images=2 tokens=4 size=448x336 tags=<|vs|>|<|ve|>|<|pad|> fnv={h}|{prompt}]"
        with pytest.raises(rkl.InvalidArgumentError, match="marker"):
            m.generate("<image>", images=rkl.Images(values, count=2, tokens=4, dim=DIM))


def test_videos_need_1_3(tmp_path, abi):
    with rkl.Model(model_file(tmp_path, "[{input}]"), video_tags=("<v>", "</v>", "<vp>")) as m:
        videos = rkl.Videos(floats(2 * 3 * 2 * DIM), count=2, frames=3, tokens=2, dim=DIM, width=64, height=48)
        if abi == "1.3":
            got = m.generate("<video>and<video>", videos=videos).text
            assert "videos=2 frames=3 frame_tokens=2 frame=64x48 video_tags=<v>|</v>|<vp>" in got
        else:
            with pytest.raises(rkl.NotSupportedError, match="1.3"):
                m.generate("<video>and<video>", videos=videos)


def test_hidden_states_and_logits(tmp_path):
    with rkl.Model(model_file(tmp_path, "never generated")) as m:
        prompt = "Embed this sentence."
        h = fnv(prompt.encode())
        hs = m.hidden_states(prompt)
        # The prefilled text is "<user>" + prompt + "</user><assistant>", a token per 4 characters.
        tokens = -(-len("<user>" + prompt + "</user><assistant>") // 4)
        assert (hs.tokens, hs.dim, len(hs.values)) == (tokens, DIM, tokens * DIM)
        assert isinstance(hs.values, array.array) and hs.values.typecode == "f"
        for t, j in ((0, 0), (0, DIM - 1), (tokens - 1, 3)):
            assert hs.row(t)[j] == sim_value(h, t, j), (t, j)
        assert hs.row(-1) == hs.row(tokens - 1) and len(hs.row(0)) == DIM
        with pytest.raises(IndexError):
            hs.row(tokens)
        assert hs.stats.tokens == 0
        lg = m.logits(prompt)
        assert (lg.tokens, lg.dim) == (1, 50)
        assert (lg.values[0], lg.values[49]) == (sim_value(h, 0, 0), sim_value(h, 0, 49))
        rows = floats(2 * DIM, 3.0)
        hs = m.hidden_states(embeddings=rows, embedding_dim=DIM)
        assert hs.tokens == 2 and hs.row(1)[1] == sim_value(fnv(rows.tobytes()), 1, 1)
        ids = array.array("i", [7, 8, 9])
        assert m.logits(tokens=ids).values[5] == sim_value(fnv(ids.tobytes()), 0, 5)
        img = floats(DIM)
        assert m.hidden_states("<image>x", images=rkl.Images(img, 1, 1, DIM)).dim == DIM
        assert m.generate("x").text == "never generated"


def test_cross_attention_is_kept_until_replaced(tmp_path):
    with rkl.Model(model_file(tmp_path, "[{cross_attn}]"), use_cross_attn=True) as m:
        c = rkl.CrossAttention(floats(3 * 32), floats(3 * 32, 1.0), floats(3), array.array("i", [0, 1, 2]))
        raw = c.k_cache.tobytes() + c.v_cache.tobytes() + c.mask.tobytes() + c.positions.tobytes()
        want = f"[tokens=3 fnv={fnv(raw)}]"
        assert m.generate("x", cross_attn=c).text == want
        assert m.generate("y").text == want, "the runtime keeps the state"
        with pytest.raises(rkl.InvalidArgumentError, match="differ"):
            m.generate("x", cross_attn=rkl.CrossAttention(c.k_cache, c.v_cache[:3], c.mask, c.positions))
    with rkl.Model(model_file(tmp_path, "x", "plain")) as m:
        with pytest.raises(rkl.InvalidArgumentError, match="use_cross_attn"):
            m.generate("x", cross_attn=c)


def test_bad_inputs_are_refused(tmp_path):
    with rkl.Model(model_file(tmp_path, "x")) as m:
        value_errors = [
            dict(tokens=[]),  # empty
            dict(tokens=array.array("i")),
            dict(tokens=[1, -1]),
            dict(embeddings=floats(7), embedding_dim=DIM),  # not whole rows
            dict(embeddings=b"", embedding_dim=DIM),
            dict(embeddings=floats(8), embedding_dim=0),
            dict(embeddings=floats(8), embedding_dim=2**64),  # would wrap in a size_t
            dict(embeddings=[float("nan")] * DIM, embedding_dim=DIM),
            dict(embeddings=b"123", embedding_dim=DIM),  # not whole floats
            dict(tokens=[1], embeddings=floats(8), embedding_dim=DIM),  # two inputs
            dict(images=rkl.Images(floats(8), count=2**62, tokens=2**62, dim=DIM)),  # overflows size_t
            dict(images=rkl.Images(floats(8), count=2, tokens=1, dim=DIM)),
            dict(images=rkl.Images(b"", count=1, tokens=1, dim=0)),
            dict(embeddings=memoryview(floats(16))[::2], embedding_dim=DIM),  # not contiguous
        ]
        for kw in value_errors:
            prompt = "<image>" if "images" in kw else ""
            with pytest.raises(ValueError):
                m.generate(prompt, **kw)
            with pytest.raises(ValueError):
                m.hidden_states(prompt, **kw)
        type_errors = [
            dict(tokens=array.array("d", [1.0])),
            dict(tokens=array.array("h", [1])),
            dict(tokens=floats(2)),
            dict(embeddings=array.array("i", range(8)), embedding_dim=DIM),
            dict(embeddings=object(), embedding_dim=DIM),
            dict(embeddings=floats(8)),  # 1-D without embedding_dim
            dict(embeddings=floats(8), embedding_dim=8.0),
            dict(images=object()),
            dict(tokens=["a"]),
        ]
        for kw in type_errors:
            with pytest.raises(TypeError):
                m.logits(**kw)
        with pytest.raises(rkl.InvalidArgumentError, match="no prompt text"):
            m.generate("text", tokens=[1])
        with pytest.raises(TypeError):
            m.generate(token=[1])


def test_tokenizer_and_embedder_are_called_on_1_3_only(tmp_path, abi):
    calls = []

    def tokenize(text):
        calls.append(text)
        return [len(w) % 50 for w in text.split()]

    def embed(ids):
        return [i + 0.5 for i in ids for _ in range(DIM)]

    path = model_file(tmp_path, "[{tokenizer}|{embed}|{prefill}]", "hooks")
    if abi != "1.3":
        with pytest.raises(rkl.NotSupportedError):
            rkl.Model(path, tokenizer=tokenize, embedder=embed)
        return
    m = rkl.Model(path, tokenizer=tokenize, embedder=embed)
    del tokenize, embed  # the model keeps the callbacks alive
    import gc
    gc.collect()
    prefilled = "<user>one three fifteen</user><assistant>"
    ids = [len(w) % 50 for w in prefilled.split()]
    rows = array.array("f", [i + 0.5 for i in ids for _ in range(DIM)])
    got = m.generate("one three fifteen").text
    assert got == f"[n={len(ids)} fnv={fnv(struct.pack(f'<{len(ids)}i', *ids))}|fnv={fnv(rows.tobytes())}|{len(ids)}]"
    assert calls == [prefilled]
    m.close()

    def broken(text):
        raise KeyError("no such word")

    with rkl.Model(path, tokenizer=broken) as m:
        with pytest.raises(rkl.RuntimeFailedError) as e:
            m.generate("x")
        assert isinstance(e.value.__cause__, KeyError)
    with rkl.Model(path, embedder=lambda ids: [0.0]) as m:  # too few floats, but without a tokenizer never called
        assert m.generate("x").text.startswith("[builtin|builtin|")
    with pytest.raises(TypeError):
        rkl.Model(path, tokenizer="not callable")


def test_function_tools_reach_the_runtime(tmp_path):
    with rkl.Model(model_file(tmp_path, "{role}: {tools}", "tools")) as m:
        tools = '[{"name": "clock"}]'
        m.set_function_tools("You may call tools ✓", tools, "<tool_response>")
        assert m.generate("what time is it?").text == "user: " + tools
        assert m.generate('{"time": "12:00"}', role="tool").text == "tool: " + tools
        with pytest.raises(rkl.InvalidArgumentError, match="NUL"):
            m.set_function_tools("a\0b", tools, "")
        with pytest.raises(TypeError):
            m.set_function_tools("s", 42, "")  # type: ignore[arg-type]
