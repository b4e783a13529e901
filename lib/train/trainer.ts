// The training loop of `clipforge train`, as OpenCLIP's main.py + train.py run it: model and
// data from the flags, AdamW over OpenCLIP's weight-decay groups, a per-step learning-rate
// schedule, the CLIP or SigLIP loss, gradient accumulation by feature caching (--accum-freq),
// gradient-norm clipping, the logit scale clamped to [0, ln 100] after every step, logs,
// checkpoints at epoch ends and on Ctrl-C, resume, and zero-shot / retrieval evaluation.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Batch, DataLoader } from '../data/loader.js';
import { clampLogitScale, clipLoss } from '../loss/clip.js';
import { siglipLoss } from '../loss/siglip.js';
import type { CLIP } from '../nn/clip.js';
import { AdamW } from '../optim/adamw.js';
import { clipGradNorm } from '../optim/clip_grad.js';
import { paramGroups } from '../optim/param_groups.js';
import { constCooldownLr, constLr, cosineLr, type LrSchedule } from '../optim/schedule.js';
import { noGrad } from '../tensor/autograd.js';
import { autocast, type AutocastDType } from '../tensor/autocast.js';
import { detach } from '../tensor/ops/shape.js';
import { concat } from '../tensor/ops/slice.js';
import { keep, scope } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { epochCheckpointName, LATEST_CHECKPOINT_NAME, loadTrainingCheckpoint, saveTrainingCheckpoint, type TrainingPosition } from './checkpoint.js';
import { onModelDevice, runEvaluations, type EvalTasks } from './evaluate.js';
import type { TrainArgs } from './flags.js';
import type { StepInfo } from './logging.js';
import { checkFiniteLoss } from './nan_guard.js';
import { restoreRng, snapshotRng } from './rng_state.js';

/** Where the run's events go (terminal, JSON lines, TensorBoard). */
export interface TrainReporter {
  /** Called once before the first step with the run's total number of optimizer steps. */
  begin(totalSteps: number): void;
  step(info: StepInfo): void;
  eval(epoch: number, step: number, metrics: Record<string, number>): void;
  message(text: string): void;
}

/** The run's evaluations (EvalTasks: zero-shot tasks, validation data, context length) come with the rest. */
export interface TrainerOptions extends EvalTasks {
  args: TrainArgs;
  model: CLIP;
  train: DataLoader;
  samplesPerEpoch: number;
  checkpointDir: string;
  name: string;
  reporter: TrainReporter;
  /** Checked between steps: when it is aborted, the run saves a checkpoint and stops. */
  stop: AbortSignal;
  /** A checkpoint to resume from. */
  resumeFrom: string | null;
  /**
   * How long finished steps' losses may wait on the device before they are read (and
   * reported, and checked for NaN): every step when 0. Default 0 for a model on the CPU, where
   * reading costs nothing, and 500 ms on a GPU (see PendingLosses). A NaN is found after the
   * optimizer has applied that step (and, when reads wait, the steps queued after it), so after
   * a NonFiniteLossError the model's weights are not the last good ones: the last checkpoint is.
   */
  lossReadIntervalMs?: number;
}

export interface TrainOutcome {
  steps: number;
  epochs: number;
  losses: { step: number; loss: number }[];
  evals: { epoch: number; metrics: Record<string, number> }[];
  interrupted: boolean;
  lastCheckpoint: string | null;
}

function schedule(args: TrainArgs, totalSteps: number, stepsPerEpoch: number): LrSchedule {
  if (args.lrScheduler === 'const') return constLr(args.lr, args.warmup, totalSteps);
  if (args.lrScheduler === 'const-cooldown') {
    if (args.epochsCooldown === null) throw new Error('clipforge train: --lr-scheduler const-cooldown needs --epochs-cooldown');
    return constCooldownLr(args.lr, args.warmup, totalSteps, stepsPerEpoch * args.epochsCooldown, args.lrCooldownPower, args.lrCooldownEnd);
  }
  return cosineLr(args.lr, args.warmup, totalSteps);
}

/**
 * The image tower's layer groups as OpenCLIP's lock_image counts them: the embeddings, each
 * residual block (or stage), then the final norm with the projection.
 */
