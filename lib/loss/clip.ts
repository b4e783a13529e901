// CLIP's contrastive loss (InfoNCE) on the tiled native kernels: the N×N logits are never
// stored. Also the learned logit scale: its initial value and the clamp the training loop applies.
import { native } from '../native.js';
import { attachGrad } from '../tensor/autograd.js';
import { argError, shapeStr } from '../tensor/check.js';
import { checkTensor, empty, full, type DType, type Device, type Tensor } from '../tensor/tensor.js';
import { floatTensor } from '../tensor/ops/util.js';

/** ln(1 / 0.07): the initial log logit scale of CLIP (temperature 0.07). */
export const LOGIT_SCALE_INIT = Math.log(1 / 0.07);
/** ln 100: OpenCLIP clamps the log logit scale to [0, ln 100] after every optimizer step. */
export const LOGIT_SCALE_MAX = Math.log(100);

/**
 * A learnable log logit scale, shape [], requiring a gradient. The losses use exp(logitScale),
 * as OpenCLIP's `logit_scale.exp()`. Default: ln(1 / 0.07) (CLIP); SigLIP uses ln 10.
 */
export function initLogitScale(value = LOGIT_SCALE_INIT, opts: { device?: Device; dtype?: DType } = {}): Tensor {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw argError('initLogitScale', 'value', 'a finite number', value);
  const t = full([], value, { device: opts.device ?? 'cpu', dtype: opts.dtype ?? 'f32', requiresGrad: true });
  t.name = 'logit_scale';
  return t;
}

/**
 * Clamps the log logit scale to [0, max] (default ln 100) in place, outside autograd: the
 * training loop calls it after each optimizer step, as OpenCLIP does. Returns t.
 */
export function clampLogitScale(t: Tensor, max = LOGIT_SCALE_MAX): Tensor {
  const x = floatTensor('clampLogitScale', 't', t);
  if (typeof max !== 'number' || !(max >= 0)) throw argError('clampLogitScale', 'max', 'a number >= 0', max);
  native.unary('clamp', x, x, 0, max);
  return x;
}

/** Checks features [N, D] of one float dtype on one device; returns N. */
export function checkFeatures(op: string, a: unknown, an: string, b: unknown, bn: string, sameRows: boolean): number {
  const x = floatTensor(op, an, a);
  const y = floatTensor(op, bn, b);
  for (const [t, name] of [[x, an], [y, bn]] as const) {
    if (t.rank !== 2 || t.shape[0]! < 1 || t.shape[1]! < 1) throw argError(op, name, 'features of shape [N, D] with N, D >= 1', t.toString());
  }
  if (y.device !== x.device) throw new Error(`${op}: expected ${an} and ${bn} on the same device, got ${x.device} and ${y.device}`);
  if (y.dtype !== x.dtype) throw new Error(`${op}: expected ${an} and ${bn} of the same dtype, got ${x.dtype} and ${y.dtype}`);
  if (y.shape[1] !== x.shape[1]) throw new Error(`${op}: expected shape [N, ${x.shape[1]}] for ${bn}, got ${shapeStr(y.shape)}`);
  if (sameRows && y.shape[0] !== x.shape[0]) throw new Error(`${op}: expected shape ${shapeStr(x.shape)} for ${bn}, got ${shapeStr(y.shape)}`);
  return x.shape[0]!;
}

/** Checks a scalar parameter (shape [] or [1], float dtype) on the features' device. */
export function checkScalarParam(op: string, arg: string, p: unknown, device: Device): Tensor {
  const t = checkTensor(op, arg, p);
  if (t.dtype === 'i32') throw argError(op, arg, "a tensor of dtype 'f32' or 'bf16'", t.toString());
  if (!(t.rank === 0 || (t.rank === 1 && t.shape[0] === 1))) throw new Error(`${op}: expected shape [] or [1] for ${arg}, got ${shapeStr(t.shape)}`);
  if (t.device !== device) throw new Error(`${op}: expected ${arg} on ${device} (the features' device), got ${t.device}`);
  return t;
}

