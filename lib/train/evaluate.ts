// Evaluation of a CLIP model: zero-shot classification over class names × prompt templates
// (OpenCLIP's zero_shot.py) and image↔text retrieval with the validation loss (its
// get_clip_metrics), each over a data loader's batches, without gradients.
import type { DataLoader } from '../data/loader.js';
import { tokenize } from '../data/tokenizer.js';
import { clipLoss } from '../loss/clip.js';
import type { CLIP } from '../nn/clip.js';
import { noGrad } from '../tensor/autograd.js';
import { to } from '../tensor/ops/shape.js';
import { concat } from '../tensor/ops/slice.js';
import { keep, scope } from '../tensor/scope.js';
import { fromArray, type Tensor } from '../tensor/tensor.js';
import { retrievalMetrics, zeroShotAccuracy, zeroShotClassifier, type RetrievalMetrics } from './metrics.js';

export interface ZeroShotTask {
  classNames: readonly string[];
  templates: readonly string[];
  /** Batches with labels (indices into classNames). */
  loader: DataLoader;
}

export interface ZeroShotScores {
  top1: number;
  top5: number;
  samples: number;
}

/** Host data as a tensor on the model's device. */
export function onModelDevice(model: CLIP, data: Float32Array | Int32Array, shape: readonly number[]): Tensor {
  const host = data instanceof Int32Array ? fromArray(data, shape, { dtype: 'i32' }) : fromArray(data, shape);
  const device = model.logitScale.device;
  if (device === 'cpu') return host;
  const moved = to(host, device);
  host.dispose();
  return moved;
}

/** Top-1 and top-5 zero-shot accuracy of `model` (put in eval mode meanwhile) on `task`. */
export async function zeroShotEval(model: CLIP, task: ZeroShotTask, contextLength: number): Promise<ZeroShotScores> {
  const wasTraining = model.training;
  model.eval();
  try {
    const classifier = zeroShotClassifier(task.classNames, task.templates, (texts) => {
      const t = tokenize(texts, contextLength);
      return model.encodeText(onModelDevice(model, t.ids, t.shape), { normalize: true });
    });
    let correct1 = 0;
    let correct5 = 0;
    let samples = 0;
    try {
      for await (const batch of task.loader.epoch(0)) {
        if (!batch.labels) throw new Error('zeroShotEval: the evaluation data has no class labels');
        const k5 = Math.min(5, task.classNames.length);
        const r = noGrad(() =>
          scope(() => {
            const features = model.encodeImage(onModelDevice(model, batch.images, batch.imageShape), { normalize: true });
            return zeroShotAccuracy(features, classifier, batch.labels!, [1, k5]);
          }),
        );
        correct1 += r.correct[1]!;
        correct5 += r.correct[k5]!;
        samples += batch.count;
      }
    } finally {
      classifier.dispose();
    }
    if (samples === 0) throw new Error('zeroShotEval: the evaluation data gave no samples');
    return { top1: correct1 / samples, top5: correct5 / samples, samples };
  } finally {
    model.train(wasTraining);
  }
}

export interface RetrievalScores extends RetrievalMetrics {
  val_loss: number;
  samples: number;
}

/**
 * Retrieval metrics over a whole validation set and its CLIP loss (every pair against every
 * other, as OpenCLIP's get_clip_metrics), from features gathered batch by batch.
 */
export async function retrievalEval(model: CLIP, loader: DataLoader): Promise<RetrievalScores> {
  const wasTraining = model.training;
  model.eval();
  const imageParts: Tensor[] = [];
  const textParts: Tensor[] = [];
  try {
    for await (const batch of loader.epoch(0)) {
      noGrad(() =>
        scope(() => {
          imageParts.push(keep(model.encodeImage(onModelDevice(model, batch.images, batch.imageShape), { normalize: true })));
          textParts.push(keep(model.encodeText(onModelDevice(model, batch.texts, batch.textShape), { normalize: true })));
        }),
      );
    }
    if (imageParts.length === 0) throw new Error('retrievalEval: the validation data gave no samples');
    return noGrad(() =>
      scope(() => {
        const img = concat(imageParts, 0);
        const txt = concat(textParts, 0);
        const scale = Math.exp(model.logitScale.item());
        const metrics = retrievalMetrics(img, txt, scale);
        const loss = clipLoss(img, txt, model.logitScale).item();
        return { ...metrics, val_loss: loss, samples: img.shape[0]! };
      }),
    );
  } finally {
    for (const t of [...imageParts, ...textParts]) t.dispose();
    model.train(wasTraining);
  }
}

/** What `clipforge train` evaluates at an epoch's end and `clipforge eval` on a model. */
export interface EvalTasks {
  /** Zero-shot evaluations; metrics are named `<prefix>-top1`, `<prefix>-top5` and `<prefix>-samples`. */
  zeroShot: { prefix: string; task: ZeroShotTask }[];
  /** Retrieval data: metrics named as retrievalEval's, with `val_loss` and `samples`. */
  val: DataLoader | null;
  contextLength: number;
}

/**
 * Runs the zero-shot tasks (when `which.zeroShot`) and the retrieval evaluation (when
 * `which.retrieval` and there is validation data); returns their metrics under the names the
 * training logs use.
 */
export async function runEvaluations(model: CLIP, tasks: EvalTasks, which: { zeroShot: boolean; retrieval: boolean }): Promise<Record<string, number>> {
  const metrics: Record<string, number> = {};
  if (which.zeroShot) {
    for (const { prefix, task } of tasks.zeroShot) {
      const z = await zeroShotEval(model, task, tasks.contextLength);
      metrics[`${prefix}-top1`] = z.top1;
      metrics[`${prefix}-top5`] = z.top5;
      metrics[`${prefix}-samples`] = z.samples;
    }
  }
  if (which.retrieval && tasks.val) Object.assign(metrics, await retrievalEval(model, tasks.val));
  return metrics;
}

/** Closes the tasks' loaders. */
export async function closeEvalTasks(tasks: EvalTasks): Promise<void> {
  for (const z of tasks.zeroShot) await z.task.loader.close();
  await tasks.val?.close();
}
