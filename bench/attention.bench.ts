// Fused attention: forward and forward+backward time of clipforge's kernel against PyTorch's
// scaled_dot_product_attention on the same shapes, in the same run.
//
// CPU (default without a GPU): f32, 2 threads on both sides (PERF.md's CPU table), shapes
//   B32 H12 S50 D64 (ViT-B/32 layer), B32 H8 S77 D64 causal (text), B8 H12 S197 D64 (ViT-B/16).
// CUDA (default with a GPU): bf16, the issue's CLIP shapes and the long S 4096 D 128 pair;
//   TFLOP/s and its fraction of the bf16 matrix ceiling (PyTorch's 8192^3 bf16 matmul,
//   measured in the same run; 798 TFLOP/s from PERF.md when PyTorch is missing).
// Both layouts are timed: plain [B, H, S, D] (the one PyTorch gets) and packed
// [B, S, 3, H, D] -> [B, S, H, D] (the one the model uses).
//
// Correct before fast: each shape's first batch element is checked, against a naive f64
// reference on the CPU and against the CPU kernel on the GPU (f32 1e-4, bf16 1e-2 relative),
// and a shape that fails prints no time.
//
// FLOPs: 4*B*H*S^2*D forward, 3.5x that forward+backward, halved when causal.
// Timing: median over repeats after warm-up; PyTorch runs before and after ours and keeps
// its better median. On the GPU each repeat is a run of back-to-back
// calls closed by one synchronize (so it includes the JS dispatch of every call, as training
// does), with inputs rotated over enough copies to exceed a 50 MB L2.
//
// Run: node --import tsx bench/attention.bench.ts [--device cpu|cuda] [--threads N] [--no-torch]
// Writes bench/results/<date>-<device>-attention.json.
import { cpus, platform } from 'node:os';
import * as cf from '../lib/index.js';
import { benchArgs, runPython, timeMedian, writeResult } from './lib.js';

interface Shape {
  B: number;
  H: number;
  S: number;
  D: number;
  causal: boolean;
}

const CPU_SHAPES: Shape[] = [
  { B: 32, H: 12, S: 50, D: 64, causal: false },
  { B: 32, H: 8, S: 77, D: 64, causal: true },
  { B: 8, H: 12, S: 197, D: 64, causal: false },
];

const CUDA_SHAPES: Shape[] = [
  { B: 256, H: 12, S: 50, D: 64, causal: false },
  { B: 256, H: 12, S: 197, D: 64, causal: false },
  { B: 128, H: 16, S: 257, D: 64, causal: false },
  { B: 256, H: 8, S: 77, D: 64, causal: true },
  { B: 256, H: 12, S: 17, D: 64, causal: false },
  { B: 4, H: 16, S: 4096, D: 128, causal: false },
  { B: 4, H: 16, S: 4096, D: 128, causal: true },
];

const PERF_BF16_CEILING_TFLOPS = 798;

const label = (s: Shape): string => `B${s.B} H${s.H} S${s.S} D${s.D}${s.causal ? ' causal' : ''}`;
const flopsFwd = (s: Shape): number => (4 * s.B * s.H * s.S * s.S * s.D) / (s.causal ? 2 : 1);

/** Median ms of fn over at least `reps` runs and `minMs` of total time, after two warm-ups. */
const timeMs = (fn: () => void, reps: number, minMs: number): number => timeMedian(fn, { warmup: 2, reps, minMs }).ms;

interface TorchResult {
  fwd_ms: number;
  fwdbwd_ms: number;
  backend: string;
}

/** PyTorch's medians from bench/compare/attention.py, or why it could not run. */
function torchSide(device: 'cpu' | 'cuda', shapes: Shape[], threads: number): { results: TorchResult[]; version: string; ceiling?: number } | string {
  const shapeArgs = shapes.map((s) => `${s.B},${s.H},${s.S},${s.D}${s.causal ? ',causal' : ''}`);
  const extra = device === 'cuda' ? ['--ceiling'] : ['--threads', String(threads)];
  const r = runPython('attention.py', ['--device', device, ...extra, '--shapes', ...shapeArgs]);
  if (!r.ok) return r.why;
  const out = r.value as { torch: string; results: TorchResult[]; bf16_matmul_tflops?: number };
  return { results: out.results, version: out.torch, ceiling: out.bf16_matmul_tflops };
}

