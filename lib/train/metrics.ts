// Evaluation metrics of a CLIP model, as OpenCLIP computes them: zero-shot classification
// (a classifier of class embeddings averaged over prompt templates; top-k accuracy) and
// paired image↔text retrieval (recall at 1/5/10, mean and median rank).
//
// Ranks follow OpenCLIP's tie rule: a candidate ranks before the true one if it scores
// higher, or scores the same and has the lower index. Scores are computed on the features'
// device one block of rows at a time and ranked on the host, so no N×N matrix is ever held.
import { noGrad } from '../tensor/autograd.js';
import { argError, shapeStr } from '../tensor/check.js';
import { affine } from '../tensor/ops/elementwise.js';
import { l2Normalize } from '../tensor/ops/l2norm.js';
import { matmul } from '../tensor/ops/matmul.js';
import { mean } from '../tensor/ops/reduce.js';
import { concat } from '../tensor/ops/slice.js';
import { cast } from '../tensor/ops/shape.js';
import { floatTensor } from '../tensor/ops/util.js';
import { scope } from '../tensor/scope.js';
import { checkTensor, type Tensor } from '../tensor/tensor.js';

const ROWS_PER_BLOCK = 1024;

/**
 * Class embeddings [C, D] from text embeddings [C, T, D] (T prompt templates per class):
 * each embedding normalized, averaged over the templates, renormalized.
 */
export function classifierFromEmbeddings(textEmbeddings: Tensor): Tensor {
  const x = floatTensor('classifierFromEmbeddings', 'textEmbeddings', textEmbeddings);
  if (x.rank !== 3 || x.size === 0) throw new Error(`classifierFromEmbeddings: expected shape [classes, templates, dim] with no zero size for textEmbeddings, got ${shapeStr(x.shape)}`);
  return noGrad(() => scope(() => l2Normalize(mean(l2Normalize(x), 1))));
}

export type PromptTemplate = string | ((classname: string) => string);

/**
 * OpenCLIP's build_zero_shot_classifier: every class name in every template ('{}' stands
 * for the name), encoded by `encodeText` (texts -> embeddings [texts, D]) a few classes at
 * a time, then classifierFromEmbeddings. Returns [C, D].
 */
export function zeroShotClassifier(
  classnames: readonly string[],
  templates: readonly PromptTemplate[],
  encodeText: (texts: string[]) => Tensor,
  opts: { classesPerBatch?: number } = {},
): Tensor {
  const op = 'zeroShotClassifier';
  if (!Array.isArray(classnames) || classnames.length === 0 || classnames.some((c) => typeof c !== 'string')) throw argError(op, 'classnames', 'a non-empty array of strings', classnames);
  if (!Array.isArray(templates) || templates.length === 0 || templates.some((t) => typeof t !== 'string' && typeof t !== 'function')) {
    throw argError(op, 'templates', 'a non-empty array of template strings or functions', templates);
  }
  if (typeof encodeText !== 'function') throw argError(op, 'encodeText', 'a function', encodeText);
  const perBatch = opts.classesPerBatch ?? 10;
  if (!Number.isSafeInteger(perBatch) || perBatch < 1) throw argError(op, 'opts.classesPerBatch', 'an integer >= 1', perBatch);
  const t = templates.length;
  return noGrad(() =>
    scope(() => {
      const parts: Tensor[] = [];
      for (let c0 = 0; c0 < classnames.length; c0 += perBatch) {
        const names = classnames.slice(c0, c0 + perBatch);
        const texts = names.flatMap((name) => templates.map((tpl) => (typeof tpl === 'string' ? tpl.replaceAll('{}', name) : tpl(name))));
        const emb = checkTensor(op, 'the result of encodeText', encodeText(texts));
        if (emb.rank !== 2 || emb.shape[0] !== texts.length) throw new Error(`${op}: expected encodeText to return shape [${texts.length}, dim], got ${shapeStr(emb.shape)}`);
        parts.push(classifierFromEmbeddings(emb.view([names.length, t, emb.shape[1]!])));
      }
      return parts.length === 1 ? parts[0]! : concat(parts, 0);
    }),
  );
}

