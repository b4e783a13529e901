// Depthwise convolution: forward, input-gradient and weight-gradient times of clipforge's
// kernels against PyTorch's nn.Conv2d(C, C, K, groups=C) on the same shapes, in the same run.
//
// CPU (default without a GPU): f32, 2 threads on both sides, PERF.md's shapes N8 C128 28 x 28
//   at K 7 / 13 / 31 (plus K 3 and 5); GFLOP/s against the machine's f32 peak.
// CUDA (default with a GPU): bf16, the issue's shapes, batch 128: UniRepLKNet-L's K 13 stages
//   at 224 px (C 192 56^2, 384 28^2, 768 14^2, 1536 7^2), RepLKNet's K 31 (C 128 56^2, 256
//   28^2) and the branch sizes K 3 / 5 / 7 (C 384 28^2). Each kernel's fraction of its floors:
//   the FMA floor (FLOPs over the fp32 CUDA-core rate, measured by bench/compare/dwconv.py as
//   an 8192^3 fp32 matmul with TF32 off; PERF.md's 67 TFLOP/s datasheet figure without
//   PyTorch) and the memory floor (compulsory bytes over the measured copy bandwidth; 3.0
//   TB/s without PyTorch); ratios to PyTorch in NCHW and channels_last.
//
// Ours runs NHWC (the layout its kernels take); PyTorch runs its own layouts. FLOPs are
// nominal, 2 K^2 N C Ho Wo per kernel (padding taps included, as PyTorch's are), so GFLOP/s
// compare like for like. "fwdbwd" is the forward and all three gradients through autograd
// (PyTorch: the module forward and torch.autograd.grad for x, w and b).
//
// Correct before fast: the first image of each shape is checked first, on the CPU against a
// naive f64 convolution (y, dx, dw; relative error < 1e-4), on the GPU against the CPU kernel
// (bf16, < 1e-2); a shape that fails prints no time.
//
// Timing: median over repeats after warm-up. On the GPU a repeat is a run of back-to-back
// calls closed by one synchronize, inputs rotated over enough copies to exceed a 50 MB L2.
//
// Run: node --import tsx bench/dwconv.bench.ts [--device cpu|cuda] [--threads N] [--no-torch]
//        [--shapes N,C,H,W,K[,stride[,dilation]] ...]
// Writes bench/results/<date>-<device>-dwconv.json.
import * as cf from '../lib/index.js';
import { benchArgs, cpuPeak, runPython, timeMedian, writeResult } from './lib.js';

interface Shape {
  N: number;
  C: number;
  H: number;
  W: number;
  K: number;
  stride: number;
  dilation: number;
}

const CPU_SHAPES = ['8,128,28,28,3', '8,128,28,28,5', '8,128,28,28,7', '8,128,28,28,13', '8,128,28,28,31'];
const CUDA_SHAPES = [
  '128,192,56,56,13', '128,384,28,28,13', '128,768,14,14,13', '128,1536,7,7,13',
  '128,128,56,56,31', '128,256,28,28,31',
  '128,384,28,28,3', '128,384,28,28,5', '128,384,28,28,7',
];
const PERF_FMA_TFLOPS = 67;
const PERF_COPY_TBS = 3.0;
const L2_BYTES = 50 << 20;

function parseShape(s: string): Shape {
  const p = s.split(',').map(Number);
  if (p.length < 5 || p.length > 7 || p.some((v) => !Number.isInteger(v) || v < 1)) {
    throw new Error(`dwconv.bench: expected N,C,H,W,K[,stride[,dilation]] for a shape, got '${s}'`);
  }
  return { N: p[0]!, C: p[1]!, H: p[2]!, W: p[3]!, K: p[4]!, stride: p[5] ?? 1, dilation: p[6] ?? 1 };
}

