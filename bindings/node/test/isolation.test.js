'use strict';
// Isolation mode (open(path, { isolated: true })): the runtime runs in the
// rkl-host worker process, which the staged librkl finds in ../libexec from
// its own directory (RKL_HOST names it otherwise). Its crashes and hangs
// reject the call; this process lives on.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const rkl = require('rkl');
const { expected, subDir, writeModel, collect } = require('../testlib/sim');

const FAST = 'time_scale = 0\n';

test('generation in isolation mode', async () => {
  const m = rkl.open(writeModel('iso', FAST), { isolated: true });
  try {
    const abi = process.env.RKLLM_SIM_ABI;
    if (abi) assert.equal(m.info.family, abi);
    const { text, stats } = await m.generate('isolated');
    assert.equal(text, expected('isolated'));
    assert.equal(stats.finish, 'end');
    assert.equal(stats.abortMs, 0);
    assert.equal((await collect(m.stream('streamed'))).join(''), expected('streamed'));
    // A cache through the worker process, too.
    const file = path.join(subDir('iso-cache'), 'c.rklcache');
    const system = 'A fixed system prompt, long enough to be worth caching here. ';
    await m.saveCache(file, system);
    await m.loadCache(file);
    assert.equal((await m.generate(system + 'question')).text, expected('question'));
    // Restarting keeps the loaded cache (not the history).
    await m.restart();
    assert.equal((await m.generate(system + 'again')).text, expected('again'));
  } finally {
    m.close();
  }
});

test('a crash of the runtime rejects with RuntimeCrashedError; this process lives on', async () => {
  const file = writeModel('iso-segv', `${FAST}fault = segv@token:3\n`);
  const m = rkl.open(file, { isolated: true });
  try {
    let pieces = 0;
    await assert.rejects(m.generate('boom', { onText: () => pieces++ }), (err) => {
      assert.ok(err instanceof rkl.RuntimeCrashedError && err instanceof rkl.RklError);
      assert.equal(err.code, 'RKL_RUNTIME_CRASHED');
      assert.equal(err.status, 23);
      // Pulled on a koffi thread, yet rkl's own message, with the signal.
      assert.match(err.message, /^rkl_stream_(read|next): .*SIGSEGV/);
      return true;
    });
    assert.ok(pieces <= 3, `${pieces} pieces before the crash`);
    // Still here: an in-process model of the same runtime works.
    const local = rkl.open(writeModel('iso-local', FAST));
    assert.equal((await local.generate('alive')).text, expected('alive'));
    local.close();
    // The next call restarts the worker (and crashes again: the fault is
    // in the model file). A crash during a long call (on our worker thread)
    // carries rkl's message with the signal.
    await assert.rejects(m.generate('again'), { code: 'RKL_RUNTIME_CRASHED' });
    writeModel('iso-segv', `${FAST}fault = segv@cache_save\n`);
    await assert.rejects(m.saveCache(path.join(subDir('iso-segv'), 'c.rklcache'), 'prompt'),
      { name: 'RuntimeCrashedError', message: /^rkl_cache_save: .*died of SIGSEGV/ });
    // Without the fault, it works again.
    writeModel('iso-segv', FAST);
    assert.equal((await m.generate('healed')).text, expected('healed'));
  } finally {
    m.close();
  }
  await assert.rejects(m.restart(), { code: 'RKL_BAD_HANDLE' });
});

test('maxRestarts < 0: no automatic restart, restart() brings it back', async () => {
  const file = writeModel('iso-norestart', `${FAST}fault = abort@prefill\n`);
  const m = rkl.open(file, { isolated: true, maxRestarts: -1 });
  try {
    await assert.rejects(m.generate('x'), { code: 'RKL_RUNTIME_CRASHED' });
    writeModel('iso-norestart', FAST);
    await assert.rejects(m.generate('x'), { code: 'RKL_RUNTIME_CRASHED' }); // not restarted
    await m.restart();
    assert.equal((await m.generate('back')).text, expected('back'));
  } finally {
    m.close();
  }
});

test('a hang with callTimeoutMs rejects with RuntimeTimeoutError; after restart() it works', async () => {
  const file = writeModel('iso-hang', `${FAST}fault = hang@prefill\n`);
  const m = rkl.open(file, { isolated: true, callTimeoutMs: 300 });
  try {
    const started = Date.now();
    await assert.rejects(m.generate('stuck'), (err) => {
      assert.ok(err instanceof rkl.RuntimeTimeoutError);
      assert.equal(err.code, 'RKL_RUNTIME_TIMEOUT');
      assert.equal(err.status, 24);
      return true;
    });
    const waited = Date.now() - started;
    assert.ok(waited >= 250 && waited < 5000, `${waited} ms`);
    writeModel('iso-hang', `${FAST}fault = hang@cache_save\n`);
    await m.restart();
    await assert.rejects(m.saveCache(path.join(subDir('iso-hang'), 'c.rklcache'), 'prompt'),
      { name: 'RuntimeTimeoutError', message: /^rkl_cache_save: .*no progress for 300 ms/ });
    await m.restart();
    assert.equal((await m.generate('unstuck')).text, expected('unstuck'));
  } finally {
    m.close();
  }
});

test('abortGraceMs: a runtime that stops late is killed after the grace', async () => {
  const file = writeModel('iso-late', 'time_scale = 1\ndecode_us_per_token = 4000\nslow_abort_ms = 5000\n');
  const m = rkl.open(file, { isolated: true, abortGraceMs: 100 });
  try {
    const stream = m.stream('late');
    for await (const piece of stream) {
      assert.ok(piece.length > 0);
      stream.abort();
    }
    assert.equal(stream.stats.finish, 'aborted');
    assert.ok(stream.stats.abortMs >= 90 && stream.stats.abortMs < 2000, `${stream.stats.abortMs} ms`);
    // Restarted on the next call.
    assert.equal((await m.generate('next', { maxNewTokens: 3 })).stats.tokens, 3);
  } finally {
    m.close();
  }
});

test('settings are checked; in-process models cannot restart', async () => {
  const file = writeModel('iso-settings', FAST);
  assert.throws(() => rkl.open(file, { isolated: 'yes' }), TypeError);
  assert.throws(() => rkl.open(file, { callTimeoutMs: -1 }), { code: 'RKL_INVALID_ARGUMENT', message: /callTimeoutMs/ });
  assert.throws(() => rkl.open(file, { abortGraceMs: 1.5 }), { code: 'RKL_INVALID_ARGUMENT', message: /abortGraceMs/ });
  assert.throws(() => rkl.open(file, { maxRestarts: 2 ** 31 }), { code: 'RKL_INVALID_ARGUMENT', message: /maxRestarts/ });
  // Unknown flag bits are refused by the library (the field is where it reads it).
  const { OpenParams } = rkl._types;
  const p = {};
  rkl._c.open_params_init(p, require('koffi').sizeof(OpenParams));
  p.model_path = file;
  p.flags = 2;
  assert.equal(rkl._c.open(p, [null]), rkl.Status.INVALID_ARGUMENT);
  assert.match(rkl._lastErrorMessage(), /flags/);
  const m = rkl.open(file);
  try {
    await assert.rejects(m.restart(), { code: 'RKL_NOT_SUPPORTED', message: /^rkl_model_restart: / });
  } finally {
    m.close();
  }
});
