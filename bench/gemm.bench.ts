// GEMM: clipforge's matmul against PyTorch on the same shapes, in the same run.
//
// CPU: f32, 2 threads on both sides (PERF.md's CPU table): squares 256^3 ... 2048^3 and one
//   CLIP linear layer (ViT-B/32 MLP fc1: 1600 tokens x 768 -> 3072, weight [3072, 768] used
//   transposed), and a weight-gradient shape (few rows, long K: the tiny model's qkv weight
//   gradient, 64 x 2176 tokens x 192). GFLOP/s and the fraction of the machine's f32 peak (cores x FMA width x
//   2 FMA units x 2 FLOPs x clock, from /proc/cpuinfo; see bench/lib.ts).
// CUDA (when a GPU is present): bf16 on tensor cores, TFLOP/s, against PyTorch (cuBLAS) and as
//   a fraction of PERF.md's 798 TFLOP/s H100 bf16 ceiling: 4096^3, 8192^3 and the products of a
//   ViT-B/32 training step at batch 256 (12800 tokens): the qkv, fc1 and fc2 layers forward, fc1's
//   input gradient and its weight gradient (M and N small, K the tokens: the split-K case).
//   Each shape is timed on every bf16 kernel the GPU has (on Hopper the TMA + wgmma kernel and
//   the mma.sync one, cf.native.cudaGemmKernel).
//
// Correct before fast: every shape's output is checked on 64 sampled entries against f64 dot
// products of the same inputs (error relative to the sum of the |products|: f32 1e-4, bf16 1e-2), and a
// shape that fails prints no time. The output is preallocated on both sides, so the time is
// the kernel's (plus the addon's argument checks).
// FLOPs: 2 * M * N * K.
//
// Machines here are shared, so the CPU comparison runs in rounds (ours, then PyTorch's, three
// times by default) and reports per shape the median of the rounds' medians.
//
// Run: node --import tsx bench/gemm.bench.ts [--threads N] [--rounds N] [--no-torch]
// Writes bench/results/<date>-<device>-gemm.json.
import * as cf from '../lib/index.js';
import { cpuPeak, median, runPython, timeMedian, writeResult } from './lib.js';

interface Shape {
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB: boolean;
  name: string;
}

const square = (n: number): Shape => ({ M: n, N: n, K: n, transB: false, name: `${n}^3` });
const CPU_SHAPES: Shape[] = [256, 512, 1024, 2048].map(square);
CPU_SHAPES.push({ M: 1600, N: 3072, K: 768, transB: true, name: 'ViT-B/32 fc1 1600x768 · [3072, 768]ᵀ' });
CPU_SHAPES.push({ M: 64, N: 192, K: 2176, transB: true, name: 'weight grad 64x2176 · [192, 2176]ᵀ' });
const TOKENS = 256 * 50;
const GPU_SHAPES: Shape[] = [
  square(4096),
  square(8192),
  { M: TOKENS, N: 2304, K: 768, transB: true, name: 'ViT-B/32 b256 qkv fwd' },
  { M: TOKENS, N: 3072, K: 768, transB: true, name: 'ViT-B/32 b256 fc1 fwd' },
  { M: TOKENS, N: 768, K: 3072, transB: true, name: 'ViT-B/32 b256 fc2 fwd' },
  { M: TOKENS, N: 768, K: 3072, transB: false, name: 'ViT-B/32 b256 fc1 dX' },
  { M: 3072, N: 768, K: TOKENS, transA: true, transB: false, name: 'ViT-B/32 b256 fc1 dW' },
];
const PERF_BF16_CEILING_TFLOPS = 798;

const flops = (s: Shape): number => 2 * s.M * s.N * s.K;
const pyShape = (s: Shape): string => `${s.M},${s.N},${s.K}${s.transA ? ',ta' : ''}${s.transB ? ',tb' : ''}`;

function parseArgs(): { threads: number; rounds: number; torch: boolean } {
  const argv = process.argv.slice(2);
  const int = (name: string, dflt: number): number => {
    const i = argv.indexOf(name);
    const v = i >= 0 ? Number(argv[i + 1]) : dflt;
    if (!Number.isInteger(v) || v < 1) throw new Error(`gemm.bench: expected a positive integer for ${name}, got '${argv[i + 1]}'`);
    return v;
  };
  return { threads: int('--threads', 2), rounds: int('--rounds', 3), torch: !argv.includes('--no-torch') };
}