function visualGroup(name: string): string {
  const block = /^visual\.(?:transformer\.resblocks|stages)\.(\d+)\./.exec(name);
  if (block) return `block${block[1]!.padStart(6, '0')}`;
  return /^visual\.(ln_post|proj|head|norm)/.test(name) ? 'zhead' : 'aembed';
}

/**
 * The parameters the optimizer updates: all but the locked towers' (--lock-image keeps the
 * last --lock-image-unlocked-groups groups of the image tower trainable; --lock-text freezes
 * the text tower). Locked parameters stop requiring gradients.
 */
function trainableParameters(model: CLIP, args: TrainArgs): [string, Tensor][] {
  const all = model.namedParameters();
  const groups = [...new Set(all.filter(([n]) => n.startsWith('visual.')).map(([n]) => visualGroup(n)))].sort();
  const unlockedGroups = new Set(args.lockImageUnlockedGroups > 0 ? groups.slice(-args.lockImageUnlockedGroups) : []);
  const locked = (name: string): boolean => {
    if (name.startsWith('visual.')) return args.lockImage && !unlockedGroups.has(visualGroup(name));
    return args.lockText && name !== 'logit_scale' && name !== 'logit_bias';
  };
  const out: [string, Tensor][] = [];
  for (const [name, p] of all) {
    if (locked(name)) p.requiresGrad = false;
    else out.push([name, p]);
  }
  return out;
}

/** The loss; with `scalesTrain` false the logit scale and bias take no gradient from it. */
function lossOf(model: CLIP, img: Tensor, txt: Tensor, siglip: boolean, scalesTrain = true): Tensor {
  const scale = scalesTrain ? model.logitScale : detach(model.logitScale);
  if (siglip) {
    const bias = model.logitBias;
    if (!bias) throw new Error('clipforge train: --siglip needs a model with a logit bias (init_logit_bias in its config, e.g. a -SigLIP or tiny-siglip model)');
    return siglipLoss(img, txt, scale, scalesTrain ? bias : detach(bias));
  }
  return clipLoss(img, txt, scale);
}

/**
 * The dtype of the forward's matrix products for --precision. OpenCLIP's 'bf16' also stores the
 * weights in bf16; here both keep f32 master weights (the rule), so both mean
 * bf16 products with f32 accumulation and f32 everywhere else.
 */
export function computeDtype(precision: TrainArgs['precision']): AutocastDType | null {
  return precision === 'fp32' ? null : 'bf16';
}

/**
 * One optimizer step's forward and backward over `batches` (accumFreq of them). With one
 * batch: the loss of the batch. With several, OpenCLIP's feature caching: the features of
 * every batch are computed without gradients first, then each batch is recomputed with
 * gradients and its loss taken against the cached features of the others, so the gradient
 * is that of the loss over the whole accumulated batch. Every micro-batch's loss has the
 * value of the whole batch's, so only the first one gives the logit scale (and bias) their
 * gradient: summing all of them would multiply it by --accum-freq. `precision` is the dtype of
 * the forward's matrix products (autocast; null for f32). Returns the loss (on device).
 */
export function accumulatedBackward(model: CLIP, batches: Batch[], siglip: boolean, precision: AutocastDType | null = null): Tensor {
  const forward = (images: Tensor, texts: Tensor) => autocast(precision, () => model.forward(images, texts));
  const inputs = batches.map((b) => ({ images: onModelDevice(model, b.images, b.imageShape), texts: onModelDevice(model, b.texts, b.textShape) }));
  try {
    if (inputs.length === 1) {
      const loss = scope(() => {
        const out = forward(inputs[0]!.images, inputs[0]!.texts);
        return lossOf(model, out.imageFeatures, out.textFeatures, siglip);
      });
      loss.backward();
      return loss;
    }
    const cached = noGrad(() =>
      inputs.map((x) =>
        scope(() => {
          const out = forward(x.images, x.texts);
          return keep({ img: out.imageFeatures, txt: out.textFeatures });
        }),
      ),
    );
    let total: Tensor | null = null;
    try {
      for (let j = 0; j < inputs.length; j++) {
        const loss = scope(() => {
          const out = forward(inputs[j]!.images, inputs[j]!.texts);
          const img = concat(cached.map((c, k) => (k === j ? out.imageFeatures : c.img)), 0);
          const txt = concat(cached.map((c, k) => (k === j ? out.textFeatures : c.txt)), 0);
          return lossOf(model, img, txt, siglip, j === 0);
        });
        loss.backward();
        if (total === null) total = loss;
        else loss.dispose();
      }
    } finally {
      for (const c of cached) {
        c.img.dispose();
        c.txt.dispose();
      }
    }
    return total!;
  } finally {
    for (const x of inputs) {
      x.images.dispose();
      x.texts.dispose();
    }
  }
}

