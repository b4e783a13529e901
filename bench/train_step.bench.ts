// Training throughput: samples/s of whole training steps (both towers forward, CLIP loss,
// backward, AdamW, logit-scale clamp; the trainer's own accumulatedBackward, so host-to-device
// copies of the batch and autocast are included) against the OpenCLIP-equivalent PyTorch
// model of the same config (bench/compare/train_step.py) on the same device, in the same run.
// Batches are random (images and token ids): this measures the model and optimizer, not the
// data loader (bench/dataload.bench.ts does that).
//
// CPU (default without a GPU): fp32, 2 threads on both sides; tiny-builtin at batch 128 (the
//   embedded default run), ViT-B-32 at batch 8 and tiny-unireplknet at batch 16.
// CUDA (default with a GPU): amp_bf16; ViT-B-32 at batch 256, ViT-B-16 at 128, and the
//   UniRepLKNet-L CLIP at 64 (PyTorch side: the training form, dilated branches and
//   BatchNorms, as depthwise nn.Conv2d on NCHW: the official code without its optional
//   iGEMM large-kernel extension).
// Floor: 3 × forward FLOPs per pair (estimateFlops: forward, then backward ≈ 2 × forward) over
//   the device's matrix rate (CPU: the f32 FMA peak of the cores used; CUDA: 798 TFLOP/s
//   bf16); "MFU" is achieved FLOP/s over that rate. Before timing, the PyTorch model's
//   parameter count must equal ours, or its time is not used.
//
// Run: node --import tsx bench/train_step.bench.ts [--device cpu|cuda] [--threads N]
//        [--models name:batch,...] [--steps N] [--no-torch]
// Writes bench/results/<date>-<device>-train_step.json.
import { loadavg } from 'node:os';
import { join } from 'node:path';
import * as cf from '../lib/index.js';
import { clampLogitScale } from '../lib/loss/clip.js';
import { countParameters, createModel, estimateFlops, getModelConfig } from '../lib/nn/factory.js';
import { AdamW } from '../lib/optim/adamw.js';
import { paramGroups } from '../lib/optim/param_groups.js';
import { accumulatedBackward } from '../lib/train/trainer.js';
import { benchArgs, benchDir, cpuPeak, randomBatch, runPython, writeResult } from './lib.js';

const GPU_BF16_TFLOPS = 798;
const CPU_RUNS = 'tiny-builtin:128,ViT-B-32:8,tiny-unireplknet:16';
const CUDA_RUNS = 'ViT-B-32:256,ViT-B-16:128,UniRepLKNet-L-CLIP:64';

function parseArgs() {
  const { get, int, device, threads, torch } = benchArgs('train_step.bench');
  const steps = int('--steps', 10);
  const runs = (get('--models') ?? (device === 'cpu' ? CPU_RUNS : CUDA_RUNS)).split(',').map((spec) => {
    const [name, batch] = spec.split(':');
    const b = Number(batch);
    if (!name || !Number.isInteger(b) || b < 2) throw new Error(`train_step.bench: expected name:batch (batch >= 2) in --models, got '${spec}'`);
    getModelConfig(name);
    return { name, batch: b };
  });
  return { device, threads, steps, runs, torch };
}

// Steps run back to back and the device is waited for once at the end, as in the trainer
// (which reads losses on a GPU in batches): the time per step includes whatever of the host's
// work does not overlap the device's. Two untimed steps first.
function timeOurs(name: string, batch: number, device: string, precision: 'bf16' | null, steps: number): number {
  const model = createModel(name, { device: device === 'cpu' ? 'cpu' : 'cuda:0', seed: 0 });
  try {
    const optimizer = new AdamW(paramGroups(model.namedParameters(), 0.1), { lr: 1e-4, weightDecay: 0.1 });
    const config = getModelConfig(name);
    const batches = [randomBatch(config, batch, new cf.Generator(1)), randomBatch(config, batch, new cf.Generator(2))];
    const step = (i: number): cf.Tensor => {
      const loss = accumulatedBackward(model, [batches[i % 2]!], false, precision);
      optimizer.step();
      optimizer.zeroGrad();
      cf.noGrad(() => clampLogitScale(model.logitScale));
      return loss;
    };
    for (let i = 0; i < 2; i++) {
      const loss = step(i);
      loss.item();
      loss.dispose();
    }
    const t0 = performance.now();
    const losses = Array.from({ length: steps }, (_, i) => step(i));
    losses.at(-1)!.item();
    const ms = (performance.now() - t0) / steps;
    for (const l of losses) l.dispose();
    return ms;
  } finally {
    model.dispose();
  }
}

