// Device work of one training step, counted from the native calls: the FLOPs of the matrix
// products (GEMMs and attention) and the bytes every other kernel reads and writes. On a GPU
// the products run near the tensor-core rate and everything else (casts, norms, activations,
// residual adds, gradient sums, the optimizer) at memory bandwidth, so these two counts give
// the step's floor, and show which ops a faster step has to remove or fuse.
//
// Method: the real model (not a narrow twin) on the CPU backend, one step at batch 2 and one
// at batch 4 in the chosen precision, every native call recorded with its tensor arguments.
// Activations grow linearly with the batch and weights do not, so each op's count at the
// target batch is the batch-2 count plus (target - 2) times half the difference. Bytes are
// each tensor argument's size once (what a kernel that reads each input and writes each output
// once moves), twice for an output a call adds into (an accumulating input gradient); FLOPs:
// GEMMs 2·M·N·K, attention 4·B·H·S²·D forward and 10·B·H·S²·D backward (halved when causal).
// The floor times use PERF.md's H100 ceilings (3.0 TB/s, 798 TFLOP/s bf16).
//
// PyTorch's side (bench/compare/train_step.py --count-traffic, unless --no-torch): the same
// count over aten ops for OpenCLIP's formulation of the model (nn.MultiheadAttention, the
// materialized-logits loss) under torch.autocast on the CPU, forward and backward only (its CPU
// AdamW is not the fused one a GPU would run); the ratio compares our forward and backward
// with it. PyTorch's CPU autocast keeps layer_norm in the input's dtype where CUDA's runs it
// in f32; every LayerNorm input of a ViT CLIP is f32 either way, so the count is CUDA's.
// It runs on PyTorch's fake tensors (shapes and dtypes only, nothing computed), in seconds.
//
// Run: node --import tsx bench/step_traffic.bench.ts [--models name:batch,...] [--precision amp_bf16|fp32] [--no-torch]
// Writes bench/results/<date>-cpu-step_traffic.json.
import { join } from 'node:path';
import * as cf from '../lib/index.js';
import type { NativeTensor } from '../lib/native.js';
import { dtypeBytes, type DType } from '../lib/tensor/tensor.js';
import { numel } from '../lib/tensor/ops/util.js';
import { createModel, getModelConfig } from '../lib/nn/factory.js';
import { AdamW } from '../lib/optim/adamw.js';
import { paramGroups } from '../lib/optim/param_groups.js';
import { accumulatedBackward, computeDtype } from '../lib/train/trainer.js';
import { clampLogitScale } from '../lib/loss/clip.js';
import { benchArgs, benchDir, instrumentNative, randomBatch, runPython, writeResult } from './lib.js';

const HBM_TBPS = 3.0;
const BF16_TFLOPS = 798;
const RUNS = 'ViT-B-32:256';
const SMALL = 2;
const LARGE = 4;

interface OpWork {
  calls: number;
  bytes: number;
  flops: number;
}

type Work = Map<string, OpWork>;

function isTensor(x: unknown): x is NativeTensor {
  return typeof x === 'object' && x !== null && 'handle' in x && 'shape' in x && 'dtype' in x;
}

function tensorBytes(x: unknown): number {
  if (Array.isArray(x)) return x.reduce((s: number, t) => s + tensorBytes(t), 0);
  if (!isTensor(x)) return 0;
  return numel(x.shape) * dtypeBytes(x.dtype as DType);
}

/** Per attention call: FLOPs per score element per head dim, and the index of its `causal` argument. */
const ATTENTION_CALLS: Record<string, [number, number]> = {
  attentionForward: [4, 5],
  attentionBackward: [10, 9],
  attentionPackedForward: [4, 3],
  attentionPackedBackward: [10, 5],
};