// ---- correctness ------------------------------------------------------------------------

/** Naive f64 attention for one head of [S, D] rows: out and dq from dout. */
function refHead(q: Float32Array, k: Float32Array, v: Float32Array, dout: Float32Array, S: number, D: number, causal: boolean): { out: Float64Array; dq: Float64Array } {
  const scale = 1 / Math.sqrt(D);
  const out = new Float64Array(S * D);
  const dq = new Float64Array(S * D);
  const p = new Float64Array(S);
  for (let i = 0; i < S; i++) {
    const n = causal ? i + 1 : S;
    let m = -Infinity;
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += q[i * D + d]! * k[j * D + d]!;
      p[j] = s * scale;
      m = Math.max(m, p[j]!);
    }
    let sum = 0;
    for (let j = 0; j < n; j++) sum += (p[j] = Math.exp(p[j]! - m));
    for (let j = 0; j < n; j++) {
      p[j] = p[j]! / sum;
      for (let d = 0; d < D; d++) out[i * D + d] += p[j]! * v[j * D + d]!;
    }
    let delta = 0;
    for (let d = 0; d < D; d++) delta += dout[i * D + d]! * out[i * D + d]!;
    for (let j = 0; j < n; j++) {
      let dp = 0;
      for (let d = 0; d < D; d++) dp += dout[i * D + d]! * v[j * D + d]!;
      const ds = p[j]! * (dp - delta) * scale;
      for (let d = 0; d < D; d++) dq[i * D + d] += ds * k[j * D + d]!;
    }
  }
  return { out, dq };
}

function relError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let maxRef = 1e-6;
  for (let i = 0; i < want.length; i++) maxRef = Math.max(maxRef, Math.abs(want[i]!));
  let e = 0;
  for (let i = 0; i < want.length; i++) e = Math.max(e, Math.abs(got[i]! - want[i]!) / Math.max(Math.abs(want[i]!), 0.05 * maxRef));
  return e;
}

/** out and dq of our kernel for [B, H, S, D] inputs given as host arrays. */
function runOnce(host: Float32Array[], s: Shape, device: string, dtype: 'f32' | 'bf16'): { out: Float32Array; dq: Float32Array } {
  const shape = [s.B, s.H, s.S, s.D];
  return cf.scope(() => {
    const [q, k, v] = host.slice(0, 3).map((x) => cf.fromArray(x, shape, { device, dtype, requiresGrad: true })) as [cf.Tensor, cf.Tensor, cf.Tensor];
    const y = cf.attention(q, k, v, { causal: s.causal });
    y.backward(cf.fromArray(host[3]!, shape, { device, dtype }));
    return { out: y.toArray() as Float32Array, dq: q.grad!.toArray() as Float32Array };
  });
}

/** Relative error of the first batch element's out and dq against the reference. */
function check(s: Shape, device: 'cpu' | 'cuda', dtype: 'f32' | 'bf16'): number {
  const one: Shape = { ...s, B: 1 };
  const n = s.H * s.S * s.D;
  const generator = new cf.Generator(7);
  const host = [0, 1, 2, 3].map(() => cf.scope(() => cf.randn([n], { generator, dtype }).toArray() as Float32Array));
  if (device === 'cuda') {
    const gpu = runOnce(host, one, 'cuda:0', dtype);
    const cpu = runOnce(host, one, 'cpu', dtype);
    return Math.max(relError(gpu.out, cpu.out), relError(gpu.dq, cpu.dq));
  }
  const ours = runOnce(host, one, 'cpu', dtype);
  const hs = s.S * s.D;
  const ref = refHead(host[0]!.subarray(0, hs), host[1]!.subarray(0, hs), host[2]!.subarray(0, hs), host[3]!.subarray(0, hs), s.S, s.D, s.causal);
  return Math.max(relError(ours.out.subarray(0, hs), ref.out), relError(ours.dq.subarray(0, hs), ref.dq));
}

