'use strict';
// Prompt caches: saveCache, loadCache, releaseCache, inspectCache, against
// the simulator (which prefills ceil(chars / 4) tokens, writes 16 bytes plus
// kv_bytes_per_token per prompt token, and answers {prompt} with the text
// the runtime received).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const rkl = require('rkl');
const { expected, subDir, writeModel, collect } = require('../testlib/sim');

const KV = 'time_scale = 0\nkv_bytes_per_token = 64\n';
const modelA = writeModel('cache-a', `${KV}name = model-a\n`);
const modelB = writeModel('cache-b', `${KV}name = model-b\n# another model: other bytes, other fingerprint\n`);

// The fixed start of every request that uses the cache (with a non-ASCII
// character among its first 80, where bytes and characters differ).
const SYSTEM = 'You are a careful assistant on a Rockchip bóard. Answer briefly, in the user\'s '
  + 'language; say so when you do not know. Keep numbers exact and name their units. ';
const QUESTION = 'What is the NPU\'s peak throughput?';

const HEX32 = /^[0-9a-f]{32}$/;
const family = () => process.env.RKLLM_SIM_ABI || '1.3';

test('save, then load in a fresh model: same reply, shorter prefill', async () => {
  const file = path.join(subDir('basic'), 'system ✓.rklcache');
  const before = Math.floor(Date.now() / 1000);
  const m1 = rkl.open(modelA);
  let info;
  try {
    info = await m1.saveCache(file, SYSTEM);
    assert.equal(m1.kvCacheTokens(), 0); // the save leaves the history empty
  } finally {
    m1.close();
  }
  assert.equal(info.verdict, 'valid');
  assert.equal(info.verdictStatus, rkl.Status.OK);
  assert.equal(info.verdictCode, 'RKL_OK');
  assert.equal(info.verdictMessage, '');
  assert.equal(info.manifestPath, file);
  assert.equal(info.formatVersion, 1);
  assert.equal(info.maxContextLen, 0);
  assert.equal(info.libraryVersion, rkl.version());
  assert.equal(info.runtimeFamily, family());
  assert.equal(typeof info.runtimeVersion, 'string');
  assert.equal(info.modelPath, modelA);
  const stat = fs.statSync(modelA, { bigint: true });
  assert.equal(info.modelSize, Number(stat.size));
  assert.equal(info.modelMtimeNs, stat.mtimeNs);
  assert.match(info.modelFingerprint, HEX32);
  assert.match(info.promptHash, HEX32);
  assert.equal(info.promptBytes, Buffer.byteLength(SYSTEM));
  assert.ok(info.promptBytes > SYSTEM.length);
  assert.equal(info.promptPreview, SYSTEM.slice(0, 80));
  assert.equal(info.role, 'user');
  assert.equal(info.enableThinking, false);
  assert.equal(info.chatTemplate, null);
  assert.equal(path.dirname(info.payloadPath), path.dirname(file));
  assert.equal(fs.statSync(info.payloadPath).size, info.payloadSize);
  assert.match(info.payloadChecksum, HEX32);
  assert.ok(info.createdUnix >= before && info.createdUnix <= Date.now() / 1000 + 1);
  // Only the manifest and its payload, no temporaries.
  assert.deepEqual(fs.readdirSync(path.dirname(file)).sort(), [path.basename(file), path.basename(info.payloadPath)].sort());
  // The save run's figures: it stops after the first token. 1.2 runtimes
  // stop it with an abort and then may report no runtime counters (0).
  const saved = info.saveStats;
  assert.ok(saved && saved.tokens <= 1, JSON.stringify(saved));
  if (family() === '1.3') assert.ok(saved.prefillTokens > 20, JSON.stringify(saved));
  if (saved.prefillTokens > 0) assert.equal(info.payloadSize, 16 + saved.prefillTokens * 64);

  // Without the cache, the whole prompt is prefilled.
  const full = SYSTEM + QUESTION;
  const cold = rkl.open(modelA);
  let coldStats;
  try {
    const r = await cold.generate(full);
    assert.equal(r.text, expected(full));
    coldStats = r.stats;
  } finally {
    cold.close();
  }

  // A fresh model loads it: the full prompt is given, only the rest is sent.
  const m2 = rkl.open(modelA);
  try {
    const loaded = await m2.loadCache(file);
    assert.equal(loaded.verdict, 'valid');
    assert.equal(loaded.saveStats, null);
    assert.equal(loaded.promptHash, info.promptHash);
    assert.equal(loaded.payloadChecksum, info.payloadChecksum);
    assert.ok(m2.kvCacheTokens() > 20, 'the cached prompt is the history now');

    const warm = await m2.generate(full);
    assert.equal(warm.text, expected(QUESTION));
    assert.equal(warm.stats.finish, 'end');
    assert.ok(warm.stats.prefillTokens > 0, JSON.stringify(warm.stats));
    assert.ok(warm.stats.prefillTokens < coldStats.prefillTokens / 2,
      `${warm.stats.prefillTokens} vs ${coldStats.prefillTokens} prefilled`);
    assert.ok(warm.stats.prefillMs < coldStats.prefillMs);
    // Again, as a stream (nothing is used up).
    assert.equal((await collect(m2.stream(SYSTEM + 'And the memory?'))).join(''), expected('And the memory?'));

    // The prefix rule: a prompt that does not start with the cached one, or
    // is only the cached one, is refused and nothing runs.
    for (const wrong of ['What is the NPU?', SYSTEM, SYSTEM.slice(1) + QUESTION]) {
      assert.throws(() => m2.stream(wrong), (err) => {
        assert.ok(err instanceof rkl.CacheError);
        assert.equal(err.code, 'RKL_CACHE_MISMATCH');
        assert.match(err.message, /^rkl_stream_open: /);
        return true;
      });
    }
    await assert.rejects(m2.generate('plain'), { code: 'RKL_CACHE_MISMATCH' });
    // Saving is refused while a cache is loaded.
    await assert.rejects(m2.saveCache(path.join(subDir('basic'), 'other.rklcache'), SYSTEM),
      { code: 'RKL_INVALID_ARGUMENT', message: /^rkl_cache_save: .*release/ });

    // Released: plain prompts again, the history is empty.
    m2.releaseCache();
    assert.equal(m2.kvCacheTokens(), 0);
    assert.equal((await m2.generate('plain')).text, expected('plain'));
    m2.releaseCache(); // harmless without a cache
  } finally {
    m2.close();
  }
  await assert.rejects(m2.loadCache(file), { code: 'RKL_BAD_HANDLE' });
  await assert.rejects(m2.saveCache(file, SYSTEM), { code: 'RKL_BAD_HANDLE' });
  assert.throws(() => m2.releaseCache(), { code: 'RKL_BAD_HANDLE' });
});