interface TorchSide {
  ms: number;
  parameters: number;
}

function timeTorch(name: string, batch: number, device: string, threads: number, steps: number): TorchSide | string {
  const configPath = join(benchDir, '..', 'lib', 'nn', 'configs', `${name}.json`);
  const precision = device === 'cpu' ? 'fp32' : 'amp_bf16';
  const r = runPython('train_step.py', ['--config', configPath, '--batch', String(batch), '--device', device, '--precision', precision, '--threads', String(threads), '--reps', String(steps)]);
  if (!r.ok) return r.why;
  const row = (r.value as { results: { ms: number; parameters: number }[] }).results[0]!;
  return { ms: row.ms, parameters: row.parameters };
}

async function main(): Promise<void> {
  const a = parseArgs();
  if (a.device === 'cpu') cf.setNumThreads(a.threads);
  const info = cf.backendInfo();
  const deviceName = a.device === 'cpu' ? 'cpu' : info.devices[0]?.name ?? 'cuda';
  const peakFlops = a.device === 'cpu' ? cpuPeak(a.threads).gflops * 1e9 : GPU_BF16_TFLOPS * 1e12;
  const rows = [];
  for (const { name, batch } of a.runs) {
    const flopsPerPair = 3 * estimateFlops(name).total;
    const ms = timeOurs(name, batch, a.device, a.device === 'cpu' ? null : 'bf16', a.steps);
    const torch = a.torch ? timeTorch(name, batch, a.device, a.threads, a.steps) : 'skipped (--no-torch)';
    const ours = countParameters(name).total;
    const torchOk = typeof torch !== 'string' && torch.parameters === ours;
    const row = {
      model: name,
      batch,
      precision: a.device === 'cpu' ? 'fp32' : 'amp_bf16',
      parameters: ours,
      stepMs: +ms.toFixed(2),
      samplesPerS: +((batch / ms) * 1e3).toFixed(1),
      mfu: +(((flopsPerPair * batch) / (ms / 1e3)) / peakFlops).toFixed(4),
      torchStepMs: torchOk ? +torch.ms.toFixed(2) : null,
      torchSamplesPerS: torchOk ? +((batch / torch.ms) * 1e3).toFixed(1) : null,
      speedup: torchOk ? +(torch.ms / ms).toFixed(2) : null,
      torchNote: typeof torch === 'string' ? torch : torchOk ? undefined : `PyTorch model has ${torch.parameters} parameters, ours ${ours}: not the same model, no ratio`,
    };
    rows.push(row);
    console.log(`${name} batch ${batch}: ${row.samplesPerS} samples/s (MFU ${(row.mfu * 100).toFixed(1)}%)` + (row.speedup ? `, PyTorch ${row.torchSamplesPerS} samples/s, ${row.speedup}x` : `; ${row.torchNote}`));
  }
  const path = writeResult('train_step', deviceName, {
    threads: a.device === 'cpu' ? a.threads : undefined,
    // Other jobs on the machine slow both sides; this says how busy it was.
    loadAverage: loadavg().map((x) => +x.toFixed(2)),
    peak: a.device === 'cpu' ? cpuPeak(a.threads) : { bf16Tflops: GPU_BF16_TFLOPS },
    flopConvention: '3 x forward FLOPs per image-text pair (estimateFlops), forward + backward',
    results: rows,
  });
  console.log(`wrote ${path}`);
}

await main();
