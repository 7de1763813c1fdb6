// Stream a model's replies to the terminal with the rkl package (an ES
// module; `require('rkl')` works the same from CommonJS).
//
//   node chat.mjs MODEL [PROMPT...]
//
// Answers each PROMPT, then reads more prompts from standard input, one a
// line, until its end. Ctrl-C stops the reply being written and exits.
// Install the binding first: `npm install /path/to/rkl-0.1.0.tgz` (made by
// `npm pack /path/to/rkl/bindings/node`). The runtime is found through
// RKL_RUNTIME, else as librkllmrt.so.
import { open, version, RklError } from 'rkl';
import { createInterface } from 'node:readline';

const [modelPath, ...prompts] = process.argv.slice(2);
if (!modelPath) {
  console.error('usage: chat.mjs MODEL [PROMPT...]');
  process.exit(2);
}

let model;
try {
  model = open(modelPath);
} catch (err) {
  console.error(err instanceof RklError ? `${err.message} (${err.code})` : err);
  process.exit(1);
}
const info = model.info;
console.log(`rkl ${version()}: ${info.modelPath} on runtime ${info.runtimePath} (ABI ${info.family})`);

const stop = new AbortController();
process.once('SIGINT', () => stop.abort(new Error('stopped')));

async function ask(prompt) {
  console.log(`> ${prompt}`);
  const stream = model.stream(prompt, { keepHistory: true, signal: stop.signal });
  try {
    for await (const text of stream) process.stdout.write(text);
  } catch (err) {
    console.log(stop.signal.aborted ? '\n[stopped]' : `\n${err.message}`);
    return false;
  }
  const { tokens, ttftMs, finish } = stream.stats;
  console.log(`\n[${tokens} tokens; first text after ${Math.round(ttftMs)} ms; ${finish}]`);
  return true;
}

let ok = true;
try {
  for (const prompt of prompts) if (!(ok = await ask(prompt))) break;
  if (ok && prompts.length === 0) {
    for await (const line of createInterface({ input: process.stdin })) {
      if (line && !(ok = await ask(line))) break;
    }
  }
} finally {
  model.close();
}
process.exit(ok ? 0 : 1);
