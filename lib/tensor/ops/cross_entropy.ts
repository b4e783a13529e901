// Cross-entropy loss from logits and integer class labels, fused with the log-softmax
// (PyTorch's F.cross_entropy with class-index targets).
import { native } from '../../native.js';
import { attachGrad } from '../autograd.js';
import { argError, checkInteger, shapeStr, sameShape } from '../check.js';
import { checkTensor, empty, emptyLike, type Tensor } from '../tensor.js';
import { lastAxis } from './rows.js';
import { floatTensor } from './util.js';

export interface CrossEntropyOptions {
  /** 'mean' over the rows not ignored (default), 'sum', or 'none' (one loss per row). */
  reduction?: 'mean' | 'sum' | 'none';
  /** Rows with this label contribute no loss and no gradient, and are left out of the mean (default -100, as PyTorch). */
  ignoreIndex?: number;
  /** Mixes the one-hot target with the uniform distribution: (1 - s) onehot + s / C (default 0). */
  labelSmoothing?: number;
}

/**
 * Cross-entropy of logits [..., C] against i32 labels [...] in [0, C). The result has the
 * logits' dtype: shape [] for 'mean' and 'sum', labels' shape for 'none'. A mean over no
 * rows (all ignored) is NaN, as in PyTorch. The gradient flows to the logits only.
 * Labels out of range: the CPU backend throws; the CUDA backend, which cannot check without
 * waiting for the GPU, gives NaN for those rows' loss and gradient (so a mean is NaN).
 */
export function crossEntropy(logitsIn: Tensor, labelsIn: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const op = 'crossEntropy';
  const logits = floatTensor(op, 'logits', logitsIn);
  const labels = checkTensor(op, 'labels', labelsIn);
  lastAxis(op, 'logits', logits);
  if (labels.dtype !== 'i32') throw new Error(`${op}: expected dtype 'i32' for labels, got '${labels.dtype}'`);
  if (labels.device !== logits.device) {
    throw new Error(`${op}: expected logits and labels on the same device, got ${logits.device} and ${labels.device}`);
  }
  const rows = logits.shape.slice(0, -1);
  if (!sameShape(labels.shape, rows)) {
    throw new Error(`${op}: expected shape ${shapeStr(rows)} for labels (logits ${shapeStr(logits.shape)}), got ${shapeStr(labels.shape)}`);
  }
  const reduction = opts.reduction ?? 'mean';
  if (reduction !== 'mean' && reduction !== 'sum' && reduction !== 'none') {
    throw argError(op, 'reduction', "'mean', 'sum' or 'none'", reduction);
  }
  const ignoreIndex = checkInteger(op, 'ignoreIndex', opts.ignoreIndex ?? -100, -(2 ** 31), 2 ** 31 - 1);
  const smoothing = opts.labelSmoothing ?? 0;
  if (typeof smoothing !== 'number' || !(smoothing >= 0 && smoothing <= 1)) {
    throw argError(op, 'labelSmoothing', 'a number in [0, 1]', smoothing);
  }
  const out = empty(reduction === 'none' ? rows : [], { dtype: logits.dtype, device: logits.device });
  const lse = empty(rows, { dtype: 'f32', device: logits.device });
  try {
    native.crossEntropy(logits, labels, out, lse, reduction, ignoreIndex, smoothing);
  } catch (e) {
    out.dispose();
    lse.dispose();
    throw e;
  }
  attachGrad(out, op, [logits], [logits, labels, lse], (gy, [x, y, l]) => {
    const dx = emptyLike(x!);
    native.crossEntropyBackward(x!, y!, l!, gy, dx, reduction, ignoreIndex, smoothing);
    return [dx];
  });
  lse.dispose();
  return out;
}
