// Compiled (not run) by `make node-check` with tsc --strict: the
// declarations in index.d.ts describe the API as the tests use it.
import * as rkl from 'rkl';

async function main(): Promise<void> {
  const model: rkl.Model = rkl.open('model.rkllm', { maxNewTokens: 64, topP: 0.9, runtimeAbi: '1.3' });
  const controller = new AbortController();
  const stream: rkl.TokenStream = model.stream('Hello!', { keepHistory: true, signal: controller.signal });
  for await (const text of stream) {
    const piece: string = text;
    process.stdout.write(piece);
  }
  const stats: rkl.Stats | null = stream.stats;
  if (stats) console.log(stats.finish === 'aborted', stats.ttftMs);
  const sampling: rkl.Sampling = { temperature: 0.25, topK: 40, mirostat: 2 };
  const { text, stats: s } = await model.generate('Again', { onText: (t: string) => t.length, sampling });
  for await (const t of model.stream('More', { sampling: { topP: 0.5 } })) console.log(t);
  console.log(text.length, s.tokens, model.info.family, rkl.version(), rkl.Status.BAD_HANDLE);
  const saved: rkl.CacheInfo = await model.saveCache('system.rklcache', 'You are terse. ', { role: 'user' });
  const prefill: number | undefined = saved.saveStats?.prefillTokens;
  const loaded = await model.loadCache('system.rklcache');
  const verdict: rkl.CacheVerdict = (await rkl.inspectCache('system.rklcache')).verdict;
  const mtime: bigint = loaded.modelMtimeNs;
  console.log(prefill, verdict, mtime, loaded.chatTemplate?.system, loaded.verdictCode);
  model.releaseCache();
  model.setFunctionTools('You may call tools.', '[]', '<tool_response>');
  const rows: rkl.Tensor = await model.hiddenStates({ embeddings: new Float32Array(16), embeddingDim: 8 });
  const v: Float32Array = rows.values;
  const lg = await model.logits({ tokens: [1, 2], crossAttn: { kCache: [0], vCache: [0], mask: [1], positions: new Int32Array(1) } });
  const media: rkl.Media = { values: new Float32Array(8), count: 1, tokens: 1, dim: 8, width: 4 };
  await model.generate('<image>', { images: media, videos: { ...media, frames: 2 } });
  console.log(v.length, rows.tokens * rows.dim, lg.stats.prefillTokens);
  rkl.open('model.rkllm', { useCrossAttn: true, imageTags: ['<i>', '</i>', '<p>'], videoTags: ['a', 'b', 'c'] });
  const cached = rkl.open('model.rkllm', { cacheDir: '/tmp/rkl-cache', cacheMaxBytes: 1 << 30 });
  const use: rkl.CacheUse = (await cached.generate('System. Hi', { cachePrefix: 'System. ' })).stats.cacheUse;
  for await (const t of cached.stream('System. Again', { cachePrefix: 'System. ' })) console.log(t, use);
  const isolated = rkl.open('model.rkllm', { isolated: true, callTimeoutMs: 30000, abortGraceMs: 500, maxRestarts: -1 });
  await isolated.restart();
  const err: rkl.RklError = rkl.RklError.fromStatus(rkl.Status.RUNTIME_TIMEOUT);
  try {
    model.close();
  } catch (e) {
    if (e instanceof rkl.CacheError && e.status === rkl.Status.CACHE_UNTRUSTED) console.log(e.message);
    else if (e instanceof rkl.CacheError || e instanceof rkl.RuntimeCrashedError) console.log(e.code);
    else if (e instanceof rkl.RuntimeTimeoutError || e instanceof rkl.ResourceExhaustedError) console.log(e.status);
    else if (e instanceof rkl.RklError) console.log(e.code, e.status, e.message, err.code);
  }
}

void main;