/** Largest error over 64 sampled entries, relative to the scale of that entry's dot product. */
function sampledError(s: Shape, a: ArrayLike<number>, b: ArrayLike<number>, c: ArrayLike<number>): number {
  let worst = 0;
  let seed = 12345;
  const next = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  for (let t = 0; t < 64; t++) {
    const i = next(s.M), j = next(s.N);
    let dot = 0, scale = 0;
    for (let k = 0; k < s.K; k++) {
      const p = a[s.transA ? k * s.M + i : i * s.K + k]! * b[s.transB ? j * s.K + k : k * s.N + j]!;
      dot += p;
      scale += Math.abs(p);
    }
    worst = Math.max(worst, Math.abs(c[i * s.N + j]! - dot) / Math.max(scale, 1e-30));
  }
  return worst;
}

/** One shape's operands, checked once, timed in every round. */
interface Case {
  shape: Shape;
  error: number;
  ok: boolean;
  /** One product into the preallocated output. */
  call: () => void;
}

function prepare(s: Shape, device: string, dtype: 'f32' | 'bf16', tol: number): Case {
  const a = cf.randn(s.transA ? [s.K, s.M] : [s.M, s.K], { device, dtype });
  const b = cf.randn(s.transB ? [s.N, s.K] : [s.K, s.N], { device, dtype });
  const c = cf.empty([s.M, s.N], { device, dtype });
  const call = (): void => cf.native.matmul(a, b, null, c, s.transA ?? false, s.transB, false);
  call();
  const error = sampledError(s, a.toArray(), b.toArray(), c.toArray());
  return { shape: s, error, ok: error < tol, call };
}

/** Median ms of one product: on CUDA, runs of 10 launches closed by a synchronize. */
function timeCase(c: Case, device: string): number {
  if (device === 'cpu') return timeMedian(c.call, { reps: c.shape.M >= 2048 ? 5 : 10 }).ms;
  return (
    timeMedian(() => {
      for (let r = 0; r < 10; r++) c.call();
      cf.synchronize(device);
    }, { reps: 10 }).ms / 10
  );
}

interface TorchRow {
  ms: number;
}

function torchRound(device: 'cpu' | 'cuda', shapes: Shape[], threads: number): { rows: TorchRow[]; meta: unknown } | string {
  const r = runPython('gemm.py', ['--device', device, '--threads', String(threads), '--shapes', ...shapes.map(pyShape)]);
  if (!r.ok) return `no PyTorch ratio: ${r.why}`;
  const v = r.value as { results: TorchRow[] };
  return { rows: v.results, meta: { ...v, results: undefined } };
}

/**
 * Times every case and PyTorch on the same shapes, `rounds` times in turn (ours, then
 * theirs), and keeps per shape the median of the rounds' medians: a round slowed by other
 * work on the machine then moves neither side's figure.
 */
function compare(cases: Case[], device: 'cpu' | 'cuda', threads: number, rounds: number, torch: boolean) {
  const ours: number[][] = cases.map(() => []);
  const theirs: number[][] = cases.map(() => []);
  let meta: unknown = null;
  let note: string | undefined = torch ? undefined : 'PyTorch comparison skipped (--no-torch)';
  const dev = device === 'cpu' ? 'cpu' : 'cuda:0';
  for (let r = 0; r < rounds; r++) {
    cases.forEach((c, i) => c.ok && ours[i]!.push(timeCase(c, dev)));
    if (note) continue;
    const t = torchRound(device, cases.map((c) => c.shape), threads);
    if (typeof t === 'string') {
      note = t;
      continue;
    }
    meta = t.meta;
    t.rows.forEach((row, i) => theirs[i]!.push(row.ms));
  }
  if (note) console.log(note);
  return cases.map((c, i) => {
    const ms = ours[i]!.length ? median(ours[i]!) : undefined;
    const tms = theirs[i]!.length === rounds ? median(theirs[i]!) : undefined;
    return { c, ms, tms, oursRounds: ours[i]!, torchRounds: theirs[i]!, meta, note };
  });
}

const fmt = (x: number | undefined, d = 1): string => (x === undefined ? '-' : x.toFixed(d));