// ---- timing -----------------------------------------------------------------------------

interface Timing {
  fwdMs: number;
  fwdbwdMs: number;
  packedFwdMs: number;
  packedFwdbwdMs: number;
}

function timeShape(s: Shape, device: string, dtype: 'f32' | 'bf16'): Timing {
  const gpu = device !== 'cpu';
  const shape = [s.B, s.H, s.S, s.D];
  const packedShape = [s.B, s.S, 3, s.H, s.D];
  const bytes = 4 * s.B * s.H * s.S * s.D * cf.dtypeBytes(dtype);
  const copies = gpu ? Math.max(1, Math.min(8, Math.ceil((64 << 20) / bytes))) : 1;
  // q, k, v, dout, qkv, packed dout (created outside any scope: they live until disposed below).
  const sets = Array.from({ length: copies }, () => [
    ...[0, 1, 2].map(() => cf.randn(shape, { device, dtype, requiresGrad: true })),
    cf.randn(shape, { device, dtype }),
    cf.randn(packedShape, { device, dtype, requiresGrad: true }),
    cf.randn([s.B, s.S, s.H, s.D], { device, dtype }),
  ]);
  let next = 0;
  const clearGrads = (ts: cf.Tensor[]): void => {
    for (const t of ts) {
      t.grad?.dispose();
      t.grad = null;
    }
  };
  const variants = {
    fwd: () => cf.noGrad(() => cf.scope(() => void cf.attention(sets[next]![0]!, sets[next]![1]!, sets[next]![2]!, { causal: s.causal }))),
    fwdbwd: () => {
      const [q, k, v, g] = sets[next]!;
      cf.scope(() => cf.attention(q!, k!, v!, { causal: s.causal }).backward(g!));
      clearGrads([q!, k!, v!]);
    },
    packedFwd: () => cf.noGrad(() => cf.scope(() => void cf.attentionPacked(sets[next]![4]!, { causal: s.causal }))),
    packedFwdbwd: () => {
      const [, , , , qkv, g] = sets[next]!;
      cf.scope(() => cf.attentionPacked(qkv!, { causal: s.causal }).backward(g!));
      clearGrads([qkv!]);
    },
  };
  const measure = (fn: () => void): number => {
    if (!gpu) return timeMs(fn, 10, 1000);
    // A run of calls per repeat, so launch gaps overlap GPU work as they would in training.
    const calls = 10;
    const run = (): void => {
      for (let c = 0; c < calls; c++) {
        next = (next + 1) % copies;
        fn();
      }
      cf.synchronize(device);
    };
    return timeMs(run, 10, 1000) / calls;
  };
  const t: Timing = {
    fwdMs: measure(variants.fwd),
    fwdbwdMs: measure(variants.fwdbwd),
    packedFwdMs: measure(variants.packedFwd),
    packedFwdbwdMs: measure(variants.packedFwdbwd),
  };
  for (const set of sets) for (const x of set) x.dispose();
  return t;
}