const GPU_LOSS_READ_INTERVAL_MS = 500;

interface PendingLoss {
  loss: Tensor;
  /** What the reporter gets; info.step counts finished steps, so the NaN guard names info.step - 1. */
  info: StepInfo;
}

/**
 * The losses of finished steps, kept on the device until read together. Reading a GPU loss
 * makes the host wait until the GPU has finished that step, which would stop the host from
 * queueing the next one while the GPU works; so the loop reads them at logged steps, at the
 * end of an epoch (before any checkpoint or evaluation), and at most `intervalMs` apart for
 * the progress line. The NaN guard still names the exact step, and no checkpoint is written
 * after a non-finite loss (the steps queued after it ran on NaN gradients, but the run stops).
 */
class PendingLosses {
  private items: PendingLoss[] = [];
  private lastRead = performance.now();

  constructor(private readonly intervalMs: number) {}

  add(item: PendingLoss): void {
    this.items.push(item);
  }

  due(): boolean {
    return performance.now() - this.lastRead >= this.intervalMs;
  }

  /** Reads every pending loss in step order; logitScale goes with the newest step. */
  read(reporter: TrainReporter, outcome: TrainOutcome, logitScale?: number): void {
    const items = this.items;
    this.items = [];
    this.lastRead = performance.now();
    try {
      items.forEach((p, i) => {
        const loss = checkFiniteLoss(p.loss, p.info.step - 1);
        outcome.losses.push({ step: p.info.step, loss });
        reporter.step({ ...p.info, loss, ...(i === items.length - 1 && logitScale !== undefined ? { logitScale } : {}) });
      });
    } finally {
      for (const p of items) p.loss.dispose();
    }
  }

  dispose(): void {
    for (const p of this.items) p.loss.dispose();
    this.items = [];
  }
}