function checkPairOfFeatures(op: string, a: unknown, an: string, b: unknown, bn: string): [Tensor, Tensor] {
  const x = floatTensor(op, an, a);
  const y = floatTensor(op, bn, b);
  for (const [t, n] of [[x, an], [y, bn]] as const) {
    if (t.rank !== 2 || t.shape[0] === 0 || t.shape[1] === 0) throw new Error(`${op}: expected shape [N, D] with N, D >= 1 for ${n}, got ${shapeStr(t.shape)}`);
  }
  if (x.shape[1] !== y.shape[1]) throw new Error(`${op}: expected ${an} and ${bn} of the same feature size, got ${shapeStr(x.shape)} and ${shapeStr(y.shape)}`);
  if (x.device !== y.device) throw new Error(`${op}: expected ${an} and ${bn} on the same device, got ${x.device} and ${y.device}`);
  return [x, y];
}

/** Calls fn with each block of rows of scale * a · bᵀ (f32, on the host) and its first row. */
function forEachScoreBlock(a: Tensor, b: Tensor, scale: number, fn: (scores: Float32Array, row0: number, rows: number) => void): void {
  const [n, d] = a.shape as [number, number];
  noGrad(() => {
    for (let r0 = 0; r0 < n; r0 += ROWS_PER_BLOCK) {
      const rows = Math.min(ROWS_PER_BLOCK, n - r0);
      const scores = scope(() => {
        const block = a.view([rows, d], r0 * d);
        const bb = b.dtype === a.dtype ? b : cast(b, a.dtype);
        let s = matmul(block, bb, { transB: true });
        if (scale !== 1) s = affine(s, scale);
        return (s.dtype === 'f32' ? s : cast(s, 'f32')).toArray() as Float32Array;
      });
      fn(scores, r0, rows);
    }
  });
}

function labelsArray(op: string, labels: unknown, n: number, classes: number): Int32Array {
  let out: Int32Array;
  if (labels instanceof Int32Array) out = labels;
  else if (Array.isArray(labels)) out = Int32Array.from(labels as number[]);
  else if (labels !== null && typeof labels === 'object' && (labels as Tensor).isTensor) {
    const t = checkTensor(op, 'labels', labels);
    if (t.dtype !== 'i32') throw new Error(`${op}: expected i32 labels, got ${t.toString()}`);
    out = t.toArray() as Int32Array;
  } else throw argError(op, 'labels', 'an Int32Array, an array of class indices or an i32 Tensor', labels);
  if (out.length !== n) throw new Error(`${op}: expected ${n} labels (one per image), got ${out.length}`);
  const bad = out.findIndex((l, i) => l < 0 || l >= classes || (Array.isArray(labels) && l !== (labels as number[])[i]));
  if (bad >= 0) throw new Error(`${op}: expected class indices in [0, ${classes}) for labels, got ${String(Array.isArray(labels) ? labels[bad] : out[bad])} at ${bad}`);
  return out;
}

export interface ZeroShotResult {
  /** Number of images. */
  n: number;
  /** Images whose true class is among the k best, per k. */
  correct: Record<number, number>;
  /** correct[k] / n. */
  accuracy: Record<number, number>;
}

/**
 * Top-k zero-shot accuracy of image features [N, D] against a classifier [C, D] for the
 * true class indices `labels` (N of them).
 */