test('inspect: valid, stale when the model changed, refusals', async () => {
  const dir = subDir('inspect');
  const file = path.join(dir, 'c.rklcache');
  const modelC = writeModel('cache-c', `${KV}name = model-c\n`);
  const m = rkl.open(modelC);
  let saved;
  try {
    saved = await m.saveCache(file, SYSTEM);
  } finally {
    m.close();
  }
  const seen = await rkl.inspectCache(file);
  assert.equal(seen.verdict, 'valid');
  assert.equal(seen.verdictCode, 'RKL_OK');
  assert.equal(seen.saveStats, null);
  for (const key of ['manifestPath', 'modelPath', 'modelSize', 'modelMtimeNs', 'modelFingerprint',
    'promptHash', 'promptBytes', 'promptPreview', 'role', 'runtimeFamily', 'payloadPath',
    'payloadSize', 'payloadChecksum', 'createdUnix', 'libraryVersion']) {
    assert.equal(seen[key], saved[key], key);
  }

  // The model file changed: stale, and a model opened from it refuses it.
  fs.appendFileSync(modelC, '# edited after the save\n');
  const stale = await rkl.inspectCache(file);
  assert.equal(stale.verdict, 'stale');
  assert.equal(stale.verdictStatus, rkl.Status.CACHE_MISMATCH);
  assert.equal(stale.verdictCode, 'RKL_CACHE_MISMATCH');
  assert.ok(stale.verdictMessage.length > 0);
  assert.equal(stale.promptHash, saved.promptHash); // every field still filled
  const edited = rkl.open(modelC);
  try {
    await assert.rejects(edited.loadCache(file), { name: 'CacheError', code: 'RKL_CACHE_MISMATCH' });
  } finally {
    edited.close();
  }

  // No manifest to report on: rejected with the status a load would give.
  await assert.rejects(rkl.inspectCache(path.join(dir, 'none.rklcache')), { name: 'CacheError', code: 'RKL_CACHE_NOT_FOUND' });
  const garbage = path.join(dir, 'garbage.rklcache');
  fs.writeFileSync(garbage, 'not a manifest\n');
  await assert.rejects(rkl.inspectCache(garbage), { name: 'CacheError', code: 'RKL_CACHE_INVALID', status: 17 });
  const future = path.join(dir, 'future.rklcache');
  const manifest = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.equal(manifest.rkl_prompt_cache, 1);
  fs.writeFileSync(future, JSON.stringify({ ...manifest, rkl_prompt_cache: 99 }));
  await assert.rejects(rkl.inspectCache(future), { name: 'CacheError', code: 'RKL_CACHE_VERSION', status: 18 });
  await assert.rejects(rkl.inspectCache(`${file}\0x`), { code: 'RKL_INVALID_ARGUMENT', message: /NUL/ });
});