/** Multiply-add FLOPs of a product call, 0 for any other call. */
function productFlops(name: string, args: unknown[]): number {
  if (name === 'matmul') {
    const [a, , , out, transA] = args as [NativeTensor, NativeTensor, unknown, NativeTensor, boolean];
    const k = a.shape[a.shape.length - (transA ? 2 : 1)]!;
    return 2 * numel(out.shape) * k;
  }
  const spec = ATTENTION_CALLS[name];
  if (!spec) return 0;
  const [perScore, causalIndex] = spec;
  const out = (name.startsWith('attentionPacked') ? args[1] : args[3]) as NativeTensor;
  // out is [B, H, S, D] (plain) or [B, S, H, D] (packed): B·H·S·D elements either way.
  const s = name.startsWith('attentionPacked') ? out.shape[1]! : out.shape[2]!;
  const flops = perScore * numel(out.shape) * s;
  return args[causalIndex] === true ? flops / 2 : flops;
}

/** Bytes a call moves beyond each tensor argument once: an output it also reads (accumulate). */
function readBackBytes(name: string, args: unknown[]): number {
  if (name === 'dwconvBackwardInput' && args[7] === true) return tensorBytes(args[2]);
  if (name === 'layerNormBackward' && args[8] === true) return tensorBytes(args[5]);
  return 0;
}

function countStep(step: () => void): Work {
  const work: Work = new Map();
  const add = (op: string, bytes: number, flops: number): void => {
    const w = work.get(op) ?? { calls: 0, bytes: 0, flops: 0 };
    w.calls++;
    w.bytes += bytes;
    w.flops += flops;
    work.set(op, w);
  };
  const undo = instrumentNative((name, args) => {
    add(name, tensorBytes(args) + readBackBytes(name, args), productFlops(name, args));
    // A product's activation epilogue writes or reads the pre-activation beside its output:
    // memory traffic of its own, counted apart from the product's FLOPs.
    if (name === 'matmul' && isTensor(args[8])) add('matmul activation epilogue (pre-activation)', tensorBytes(args[8]), 0);
  });
  try {
    step();
  } finally {
    undo();
  }
  return work;
}

/** Each op's count at `batch`, from the counts at SMALL and LARGE (linear in the batch). */
function extrapolate(small: Work, large: Work, batch: number): Work {
  const out: Work = new Map();
  const t = (batch - SMALL) / (LARGE - SMALL);
  for (const name of new Set([...small.keys(), ...large.keys()])) {
    const a = small.get(name) ?? { calls: 0, bytes: 0, flops: 0 };
    const b = large.get(name) ?? { calls: 0, bytes: 0, flops: 0 };
    out.set(name, { calls: b.calls, bytes: a.bytes + t * (b.bytes - a.bytes), flops: a.flops + t * (b.flops - a.flops) });
  }
  return out;
}

interface TorchCount {
  ops: Record<string, OpWork>;
}

/** PyTorch's forward + backward bytes of non-product ops and product FLOPs, or why not. */
function torchCounts(name: string, batch: number, precision: string, threads: number): { gb: number; tflop: number; byOp: OpRow[] } | string {
  const configPath = join(benchDir, '..', 'lib', 'nn', 'configs', `${name}.json`);
  const r = runPython('train_step.py', ['--config', configPath, '--batch', String(batch), '--precision', precision, '--threads', String(threads), '--count-traffic'], 600_000);
  if (!r.ok) return r.why;
  return summarize(new Map(Object.entries((r.value as TorchCount).ops)));
}

interface OpRow {
  op: string;
  calls: number;
  gb: number;
  tflop: number;
}

/** Totals (GB of non-product traffic, product TFLOP) and the ops by bytes, largest first. */
function summarize(work: Work): { gb: number; tflop: number; byOp: OpRow[] } {
  let flops = 0;
  let bytes = 0;
  const byOp: OpRow[] = [];
  for (const [op, w] of work) {
    if (w.flops > 0) flops += w.flops;
    else bytes += w.bytes;
    if (w.bytes > 0 || w.flops > 0) byOp.push({ op, calls: w.calls, gb: +(w.bytes / 1e9).toFixed(3), tflop: +(w.flops / 1e12).toFixed(3) });
  }
  byOp.sort((x, y) => y.gb - x.gb);
  return { gb: bytes / 1e9, tflop: flops / 1e12, byOp };
}

function printOps(rows: readonly OpRow[]): void {
  for (const r of rows.slice(0, 12)) console.log(`  ${r.op.padEnd(52)} ${String(r.calls).padStart(5)} calls ${r.gb.toFixed(2).padStart(8)} GB ${r.tflop > 0 ? `${r.tflop.toFixed(2)} TFLOP` : ''}`);
}

