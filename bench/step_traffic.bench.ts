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
// once moves); FLOPs: GEMMs 2·M·N·K, attention 4·B·H·S²·D forward and 10·B·H·S²·D backward
// (halved when causal). The floor times use PERF.md's H100 ceilings (3.0 TB/s, 798 TFLOP/s bf16).
//
// Run: node --import tsx bench/step_traffic.bench.ts [--models name:batch,...] [--precision amp_bf16|fp32]
// Writes bench/results/<date>-cpu-step_traffic.json.
import * as cf from '../lib/index.js';
import type { NativeTensor } from '../lib/native.js';
import { dtypeBytes, type DType } from '../lib/tensor/tensor.js';
import { createModel, getModelConfig } from '../lib/nn/factory.js';
import { AdamW } from '../lib/optim/adamw.js';
import { paramGroups } from '../lib/optim/param_groups.js';
import { accumulatedBackward, computeDtype } from '../lib/train/trainer.js';
import { clampLogitScale } from '../lib/loss/clip.js';
import { benchArgs, instrumentNative, randomBatch, writeResult } from './lib.js';

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
  return x.shape.reduce((a, b) => a * b, 1) * dtypeBytes(x.dtype as DType);
}

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Multiply-add FLOPs of a product call, 0 for any other call. */
function productFlops(name: string, args: unknown[]): number {
  if (name === 'matmul') {
    const [a, , , out, transA] = args as [NativeTensor, NativeTensor, unknown, NativeTensor, boolean];
    const k = a.shape[a.shape.length - (transA ? 2 : 1)]!;
    return 2 * numel(out.shape) * k;
  }
  const attention: Record<string, [number, number]> = {
    attentionForward: [4, 5],
    attentionBackward: [10, 9],
    attentionPackedForward: [4, 3],
    attentionPackedBackward: [10, 6],
  };
  const spec = attention[name];
  if (!spec) return 0;
  const [perScore, causalIndex] = spec;
  const out = (name.startsWith('attentionPacked') ? args[1] : args[3]) as NativeTensor;
  // out is [B, H, S, D] (plain) or [B, S, H, D] (packed): B·H·S·D elements either way.
  const s = name.startsWith('attentionPacked') ? out.shape[1]! : out.shape[2]!;
  const flops = perScore * numel(out.shape) * s;
  return args[causalIndex] === true ? flops / 2 : flops;
}

function countStep(step: () => void): Work {
  const work: Work = new Map();
  const undo = instrumentNative((name, args) => {
    const w = work.get(name) ?? { calls: 0, bytes: 0, flops: 0 };
    w.calls++;
    w.bytes += tensorBytes(args);
    w.flops += productFlops(name, args);
    work.set(name, w);
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

function main(): void {
  const { get } = benchArgs('step_traffic.bench');
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
    let productFlopsTotal = 0;
    let memoryBytes = 0;
    const byOp = [];
    for (const [op, w] of work) {
      if (w.flops > 0) productFlopsTotal += w.flops;
      else memoryBytes += w.bytes;
      if (w.bytes > 0 || w.flops > 0) byOp.push({ op, calls: w.calls, gb: +(w.bytes / 1e9).toFixed(3), tflop: +(w.flops / 1e12).toFixed(3) });
    }
    byOp.sort((x, y) => y.gb - x.gb);
    const productMs = (productFlopsTotal / (BF16_TFLOPS * 1e12)) * 1e3;
    const memoryMs = (memoryBytes / (HBM_TBPS * 1e12)) * 1e3;
    const row = {
      model: name,
      batch,
      precision,
      productTflop: +(productFlopsTotal / 1e12).toFixed(3),
      productFloorMs: +productMs.toFixed(2),
      memoryBoundGb: +(memoryBytes / 1e9).toFixed(2),
      memoryFloorMs: +memoryMs.toFixed(2),
      memoryShareOfFloor: +(memoryMs / (memoryMs + productMs)).toFixed(3),
      byOp,
    };
    rows.push(row);
    console.log(`${name} batch ${batch} ${precision}: products ${row.productTflop} TFLOP (${row.productFloorMs} ms at ${BF16_TFLOPS} TFLOP/s), ` +
      `other kernels ${row.memoryBoundGb} GB (${row.memoryFloorMs} ms at ${HBM_TBPS} TB/s): ${(row.memoryShareOfFloor * 100).toFixed(0)}% of the floor is memory traffic`);
    for (const r of byOp.slice(0, 14)) console.log(`  ${r.op.padEnd(26)} ${String(r.calls).padStart(5)} calls ${r.gb.toFixed(2).padStart(8)} GB ${r.tflop > 0 ? `${r.tflop.toFixed(2)} TFLOP` : ''}`);
  }
  const path = writeResult('step_traffic', 'cpu', { assumed: { hbmTBps: HBM_TBPS, bf16Tflops: BF16_TFLOPS }, countedAtBatches: [SMALL, LARGE], results: rows });
  console.log(`wrote ${path}`);
}

main();