test('damaged payloads and other models\' caches are refused with their own codes', async () => {
  const dir = subDir('damaged');
  const maker = rkl.open(modelA);
  const caches = {};
  try {
    for (const name of ['good', 'truncated', 'missing', 'corrupt']) {
      caches[name] = await maker.saveCache(path.join(dir, `${name}.rklcache`), SYSTEM);
    }
  } finally {
    maker.close();
  }
  fs.truncateSync(caches.truncated.payloadPath, caches.truncated.payloadSize - 1);
  fs.unlinkSync(caches.missing.payloadPath);
  const bytes = fs.readFileSync(caches.corrupt.payloadPath);
  bytes[bytes.length - 5] ^= 0x01; // same size, other checksum
  fs.writeFileSync(caches.corrupt.payloadPath, bytes);

  const ofB = path.join(dir, 'of-b.rklcache');
  const other = rkl.open(modelB);
  try {
    await other.saveCache(ofB, SYSTEM);
  } finally {
    other.close();
  }

  const m = rkl.open(modelA);
  try {
    await m.loadCache(caches.good.manifestPath);
    const cases = [
      ['truncated', 'RKL_CACHE_TRUNCATED'],
      ['missing', 'RKL_CACHE_TRUNCATED'],
      ['corrupt', 'RKL_CACHE_CORRUPT'],
    ];
    for (const [name, code] of cases) {
      const seen = await rkl.inspectCache(caches[name].manifestPath);
      assert.equal(seen.verdict, 'invalid', name);
      assert.equal(seen.verdictCode, code, name);
      assert.equal(seen.verdictStatus, rkl.Status[code.slice(4)], name);
      assert.ok(seen.verdictMessage.length > 0, name);
      await assert.rejects(m.loadCache(caches[name].manifestPath), (err) => {
        assert.ok(err instanceof rkl.CacheError, name);
        assert.equal(err.code, code, name);
        assert.match(err.message, /^rkl_cache_load: /);
        return true;
      });
    }
    // Made for another model: the cache itself is whole (valid on its
    // own), but this model refuses it and says why.
    assert.equal((await rkl.inspectCache(ofB)).verdict, 'valid');
    await assert.rejects(m.loadCache(ofB), (err) => {
      assert.ok(err instanceof rkl.CacheError);
      assert.equal(err.code, 'RKL_CACHE_MISMATCH');
      assert.equal(err.status, 21);
      assert.match(err.message, /^rkl_cache_load: .*model/);
      return true;
    });
    await assert.rejects(m.loadCache(path.join(dir, 'none.rklcache')), { code: 'RKL_CACHE_NOT_FOUND' });
    // Failed loads left the good cache loaded.
    assert.equal((await m.generate(SYSTEM + QUESTION)).text, expected(QUESTION));
  } finally {
    m.close();
  }
});