/** Runs the training loop to the end (or until `stop` is aborted) and returns what happened. */
export async function runTraining(opts: TrainerOptions): Promise<TrainOutcome> {
  const { args, model, reporter } = opts;
  const stepsPerEpoch = Math.floor(opts.samplesPerEpoch / (args.batchSize * args.accumFreq));
  if (stepsPerEpoch < 1) {
    throw new Error(`clipforge train: an epoch of ${opts.samplesPerEpoch} samples holds no step of --batch-size ${args.batchSize} × --accum-freq ${args.accumFreq}`);
  }
  const totalSteps = stepsPerEpoch * args.epochs;
  if (opts.lossReadIntervalMs !== undefined && !(opts.lossReadIntervalMs >= 0)) {
    throw new Error(`runTraining: expected a number >= 0 (or Infinity) for opts.lossReadIntervalMs, got ${String(opts.lossReadIntervalMs)}`);
  }
  const named = trainableParameters(model, args);
  if (named.length === 0) throw new Error('clipforge train: every parameter is locked (--lock-image and --lock-text); nothing to train');
  const optimizer = new AdamW(paramGroups(named, args.wd), { lr: args.lr, betas: [args.beta1, args.beta2], eps: args.eps, weightDecay: args.wd });
  const params = named.map(([, p]) => p);
  const lrAt = schedule(args, totalSteps, stepsPerEpoch);
  mkdirSync(opts.checkpointDir, { recursive: true });

  let position: TrainingPosition = { epoch: 0, step: 0, batchInEpoch: 0, rng: snapshotRng(), name: opts.name };
  if (opts.resumeFrom) {
    const restored = loadTrainingCheckpoint(opts.resumeFrom, model, optimizer);
    position = { ...restored, name: opts.name };
    restoreRng(restored.rng);
    reporter.message(`resumed from ${opts.resumeFrom} at epoch ${restored.epoch}, step ${restored.step}`);
  }

  const outcome: TrainOutcome = { steps: position.step, epochs: position.epoch, losses: [], evals: [], interrupted: false, lastCheckpoint: null };
  const save = (file: string): void => {
    const path = join(opts.checkpointDir, file);
    saveTrainingCheckpoint(path, model, optimizer, { ...position, rng: snapshotRng() });
    outcome.lastCheckpoint = path;
  };

  const evaluate = async (epoch: number): Promise<void> => {
    const final = epoch === args.epochs;
    const metrics = await runEvaluations(model, opts, {
      zeroShot: args.zeroshotFrequency > 0 && (epoch % args.zeroshotFrequency === 0 || final),
      retrieval: args.valFrequency > 0 && (epoch % args.valFrequency === 0 || final),
    });
    if (Object.keys(metrics).length) {
      outcome.evals.push({ epoch, metrics });
      reporter.eval(epoch, position.step, metrics);
    }
  };

  model.train();
  reporter.begin(totalSteps);
  const precision = computeDtype(args.precision);
  const losses = new PendingLosses(opts.lossReadIntervalMs ?? (model.device === 'cpu' ? 0 : GPU_LOSS_READ_INTERVAL_MS));
  try {
    for (let epoch = position.epoch; epoch < args.epochs; epoch++) {
      const skipBatches = position.batchInEpoch * args.accumFreq;
      let batchIndex = 0;
      let pending: Batch[] = [];
      for await (const batch of opts.train.epoch(epoch)) {
        if (batchIndex++ < skipBatches) continue;
        pending.push(batch);
        if (pending.length < args.accumFreq) continue;
        const step = position.step;
        const lr = lrAt(step);
        optimizer.setLr(lr);
        const loss = accumulatedBackward(model, pending, args.siglip, precision);
        const samples = pending.reduce((n, b) => n + b.count, 0);
        pending = [];
        losses.add({ loss, info: { epoch, step: step + 1, samples, lr } });
        if (args.gradClipNorm !== null) clipGradNorm(params, args.gradClipNorm).dispose();
        optimizer.step();
        optimizer.zeroGrad();
        noGrad(() => clampLogitScale(model.logitScale));
        position = { ...position, step: step + 1, batchInEpoch: position.batchInEpoch + 1 };
        outcome.steps = position.step;
        const logged = position.step % args.logEveryNSteps === 0 || position.step === totalSteps;
        const epochDone = position.batchInEpoch >= stepsPerEpoch;
        if (logged || epochDone || opts.stop.aborted || losses.due()) losses.read(reporter, outcome, logged ? Math.exp(model.logitScale.item()) : undefined);
        if (opts.stop.aborted || epochDone) break;
      }
      losses.read(reporter, outcome);
      if (opts.stop.aborted && position.batchInEpoch < stepsPerEpoch) {
        save(LATEST_CHECKPOINT_NAME);
        outcome.interrupted = true;
        reporter.message(`interrupted at step ${position.step}; saved ${outcome.lastCheckpoint} (resume with --resume latest)`);
        return outcome;
      }
      position = { ...position, epoch: epoch + 1, batchInEpoch: 0 };
      outcome.epochs = position.epoch;
      const completed = epoch + 1;
      if (args.saveFrequency > 0 && (completed % args.saveFrequency === 0 || completed === args.epochs)) {
        const previous = outcome.lastCheckpoint;
        save(epochCheckpointName(completed));
        if (args.deletePreviousCheckpoint && previous && previous !== outcome.lastCheckpoint) rmSync(previous, { force: true });
      }
      if (args.saveMostRecent) {
        const epochFile = outcome.lastCheckpoint;
        save(LATEST_CHECKPOINT_NAME);
        if (epochFile) outcome.lastCheckpoint = epochFile;
      }
      await evaluate(completed);
      if (opts.stop.aborted) {
        outcome.interrupted = completed < args.epochs;
        break;
      }
    }
  } finally {
    losses.dispose();
  }
  return outcome;
}
