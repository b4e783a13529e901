// Host work per training step: on a GPU kernels run while the host goes on queueing the next
// ones, so a step can never be faster than the host's own work for it (autograd, shape checks,
// scopes, the optimizer's bookkeeping, the N-API calls, the CUDA launches). This bench
// measures that work on the CPU backend, which runs the same JavaScript, and compares it with
// the device time of the real model at a training batch.
//
// Method: a "narrow twin" of each ViT config: the same layers, blocks and op sequence, with
// widths of 64, one head, 4 patches and a 1000-token vocabulary, so that the kernels are
// small and leave the host's caches warm. Steps with every native function wrapped to count
// and time its calls (median of 10, 1 CPU thread, after 10 warm-up steps): the JavaScript time
// is the wall time outside native calls. On a GPU each call then costs the N-API crossing and
// argument checks (the median time of a one-element `fill`, measured), and each call other
// than alloc and free (which launch nothing) the CUDA runtime's host work per kernel launch,
// LAUNCH_US (about 3 us; assumed, not measured here). The device
// time of the real model: 3 x forward FLOPs per pair at GPU_MFU of the H100's bf16 rate.
//
// Run: node --import tsx bench/host_overhead.bench.ts [--models name:batch,...]
// Writes bench/results/<date>-cpu-host_overhead.json.
import { loadavg } from 'node:os';
import * as cf from '../lib/index.js';
import { native } from '../lib/native.js';
import { clampLogitScale } from '../lib/loss/clip.js';
import { createModel, estimateFlops, getModelConfig } from '../lib/nn/factory.js';
import type { ModelConfig } from '../lib/nn/config.js';
import { AdamW } from '../lib/optim/adamw.js';
import { paramGroups } from '../lib/optim/param_groups.js';
import { accumulatedBackward } from '../lib/train/trainer.js';
import { benchArgs, instrumentNative, median, randomBatch, writeResult } from './lib.js';

const LAUNCH_US = 3;
const GPU_BF16_TFLOPS = 798;
const GPU_MFU = 0.5;
const RUNS = 'ViT-B-32:256,ViT-B-16:128,ViT-L-14:64';

/** The same architecture (depth, blocks, op sequence) with kernels that cost next to nothing. */
function narrowTwin(name: string): ModelConfig {
  const c = JSON.parse(JSON.stringify(getModelConfig(name))) as ModelConfig;
  const v = c.vision_cfg as Record<string, unknown>;
  if (typeof v.layers !== 'number' || typeof v.patch_size !== 'number') throw new Error(`host_overhead.bench: ${name} is not a ViT config`);
  Object.assign(v, { width: 64, head_width: 64, image_size: 2 * (v.patch_size as number), mlp_ratio: 4 });
  Object.assign(c.text_cfg, { width: 64, heads: 1, vocab_size: 1000 });
  c.embed_dim = 64;
  return c;
}

interface Counts {
  calls: Map<string, number>;
  nativeMs: number;
}

/** Counts and times every native call; returns an undo. */
function instrument(counts: Counts): () => void {
  return instrumentNative((name, _args, ms) => {
    counts.calls.set(name, (counts.calls.get(name) ?? 0) + 1);
    counts.nativeMs += ms;
  });
}

function callUs(): number {
  const t = cf.zeros([1]);
  try {
    return median(Array.from({ length: 20 }, () => {
      const t0 = performance.now();
      for (let i = 0; i < 10000; i++) native.fill(t, i);
      return ((performance.now() - t0) / 10000) * 1000;
    }));
  } finally {
    t.dispose();
  }
}

function main(): void {
  const { get } = benchArgs('host_overhead.bench');
  const runs = (get('--models') ?? RUNS).split(',').map((spec) => {
    const [name, batch] = spec.split(':');
    if (!name || !Number.isInteger(Number(batch)) || Number(batch) < 1) throw new Error(`host_overhead.bench: expected name:batch in --models, got '${spec}'`);
    return { name, batch: Number(batch) };
  });
  cf.setNumThreads(1);
  const perCallUs = callUs();
  console.log(`one native call (a one-element fill): ${perCallUs.toFixed(2)} us`);
  const rows = [];
  // The whole list twice, recording the second pass: the first one also warms up the JIT for
  // the code all models share.
  for (const [pass, { name, batch }] of [...runs.map((r) => [0, r] as const), ...runs.map((r) => [1, r] as const)]) {
    const config = narrowTwin(name);
    const model = createModel(config, { seed: 0 });
    const optimizer = new AdamW(paramGroups(model.namedParameters(), 0.1), { lr: 1e-4, weightDecay: 0.1 });
    const input = randomBatch(config, 2, new cf.Generator(0));
    const step = (): void => {
      const loss = accumulatedBackward(model, [input], false, null);
      optimizer.step();
      optimizer.zeroGrad();
      cf.noGrad(() => clampLogitScale(model.logitScale));
      loss.dispose();
    };
    for (let i = 0; i < 10; i++) step();
    let calls = 0;
    let counts: Counts = { calls: new Map(), nativeMs: 0 };
    const jsMs = median(Array.from({ length: 10 }, () => {
      counts = { calls: new Map(), nativeMs: 0 };
      const undo = instrument(counts);
      const t0 = performance.now();
      try {
        step();
      } finally {
        undo();
      }
      calls = [...counts.calls.values()].reduce((a, b) => a + b, 0);
      return performance.now() - t0 - counts.nativeMs;
    }));
    model.dispose();
    const launches = calls - (counts.calls.get('alloc') ?? 0) - (counts.calls.get('free') ?? 0);
    const hostGpuMs = jsMs + (calls * perCallUs + launches * LAUNCH_US) / 1000;
    const deviceMs = ((3 * estimateFlops(name).total * batch) / (GPU_BF16_TFLOPS * 1e12 * GPU_MFU)) * 1e3;
    const top = [...counts.calls.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => `${k} ${v}`);
    const row = {
      model: name,
      nativeCallsPerStep: calls,
      kernelCallsPerStep: launches,
      jsMsPerStep: +jsMs.toFixed(2),
      jsUsPerCall: +((jsMs / calls) * 1000).toFixed(2),
      hostMsOnGpu: +hostGpuMs.toFixed(2),
      batch,
      deviceMsAtBatch: +deviceMs.toFixed(2),
      hostOverDevice: +(hostGpuMs / deviceMs).toFixed(2),
      mostCalled: top,
    };
    if (pass === 0) continue;
    rows.push(row);
    console.log(`${name}: ${calls} native calls per step, JS ${row.jsMsPerStep} ms (${row.jsUsPerCall} us per call), ~${row.hostMsOnGpu} ms with calls and CUDA launches; ` +
      `device ${row.deviceMsAtBatch} ms at batch ${batch} (${GPU_MFU * 100}% MFU): host/device ${row.hostOverDevice}`);
    console.log(`  most called: ${top.join(', ')}`);
  }
  const path = writeResult('host_overhead', 'cpu', {
    loadAverage: loadavg().map((x) => +x.toFixed(2)),
    threads: 1,
    perCallUs: +perCallUs.toFixed(3),
    assumed: { launchUs: LAUNCH_US, gpuBf16Tflops: GPU_BF16_TFLOPS, gpuMfu: GPU_MFU },
    results: rows,
  });
  console.log(`wrote ${path}`);
}

main();