export function zeroShotAccuracy(imageFeatures: Tensor, classifier: Tensor, labels: Int32Array | readonly number[] | Tensor, ks: readonly number[] = [1, 5]): ZeroShotResult {
  const op = 'zeroShotAccuracy';
  const [img, cls] = checkPairOfFeatures(op, imageFeatures, 'imageFeatures', classifier, 'classifier');
  const n = img.shape[0]!;
  const classes = cls.shape[0]!;
  if (!Array.isArray(ks) || ks.length === 0 || ks.some((k) => !Number.isSafeInteger(k) || k < 1)) throw argError(op, 'ks', 'a non-empty array of integers >= 1', ks);
  const truth = labelsArray(op, labels, n, classes);
  const correct: Record<number, number> = Object.fromEntries(ks.map((k) => [k, 0]));
  forEachScoreBlock(img, cls, 1, (scores, r0, rows) => {
    for (let r = 0; r < rows; r++) {
      const y = truth[r0 + r]!;
      const row = scores.subarray(r * classes, (r + 1) * classes);
      const target = row[y]!;
      let rank = 0;
      for (let c = 0; c < classes; c++) if (row[c]! > target || (row[c] === target && c < y)) rank++;
      for (const k of ks) if (rank < k) correct[k]!++;
    }
  });
  return { n, correct, accuracy: Object.fromEntries(ks.map((k) => [k, correct[k]! / n])) };
}

/** Keys as OpenCLIP's get_clip_metrics names them. */
export type RetrievalMetrics = Record<`${'image_to_text' | 'text_to_image'}_${'mean_rank' | 'median_rank' | 'R@1' | 'R@5' | 'R@10'}`, number>;

function rankMetrics(out: Record<string, number>, name: string, ranks: Int32Array): void {
  const n = ranks.length;
  let total = 0;
  for (const r of ranks) total += r;
  const sorted = Int32Array.from(ranks).sort();
  const median = n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  out[`${name}_mean_rank`] = total / n + 1;
  out[`${name}_median_rank`] = Math.floor(median) + 1;
  for (const k of [1, 5, 10]) {
    let hits = 0;
    for (const r of ranks) if (r < k) hits++;
    out[`${name}_R@${k}`] = hits / n;
  }
}

/**
 * Paired retrieval metrics (image i belongs with text i) from image and text features
 * [N, D], scored as logitScale * image · text as OpenCLIP's get_clip_metrics: recall at 1, 5
 * and 10, mean rank and median rank (1 = first), image→text and text→image.
 */
export function retrievalMetrics(imageFeatures: Tensor, textFeatures: Tensor, logitScale = 1): RetrievalMetrics {
  const op = 'retrievalMetrics';
  const [img, txt] = checkPairOfFeatures(op, imageFeatures, 'imageFeatures', textFeatures, 'textFeatures');
  const n = img.shape[0]!;
  if (txt.shape[0] !== n) throw new Error(`${op}: expected as many texts as images (paired), got ${n} images and ${txt.shape[0]} texts`);
  if (typeof logitScale !== 'number' || !(logitScale > 0) || !Number.isFinite(logitScale)) throw argError(op, 'logitScale', 'a finite number > 0', logitScale);
  // Two passes over identical blocks: the paired scores first, so that every comparison in
  // the second pass is against exactly the value computed for the pair.
  const paired = new Float32Array(n);
  forEachScoreBlock(img, txt, logitScale, (scores, r0, rows) => {
    for (let r = 0; r < rows; r++) paired[r0 + r] = scores[r * n + r0 + r]!;
  });
  const imageRanks = new Int32Array(n);
  const textRanks = new Int32Array(n);
  forEachScoreBlock(img, txt, logitScale, (scores, r0, rows) => {
    for (let r = 0; r < rows; r++) {
      const i = r0 + r;
      const row = scores.subarray(r * n, (r + 1) * n);
      const own = paired[i]!;
      let rank = 0;
      for (let j = 0; j < n; j++) {
        const s = row[j]!;
        if (s > own || (s === own && j < i)) rank++;
        if (s > paired[j]! || (s === paired[j] && i < j)) textRanks[j]!++;
      }
      imageRanks[i] = rank;
    }
  });
  const out: Record<string, number> = {};
  rankMetrics(out, 'image_to_text', imageRanks);
  rankMetrics(out, 'text_to_image', textRanks);
  return out as RetrievalMetrics;
}

