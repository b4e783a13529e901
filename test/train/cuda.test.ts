// The training loop on CUDA against the same loop on the CPU: every op of a training step
// (both towers forward and backward, the loss, gradient clipping, AdamW, the logit-scale
// clamp) on the device, fp32 and amp_bf16. Runs with a GPU and on the CUDA emulator
// (npm run test:cuda-emu); without either, devices() prints that it did not run.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createDataLoader } from '../../lib/data/loader.js';
import { createModel } from '../../lib/nn/factory.js';
import { parseTrainArgs } from '../../lib/train/flags.js';
import { runTraining, type TrainOutcome } from '../../lib/train/trainer.js';
import { assertClose, devices } from '../support/helpers.js';

const test = suite('train.cuda');
const BUILTIN = new URL('../../lib/data/builtin/index.ts', import.meta.url).href;
const SAMPLES = 32;

let tmp = '';
test.before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'clipforge-train-cuda-'));
});
test.after(() => rmSync(tmp, { recursive: true, force: true }));

async function train(device: string, precision: string): Promise<{ outcome: TrainOutcome; weights: Map<string, Float32Array> }> {
  const args = parseTrainArgs(['--model', 'tiny-builtin', '--workers', '0', '--zeroshot-frequency', '0', '--batch-size', '16', '--epochs', '1',
    '--warmup', '1', '--lr', '1e-3', '--grad-clip-norm', '1', '--precision', precision]);
  const loader = createDataLoader({
    source: { type: 'module', module: BUILTIN, export: 'createBuiltinDataset', options: { split: 'train', size: SAMPLES, imageSize: 32 } },
    batchSize: args.batchSize, workers: 0, seed: 0, dropLast: true, shuffle: true,
    imageTransform: { size: 32, train: true }, text: { contextLength: 20 },
  });
  const model = createModel('tiny-builtin', { seed: 3, device });
  try {
    const name = `${device.replace(':', '')}-${precision}`;
    const outcome = await runTraining({
      args, model, train: loader, samplesPerEpoch: SAMPLES, val: null, zeroShot: [], contextLength: 20, checkpointDir: join(tmp, name), name,
      reporter: { begin: () => undefined, step: () => undefined, eval: () => undefined, message: () => undefined },
      stop: new AbortController().signal, resumeFrom: null,
    });
    return { outcome, weights: new Map(model.namedParameters().map(([k, p]) => [k, p.toArray() as Float32Array])) };
  } finally {
    await loader.close();
    model.dispose();
  }
}

/**
 * The weights to compare. The key bias (the middle third of in_proj_bias) has a gradient of
 * exactly zero, since softmax ignores a shift shared by a row's scores; its computed gradient
 * is rounding noise, which AdamW's normalization turns into steps of the learning rate's size
 * and either sign, different on every backend and build.
 */
function comparable(name: string, w: Float32Array): Float32Array {
  if (!name.endsWith('attn.in_proj_bias')) return w;
  const third = w.length / 3;
  return Float32Array.from([...w.subarray(0, third), ...w.subarray(2 * third)]);
}

test('training steps on CUDA follow the CPU: fp32 within 1e-4, amp_bf16 within 3e-2 of the loss', async () => {
  const gpus = devices().filter((d) => d !== 'cpu');
  if (gpus.length === 0) return;
  const cpu = await train('cpu', 'fp32');
  assert.is(cpu.outcome.steps, 2);
  for (const device of gpus) {
    const f32 = await train(device, 'fp32');
    assert.is(f32.outcome.steps, 2);
    assertClose(f32.outcome.losses.map((l) => l.loss), cpu.outcome.losses.map((l) => l.loss), { rtol: 1e-4, atol: 1e-5, what: `fp32 losses on ${device}` });
    for (const [k, w] of cpu.weights) assertClose(comparable(k, f32.weights.get(k)!), comparable(k, w), { rtol: 1e-3, atol: 1e-4, what: `fp32 ${k} on ${device}` });
    assert.ok(f32.outcome.lastCheckpoint, 'a checkpoint was written from the device');
    const bf16 = await train(device, 'amp_bf16');
    assertClose(bf16.outcome.losses.map((l) => l.loss), cpu.outcome.losses.map((l) => l.loss), { rtol: 3e-2, atol: 0, what: `amp_bf16 losses on ${device}` });
    assert.ok(bf16.outcome.losses.some((l, i) => l.loss !== f32.outcome.losses[i]!.loss), 'amp_bf16 computed in bf16 (its losses differ from fp32)');
  }
});

test.run();
