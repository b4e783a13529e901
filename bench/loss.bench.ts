// Contrastive losses, forward + backward: clipforge's tiled kernels (logits never stored) against
// OpenCLIP's formulation in PyTorch (materialized N×N logits + F.cross_entropy, and its SigLIP
// loss; bench/compare/loss.py) on the same shapes, in the same run.
//
// CPU (default without a GPU): f32, 2 threads on both sides (PERF.md: CLIP loss N 4096 D 512,
//   target >= 1.5× PyTorch with O(N) memory).
// CUDA (default with a GPU): bf16 features, the issue's N ∈ {4096, 32768, 131072, 1048576} ×
//   D ∈ {512, 768, 1024}; PyTorch's out-of-memory shapes are reported as such. Shapes whose time,
//   predicted from the previous one, exceeds --budget-s (default 120) or what is left of
//   bench-gpu's time limit (CLIPFORGE_BENCH_TIMEOUT_S) are skipped and listed; N 1048576 is timed
//   once after its warm-up (`npm run bench:gpu loss` with CLIPFORGE_BENCH_TIMEOUT_S=600 reaches it).
//
// Floor: the materialized formulation does two N×N×D products forward and four backward,
//   12·N²·D FLOPs; the floor is that over the machine's matrix rate, measured in the same run by
//   loss.py (f32 GEMM at the same thread count on CPU, bf16 8192³ on CUDA). "of floor" is
//   floor time / measured time (above 1 means faster than the materialized formulation could
//   ever be). OpenCLIP's SigLIP needs only 6·N²·D (one product forward, two backward). Our
//   kernels' work, which "GF/s" divides by the time: CLIP 8·N²·D on the CPU and on Hopper GPUs
//   (one tile product forward; recompute + two products backward) and 12·N²·D on the mma.sync
//   tiles (row and column passes); SigLIP 6·N²·D on the CPU and Hopper, 8·N²·D on the mma.sync
//   tiles. On a Hopper GPU both CUDA kernel families are timed up to N 32768 (the "kernel"
//   column; cf.native.cudaGemmKernel switches them), the wgmma one beyond.
//
// Correct before fast: on the first shape both sides read the same features (written to a
// temporary folder) and the loss, Σ|dimg| and dlogitScale must agree (f32 1e-4, bf16 2e-2
// relative) or no time is printed.
//
// Memory: growth of the allocator's peak during the timed calls beyond the inputs (ours), and
// PyTorch's peak (CUDA: max_memory_allocated; CPU: growth of the process's max RSS).
//
// Run: node --import tsx bench/loss.bench.ts [--device cpu|cuda] [--threads N] [--shapes NxD,...]
//        [--repeats R] [--budget-s S] [--no-torch]
// Writes bench/results/<date>-<device>-loss.json.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as cf from '../lib/index.js';
import { benchArgs, cpuPeak, median, msLeft, runPython, writeResult } from './lib.js';

type Kind = 'clip' | 'siglip';
const KINDS: Kind[] = ['clip', 'siglip'];
const CPU_SHAPES: [number, number][] = [[2048, 512], [4096, 512], [4096, 768]];
const CUDA_SHAPES: [number, number][] = [4096, 32768, 131072, 1048576].flatMap((n) => [512, 768, 1024].map((d) => [n, d] as [number, number]));
// Initial log-scale and bias of each loss (CLIP ln(1/0.07); SigLIP ln 10 and −10).
const INIT: Record<Kind, [number, number]> = { clip: [cf.LOGIT_SCALE_INIT, 0], siglip: [cf.SIGLIP_LOGIT_SCALE_INIT, cf.SIGLIP_LOGIT_BIAS_INIT] };

interface Args {
  device: 'cpu' | 'cuda';
  threads: number;
  shapes: [number, number][];
  repeats: number;
  budgetS: number;
  torch: boolean;
}

