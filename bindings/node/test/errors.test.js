'use strict';
// Every rkl_status of include/rkl.h has its name, code and error class here,
// and the names agree with the library's rkl_status_str().

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const rkl = require('rkl');

// RKL_NAME = n, of enum rkl_status in the committed header.
function headerStatuses() {
  // The repository's rkl.h (RKL_HEADER: the tests run from a copy outside it).
  const header = fs.readFileSync(process.env.RKL_HEADER || path.join(__dirname, '..', '..', '..', 'include', 'rkl.h'), 'utf8');
  const body = header.slice(header.indexOf('enum rkl_status'), header.indexOf('enum rkl_log_level'));
  return Object.fromEntries([...body.matchAll(/^\s+RKL_([A-Z_]+) = (\d+),$/gm)].map((m) => [m[1], Number(m[2])]));
}

// What rkl_status_str() must say for each name (distinctive words only).
const DESCRIPTION = {
  OK: /^success$/,
  INVALID_ARGUMENT: /invalid argument/,
  MODEL_NOT_FOUND: /model .*not found/,
  RUNTIME_NOT_FOUND: /runtime .*not found/,
  RUNTIME_UNSUPPORTED: /runtime .*not supported/,
  MODEL_LOAD_FAILED: /model load failed/,
  RUNTIME_FAILED: /runtime .*failed/,
  CLOSED: /closed/,
  REENTRANT: /reentrant/,
  NOT_SUPPORTED: /not supported/,
  IO: /i\/o/,
  BAD_HANDLE: /bad handle/,
  NULL_ARGUMENT: /null argument/i,
  TIMEOUT: /timed out/,
  IN_PROGRESS: /in progress/,
  PANIC: /panic/,
  CACHE_NOT_FOUND: /no prompt cache/,
  CACHE_INVALID: /cache .*invalid/,
  CACHE_VERSION: /cache .*version/,
  CACHE_TRUNCATED: /truncated/,
  CACHE_CORRUPT: /corrupt/,
  CACHE_MISMATCH: /cache .*not fit/,
  ABORTED: /^aborted$/,
  RUNTIME_CRASHED: /process crashed/,
  RUNTIME_TIMEOUT: /no progress .*timeout/,
  RESOURCE_EXHAUSTED: /out of system resources/,
  CACHE_UNTRUSTED: /cache not trusted/,
};

test('Status has exactly the statuses of rkl.h', () => {
  const fromHeader = headerStatuses();
  assert.equal(Object.keys(fromHeader).length, 27);
  assert.deepEqual({ ...rkl.Status }, fromHeader);
  assert.deepEqual(Object.keys(DESCRIPTION).sort(), Object.keys(fromHeader).sort());
});

test('every status number: name, code, class and the library description', () => {
  const seen = new Set();
  const names = Object.keys(rkl.Status);
  for (let n = 0; n <= 26; n++) {
    const name = names.find((k) => rkl.Status[k] === n);
    assert.ok(name, `no name for ${n}`);
    const text = rkl.statusStr(n);
    assert.notEqual(text, 'unknown status', name);
    assert.match(text, DESCRIPTION[name], `${n} ${name}: "${text}"`);
    assert.ok(!seen.has(text), `${name} shares "${text}"`);
    seen.add(text);

    const err = rkl.RklError.fromStatus(n);
    assert.ok(err instanceof rkl.RklError && err instanceof Error);
    assert.equal(err.status, n);
    assert.equal(err.code, `RKL_${name}`);
    assert.equal(err.message, text);
    const Class = (n >= 16 && n <= 21) || n === 26 ? rkl.CacheError
      : n === 23 ? rkl.RuntimeCrashedError
        : n === 24 ? rkl.RuntimeTimeoutError
          : n === 25 ? rkl.ResourceExhaustedError : rkl.RklError;
    assert.equal(err.constructor, Class, name);
    assert.equal(err.name, Class.name);
    assert.equal(rkl.RklError.fromStatus(n, 'why').message, 'why');
  }
  assert.equal(rkl.statusStr(27), 'unknown status');
  assert.equal(rkl.statusStr(-1), 'unknown status');
  assert.equal(rkl.RklError.fromStatus(27).code, 'RKL_STATUS_27');
});

test('a failed call carries rkl\'s own message', async () => {
  assert.throws(() => rkl.open('/nonexistent/m.rkllm'), (err) => {
    assert.equal(err.constructor, rkl.RklError);
    assert.equal(err.code, 'RKL_MODEL_NOT_FOUND');
    assert.match(err.message, /^rkl_open: .*\/nonexistent\/m\.rkllm/);
    return true;
  });
  // From a worker thread (the long calls): the message is read there.
  await assert.rejects(rkl.inspectCache('/nonexistent/c.rklcache'), (err) => {
    assert.ok(err instanceof rkl.CacheError);
    assert.equal(err.code, 'RKL_CACHE_NOT_FOUND');
    assert.equal(err.status, rkl.Status.CACHE_NOT_FOUND);
    assert.match(err.message, /^rkl_cache_inspect: no prompt cache at '\/nonexistent\/c\.rklcache'/);
    return true;
  });
});

test('concurrent long calls each get their own message', async () => {
  const paths = Array.from({ length: 8 }, (_, i) => `/nonexistent/${i}/c.rklcache`);
  const errors = await Promise.all(paths.map((p) => rkl.inspectCache(p).then(() => null, (e) => e)));
  errors.forEach((err, i) => {
    assert.ok(err instanceof rkl.CacheError, String(err));
    assert.equal(err.message, `rkl_cache_inspect: no prompt cache at '${paths[i]}'`);
  });
});