test('saving records the settings and refuses bad input', async () => {
  const dir = subDir('settings');
  const m = rkl.open(modelA, { maxContextLen: 2048 });
  try {
    m.setChatTemplate('Be brief ✓', '<u>', '</u>');
    const info = await m.saveCache(path.join(dir, 'tool.rklcache'), SYSTEM, { role: 'tool', enableThinking: true });
    assert.equal(info.role, 'tool');
    assert.equal(info.enableThinking, true);
    assert.equal(info.maxContextLen, 2048);
    assert.deepEqual(info.chatTemplate, { system: 'Be brief ✓', prefix: '<u>', postfix: '</u>' });

    await assert.rejects(m.saveCache(path.join(dir, 'no-such-dir', 'c.rklcache'), SYSTEM), { code: 'RKL_IO', message: /^rkl_cache_save: / });
    await assert.rejects(m.saveCache(path.join(dir, 'e.rklcache'), ''), { code: 'RKL_INVALID_ARGUMENT' });
    await assert.rejects(m.saveCache(path.join(dir, 'n.rklcache'), 'a\0b'), { code: 'RKL_INVALID_ARGUMENT', message: /NUL/ });
    await assert.rejects(m.saveCache(path.join(dir, 'l.rklcache'), SYSTEM, { lora: 'x' }), { code: 'RKL_INVALID_ARGUMENT' });
    assert.deepEqual(fs.readdirSync(dir).filter((f) => !f.startsWith('tool.')), []);
  } finally {
    m.close();
  }
});

test('saving runs off the event loop, and abort() stops it', async () => {
  const dir = subDir('slow');
  // About 250 ms of prefill for SYSTEM (~40 tokens).
  const slow = writeModel('cache-slow', 'time_scale = 1\nkv_bytes_per_token = 64\nprefill_us_per_token = 6000\ndecode_us_per_token = 1000\n');
  const m = rkl.open(slow);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  try {
    const started = Date.now();
    const info = await m.saveCache(path.join(dir, 'slow.rklcache'), SYSTEM);
    const elapsed = Date.now() - started;
    assert.equal(info.verdict, 'valid');
    assert.ok(elapsed > 150, `took ${elapsed} ms`);
    assert.ok(ticks >= elapsed / 5 / 4, `${ticks} ticks in ${elapsed} ms`);

    // Aborted mid-prefill: RKL_ABORTED, and the cache at the path is intact.
    const saving = m.saveCache(path.join(dir, 'slow.rklcache'), SYSTEM + 'more');
    setTimeout(() => m.abort(), 50);
    await assert.rejects(saving, (err) => {
      assert.equal(err.constructor, rkl.RklError);
      assert.equal(err.code, 'RKL_ABORTED');
      assert.equal(err.status, 22);
      return true;
    });
    const after = await rkl.inspectCache(path.join(dir, 'slow.rklcache'));
    assert.equal(after.verdict, 'valid');
    assert.equal(after.payloadChecksum, info.payloadChecksum);
  } finally {
    clearInterval(timer);
    m.close();
  }
});

