// The training loop on the built-in dataset: it learns, resumes exactly, stops on a NaN loss,
// honours locked towers and accumulates gradients as one large batch would.
import { mkdtempSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createBuiltinDataset } from '../../lib/data/builtin/dataset.js';
import { createDataLoader, type Batch, type DataLoader } from '../../lib/data/loader.js';
import { createModel } from '../../lib/nn/factory.js';
import type { CLIP } from '../../lib/nn/clip.js';
import { native } from '../../lib/native.js';
import { latestCheckpoint, readCheckpointInfo } from '../../lib/train/checkpoint.js';
import { parseTrainArgs } from '../../lib/train/flags.js';
import type { StepInfo } from '../../lib/train/logging.js';
import { accumulatedBackward, runTraining, type TrainerOptions, type TrainReporter } from '../../lib/train/trainer.js';
import { NonFiniteLossError } from '../../lib/train/nan_guard.js';

const test = suite('trainer');
const BUILTIN = new URL('../../lib/data/builtin/index.ts', import.meta.url).href;
const IMAGE = 32;
const CONTEXT = 20;

let tmp = '';
test.before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'clipforge-trainer-'));
});
test.after(() => rmSync(tmp, { recursive: true, force: true }));

function loader(split: 'train' | 'val', size: number, batchSize: number, seed = 0): DataLoader {
  return createDataLoader({
    source: { type: 'module', module: BUILTIN, export: 'createBuiltinDataset', options: { split, size, imageSize: IMAGE } },
    batchSize,
    workers: 0,
    seed,
    dropLast: split === 'train',
    shuffle: split === 'train',
    imageTransform: { size: IMAGE, train: split === 'train' },
    text: { contextLength: CONTEXT },
  });
}

const quiet = (onStep: (r: StepInfo) => void = () => undefined): TrainReporter => ({ begin: () => undefined, step: onStep, eval: () => undefined, message: () => undefined });

interface Run {
  opts: TrainerOptions;
  close(): Promise<void>;
}

function setup(name: string, flags: string[], extra: Partial<TrainerOptions> = {}, samples = 256): Run {
  const args = parseTrainArgs(['--model', 'tiny-builtin', '--workers', '0', '--zeroshot-frequency', '0', '--precision', 'fp32', ...flags]);
  const train = loader('train', samples, args.batchSize);
  const model = createModel('tiny-builtin', { seed: 3 });
  const opts: TrainerOptions = {
    args,
    model,
    train,
    samplesPerEpoch: samples,
    val: null,
    zeroShot: [],
    contextLength: CONTEXT,
    checkpointDir: join(tmp, name),
    name,
    reporter: quiet(),
    stop: new AbortController().signal,
    resumeFrom: null,
    ...extra,
  };
  return {
    opts,
    async close() {
      await train.close();
      model.dispose();
    },
  };
}

function weights(model: CLIP): Map<string, Float32Array> {
  return new Map(model.namedParameters().map(([k, p]) => [k, p.toArray() as Float32Array]));
}

function assertSameWeights(a: Map<string, Float32Array>, b: Map<string, Float32Array>, what: string): void {
  for (const [k, va] of a) {
    const vb = b.get(k)!;
    const i = va.findIndex((x, j) => x !== vb[j]);
    assert.is(i, -1, `${what}: ${k} differs at ${i} (${va[i]} vs ${vb[i]})`);
  }
}

test('a short run learns: the loss falls and zero-shot accuracy ends well above chance', async () => {
  const val = loader('val', 300, 100);
  const classes = createBuiltinDataset({ split: 'val', size: 1 });
  const run = setup('learn', ['--batch-size', '64', '--epochs', '1', '--lr', '2e-3', '--warmup', '20', '--wd', '0.1', '--zeroshot-frequency', '1'], {
    zeroShot: [{ prefix: 'zeroshot', task: { classNames: classes.classNames, templates: classes.templates, loader: val } }],
  }, 64 * 150);
  try {
    const out = await runTraining(run.opts);
    assert.is(out.steps, 150);
    const mean = (xs: { loss: number }[]): number => xs.reduce((s, x) => s + x.loss, 0) / xs.length;
    const first = mean(out.losses.slice(0, 10));
    const last = mean(out.losses.slice(-10));
    assert.ok(last < first - 0.5, `the loss fell (${first.toFixed(3)} -> ${last.toFixed(3)})`);
    const top1 = out.evals.at(-1)!.metrics['zeroshot-top1']!;
    const chance = 1 / classes.classNames.length;
    assert.ok(top1 > 4 * chance, `zero-shot top-1 ${top1} is well above chance ${chance.toFixed(3)}`);
    assert.ok(out.lastCheckpoint && existsSync(out.lastCheckpoint), 'a checkpoint was written at the end');
  } finally {
    await run.close();
    await val.close();
  }
});