async function main(): Promise<void> {
  const opt = benchArgs('attention.bench');
  const device = opt.device;
  const gpu = device === 'cuda';
  const shapes = gpu ? CUDA_SHAPES : CPU_SHAPES;
  const dtype = gpu ? 'bf16' : 'f32';
  if (!gpu) cf.setNumThreads(opt.threads);
  const info = cf.backendInfo();
  const deviceName = gpu ? info.devices[0]?.name ?? 'cuda' : 'cpu';

  const torchBefore = opt.torch ? torchSide(device, shapes, opt.threads) : 'skipped (--no-torch)';
  const ceiling = typeof torchBefore !== 'string' && torchBefore.ceiling ? torchBefore.ceiling : PERF_BF16_CEILING_TFLOPS;

  const timings = shapes.map((s) => {
    const err = check(s, device, dtype);
    const tol = dtype === 'f32' ? 1e-4 : 1e-2;
    return { err, tol, t: err < tol ? timeShape(s, gpu ? 'cuda:0' : 'cpu', dtype) : null };
  });
  // PyTorch runs again after ours and keeps its better median per shape, so load from other
  // processes on a shared machine cannot tilt the ratio in our favour.
  const torchAfter = typeof torchBefore === 'string' ? torchBefore : torchSide(device, shapes, opt.threads);
  const torch = typeof torchBefore === 'string' || typeof torchAfter === 'string' ? torchBefore : {
    ...torchBefore,
    results: torchBefore.results.map((r, i) => ({
      ...r,
      fwd_ms: Math.min(r.fwd_ms, torchAfter.results[i]!.fwd_ms),
      fwdbwd_ms: Math.min(r.fwdbwd_ms, torchAfter.results[i]!.fwdbwd_ms),
    })),
  };

  const rows = shapes.map((s, i) => {
    const { err, tol, t } = timings[i]!;
    const base = { shape: label(s), ...s, dtype, relError: +err.toPrecision(3) };
    if (!t) return { ...base, wrong: `relative error ${err} over ${tol}: no time reported` };
    const f = flopsFwd(s);
    const tflops = (flops: number, ms: number): number => +(flops / ms / 1e9).toFixed(gpu ? 1 : 4);
    const th = typeof torch === 'string' ? undefined : torch.results[i];
    return {
      ...base,
      fwdMs: +t.fwdMs.toFixed(4),
      fwdbwdMs: +t.fwdbwdMs.toFixed(4),
      packedFwdMs: +t.packedFwdMs.toFixed(4),
      packedFwdbwdMs: +t.packedFwdbwdMs.toFixed(4),
      fwdTflops: tflops(f, t.fwdMs),
      fwdbwdTflops: tflops(3.5 * f, t.fwdbwdMs),
      ...(gpu ? { fwdFractionOfCeiling: +(f / t.fwdMs / 1e9 / ceiling).toFixed(3), fwdbwdFractionOfCeiling: +((3.5 * f) / t.fwdbwdMs / 1e9 / ceiling).toFixed(3) } : {}),
      ...(th
        ? {
            torchFwdMs: +th.fwd_ms.toFixed(4),
            torchFwdbwdMs: +th.fwdbwd_ms.toFixed(4),
            torchBackend: th.backend,
            speedupFwd: +(th.fwd_ms / t.fwdMs).toFixed(2),
            speedupFwdbwd: +(th.fwdbwd_ms / t.fwdbwdMs).toFixed(2),
          }
        : {}),
    };
  });

  console.log(`attention, ${dtype}, ${gpu ? deviceName : `CPU with ${opt.threads} threads`}${gpu ? `, bf16 ceiling ${ceiling.toFixed(0)} TFLOP/s` : ''}`);
  console.table(
    rows.map((r) =>
      'wrong' in r
        ? { shape: r.shape, error: r.wrong }
        : {
            shape: r.shape,
            'fwd ms': r.fwdMs,
            'fwd+bwd ms': r.fwdbwdMs,
            'packed fwd+bwd ms': r.packedFwdbwdMs,
            [gpu ? 'fwd+bwd TFLOP/s' : 'fwd+bwd GFLOP/s']: gpu ? r.fwdbwdTflops : +(r.fwdbwdTflops * 1000).toFixed(1),
            ...(gpu ? { 'of ceiling': r.fwdbwdFractionOfCeiling } : {}),
            'torch fwd+bwd ms': r.torchFwdbwdMs ?? '-',
            'speed-up fwd': r.speedupFwd ?? '-',
            'speed-up fwd+bwd': r.speedupFwdbwd ?? '-',
          },
    ),
  );
  if (typeof torch === 'string') console.log(`PyTorch comparison did not run: ${torch}`);

  const outPath = writeResult('attention', deviceName, {
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, platform: platform() },
    backend: gpu ? { cuda: info.cudaVersion } : { threads: opt.threads },
    torch: typeof torch === 'string' ? { skipped: torch } : { version: torch.version, ...(gpu ? { bf16MatmulTflops: torch.ceiling } : { threads: opt.threads }) },
    flopConvention: '4*B*H*S^2*D forward, 3.5x forward+backward, halved when causal',
    results: rows,
  });
  console.log(`wrote ${outPath}`);
}

await main();