function args() {
  const { argv, device, threads, torch } = benchArgs('dwconv.bench');
  const i = argv.indexOf('--shapes');
  const listed = i >= 0 ? argv.slice(i + 1).filter((a) => !a.startsWith('--')) : null;
  const shapes = (listed && listed.length ? listed : device === 'cpu' ? CPU_SHAPES : CUDA_SHAPES).map(parseShape);
  return { device, threads, torch, shapes };
}

const label = (s: Shape): string => `N${s.N} C${s.C} ${s.H}x${s.W} K${s.K}${s.stride > 1 ? ` s${s.stride}` : ''}${s.dilation > 1 ? ` d${s.dilation}` : ''}`;
const pad = (s: Shape): number => (s.dilation * (s.K - 1)) / 2;
const outH = (s: Shape): number => cf.dwconvOutputSize(s.H, s.K, s.stride, pad(s), s.dilation);
const outW = (s: Shape): number => cf.dwconvOutputSize(s.W, s.K, s.stride, pad(s), s.dilation);
const flops = (s: Shape): number => 2 * s.K * s.K * s.N * s.C * outH(s) * outW(s);

// ---- correctness ------------------------------------------------------------------------

function randn(n: number, seed: number): Float32Array {
  let st = seed >>> 0;
  const u = (): number => {
    st = (st + 0x6d2b79f5) >>> 0;
    let t = Math.imul(st ^ (st >>> 15), st | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return a;
}

/** Naive f64 y, dx and dw of one NHWC image. */
function reference(s: Shape, x: Float32Array, w: Float32Array, dy: Float32Array) {
  const ho = outH(s), wo = outW(s), p = pad(s), K = s.K, C = s.C;
  const y = new Float64Array(ho * wo * C), dx = new Float64Array(s.H * s.W * C), dw = new Float64Array(C * K * K);
  for (let a = 0; a < ho; a++)
    for (let b = 0; b < wo; b++)
      for (let i = 0; i < K; i++) {
        const ih = a * s.stride - p + i * s.dilation;
        if (ih < 0 || ih >= s.H) continue;
        for (let j = 0; j < K; j++) {
          const iw = b * s.stride - p + j * s.dilation;
          if (iw < 0 || iw >= s.W) continue;
          const xo = (ih * s.W + iw) * C, yo = (a * wo + b) * C;
          for (let c = 0; c < C; c++) {
            const wv = w[(c * K + i) * K + j]!;
            y[yo + c] += wv * x[xo + c]!;
            dx[xo + c] += wv * dy[yo + c]!;
            dw[(c * K + i) * K + j] += x[xo + c]! * dy[yo + c]!;
          }
        }
      }
  return { y, dx, dw };
}

/** max |a - e| / max |e|: the error relative to the output's scale. */
function relErr(a: ArrayLike<number>, e: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < e.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - e[i]!));
    m = Math.max(m, Math.abs(e[i]!));
  }
  return d / Math.max(m, 1e-30);
}

/** Our y, dx and dw of the first image on `device`. */
function oursOneImage(s: Shape, device: string, dtype: 'f32' | 'bf16', x: Float32Array, w: Float32Array, dy: Float32Array) {
  return cf.scope(() => {
    const p = pad(s);
    const xt = cf.fromArray(x, [1, s.H, s.W, s.C], { device, dtype });
    const wt = cf.fromArray(w, [s.C, 1, s.K, s.K], { device, dtype });
    const dyt = cf.fromArray(dy, [1, outH(s), outW(s), s.C], { device, dtype });
    const y = cf.empty([1, outH(s), outW(s), s.C], { device, dtype });
    const dx = cf.empty([1, s.H, s.W, s.C], { device, dtype });
    const dw = cf.empty([s.C, 1, s.K, s.K], { device, dtype });
    cf.native.dwconvForward(xt, wt, null, y, s.stride, p, p, s.dilation);
    cf.native.dwconvBackwardInput(dyt, wt, dx, s.stride, p, p, s.dilation, false);
    cf.native.dwconvBackwardWeight(xt, dyt, dw, null, s.K, s.stride, p, p, s.dilation);
    return { y: y.toArray(), dx: dx.toArray(), dw: dw.toArray() };
  });
}

