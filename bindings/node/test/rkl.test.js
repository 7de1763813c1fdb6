'use strict';
// Tests against the simulator (sim/README.md). The make rule sets RKL_RUNTIME
// to the simulator's librkllmrt.so, LD_LIBRARY_PATH to the staged librkl, and
// RKLLM_SIM_ABI.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const koffi = require('koffi');
const rkl = require('rkl');

// The simulator's reply is this template with {prompt} replaced.
const REPLY = 'R[{prompt}] héllo wörld ✓ 🚀 日本語 ünïcödé, and a few more words to stream';
const expected = (prompt) => REPLY.replace('{prompt}', prompt);

const dir = fs.mkdtempSync(path.join(process.env.RKL_TEST_TMP || os.tmpdir(), 'rkl-node-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

function writeModel(name, extra) {
  const file = path.join(dir, `${name}.sim`);
  fs.writeFileSync(file, `RKLLM-SIM 1\nreply = ${REPLY}\n${extra}`);
  return file;
}
const fastModel = writeModel('fast', 'time_scale = 0\n');
// About 4 ms per token (~50 tokens): long enough to stop mid-way.
const slowModel = writeModel('slow', 'time_scale = 1\nprefill_us_per_token = 1000\ndecode_us_per_token = 4000\n');

async function collect(stream) {
  const pieces = [];
  for await (const piece of stream) pieces.push(piece);
  return pieces;
}

test('struct sizes come from the library', () => {
  const { OpenParams, GenerateParams } = rkl._types;
  const p = {};
  assert.equal(rkl._c.open_params_init(p, koffi.sizeof(OpenParams)), rkl.Status.OK);
  assert.equal(Number(p.struct_size), koffi.sizeof(OpenParams));
  // Every field holds the library's default: the offsets agree with its own.
  for (const f of ['max_context_len', 'max_new_tokens', 'top_k', 'n_keep', 'mirostat',
    'skip_special_token', 'embed_flash', 'enabled_cpus_num', 'base_domain_id']) {
    assert.equal(p[f], rkl.UNSET, f);
  }
  for (const f of ['top_p', 'temperature', 'repeat_penalty', 'frequency_penalty',
    'presence_penalty', 'mirostat_tau', 'mirostat_eta']) {
    assert.ok(Number.isNaN(p[f]), f);
  }
  assert.equal(p.model_path, null);
  // Version 2's fields (isolation, time limits): 0 means the default.
  for (const f of ['flags', 'call_timeout_ms', 'abort_grace_ms', 'max_restarts']) assert.equal(p[f], 0, f);
  // Version 3's (automatic prompt caching): off.
  assert.equal(p.cache_dir, null);
  assert.equal(Number(p.cache_max_bytes), 0);
  assert.equal(koffi.offsetof(OpenParams, 'cache_dir'), 120);
  // Version 4 (cross-attention, media tags, callbacks).
  assert.equal(p.use_cross_attn, 0);
  assert.equal(p.image_start, null);
  assert.equal(koffi.offsetof(OpenParams, 'use_cross_attn'), 136);
  assert.equal(koffi.offsetof(OpenParams, 'tokenizer'), 192);
  assert.equal(koffi.sizeof(OpenParams), 224);
  // A caller of version 1 (which ended where `flags` begins) is served; less is refused.
  const v1 = koffi.offsetof(OpenParams, 'flags');
  assert.equal(rkl._c.open_params_init({}, v1), rkl.Status.OK);
  assert.equal(rkl._c.open_params_init({}, v1 - 1), rkl.Status.INVALID_ARGUMENT);
  assert.match(rkl._lastErrorMessage(), /struct_size/);
  const g = {};
  // Version 1 of rkl_generate_params ended where cache_prefix_bytes begins.
  const g1 = koffi.offsetof(GenerateParams, 'cache_prefix_bytes');
  assert.equal(rkl._c.generate_params_init({}, g1 - 1), rkl.Status.INVALID_ARGUMENT);
  assert.equal(rkl._c.generate_params_init({}, g1), rkl.Status.OK);
  assert.equal(rkl._c.generate_params_init(g, koffi.sizeof(GenerateParams)), rkl.Status.OK);
  assert.equal(Number(g.struct_size), koffi.sizeof(GenerateParams));
  assert.equal(Number(g.cache_prefix_bytes), 0);
  assert.equal(g.sampling, null);
  assert.equal(koffi.offsetof(GenerateParams, 'cache_prefix_bytes'), 40);
  assert.equal(koffi.offsetof(GenerateParams, 'sampling'), 48);
  // Version 3 (other inputs): the text kind, no arrays.
  assert.equal(g.input_kind, 0);
  assert.equal(g.tokens, null);
  assert.equal(koffi.offsetof(GenerateParams, 'input_kind'), 56);
  assert.equal(koffi.offsetof(GenerateParams, 'cross_attn'), 120);
  assert.equal(koffi.sizeof(GenerateParams), 128);
  const { MediaInput, CrossAttnParams, Tensor } = rkl._types;
  assert.deepEqual([koffi.sizeof(MediaInput), koffi.sizeof(CrossAttnParams), koffi.sizeof(Tensor)], [64, 56, 40]);
  assert.equal(rkl._c.media_input_init({}, koffi.sizeof(MediaInput)), rkl.Status.OK);
  assert.equal(rkl._c.cross_attn_params_init({}, koffi.sizeof(CrossAttnParams)), rkl.Status.OK);
  // rkl_sampling_params: every field unset after init, so every offset
  // agrees with the library's.
  const { SamplingParams } = rkl._types;
  const s = {};
  assert.equal(rkl._c.sampling_params_init(s, koffi.sizeof(SamplingParams)), rkl.Status.OK);
  assert.equal(Number(s.struct_size), koffi.sizeof(SamplingParams));
  for (const f of ['top_k', 'mirostat']) assert.equal(s[f], rkl.UNSET, f);
  for (const f of ['top_p', 'temperature', 'repeat_penalty', 'frequency_penalty', 'presence_penalty',
    'mirostat_tau', 'mirostat_eta']) {
    assert.ok(Number.isNaN(s[f]), f);
  }
  assert.equal(koffi.offsetof(SamplingParams, 'mirostat'), 32);
  assert.equal(koffi.offsetof(SamplingParams, 'mirostat_eta'), 40);
  assert.equal(koffi.sizeof(SamplingParams), 48);
  assert.equal(rkl._c.sampling_params_init({}, koffi.sizeof(SamplingParams) - 1), rkl.Status.INVALID_ARGUMENT);
  assert.equal(koffi.offsetof(rkl._types.CStats, 'cache_use'), 80);
  assert.equal(koffi.sizeof(rkl._types.CStats), 88);
});

test('fields land where the library reads them', async () => {
  const model = rkl.open(fastModel, { maxNewTokens: 5 });
  try {
    let { text, stats } = await model.generate('limit');
    assert.equal(stats.finish, 'max_tokens');
    assert.equal(stats.tokens, 5);
    assert.ok(expected('limit').startsWith(text));
    ({ stats } = await model.generate('limit', { maxNewTokens: 3 }));
    assert.equal(stats.tokens, 3);
  } finally {
    model.close();
  }
  assert.throws(() => rkl.open(fastModel, { topP: 1.5 }), { code: 'RKL_INVALID_ARGUMENT', message: /top_p/ });
  assert.throws(() => rkl.open(fastModel, { noSuchOption: 1 }), TypeError);
  assert.throws(() => rkl.open(`${fastModel}\0.txt`), { code: 'RKL_INVALID_ARGUMENT', message: /NUL/ });
});

test('per-request sampling: applied on 1.3, refused on 1.2', async () => {
  const file = path.join(dir, 'sampling-reply.sim');
  fs.writeFileSync(file, 'RKLLM-SIM 1\nreply = [{sampling}]\ntime_scale = 0\n');
  const m = rkl.open(file, { topK: 7 });
  try {
    const sampling = { temperature: 0.25 };
    if (m.info.family === '1.3') {
      const { text } = await m.generate('x', { sampling });
      assert.match(text, /temperature=0\.25/);
      assert.match(text, /top_k=7 top_p=0\.9 /, 'the model\'s top_k, the default top_p');
      assert.match((await collect(m.stream('x', { sampling }))).join(''), /temperature=0\.25/);
    } else {
      await assert.rejects(m.generate('x', { sampling }), { code: 'RKL_NOT_SUPPORTED', message: /1\.3/ });
      assert.throws(() => m.stream('x', { sampling }), { code: 'RKL_NOT_SUPPORTED' });
    }
    assert.equal((await m.generate('x')).text, '[init]');
    await assert.rejects(m.generate('x', { sampling: { topP: 2 } }), { code: 'RKL_INVALID_ARGUMENT', message: /top_p/ });
    for (const bad of [{ temperature: NaN }, { topK: 1.5 }, { mirostat: 3 }]) {
      await assert.rejects(m.generate('x', { sampling: bad }), { code: 'RKL_INVALID_ARGUMENT' }, JSON.stringify(bad));
    }
    assert.throws(() => m.stream('x', { sampling: { temprature: 1 } }), TypeError);
  } finally {
    m.close();
  }
});

test('streamed text equals the reply', async () => {
  const model = rkl.open(fastModel);
  try {
    assert.throws(() => model.stream('a\0b'), { code: 'RKL_INVALID_ARGUMENT', message: /prompt contains a NUL/ });
    const abi = process.env.RKLLM_SIM_ABI;
    if (abi) assert.equal(model.info.family, abi);
    const stream = model.stream('hello');
    // A zero-cost generation comes in a batch or a few (all text queued at
    // each read), never a piece per token.
    const pieces = await collect(stream);
    assert.ok(pieces.length >= 1 && pieces.length < stream.stats.tokens, `${pieces.length} pieces`);
    assert.equal(pieces.join(''), expected('hello'));
    assert.equal(stream.stats.finish, 'end');
    const seen = [];
    const { text, stats } = await model.generate('again', { onText: (t) => seen.push(t) });
    assert.equal(text, expected('again'));
    assert.equal(seen.join(''), text);
    assert.ok(stats.tokens >= seen.length);
  } finally {
    model.close();
  }
});

test('a slow generation streams piece by piece, each whole characters', async () => {
  const model = rkl.open(slowModel);
  try {
    const stream = model.stream('slowly');
    const pieces = await collect(stream);
    assert.ok(pieces.length > 3, `${pieces.length} pieces`);
    assert.ok(pieces.every((p) => !p.includes('\uFFFD')));
    assert.equal(pieces.join(''), expected('slowly'));
  } finally {
    model.close();
  }
});

test('waiting for tokens does not block the event loop', async () => {
  const model = rkl.open(slowModel);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  try {
    const started = Date.now();
    const { text } = await model.generate('patience');
    const elapsed = Date.now() - started;
    assert.equal(text, expected('patience'));
    assert.ok(elapsed > 100, `took ${elapsed} ms`);
    assert.ok(ticks >= elapsed / 5 / 4, `${ticks} ticks in ${elapsed} ms`);
  } finally {
    clearInterval(timer);
    model.close();
  }
});

test('abort mid-stream', async () => {
  const model = rkl.open(slowModel);
  try {
    // model.abort(): the loop ends, the stream reports "aborted".
    let stream = model.stream('abort me');
    let text = '';
    for await (const piece of stream) {
      text += piece;
      if (text.length >= 3) model.abort();
    }
    assert.ok(text.length < expected('abort me').length);
    assert.ok(expected('abort me').startsWith(text));
    assert.equal(stream.stats.finish, 'aborted');

    // stream.abort() stops only that stream.
    stream = model.stream('one');
    const other = model.generate('two');
    text = '';
    for await (const piece of stream) {
      text += piece;
      stream.abort();
    }
    assert.equal(stream.stats.finish, 'aborted');
    assert.equal((await other).text, expected('two'));

    // An AbortSignal: the loop throws its reason.
    const controller = new AbortController();
    await assert.rejects(
      model.generate('signal', { signal: controller.signal, onText: () => controller.abort() }),
      { name: 'AbortError' },
    );

    // close() while a wait runs on a worker thread; then leaving a loop early.
    stream = model.stream('closed');
    setTimeout(() => stream.close(), 20);
    text = (await collect(stream)).join('');
    assert.ok(text.length < expected('closed').length);
    for await (const piece of model.stream('break')) {
      assert.ok(piece.length > 0);
      break;
    }
    assert.equal((await model.generate('after')).text, expected('after'));
  } finally {
    model.close();
  }
});

test('a bad model path throws RklError with the message', () => {
  assert.throws(() => rkl.open('/nonexistent/model.rkllm'), (err) => {
    assert.ok(err instanceof rkl.RklError && err instanceof Error);
    assert.equal(err.code, 'RKL_MODEL_NOT_FOUND');
    assert.equal(err.status, rkl.Status.MODEL_NOT_FOUND);
    assert.match(err.message, /^rkl_open: .*\/nonexistent\/model\.rkllm/);
    return true;
  });
  assert.throws(() => rkl.open(fastModel, { runtimePath: '/nonexistent/librkllmrt.so' }),
    { code: 'RKL_RUNTIME_NOT_FOUND', message: /\/nonexistent\/librkllmrt\.so/ });
});

test('use after close throws, never crashes', async () => {
  const model = rkl.open(fastModel);
  const orphan = model.stream('orphan');
  model.close();
  model.close(); // twice: harmless
  const closed = { code: 'RKL_BAD_HANDLE', message: /closed/ };
  assert.throws(() => model.stream('x'), closed);
  await assert.rejects(model.generate('x'), closed);
  assert.throws(() => model.abort(), closed);
  assert.throws(() => model.info, closed);
  // The stream outlived its model: it ends, then is closed (twice).
  await collect(orphan);
  assert.ok(['aborted', 'end'].includes(orphan.stats.finish));
  orphan.close();
  assert.deepEqual(await collect(orphan), []);
});

test('two concurrent generations are serialised', async () => {
  const model = rkl.open(slowModel);
  try {
    const [a, b] = await Promise.all([model.generate('first'), model.generate('second')]);
    assert.equal(a.text, expected('first'));
    assert.equal(b.text, expected('second'));
    const [early, late] = [a.stats, b.stats].sort((x, y) => x.queueMs - y.queueMs);
    // The later one queued about as long as the earlier one ran.
    assert.ok(late.queueMs >= 0.7 * (early.totalMs - early.queueMs), JSON.stringify([early, late]));
  } finally {
    model.close();
  }
});
