'use strict';
// Every input kind, both float outputs, cross-attention and media tags
// against the simulator (sim/README.md, "The reply" and "Infer modes").

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const rkl = require('rkl');
const { tmpDir } = require('../testlib/sim');

const DIM = 8;
const V13 = (process.env.RKLLM_SIM_ABI || '1.3') === '1.3';

function model(name, reply, options) {
  const file = path.join(tmpDir(), `inputs-${name}.sim`);
  fs.writeFileSync(file, `RKLLM-SIM 1\nreply = ${reply}\nhidden_size = ${DIM}\nvocab_size = 50\ntime_scale = 0\n`);
  const m = rkl.open(file, options);
  test.after(() => m.close());
  return m;
}

function fnv(bytes) {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h.toString(16).padStart(16, '0');
}
const bytes = (typed) => new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
const concat = (...parts) => Buffer.concat(parts.map((p) => Buffer.from(p)));

// The simulator's element [t][j] for input hash h, in u32 arithmetic.
function simValue(h, t, j) {
  const x = BigInt('0x' + h);
  const seed = Number((x ^ (x >> 32n)) & 0xffffffffn);
  return ((((seed + 131 * t + 7 * j) >>> 0) % 2003) - 1001) / 1024;
}

const floats = (n, salt = 0) => Float32Array.from({ length: n }, (_, i) => i * 0.25 - salt);

test('token ids and embeddings arrive exactly', async () => {
  const m = model('tokens', '[{input}|{prefill}]');
  const ids = new Int32Array([3, 1, 4, 1, 5]);
  const want = `[tokens n=5 fnv=${fnv(bytes(ids))}|5]`;
  assert.equal((await m.generate('', { tokens: ids })).text, want);
  assert.equal((await m.generate('', { tokens: [3, 1, 4, 1, 5] })).text, want, 'a plain array');
  const rows = floats(3 * DIM, 1);
  const got = await m.generate('', { embeddings: rows, embeddingDim: DIM });
  assert.equal(got.text, `[embed n=3 dim=${DIM} fnv=${fnv(bytes(rows))}|3]`);
  assert.equal(got.stats.prefillTokens, V13 ? 3 : got.stats.prefillTokens);
  assert.equal((await m.generate('', { embeddings: Array.from(rows), embeddingDim: DIM })).text, got.text);
});

test('images arrive with their shape and tags', async () => {
  const m = model('images', '[{input}|{prompt}]', { imageTags: ['<|vs|>', '<|ve|>', '<|pad|>'] });
  const values = floats(2 * 4 * DIM, 0.5);
  const prompt = '<image><image>Compare.';
  const { text } = await m.generate(prompt, { images: { values, count: 2, tokens: 4, dim: DIM, width: 448, height: 336 } });
  const h = fnv(concat(Buffer.from(prompt), bytes(values)));
  assert.equal(text, `[multimodal images=2 tokens=4 size=448x336 tags=<|vs|>|<|ve|>|<|pad|> fnv=${h}|${prompt}]`);
  await assert.rejects(m.generate('<image>', { images: { values, count: 2, tokens: 4, dim: DIM } }), /marker/);
});

test('videos need runtime 1.3', async () => {
  const m = model('videos', '[{input}]', { videoTags: ['<v>', '</v>', '<vp>'] });
  const videos = { values: floats(2 * 3 * 2 * DIM), count: 2, frames: 3, tokens: 2, dim: DIM, width: 64, height: 48 };
  const run = m.generate('<video>and<video>', { videos });
  if (V13) assert.match((await run).text, /videos=2 frames=3 frame_tokens=2 frame=64x48 video_tags=<v>\|<\/v>\|<vp>/);
  else await assert.rejects(run, (e) => e instanceof rkl.RklError && e.status === rkl.Status.NOT_SUPPORTED && /1\.3/.test(e.message));
});