/** Why the shape's kernels are wrong, or null when they agree with the reference. */
function check(s: Shape, device: 'cpu' | 'cuda'): string | null {
  const x = randn(s.H * s.W * s.C, 1), w = randn(s.C * s.K * s.K, 2).map((v) => v / s.K), dy = randn(outH(s) * outW(s) * s.C, 3);
  let errs: number[];
  let tol: number;
  if (device === 'cpu') {
    const ref = reference(s, x, w, dy);
    const got = oursOneImage(s, 'cpu', 'f32', x, w, dy);
    errs = [relErr(got.y, ref.y), relErr(got.dx, ref.dx), relErr(got.dw, ref.dw)];
    tol = 1e-4;
  } else {
    const ref = oursOneImage(s, 'cpu', 'bf16', x, w, dy);
    const got = oursOneImage(s, 'cuda:0', 'bf16', x, w, dy);
    errs = [relErr(got.y, ref.y), relErr(got.dx, ref.dx), relErr(got.dw, ref.dw)];
    tol = 1e-2;
  }
  const bad = ['y', 'dx', 'dw'].filter((_, i) => !(errs[i]! < tol));
  return bad.length ? `${bad.join(', ')} off by ${errs.map((e) => e.toExponential(1)).join(' / ')} (tolerance ${tol})` : null;
}

// ---- timing -----------------------------------------------------------------------------

interface Times {
  fwdMs: number;
  dgradMs: number;
  wgradMs: number;
  fwdbwdMs: number;
}

function timeOurs(s: Shape, device: 'cpu' | 'cuda'): Times {
  const dev = device === 'cpu' ? 'cpu' : 'cuda:0';
  const dtype = device === 'cpu' ? 'f32' : 'bf16';
  const p = pad(s), ho = outH(s), wo = outW(s);
  const bytes = (s.N * s.C * (s.H * s.W + ho * wo) * (dtype === 'f32' ? 4 : 2));
  const nbuf = device === 'cpu' ? 1 : Math.min(8, Math.floor(2 * L2_BYTES / bytes) + 1);
  return cf.scope(() => {
    const bufs = Array.from({ length: nbuf }, (_, i) => ({
      x: cf.randn([s.N, s.H, s.W, s.C], { device: dev, dtype }),
      dy: cf.randn([s.N, ho, wo, s.C], { device: dev, dtype }),
    }));
    const w = cf.randn([s.C, 1, s.K, s.K], { device: dev, dtype });
    const b = cf.zeros([s.C], { device: dev, dtype });
    const y = cf.empty([s.N, ho, wo, s.C], { device: dev, dtype });
    const dx = cf.empty([s.N, s.H, s.W, s.C], { device: dev, dtype });
    const dw = cf.empty([s.C, 1, s.K, s.K], { device: dev, dtype });
    const db = cf.empty([s.C], { device: dev, dtype });
    const wg = cf.randn([s.C, 1, s.K, s.K], { device: dev, dtype, requiresGrad: true });
    const bg = cf.zeros([s.C], { device: dev, dtype, requiresGrad: true });
    let k = 0;
    const next = () => bufs[k++ % nbuf]!;
    const kernels: Record<keyof Times, () => void> = {
      fwdMs: () => cf.native.dwconvForward(next().x, w, b, y, s.stride, p, p, s.dilation),
      dgradMs: () => cf.native.dwconvBackwardInput(next().dy, w, dx, s.stride, p, p, s.dilation, false),
      wgradMs: () => {
        const v = next();
        cf.native.dwconvBackwardWeight(v.x, v.dy, dw, db, s.K, s.stride, p, p, s.dilation);
      },
      fwdbwdMs: () =>
        cf.scope(() => {
          const v = next();
          const xg = v.x.view(v.x.shape);
          xg.requiresGrad = true;
          cf.depthwiseConv2d(xg, wg, bg, { stride: s.stride, dilation: s.dilation }).backward(v.dy);
          for (const t of [xg, wg, bg]) {
            t.grad?.dispose();
            t.grad = null;
          }
        }),
    };
    const out = {} as Times;
    for (const key of Object.keys(kernels) as (keyof Times)[]) {
      const fn = kernels[key];
      if (device === 'cpu') {
        out[key] = timeMedian(fn, { warmup: 2, reps: 7, minMs: 500 }).ms;
      } else {
        // A repeat: enough back-to-back calls to fill ~20 ms, closed by one synchronize.
        fn();
        cf.synchronize(dev);
        const t0 = performance.now();
        fn();
        cf.synchronize(dev);
        const calls = Math.max(1, Math.min(200, Math.round(20 / Math.max(performance.now() - t0, 1e-3))));
        out[key] =
          timeMedian(
            () => {
              for (let i = 0; i < calls; i++) fn();
              cf.synchronize(dev);
            },
            { warmup: 1, reps: 10, minMs: 200 },
          ).ms / calls;
      }
    }
    return out;
  });
}