test('N steps, interrupt, resume, N steps: exactly the weights of 2N uninterrupted steps', async () => {
  const flags = ['--batch-size', '16', '--epochs', '2', '--lr', '1e-3', '--warmup', '2', '--save-frequency', '1'];
  const whole = setup('whole', flags);
  await runTraining(whole.opts);
  const expected = weights(whole.opts.model);
  await whole.close();

  // Interrupted in the middle of the second epoch (steps 16 per epoch at 256 samples / 16).
  const stopper = new AbortController();
  const first = setup('split', flags, {
    stop: stopper.signal,
    reporter: quiet((r) => {
      if (r.step === 21) stopper.abort();
    }),
  });
  const part = await runTraining(first.opts);
  assert.ok(part.interrupted, 'the first run says it was interrupted');
  assert.is(part.steps, 21);
  await first.close();

  const resumeFrom = latestCheckpoint(join(tmp, 'split'));
  assert.ok(resumeFrom?.endsWith('epoch_latest.safetensors'), `the interrupted run left epoch_latest (got ${resumeFrom})`);
  const second = setup('split', flags, { resumeFrom });
  const rest = await runTraining(second.opts);
  assert.is(rest.steps, 32);
  assertSameWeights(expected, weights(second.opts.model), 'resumed run');
  await second.close();
});

test('--save-frequency, --save-most-recent and --delete-previous-checkpoint decide which checkpoints stay', async () => {
  const flags = ['--batch-size', '64', '--epochs', '3', '--warmup', '1'];
  const files = (name: string): string[] => readdirSync(join(tmp, name)).filter((f) => f.endsWith('.safetensors')).sort();
  const cases: [string, string[], string[]][] = [
    ['keep-all', ['--save-frequency', '1'], ['epoch_1.safetensors', 'epoch_2.safetensors', 'epoch_3.safetensors']],
    ['every-2', ['--save-frequency', '2'], ['epoch_2.safetensors', 'epoch_3.safetensors']],
    ['rolling', ['--save-frequency', '1', '--delete-previous-checkpoint'], ['epoch_3.safetensors']],
    ['latest', ['--save-frequency', '0', '--save-most-recent'], ['epoch_latest.safetensors']],
  ];
  for (const [name, extra, expected] of cases) {
    const run = setup(name, [...flags, ...extra]);
    try {
      const out = await runTraining(run.opts);
      assert.equal(files(name), expected, `${name}: the checkpoints left`);
      assert.ok(out.lastCheckpoint && existsSync(out.lastCheckpoint), `${name}: lastCheckpoint names a file that exists`);
    } finally {
      await run.close();
    }
  }
  // epoch_latest holds the end of the run (epoch 3, 12 steps at 256 samples / 64), so
  // --resume latest continues from there.
  const info = readCheckpointInfo(join(tmp, 'latest', 'epoch_latest.safetensors'));
  assert.is(info.epoch, 3);
  assert.is(info.step, 12);
});

test('--precision amp_bf16 trains with bf16 products: f32 weights, close to but not the fp32 run', async () => {
  const flags = ['--batch-size', '32', '--epochs', '1', '--lr', '1e-3', '--warmup', '1', '--save-frequency', '0'];
  const fp32 = setup('fp32', flags, {}, 32 * 6);
  const amp = setup('amp', [...flags, '--precision', 'amp_bf16'], {}, 32 * 6);
  try {
    const a = await runTraining(fp32.opts);
    const b = await runTraining(amp.opts);
    const wa = weights(fp32.opts.model), wb = weights(amp.opts.model);
    let differs = false;
    for (const [k, va] of wa) {
      const p = amp.opts.model.namedParameters().find(([n]) => n === k)![1];
      assert.is(p.dtype, 'f32', `${k} stays f32`);
      if (va.some((x, i) => x !== wb.get(k)![i])) differs = true;
    }
    assert.ok(differs, 'bf16 products changed the weights');
    for (let i = 0; i < a.losses.length; i++) {
      const [la, lb] = [a.losses[i]!.loss, b.losses[i]!.loss];
      assert.ok(Math.abs(la - lb) < 0.02 * la, `step ${i + 1}: loss ${lb} (amp_bf16) vs ${la} (fp32)`);
    }
  } finally {
    await fp32.close();
    await amp.close();
  }
});

/** Runs to the NaN that appears at step 17 (0-based, in epoch 2): the run stops naming it and keeps epoch 1's checkpoint. */
async function expectNanStopAtStep17(run: Run): Promise<void> {
  const err = await runTraining(run.opts).then(
    () => null,
    (e: unknown) => e,
  );
  assert.instance(err, NonFiniteLossError);
  assert.match((err as Error).message, /step 17/);
  const kept = latestCheckpoint(run.opts.checkpointDir);
  assert.ok(kept?.endsWith('epoch_1.safetensors'), `the epoch-1 checkpoint is kept (got ${kept})`);
}