const ms = (gb: number, tflop: number): { memoryMs: number; productMs: number } => ({
  memoryMs: +((gb / (HBM_TBPS * 1e3)) * 1e3).toFixed(2),
  productMs: +((tflop / BF16_TFLOPS) * 1e3).toFixed(2),
});

function main(): void {
  const { get, torch, threads } = benchArgs('step_traffic.bench');
  const precision = get('--precision') ?? 'amp_bf16';
  if (precision !== 'amp_bf16' && precision !== 'fp32') throw new Error(`step_traffic.bench: expected amp_bf16 or fp32 for --precision, got '${precision}'`);
  const runs = (get('--models') ?? RUNS).split(',').map((spec) => {
    const [name, batch] = spec.split(':');
    if (!name || !Number.isInteger(Number(batch)) || Number(batch) < LARGE) throw new Error(`step_traffic.bench: expected name:batch (batch >= ${LARGE}) in --models, got '${spec}'`);
    return { name, batch: Number(batch) };
  });
  const rows = [];
  for (const { name, batch } of runs) {
    const config = getModelConfig(name);
    const model = createModel(config, { seed: 0 });
    const optimizer = new AdamW(paramGroups(model.namedParameters(), 0.1), { lr: 1e-4, weightDecay: 0.1 });
    const rng = new cf.Generator(0);
    const measure = (b: number): Work => {
      const input = randomBatch(config, b, rng);
      const step = (): void => {
        const loss = accumulatedBackward(model, [input], false, computeDtype(precision));
        optimizer.step();
        optimizer.zeroGrad();
        cf.noGrad(() => clampLogitScale(model.logitScale));
        loss.dispose();
      };
      step();
      return countStep(step);
    };
    const work = extrapolate(measure(SMALL), measure(LARGE), batch);
    model.dispose();
    const adamwWork = work.get('adamw') ?? { calls: 0, bytes: 0, flops: 0 };
    work.delete('adamw');
    const ours = summarize(work);
    const optimizerGb = adamwWork.bytes / 1e9;
    console.log(`${name} batch ${batch} ${precision}, forward + backward: products ${ours.tflop.toFixed(2)} TFLOP, other kernels ${ours.gb.toFixed(2)} GB; ` +
      `floor on the H100 ${JSON.stringify(ms(ours.gb, ours.tflop))}; AdamW ${optimizerGb.toFixed(2)} GB more`);
    printOps(ours.byOp);
    const theirs = torch ? torchCounts(name, batch, precision, threads) : 'skipped (--no-torch)';
    if (typeof theirs === 'string') console.log(`PyTorch: ${theirs}`);
    else {
      console.log(`PyTorch (OpenCLIP's formulation), forward + backward: products ${theirs.tflop.toFixed(2)} TFLOP, other ops ${theirs.gb.toFixed(2)} GB ` +
        `(${JSON.stringify(ms(theirs.gb, theirs.tflop))}): ours moves ${(ours.gb / theirs.gb).toFixed(2)}x its bytes`);
      printOps(theirs.byOp);
    }
    rows.push({
      model: name,
      batch,
      precision,
      ours: { productTflop: +ours.tflop.toFixed(3), memoryBoundGb: +ours.gb.toFixed(2), floor: ms(ours.gb, ours.tflop), byOp: ours.byOp },
      optimizerGb: +optimizerGb.toFixed(2),
      torch: typeof theirs === 'string' ? { skipped: theirs } : { productTflop: +theirs.tflop.toFixed(3), memoryBoundGb: +theirs.gb.toFixed(2), floor: ms(theirs.gb, theirs.tflop), byOp: theirs.byOp },
      bytesOursOverTorch: typeof theirs === 'string' ? null : +(ours.gb / theirs.gb).toFixed(3),
    });
  }
  const path = writeResult('step_traffic', 'cpu', { assumed: { hbmTBps: HBM_TBPS, bf16Tflops: BF16_TFLOPS }, countedAtBatches: [SMALL, LARGE], results: rows });
  console.log(`wrote ${path}`);
}

main();