/** The native kernels write f32 gradients; this returns one in the dtype of its input. */
export function gradAs(g: Tensor | null, dtype: DType): Tensor | null {
  if (!g || dtype === 'f32') return g;
  const c = empty(g.shape, { dtype, device: g.device });
  native.cast(g, c);
  g.dispose();
  return c;
}

/** Which softmax cross-entropy terms of the logits exp(t)·a·bᵀ to sum, with labels and weights. */
export interface CrossEntropyTerms {
  /** Row term: w_row · Σ_i CE(row i, label column i + rowOffset). */
  rows: boolean;
  /** Column term: w_col · Σ_j CE(column j, label row j + colOffset). */
  cols: boolean;
  rowOffset: number;
  colOffset: number;
  wRow: number;
  wCol: number;
}

/**
 * @internal The cross-entropy terms as one autograd node over (a, b, logitScale). The forward
 * keeps only the row / column log-sum-exps (f32, O(N)); the backward recomputes the logits.
 */
export function crossEntropyTerms(op: string, a: Tensor, b: Tensor, logitScale: Tensor, terms: CrossEntropyTerms): Tensor {
  const device = a.device;
  const loss = empty([], { device });
  const lseRow = terms.rows ? empty([a.shape[0]!], { device }) : null;
  const lseCol = terms.cols ? empty([b.shape[0]!], { device }) : null;
  try {
    native.clipLossForward(a, b, logitScale, terms.rowOffset, terms.colOffset, terms.wRow, terms.wCol, loss, lseRow, lseCol);
  } catch (e) {
    for (const t of [loss, lseRow, lseCol]) t?.dispose();
    throw e;
  }
  const saved = [a, b, logitScale, ...(lseRow ? [lseRow] : []), ...(lseCol ? [lseCol] : [])];
  const out = attachGrad(loss, op, [a, b, logitScale], saved, (gy, s, needs) => {
    const lr = terms.rows ? s[3]! : null;
    const lc = terms.cols ? s[terms.rows ? 4 : 3]! : null;
    const da = needs[0] ? empty(a.shape, { device }) : null;
    const db = needs[1] ? empty(b.shape, { device }) : null;
    const dls = needs[2] ? empty(logitScale.shape, { device }) : null;
    native.clipLossBackward(s[0]!, s[1]!, s[2]!, lr, lc, terms.rowOffset, terms.colOffset, terms.wRow, terms.wCol, gy, da, db, dls);
    return [gradAs(da, a.dtype), gradAs(db, b.dtype), gradAs(dls, logitScale.dtype)];
  });
  // The gradient node holds its own references to what it saved.
  lseRow?.dispose();
  lseCol?.dispose();
  return out;
}

/**
 * CLIP's symmetric contrastive loss (OpenCLIP `ClipLoss`): with logits = exp(logitScale) ·
 * img · txtᵀ and labels on the diagonal, the mean of the cross-entropy over rows (image to
 * text) and over columns (text to image):
 *
 *   loss = (CE(logits, arange N) + CE(logitsᵀ, arange N)) / 2
 *
 * img and txt are [N, D] features, L2-normalized by the caller, f32 or bf16 (the kernels
 * accumulate in f32). logitScale is the learned *log* scale, shape [] or [1] (see
 * initLogitScale, clampLogitScale). The result is an f32 scalar with gradients for img, txt and
 * logitScale. The N×N logits are never materialized: extra memory is O(N).
 */
export function clipLoss(img: Tensor, txt: Tensor, logitScale: Tensor): Tensor {
  const op = 'clipLoss';
  const n = checkFeatures(op, img, 'img', txt, 'txt', true);
  const ls = checkScalarParam(op, 'logitScale', logitScale, img.device);
  return crossEntropyTerms(op, img, txt, ls, { rows: true, cols: true, rowOffset: 0, colOffset: 0, wRow: 1 / (2 * n), wCol: 1 / (2 * n) });
}
