'use strict';
// Helpers for the files in test/ (kept out of test/, whose every .js file
// node --test runs): simulator model files (sim/README.md) in a temporary
// directory that is removed when the process exits.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

// The simulator's reply is this template with {prompt} replaced by the
// prompt exactly as the runtime received it.
const REPLY = 'R[{prompt}] héllo wörld ✓ 🚀 日本語 ünïcödé, and a few more words to stream';
const expected = (prompt) => REPLY.replace('{prompt}', prompt);

let dir = null;

// This process's temporary directory (made on first use, removed at exit).
function tmpDir() {
  if (!dir) {
    dir = fs.mkdtempSync(path.join(process.env.RKL_TEST_TMP || os.tmpdir(), 'rkl-node-'));
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  return dir;
}

// A subdirectory of it.
function subDir(name) {
  const d = path.join(tmpDir(), name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

// Writes (or rewrites) the model file `name`.sim: the reply above plus
// `extra` key = value lines.
function writeModel(name, extra = '') {
  const file = path.join(tmpDir(), `${name}.sim`);
  fs.writeFileSync(file, `RKLLM-SIM 1\nreply = ${REPLY}\n${extra}`);
  return file;
}

async function collect(stream) {
  const pieces = [];
  for await (const piece of stream) pieces.push(piece);
  return pieces;
}

module.exports = { REPLY, expected, tmpDir, subDir, writeModel, collect };