interface TorchResult extends Shape {
  layout: 'nchw' | 'channels_last';
  fwd_ms: number;
  dgrad_ms: number;
  wgrad_ms: number;
  fwdbwd_ms: number;
}
interface TorchOut {
  torch: string;
  device: string;
  results: TorchResult[];
  fp32_fma_tflops: number | null;
  copy_tb_per_s: number | null;
}

function main(): void {
  const opt = args();
  const gpu = opt.device === 'cuda';
  if (gpu && cf.backendInfo().devices.length === 0) throw new Error(`dwconv.bench: --device cuda but no GPU: ${cf.backendInfo().cudaUnavailable ?? 'none found'}`);
  if (!gpu) cf.setNumThreads(opt.threads);
  const shapeArgs = opt.shapes.map((s) => [s.N, s.C, s.H, s.W, s.K, s.stride, s.dilation].join(','));
  const torchRun = opt.torch
    ? runPython('dwconv.py', ['--device', opt.device, ...(gpu ? ['--ceiling'] : ['--threads', String(opt.threads)]), '--shapes', ...shapeArgs])
    : { ok: false as const, why: 'skipped (--no-torch)' };
  const torch = torchRun.ok ? (torchRun.value as TorchOut) : null;
  if (!torchRun.ok) console.log(`PyTorch side did not run: ${torchRun.why}`);
  const deviceName = gpu ? cf.backendInfo().devices[0]!.name : 'cpu';
  const peak = gpu ? null : cpuPeak(opt.threads);
  const fmaTflops = torch?.fp32_fma_tflops ?? PERF_FMA_TFLOPS;
  const copyTbs = torch?.copy_tb_per_s ?? PERF_COPY_TBS;
  const torchFor = (s: Shape, layout: string) =>
    torch?.results.find((r) => r.layout === layout && r.N === s.N && r.C === s.C && r.H === s.H && r.W === s.W && r.K === s.K && r.stride === s.stride && r.dilation === s.dilation);

  if (gpu) console.log(`dwconv, bf16 NHWC, ${deviceName}; fp32 FMA ${fmaTflops.toFixed(1)} TFLOP/s, copy ${copyTbs.toFixed(2)} TB/s${torch?.fp32_fma_tflops ? ' (measured)' : ' (PERF.md)'}`);
  else console.log(`dwconv, f32 NHWC, CPU with ${opt.threads} threads: ${peak!.model}, ${peak!.isa}, peak ${peak!.gflops.toFixed(0)} GFLOP/s at ${peak!.ghz.toFixed(2)} GHz`);

  const rows: Record<string, unknown>[] = [];
  const records: Record<string, unknown>[] = [];
  for (const s of opt.shapes) {
    const wrong = check(s, opt.device);
    if (wrong) {
      console.log(`${label(s)}: WRONG (${wrong}); not timed`);
      records.push({ shape: s, wrong });
      continue;
    }
    const t = timeOurs(s, opt.device);
    const f = flops(s);
    const dsize = gpu ? 2 : 4;
    const xBytes = s.N * s.C * s.H * s.W * dsize, yBytes = s.N * s.C * outH(s) * outW(s) * dsize, wBytes = s.C * s.K * s.K * dsize;
    const kernels = [
      ['fwd', t.fwdMs, f, xBytes + yBytes + wBytes, 'fwd_ms'],
      ['dgrad', t.dgradMs, f, xBytes + yBytes + wBytes, 'dgrad_ms'],
      ['wgrad', t.wgradMs, f, xBytes + yBytes + wBytes, 'wgrad_ms'],
      ['fwdbwd', t.fwdbwdMs, 3 * f, 3 * (xBytes + yBytes + wBytes), 'fwdbwd_ms'],
    ] as const;
    const record: Record<string, unknown> = { shape: s, flopsPerPass: f };
    for (const [name, ms, fl, bytes, key] of kernels) {
      const rate = fl / ms / 1e6; // GFLOP/s
      const entry: Record<string, number | null> = { ms: +ms.toFixed(4), gflops: +rate.toFixed(1) };
      const row: Record<string, string | number> = { shape: label(s), kernel: name, 'ours ms': +ms.toFixed(3) };
      if (gpu) {
        const fmaFloorMs = fl / (fmaTflops * 1e9), memFloorMs = bytes / (copyTbs * 1e9);
        entry.fractionOfFmaFloor = +(fmaFloorMs / ms).toFixed(3);
        entry.fractionOfMemoryFloor = +(memFloorMs / ms).toFixed(3);
        row['TFLOP/s'] = +(rate / 1e3).toFixed(1);
        row['of FMA floor'] = entry.fractionOfFmaFloor;
        row['of mem floor'] = entry.fractionOfMemoryFloor;
        for (const layout of ['nchw', 'channels_last']) {
          const tr = torchFor(s, layout);
          const tms = tr ? (tr[key] as number) : null;
          entry[`torch_${layout}_ms`] = tms;
          entry[`ratio_${layout}`] = tms ? +(tms / ms).toFixed(2) : null;
          row[`x vs ${layout}`] = tms ? +(tms / ms).toFixed(2) : '-';
        }
      } else {
        entry.fractionOfPeak = +(rate / peak!.gflops).toFixed(3);
        row['GFLOP/s'] = +rate.toFixed(1);
        row['of peak'] = entry.fractionOfPeak;
        const tr = torchFor(s, 'nchw');
        const tms = tr ? (tr[key] as number) : null;
        entry.torch_ms = tms;
        entry.ratio = tms ? +(tms / ms).toFixed(2) : null;
        row['torch ms'] = tms ? +tms.toFixed(3) : '-';
        row['torch GFLOP/s'] = tms ? +(fl / tms / 1e6).toFixed(1) : '-';
        row['x faster'] = tms ? +(tms / ms).toFixed(2) : '-';
      }
      record[name] = entry;
      rows.push(row);
    }
    records.push(record);
  }
  console.table(rows);
  const path = writeResult('dwconv', gpu ? deviceName : 'cpu', {
    dtype: gpu ? 'bf16' : 'f32',
    layout: 'nhwc',
    ...(gpu ? { fp32FmaTflops: fmaTflops, copyTbPerS: copyTbs, ceilingsMeasured: !!torch?.fp32_fma_tflops } : { threads: opt.threads, cpu: peak }),
    torch: torch ? { version: torch.torch, layouts: gpu ? ['nchw', 'channels_last'] : ['nchw'] } : { skipped: torchRun.ok ? '' : torchRun.why },
    results: records,
  });
  console.log(`wrote ${path}`);
}

main();