function parseArgs(): Args {
  const { get, int, device, threads, torch } = benchArgs('loss.bench');
  const shapeArg = get('--shapes');
  const shapes = shapeArg
    ? shapeArg.split(',').map((s) => {
        const m = /^(\d+)x(\d+)$/i.exec(s.trim());
        if (!m) throw new Error(`loss.bench: expected NxD in --shapes, got '${s}'`);
        return [Number(m[1]), Number(m[2])] as [number, number];
      })
    : device === 'cuda' ? CUDA_SHAPES : CPU_SHAPES;
  return { device, threads, shapes, repeats: int('--repeats', device === 'cuda' ? 10 : 5), budgetS: int('--budget-s', 120), torch };
}

/** Unit rows from a seeded generator (mulberry32 + Box–Muller), as the loss expects them. */
function unitRows(n: number, d: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const next = (): number => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967297;
  };
  const x = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let k = 0; k < d; k++) {
      const v = Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
      x[i * d + k] = v;
      ss += v * v;
    }
    const r = 1 / Math.sqrt(ss);
    for (let k = 0; k < d; k++) x[i * d + k]! *= r;
  }
  return x;
}

interface Inputs {
  img: cf.Tensor;
  txt: cf.Tensor;
}

function inputs(a: Args, n: number, d: number, host?: { img: Float32Array; txt: Float32Array }): Inputs {
  const dtype = a.device === 'cuda' ? 'bf16' : 'f32';
  const device = a.device === 'cuda' ? 'cuda:0' : 'cpu';
  if (host) return { img: cf.fromArray(host.img, [n, d], { dtype, device, requiresGrad: true }), txt: cf.fromArray(host.txt, [n, d], { dtype, device, requiresGrad: true }) };
  // On the GPU rows of N(0, 1/D) entries: norm 1 ± O(1/√D), without a host round trip of N·D floats.
  const std = 1 / Math.sqrt(d);
  return { img: cf.randn([n, d], { dtype, device, std, requiresGrad: true }), txt: cf.randn([n, d], { dtype, device, std, requiresGrad: true }) };
}

interface Measured {
  ms: number;
  loss: number;
  dimgAbsSum: number;
  dscale: number;
  peakBytes: number;
}

/** Median fwd+bwd time of one loss over the repeats, after one warm-up call. */
function measure(a: Args, kind: Kind, x: Inputs, repeats: number): Measured {
  const device = x.img.device;
  const sync = (): void => {
    if (device !== 'cpu') cf.synchronize(device);
  };
  const ls = cf.scalar(INIT[kind][0], { device, requiresGrad: true });
  const lb = cf.scalar(INIT[kind][1], { device, requiresGrad: true });
  const params = [x.img, x.txt, ls, lb];
  const stats = (): { allocatedBytes: number; peakAllocatedBytes: number } => (device === 'cpu' ? cf.memoryStats().cpu : cf.memoryStats().cuda[0]!);
  const allocated0 = stats().allocatedBytes;
  const times: number[] = [];
  let last: Omit<Measured, 'ms' | 'peakBytes'> = { loss: NaN, dimgAbsSum: NaN, dscale: NaN };
  for (let r = 0; r <= repeats; r++) {
    for (const p of params) {
      p.grad?.dispose();
      p.grad = null;
    }
    sync();
    const t0 = performance.now();
    const loss = kind === 'clip' ? cf.clipLoss(x.img, x.txt, ls) : cf.siglipLoss(x.img, x.txt, ls, lb);
    loss.backward();
    sync();
    const dt = performance.now() - t0;
    if (r > 0) times.push(dt);
    if (r === repeats) {
      const g = x.img.grad!.toArray();
      let s = 0;
      for (let i = 0; i < g.length; i++) s += Math.abs(g[i]!);
      last = { loss: loss.item(), dimgAbsSum: s, dscale: ls.grad!.item() };
    }
    loss.dispose();
  }
  const peakBytes = Math.max(0, stats().peakAllocatedBytes - allocated0);
  for (const p of params) p.dispose();
  return { ms: median(times), peakBytes, ...last };
}

interface TorchEntry {
  kind: Kind;
  n: number;
  d: number;
  oom?: boolean;
  median_s?: number;
  peak_bytes?: number;
  loss?: number;
  dimg_abs_sum?: number;
  dscale?: number;
}

interface TorchOut {
  torch: string;
  device_name: string;
  matrix_flops: number;
  results: TorchEntry[];
}

