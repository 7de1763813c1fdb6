// The package as an ES module: named and default imports give the same API,
// and a generation works through them.
import test from 'node:test';
import assert from 'node:assert/strict';
import rklDefault, { open, version, Status, RklError } from 'rkl';
import { writeModel, expected } from '../testlib/sim.js';

test('ESM: named and default exports are the CommonJS API', () => {
  assert.equal(open, rklDefault.open);
  assert.equal(RklError, rklDefault.RklError);
  assert.equal(Status.OK, 0);
  assert.match(version(), /^\d+\.\d+\.\d+/);
});

test('ESM: a stream through the named import', async () => {
  const model = open(writeModel('esm'));
  try {
    let text = '';
    for await (const piece of model.stream('esm')) text += piece;
    assert.equal(text, expected('esm'));
  } finally {
    model.close();
  }
});