test('a NaN loss stops the run with the step, and the checkpoint of the last epoch survives', async () => {
  const run = setup('nan', ['--batch-size', '16', '--epochs', '2', '--save-frequency', '1', '--warmup', '1'], {
    reporter: quiet((r) => {
      if (r.step === 17) native.fill(run.opts.model.logitScale, Number.NaN);
    }),
  });
  try {
    await expectNanStopAtStep17(run);
  } finally {
    await run.close();
  }
});

test('losses read in batches, as on a GPU: the same losses, every step reported once in order', async () => {
  const flags = ['--batch-size', '16', '--epochs', '1', '--warmup', '1', '--log-every-n-steps', '100'];
  const outcomes = [];
  for (const lossReadIntervalMs of [0, Infinity]) {
    const seen: number[] = [];
    const run = setup(`read-${lossReadIntervalMs}`, flags, { reporter: quiet((r) => seen.push(r.step)), lossReadIntervalMs }, 128);
    try {
      outcomes.push(await runTraining(run.opts));
      assert.equal(seen, [1, 2, 3, 4, 5, 6, 7, 8]);
    } finally {
      await run.close();
    }
  }
  assert.equal(outcomes[1]!.losses, outcomes[0]!.losses);
});

test('losses read in batches: a NaN is still named at its own step and no checkpoint follows it', async () => {
  const seen: number[] = [];
  const run = setup('nan-batched', ['--batch-size', '16', '--epochs', '2', '--save-frequency', '1', '--warmup', '1', '--log-every-n-steps', '100'], {
    reporter: quiet((r) => seen.push(r.step)),
    lossReadIntervalMs: Infinity,
  });
  // Poison the logit scale before the second batch of epoch 2: step 17 (0-based) is the first NaN.
  const train = run.opts.train;
  run.opts.train = Object.assign(Object.create(train) as DataLoader, {
    async *epoch(epoch: number) {
      let i = 0;
      for await (const batch of train.epoch(epoch)) {
        if (epoch === 1 && i++ === 1) native.fill(run.opts.model.logitScale, Number.NaN);
        yield batch;
      }
    },
  });
  try {
    await expectNanStopAtStep17(run);
    assert.equal(seen, Array.from({ length: 17 }, (_, i) => i + 1), 'steps up to the last finite loss were reported');
  } finally {
    run.opts.train = train;
    await run.close();
  }
});

test('--lock-image freezes the image tower (but --lock-image-unlocked-groups 1 trains its head); --lock-text the text tower', async () => {
  const run = setup('lock', ['--batch-size', '16', '--epochs', '1', '--lock-image', '--lock-image-unlocked-groups', '1', '--lock-text', '--warmup', '1'], {}, 64);
  try {
    const before = weights(run.opts.model);
    await runTraining(run.opts);
    const after = weights(run.opts.model);
    const changed = [...before.keys()].filter((k) => before.get(k)!.some((x, i) => x !== after.get(k)![i]));
    assert.ok(changed.includes('logit_scale'), 'the logit scale still trains');
    assert.ok(changed.includes('visual.proj'), "the image tower's last group (its projection) trains");
    const frozen = changed.filter((k) => k !== 'logit_scale' && !/^visual\.(ln_post|proj)/.test(k));
    assert.equal(frozen, [], 'nothing else changed');
  } finally {
    await run.close();
  }
});

test('--accum-freq: gradients of two cached-feature micro-batches equal those of the whole batch', async () => {
  const data = loader('train', 32, 8);
  const batches: Batch[] = [];
  for await (const b of data.epoch(0)) batches.push(b);
  await data.close();
  const merged: Batch = {
    ...batches[0]!,
    count: 16,
    images: new Float32Array([...batches[0]!.images, ...batches[1]!.images]),
    imageShape: [16, 3, IMAGE, IMAGE],
    texts: new Int32Array([...batches[0]!.texts, ...batches[1]!.texts]),
    textShape: [16, CONTEXT],
  };
  const model = createModel('tiny-builtin', { seed: 5 });
  const grads = (bs: Batch[]): Map<string, Float32Array> => {
    const loss = accumulatedBackward(model, bs, false);
    loss.dispose();
    const out = new Map(model.namedParameters().map(([k, p]) => [k, p.grad!.toArray() as Float32Array]));
    model.zeroGrad();
    return out;
  };
  const whole = grads([merged]);
  const accumulated = grads([batches[0]!, batches[1]!]);
  for (const [k, g] of whole) {
    const a = accumulated.get(k)!;
    let num = 0;
    let den = 0;
    g.forEach((x, i) => {
      num += (x - a[i]!) ** 2;
      den += x * x;
    });
    assert.ok(Math.sqrt(num / Math.max(den, 1e-30)) < 1e-4, `${k}: relative gradient difference ${Math.sqrt(num / den)}`);
  }
  model.dispose();
});

test.run();