test('the README\'s prompt-cache example runs as written', async () => {
  // The README as installed with the package.
  const readme = fs.readFileSync(path.join(path.dirname(require.resolve('rkl/package.json')), 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Prompt caches'));
  const code = section.slice(section.indexOf('```js\n') + 6, section.indexOf('\n```', section.indexOf('```js\n')));
  const dir = subDir('readme');
  const model = rkl.open(modelA);
  const AsyncFunction = (async () => {}).constructor;
  const run = new AsyncFunction('rkl', 'model', `${code
    .replaceAll("'qwen3-0.6b.rkllm'", JSON.stringify(modelA))
    .replaceAll("'system.rklcache'", JSON.stringify(path.join(dir, 'system.rklcache')))}
    ;return { text, stats, other };`);
  try {
    const { text, stats, other } = await run(rkl, model);
    other.close();
    assert.equal(text, expected('What is an NPU?'));
    // Only the question, in the simulator's default template, was prefilled
    // (ceil(characters / 4) tokens).
    assert.equal(stats.prefillTokens, Math.ceil('<user>What is an NPU?</user><assistant>'.length / 4));
  } finally {
    model.close();
  }
});

test('process.exit() during a save is not held up by it', () => {
  const dir = subDir('exit');
  // About 5 s of prefill, if it were left to run.
  const slow = writeModel('cache-exit', 'time_scale = 1\nprefill_us_per_token = 200000\n');
  const script = `
    const rkl = require(${JSON.stringify(require.resolve('rkl'))});
    const m = rkl.open(${JSON.stringify(slow)});
    m.saveCache(${JSON.stringify(path.join(dir, 'c.rklcache'))}, 'a system prompt of some length, about 5 s');
    setTimeout(() => process.exit(3), 200);`;
  const started = Date.now();
  const r = require('node:child_process').spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
  const took = Date.now() - started;
  assert.equal(r.status, 3, r.stderr);
  assert.ok(took < 3000, `exit took ${took} ms`);
  assert.deepEqual(fs.readdirSync(dir), []); // and left nothing behind
});

test('automatic prompt caching: saved, then hit; a prefix must start the prompt', async () => {
  const dir = path.join(subDir('auto'), 'store'); // made by open()
  const model = rkl.open(modelA, { cacheDir: dir, cacheMaxBytes: 64 * 2 ** 20 });
  try {
    // generate(): the first request saves the prefix's cache; the runtime
    // sees only the question.
    let { text, stats } = await model.generate(SYSTEM + QUESTION, { cachePrefix: SYSTEM });
    assert.equal(stats.cacheUse, 'saved');
    assert.equal(text, expected(QUESTION));
    assert.ok(fs.readdirSync(dir).length > 0);
    // stream(): the same prefix finds it.
    const stream = model.stream(`${SYSTEM}And the memory?`, { cachePrefix: SYSTEM });
    assert.equal((await collect(stream)).join(''), expected('And the memory?'));
    assert.equal(stream.stats.cacheUse, 'hit');
    // No prefix: none, and the whole prompt runs.
    ({ text, stats } = await model.generate(QUESTION));
    assert.equal(stats.cacheUse, 'none');
    assert.equal(text, expected(QUESTION));

    // A prefix that does not start the prompt is refused before anything runs.
    const refused = { code: 'RKL_INVALID_ARGUMENT', message: /cachePrefix/ };
    await assert.rejects(model.generate(QUESTION, { cachePrefix: SYSTEM }), refused);
    assert.throws(() => model.stream(QUESTION, { cachePrefix: SYSTEM }), refused);
    assert.throws(() => model.stream(QUESTION, { cachePrefix: 3 }), TypeError);
    // The whole prompt is no prefix either (librkl's check).
    await assert.rejects(model.generate(SYSTEM, { cachePrefix: SYSTEM }), { code: 'RKL_INVALID_ARGUMENT' });
  } finally {
    model.close();
  }
  // A cap without a directory, or a negative one, is refused.
  assert.throws(() => rkl.open(modelA, { cacheMaxBytes: 1 }), { code: 'RKL_INVALID_ARGUMENT', message: /cache_dir/ });
  assert.throws(() => rkl.open(modelA, { cacheDir: dir, cacheMaxBytes: -1 }), { code: 'RKL_INVALID_ARGUMENT' });
});