test('hidden states and logits have the model file\'s shape and values', async () => {
  const m = model('floats', 'never generated');
  const prompt = 'Embed this sentence.';
  const h = fnv(Buffer.from(prompt));
  // The prefilled text is "<user>" + prompt + "</user><assistant>", a token per 4 characters.
  const tokens = Math.ceil(`<user>${prompt}</user><assistant>`.length / 4);
  const hs = await m.hiddenStates({ prompt });
  assert.ok(hs.values instanceof Float32Array);
  assert.deepEqual([hs.tokens, hs.dim, hs.values.length], [tokens, DIM, tokens * DIM]);
  for (const [t, j] of [[0, 0], [0, DIM - 1], [tokens - 1, 3]]) assert.equal(hs.values[t * DIM + j], simValue(h, t, j), `[${t}][${j}]`);
  assert.equal(hs.stats.tokens, 0);
  const lg = await m.logits({ prompt });
  assert.deepEqual([lg.tokens, lg.dim], [1, 50]);
  assert.equal(lg.values[0], simValue(h, 0, 0));
  assert.equal(lg.values[49], simValue(h, 0, 49));
  const rows = floats(2 * DIM, 3);
  const e = await m.hiddenStates({ embeddings: rows, embeddingDim: DIM });
  assert.equal(e.tokens, 2);
  assert.equal(e.values[DIM + 1], simValue(fnv(bytes(rows)), 1, 1));
  const ids = new Int32Array([7, 8, 9]);
  assert.equal((await m.logits({ tokens: ids })).values[5], simValue(fnv(bytes(ids)), 0, 5));
  const img = await m.hiddenStates({ prompt: '<image>x', images: { values: floats(DIM), count: 1, tokens: 1, dim: DIM } });
  assert.equal(img.dim, DIM);
  // Concurrent calls, the event loop free meanwhile.
  const all = await Promise.all([m.hiddenStates({ prompt }), m.logits({ prompt }), m.generate('x')]);
  assert.deepEqual(all[0].values, hs.values);
  assert.equal(all[2].text, 'never generated');
  const controller = new AbortController();
  controller.abort(new Error('stop'));
  await assert.rejects(m.hiddenStates({ prompt, signal: controller.signal }), /stop/);
});

test('cross-attention state is kept until replaced', async () => {
  const m = model('cross', '[{cross_attn}]', { useCrossAttn: true });
  const x = { kCache: floats(3 * 32), vCache: floats(3 * 32, 1), mask: floats(3), positions: new Int32Array([0, 1, 2]) };
  const want = `[tokens=3 fnv=${fnv(concat(bytes(x.kCache), bytes(x.vCache), bytes(x.mask), bytes(x.positions)))}]`;
  assert.equal((await m.generate('x', { crossAttn: x })).text, want);
  assert.equal((await m.generate('y')).text, want, 'the runtime keeps the state');
  await assert.rejects(m.generate('x', { crossAttn: { ...x, vCache: x.vCache.subarray(0, 3) } }), /differ/);
  const plain = model('plain', 'x');
  await assert.rejects(plain.generate('x', { crossAttn: x }), /use_cross_attn/);
});

test('bad inputs are refused', async () => {
  const m = model('bad', 'x');
  const invalid = (e) => e instanceof rkl.RklError && (e.status === rkl.Status.INVALID_ARGUMENT || e.status === rkl.Status.NULL_ARGUMENT);
  const shapes = [
    { tokens: [] },
    { tokens: new Int32Array(0) },
    { tokens: [1, -1] },
    { tokens: [1.5] },
    { tokens: [2 ** 31] },
    { embeddings: floats(7), embeddingDim: DIM },
    { embeddings: new Float32Array(0), embeddingDim: DIM },
    { embeddings: floats(8), embeddingDim: 0 },
    { embeddings: floats(8) },
    { embeddings: floats(8), embeddingDim: 2 ** 64 },
    { embeddings: floats(8), embeddingDim: -8 },
    { embeddings: [NaN, 0, 0, 0, 0, 0, 0, 0], embeddingDim: DIM },
    { tokens: [1], embeddings: floats(8), embeddingDim: DIM },
    { prompt: '<image>', images: { values: floats(8), count: 2 ** 40, tokens: 2 ** 40, dim: DIM } },
    { prompt: '<image>', images: { values: floats(8), count: 2, tokens: 1, dim: DIM } },
    { prompt: '<image>', images: { count: 1, tokens: 1, dim: 0 } },
    { prompt: '<image>', images: { values: floats(8), count: 1, frames: 2, tokens: 1, dim: 4 } },
  ];
  for (const req of shapes) {
    await assert.rejects(m.hiddenStates(req), invalid, JSON.stringify(req));
    await assert.rejects(m.generate(req.prompt || '', req), invalid, JSON.stringify(req));
  }
  const types = [
    { tokens: new Float32Array(2) },
    { tokens: 'abc' },
    { embeddings: new Float64Array(8), embeddingDim: DIM },
    { embeddings: ['a'], embeddingDim: 1 },
    { images: 5 },
  ];
  for (const req of types) await assert.rejects(m.logits(req), TypeError, JSON.stringify(req));
  await assert.rejects(m.generate('text', { tokens: [1] }), /no prompt text/);
});

test('function tools reach the runtime, and tool results go with role tool', async () => {
  const m = model('tools', '{role}: {tools}');
  const tools = '[{"name": "clock"}]';
  m.setFunctionTools('You may call tools ✓', tools, '<tool_response>');
  assert.equal((await m.generate('what time is it?')).text, `user: ${tools}`);
  assert.equal((await m.generate('{"time": "12:00"}', { role: 'tool' })).text, `tool: ${tools}`);
  assert.throws(() => m.setFunctionTools('a\0b', tools, ''), { code: 'RKL_INVALID_ARGUMENT', message: /NUL/ });
  assert.throws(() => m.setFunctionTools('s', 42, ''), TypeError);
});
