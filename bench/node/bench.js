'use strict';
// Per-token cost of the Node binding (bindings/node, installed from its npm
// tarball; NODE_PATH names its node_modules) against the simulator:
//   node bench.js MODEL ROUNDS
// prints "BENCH {json}" lines (see bench/c/common.h) for model.generate with
// onText and for `for await` over model.stream. Needs RKL_LIBRARY.

const rkl = require('rkl');

async function main() {
  const [path, roundsText] = process.argv.slice(2);
  const rounds = Number(roundsText);
  const model = rkl.open(path, { maxContextLen: 16384 });
  let received = 0;
  const cases = [
    ['node_generate_tokens', async () => {
      const { stats } = await model.generate('bench', { onText: (t) => { received += t.length; } });
      return stats.tokens;
    }],
    ['node_stream_tokens', async () => {
      const stream = model.stream('bench');
      for await (const text of stream) received += text.length;
      return stream.stats.tokens;
    }],
  ];
  try {
    for (const [name, run] of cases) {
      await run(); // warm-up
      const values = [];
      let tokens = 0;
      for (let i = 0; i < rounds; i++) {
        const start = process.hrtime.bigint();
        tokens = await run();
        values.push(Number(process.hrtime.bigint() - start) / tokens);
      }
      console.log('BENCH ' + JSON.stringify({ case: name, unit: 'ns/token', values, tokens }));
    }
  } finally {
    model.close();
  }
}

main().catch((e) => { console.error(e); process.exit(2); });