function main(): void {
  const { threads, torch, rounds } = parseArgs();
  cf.setNumThreads(threads);
  const peak = cpuPeak(threads);
  const kernel = cf.native.gemmKernel();
  console.log(`CPU: ${peak.model}, ${threads} threads, ${peak.isa} at ${peak.ghz.toFixed(2)} GHz -> f32 peak ${peak.gflops.toFixed(1)} GFLOP/s; micro-kernel ${kernel}`);

  const cpu = cf.scope(() => compare(CPU_SHAPES.map((s) => prepare(s, 'cpu', 'f32', 1e-4)), 'cpu', threads, rounds, torch));
  console.log(`\nf32, median of ${rounds} rounds\nshape                                    |    ms   | GFLOP/s | of peak | torch ms | torch GFLOP/s | vs torch`);
  const cpuResults = cpu.map(({ c, ms, tms, oursRounds, torchRounds }) => {
    const s = c.shape;
    const gflops = ms !== undefined ? flops(s) / ms / 1e6 : undefined;
    const tgflops = tms !== undefined ? flops(s) / tms / 1e6 : undefined;
    const frac = gflops !== undefined ? gflops / peak.gflops : undefined;
    const ratio = ms !== undefined && tms !== undefined ? tms / ms : undefined;
    if (!c.ok) {
      console.log(`${s.name.padEnd(40)} | WRONG: sampled relative error ${c.error.toExponential(2)}, no time`);
    } else {
      console.log(
        `${s.name.padEnd(40)} | ${fmt(ms, 2).padStart(7)} | ${fmt(gflops).padStart(7)} | ${fmt(frac && frac * 100).padStart(6)}% | ${fmt(tms, 2).padStart(8)} | ${fmt(tgflops).padStart(13)} | ${ratio === undefined ? '-' : ratio.toFixed(2) + 'x'}`,
      );
    }
    return { ...s, dtype: 'f32', ok: c.ok, sampledRelError: c.error, medianMs: ms, gflops, fractionOfPeak: frac, torchMedianMs: tms, torchGflops: tgflops, speedupVsTorch: ratio, roundsMs: oursRounds, torchRoundsMs: torchRounds };
  });

  const info = cf.backendInfo();
  let gpu: Record<string, unknown> | null = null;
  if (info.devices.length > 0) {
    const dev = info.devices[0]!;
    console.log(`\nGPU: ${dev.name} (sm_${dev.computeCapability.replace('.', '')}), bf16`);
    // Every kernel the device has: 'auto' first (the TMA + wgmma kernel on Hopper), then mma.sync.
    const kernels = [...new Set((['auto', 'mma.sync'] as const).map((w) => cf.native.cudaGemmKernel('cuda:0', w)))];
    const byKernel = kernels.map((kernel) => {
      cf.native.cudaGemmKernel('cuda:0', kernel.startsWith('mma.sync') ? 'mma.sync' : 'auto');
      // PyTorch runs once, with the first kernel; its times do not depend on ours.
      const rows = cf.scope(() => compare(GPU_SHAPES.map((s) => prepare(s, 'cuda:0', 'bf16', 1e-2)), 'cuda', threads, 1, torch && kernel === kernels[0]));
      console.log(`\nkernel: ${kernel}`);
      return { kernel, rows };
    });
    cf.native.cudaGemmKernel('cuda:0', 'auto');
    const torchMs = byKernel[0]!.rows.map((r) => r.tms);
    const results = byKernel.flatMap(({ kernel, rows }) =>
      rows.map(({ c, ms }, i) => {
        const tms = torchMs[i];
        const tflops = ms !== undefined ? flops(c.shape) / ms / 1e9 : undefined;
        const ratio = ms !== undefined && tms !== undefined ? tms / ms : undefined;
        if (!c.ok) console.log(`${kernel} ${c.shape.name}: WRONG: sampled relative error ${c.error.toExponential(2)}, no time`);
        else
          console.log(
            `${kernel} ${c.shape.name}: ${fmt(ms, 3)} ms, ${fmt(tflops)} TFLOP/s (${fmt(tflops && (tflops / PERF_BF16_CEILING_TFLOPS) * 100)}% of ${PERF_BF16_CEILING_TFLOPS}), torch ${fmt(tms, 3)} ms -> ${ratio === undefined ? '-' : ratio.toFixed(2) + 'x'}`,
          );
        return { ...c.shape, kernel, dtype: 'bf16', ok: c.ok, sampledRelError: c.error, medianMs: ms, tflops, fractionOfCeiling: tflops && tflops / PERF_BF16_CEILING_TFLOPS, torchMedianMs: tms, speedupVsTorch: ratio };
      }),
    );
    const first = byKernel[0]!.rows[0];
    gpu = { device: dev, ceilingTflops: PERF_BF16_CEILING_TFLOPS, kernels, torch: first?.meta ?? null, torchNote: first?.note, results };
  }

  const path = writeResult('gemm', gpu ? `cuda-${(gpu.device as { name: string }).name}` : 'cpu', {
    cpu: { peak, threads, kernel, rounds, torch: cpu[0]?.meta ?? null, torchNote: cpu[0]?.note, results: cpuResults },
    gpu,
  });
  console.log(`\nwrote ${path}`);
}

main();
