// AdamW step over a model-like list of parameters: clipforge's fused native update (one call;
// on CUDA one launch for every tensor) against torch.optim.AdamW's foreach and fused
// implementations on the same sizes and thread count (bench/compare/adamw.py).
//
// Floor: memory bound. Per element the update reads param, grad, exp_avg, exp_avg_sq and
//   writes param, exp_avg, exp_avg_sq: 28 bytes in f32. "GB/s" is that over the step time; the
//   machine's practical bandwidth is measured in the same run by a device copy of the same
//   total size (read + write), and "of floor" is copy-rate-equivalent time / step time.
//
// Correct before fast: the AdamW test suite (test/optim/adamw.test.ts) checks the update
//   against torch 2.13's numbers; this file only times it.
//
// Run: node --import tsx bench/adamw.bench.ts [--device cpu|cuda] [--threads N] [--scale S] [--no-torch]
//   The parameter list is ViT-B-32 CLIP's shapes (302 tensors, 151 M elements) scaled by S
//   (default 0.1 on CPU, 1 on CUDA): each tensor keeps its share of the total.
// Writes bench/results/<date>-<device>-adamw.json.
import * as cf from '../lib/index.js';
import { benchArgs, runPython, timeMedian, writeResult } from './lib.js';

// ViT-B-32 CLIP: per-block shapes (12 visual + 12 text blocks) and the embeddings / projections.
function vitB32Sizes(): number[] {
  const block = (d: number): number[] => [d, d, 3 * d * d, 3 * d, d * d, d, d, d, 4 * d * d, 4 * d, 4 * d * d, d];
  const visual = [768, 3 * 768 * 32 * 32, 50 * 768, 768, 768, ...Array.from({ length: 12 }, () => block(768)).flat(), 768, 768, 768 * 512];
  const text = [49408 * 512, 77 * 512, ...Array.from({ length: 12 }, () => block(512)).flat(), 512, 512, 512 * 512, 1];
  return [...visual, ...text];
}

const { get, device, threads, torch: withTorch } = benchArgs('adamw.bench');
const scale = Number(get('--scale') ?? (device === 'cpu' ? 0.1 : 1));
if (device === 'cpu') cf.setNumThreads(threads);
const dev = device === 'cuda' ? 'cuda:0' : 'cpu';
const sizes = vitB32Sizes().map((n) => Math.max(1, Math.round(n * scale)));
const total = sizes.reduce((a, b) => a + b, 0);

const params = sizes.map((n) => cf.randn([n], { device: dev, requiresGrad: true }));
params.forEach((p) => (p.grad = cf.randn(p.shape, { device: dev })));
const opt = new cf.AdamW(params, { lr: 1e-3, weightDecay: 0.1 });
const sync = (): void => (dev === 'cpu' ? undefined : cf.synchronize(dev));
const step = timeMedian(() => {
  opt.step();
  sync();
}, { warmup: 3, reps: 10 });

// Practical bandwidth: copy a buffer of 3.5× the parameters' bytes (7 f32 accesses per element, as 3.5 reads + 3.5 writes).
const copyElems = Math.round(total * 3.5);
const src = cf.zeros([copyElems], { device: dev });
const dst = cf.zeros([copyElems], { device: dev });
const copy = timeMedian(() => {
  cf.native.copy(src, dst);
  sync();
}, { warmup: 2, reps: 10 });

const bytes = 28 * total;
const gbps = bytes / (step.ms / 1000) / 1e9;
const copyGbps = (copyElems * 8) / (copy.ms / 1000) / 1e9;
console.log(`AdamW step, ${sizes.length} tensors, ${(total / 1e6).toFixed(1)} M elements, ${dev}${dev === 'cpu' ? `, ${threads} threads` : ''}`);
console.log(`  clipforge: ${step.ms.toFixed(2)} ms (${gbps.toFixed(1)} GB/s; copy ${copyGbps.toFixed(1)} GB/s; of floor ${(gbps / copyGbps).toFixed(2)})`);

let torch: Record<string, unknown> | null = null;
if (withTorch) {
  const r = runPython('adamw.py', ['--device', device, '--sizes', sizes.join(','), '--threads', String(threads)]);
  if (r.ok) {
    torch = r.value as Record<string, unknown>;
    const ms = torch.ms as Record<string, number | null>;
    for (const [impl, t] of Object.entries(ms)) {
      console.log(`  torch ${impl}: ${t === null ? 'unavailable' : `${t.toFixed(2)} ms (clipforge ${(t / step.ms).toFixed(2)}× faster)`}`);
    }
  } else {
    console.log(`  torch: not compared (${r.why})`);
  }
}
const path = writeResult('adamw', dev === 'cpu' ? 'cpu' : cf.backendInfo().devices[0]!.name, {
  tensors: sizes.length, elements: total, scale, threads, stepMs: step.ms, gbps, copyGbps, fractionOfFloor: gbps / copyGbps, torch,
});
console.log(`wrote ${path}`);
opt.dispose();
for (const t of [...params, src, dst]) t.dispose();