const rel = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
const fmtBytes = (b: number | undefined): string => (b === undefined ? '-' : b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);

function main(): void {
  const a = parseArgs();
  if (a.device === 'cpu') cf.setNumThreads(a.threads);
  const info = cf.backendInfo();
  const deviceName = a.device === 'cuda' ? info.devices[0]?.name ?? 'cuda' : 'cpu';
  if (a.device === 'cuda' && info.devices.length === 0) throw new Error(`loss.bench: --device cuda but no GPU: ${info.cudaUnavailable ?? 'no CUDA device'}`);
  const [n0, d0] = a.shapes[0]!;
  const check = { img: unitRows(n0, d0, 1), txt: unitRows(n0, d0, 2) };

  let torch: TorchOut | null = null;
  let torchWhy = 'skipped (--no-torch)';
  if (a.torch) {
    const dir = mkdtempSync(join(tmpdir(), 'clipforge-loss-bench-'));
    try {
      writeFileSync(join(dir, 'img.f32'), check.img);
      writeFileSync(join(dir, 'txt.f32'), check.txt);
      const shapes = a.shapes.map(([n, d]) => `${n}x${d}`).join(',');
      const r = runPython('loss.py', ['--device', a.device, '--shapes', shapes, '--threads', String(a.threads), '--repeats', String(a.repeats), '--check', dir], 3_600_000);
      if (r.ok) torch = r.value as TorchOut;
      else torchWhy = r.why;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (!torch) console.log(`PyTorch side did not run: ${torchWhy}`);
  const theoretical = a.device === 'cpu' ? cpuPeak(a.threads) : null;
  const matrixFlops = torch?.matrix_flops ?? (theoretical ? theoretical.gflops * 1e9 : 798e12);
  // The tile products' work of each kernel family (see the top of this file).
  const workPerN2D = (kind: Kind, kernel: string): number => (a.device === 'cpu' || kernel.startsWith('wgmma') ? (kind === 'clip' ? 8 : 6) : kind === 'clip' ? 12 : 8);
  // Each kernel family this device has, by name: on a Hopper GPU both up to N 32768.
  const families: { which: 'auto' | 'mma.sync'; name: string }[] =
    a.device === 'cpu' ? [{ which: 'auto', name: cf.native.gemmKernel() }] : [{ which: 'auto', name: cf.native.cudaGemmKernel('cuda:0', 'auto') }];
  if (families[0]!.name.startsWith('wgmma')) families.push({ which: 'mma.sync', name: cf.native.cudaGemmKernel('cuda:0', 'mma.sync') });
  if (a.device === 'cuda') cf.native.cudaGemmKernel('cuda:0', 'auto');
  const kernels = (n: number) => (n <= 32768 ? families : families.slice(0, 1));
  const tol = a.device === 'cpu' ? 1e-4 : 2e-2;

  console.log(`contrastive loss fwd+bwd on ${deviceName}${a.device === 'cpu' ? `, ${a.threads} threads` : ''}; matrix rate ${(matrixFlops / 1e9).toFixed(1)} GFLOP/s (${torch ? 'PyTorch GEMM, this run' : theoretical ? 'theoretical peak' : 'PERF.md'})`);
  if (theoretical) console.log(`theoretical f32 peak: ${theoretical.gflops.toFixed(1)} GFLOP/s (${theoretical.model}, ${theoretical.isa}, ${theoretical.ghz.toFixed(2)} GHz nominal)`);
  console.log('loss    N        D     kernel                ours ms  GF/s   of floor  peak mem    | torch ms  of floor  peak mem   | speedup');
  const rows: Record<string, unknown>[] = [];
  const skipped: string[] = [];
  let lastRate = 0;
  for (const [si, [n, d]] of a.shapes.entries()) {
    for (const [kind, { which, name: kernel }] of KINDS.flatMap((k) => kernels(n).map((f) => [k, f] as const))) {
      const floorMs = ((12 * n * n * d) / matrixFlops) * 1e3;
      const repeats = n >= 1048576 ? 1 : n >= 131072 ? Math.min(a.repeats, 3) : a.repeats;
      const predictedS = lastRate > 0 ? (workPerN2D(kind, kernel) * n * n * d) / lastRate : 0;
      if (predictedS * (repeats + 1) > Math.min(a.budgetS, msLeft() / 1000)) {
        skipped.push(`${kind} ${n}x${d} ${kernel} (predicted ${predictedS.toFixed(0)} s per call)`);
        continue;
      }
      const t = torch?.results.find((e) => e.kind === kind && e.n === n && e.d === d);
      const x = inputs(a, n, d, si === 0 ? check : undefined);
      let ours: Measured;
      try {
        if (a.device === 'cuda') cf.native.cudaGemmKernel('cuda:0', which);
        ours = measure(a, kind, x, repeats);
      } finally {
        if (a.device === 'cuda') cf.native.cudaGemmKernel('cuda:0', 'auto');
      }
      if (si === 0 && t && !t.oom) {
        const errs = [rel(ours.loss, t.loss!), rel(ours.dimgAbsSum, t.dimg_abs_sum!), rel(ours.dscale, t.dscale!)];
        if (errs.some((e) => !(e <= tol))) {
          throw new Error(`loss.bench: ${kind} ${n}x${d} disagrees with PyTorch (loss ${ours.loss} vs ${t.loss}, Σ|dimg| ${ours.dimgAbsSum} vs ${t.dimg_abs_sum}, dscale ${ours.dscale} vs ${t.dscale}); no times printed`);
        }
      }
      lastRate = (workPerN2D(kind, kernel) * n * n * d) / (ours.ms / 1e3);
      const torchMs = t && !t.oom ? t.median_s! * 1e3 : undefined;
      const row = {
        kind, n, d, kernel, work_per_n2d: workPerN2D(kind, kernel), dtype: a.device === 'cuda' ? 'bf16' : 'f32',
        ours_ms: ours.ms, ours_gflops: lastRate / 1e9, ours_of_floor: floorMs / ours.ms, ours_peak_bytes: ours.peakBytes,
        torch_ms: torchMs ?? null, torch_of_floor: torchMs ? floorMs / torchMs : null, torch_peak_bytes: t?.peak_bytes ?? null, torch_oom: t?.oom ?? false,
        speedup: torchMs ? torchMs / ours.ms : null, floor_ms: floorMs, loss: ours.loss,
      };
      rows.push(row);
      const torchCols = t?.oom ? 'out of memory                   ' : torchMs ? `${torchMs.toFixed(1).padStart(8)}  ${(floorMs / torchMs).toFixed(2).padStart(8)}  ${fmtBytes(t!.peak_bytes).padStart(10)}` : '       -         -           -';
      console.log(
        `${kind.padEnd(7)} ${String(n).padEnd(8)} ${String(d).padEnd(5)} ${kernel.slice(0, 20).padEnd(21)} ${ours.ms.toFixed(1).padStart(8)} ${(lastRate / 1e9).toFixed(1).padStart(6)} ${(floorMs / ours.ms).toFixed(2).padStart(8)}  ${fmtBytes(ours.peakBytes).padStart(10)} | ${torchCols} | ${torchMs ? (torchMs / ours.ms).toFixed(2) + '×' : '-'}`,
      );
    }
  }
  if (skipped.length) console.log(`skipped over the ${a.budgetS} s budget: ${skipped.join('; ')}`);
  const path = writeResult('loss', a.device === 'cpu' ? 'cpu' : deviceName, {
    threads: a.device === 'cpu' ? a.threads : undefined,
    torch: torch?.torch ?? null,
    torch_missing: torch ? undefined : torchWhy,
    matrix_flops: matrixFlops,
    matrix_flops_source: torch ? 'PyTorch GEMM in this run' : theoretical ? 'theoretical' : 'PERF.md',
    theoretical_peak_flops: theoretical ? theoretical.gflops * 1e9 : undefined,
    floor: '12·N²·D FLOPs (two logit products forward, four backward) / matrix_flops',
    work: "our kernels' FLOPs per row's work_per_n2d · N²·D (CLIP 8, SigLIP 6 on the CPU and the wgmma path; 12 and 8 on the mma.sync tiles)",
    results: rows,
    skipped,
  });
  console.log(`wrote ${path}`);
}

main();
