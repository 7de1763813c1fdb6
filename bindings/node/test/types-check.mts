// Compiled (not run) by `make node-check` with tsc --strict: the ES module's
// declarations (index.d.mts) give the same types by name and by default.
import rkl, { open, type Model, type Stats } from 'rkl';

async function main(): Promise<void> {
  const model: Model = open('model.rkllm', { maxNewTokens: 8 });
  const { text, stats }: { text: string; stats: Stats } = await model.generate('Hi');
  console.log(text.length, stats.tokens, rkl.version(), rkl.Status.OK);
  model.close();
}
void main;
