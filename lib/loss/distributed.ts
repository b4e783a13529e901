// Distributed forms of the contrastive losses with OpenCLIP's meaning: gathered features and the
// per-rank "local" losses. They run in one process today (each simulated rank holds the list of
// every rank's features, as an all-gather would return it); a communicator can later supply the
// gathered tensors and carry their gradients. See lib/loss/index.ts for the gradient identities.
import { native } from '../native.js';
import { attachGrad } from '../tensor/autograd.js';
import { argError, checkBoolean, checkInteger, shapeStr } from '../tensor/check.js';
import { empty, type Tensor } from '../tensor/tensor.js';
import { add } from '../tensor/ops/elementwise.js';
import { floatTensor } from '../tensor/ops/util.js';
import { checkFeatures, checkScalarParam, crossEntropyTerms } from './clip.js';
import { sigmoidTerms } from './siglip.js';

export interface GatherOptions {
  /**
   * false (default, OpenCLIP's `gather_features` without `--gather-with-grad`): the gradient
   * reaching the result flows back only to parts[rank], the slice this rank owns; the other
   * slices are data received from other ranks.
   * true (OpenCLIP `--gather-with-grad`): the gradient of every slice flows back to its owner,
   * parts[k]. Across processes that is all_gather's backward (a reduce-scatter of the gathered
   * gradients); in one process, autograd adds each simulated rank's contribution into parts[k].grad.
   */
  withGrad?: boolean;
}

/**
 * The features of all ranks, [n, D] each, concatenated in rank order into [W·n, D], as
 * all_gather returns them on rank `rank`. Where the gradient goes is set by opts.withGrad.
 */
export function gatherFeatures(parts: readonly Tensor[], rank: number, opts: GatherOptions = {}): Tensor {
  const op = 'gatherFeatures';
  if (!Array.isArray(parts) || parts.length === 0) throw argError(op, 'parts', 'a non-empty array of Tensors', parts);
  const r = checkInteger(op, 'rank', rank, 0, parts.length - 1);
  const withGrad = opts.withGrad === undefined ? false : checkBoolean(op, 'opts.withGrad', opts.withGrad);
  const first = floatTensor(op, 'parts[0]', parts[0]);
  if (first.rank !== 2) throw argError(op, 'parts[0]', 'features of shape [n, D]', first.toString());
  parts.forEach((p, k) => {
    const t = floatTensor(op, `parts[${k}]`, p);
    if (t.rank !== 2 || t.shape[0] !== first.shape[0] || t.shape[1] !== first.shape[1]) {
      throw new Error(`${op}: expected shape ${shapeStr(first.shape)} for parts[${k}] (every rank has the same local batch), got ${shapeStr(t.shape)}`);
    }
    if (t.dtype !== first.dtype || t.device !== first.device) {
      throw new Error(`${op}: expected parts[${k}] like parts[0] (${first.dtype} on ${first.device}), got ${t.dtype} on ${t.device}`);
    }
  });
  const [n, d] = first.shape as [number, number];
  const out = empty([parts.length * n, d], { dtype: first.dtype, device: first.device });
  parts.forEach((p, k) => {
    const slot = out.view([n, d], k * n * d);
    native.copy(p, slot);
    slot.dispose();
  });
  const inputs = withGrad ? [...parts] : [parts[r]!];
  const owners = withGrad ? parts.map((_, k) => k) : [r];
  return attachGrad(out, op, inputs, [], (gy, _s, needs) => owners.map((k, i) => (needs[i] ? gy.view([n, d], k * n * d) : null)));
}

/** Checks local features [n, D] against gathered ones [W·n, D] and the rank; returns n. */
function checkLocal(op: string, local: Tensor, localName: string, all: Tensor, allName: string, rank: number): number {
  const n = checkFeatures(op, local, localName, all, allName, false);
  const m = all.shape[0]!;
  if (m % n !== 0) throw new Error(`${op}: expected ${allName} to hold a whole number of local batches of ${n} rows, got ${shapeStr(all.shape)}`);
  checkInteger(op, 'opts.rank', rank, 0, m / n - 1);
  return n;
}

/**
 * OpenCLIP's local CLIP loss (`ClipLoss(local_loss=True)`) on rank `opts.rank`: this rank's
 * images against all gathered texts and its texts against all gathered images, labels offset by
 * rank · n:
 *
 *   loss_r = (CE(s·img·allTxtᵀ, r·n + arange n) + CE(s·txt·allImgᵀ, r·n + arange n)) / 2
 *
 * img, txt: this rank's features [n, D]; allImg, allTxt: every rank's, [W·n, D] (gatherFeatures),
 * whose slice r must hold img and txt. The mean over ranks of loss_r is the full clipLoss over
 * the W·n pairs, and with gradients reaching every gathered slice (gatherFeatures withGrad) the
 * sum over ranks of the gradients is W × the full loss's gradient (see lib/loss/index.ts).
 */
export function localClipLoss(img: Tensor, txt: Tensor, allImg: Tensor, allTxt: Tensor, logitScale: Tensor, opts: { rank: number }): Tensor {
  const op = 'localClipLoss';
  if (!opts || typeof opts !== 'object') throw argError(op, 'opts', 'an object with rank', opts);
  const n = checkLocal(op, img, 'img', allTxt, 'allTxt', opts.rank);
  checkFeatures(op, img, 'img', txt, 'txt', true);
  checkFeatures(op, txt, 'txt', allImg, 'allImg', false);
  if (allImg.shape[0] !== allTxt.shape[0]) throw new Error(`${op}: expected shape ${shapeStr(allTxt.shape)} for allImg, got ${shapeStr(allImg.shape)}`);
  const ls = checkScalarParam(op, 'logitScale', logitScale, img.device);
  const off = opts.rank * n;
  const w = 1 / (2 * n);
  const i2t = crossEntropyTerms(op, img, allTxt, ls, { rows: true, cols: false, rowOffset: off, colOffset: 0, wRow: w, wCol: 0 });
  const t2i = crossEntropyTerms(op, txt, allImg, ls, { rows: true, cols: false, rowOffset: off, colOffset: 0, wRow: w, wCol: 0 });
  const loss = add(i2t, t2i);
  i2t.dispose();
  t2i.dispose();
  return loss;
}

/**
 * OpenCLIP's distributed SigLIP loss (`SigLipLoss`, any exchange scheme) on rank `opts.rank`:
 * this rank's images against every rank's texts, positives only where text and image share a
 * global index (r·n + i), divided by the local batch n:
 *
 *   loss_r = −(1/n) Σ_{i<n} Σ_j log σ(z_ij · (s·img_i·allTxt_j + bias))
 *
 * The mean over ranks is the full siglipLoss; with gradients reaching every gathered slice the
 * sum over ranks of the gradients is W × the full loss's gradient.
 */
export function localSiglipLoss(img: Tensor, allTxt: Tensor, logitScale: Tensor, logitBias: Tensor, opts: { rank: number }): Tensor {
  const op = 'localSiglipLoss';
  if (!opts || typeof opts !== 'object') throw argError(op, 'opts', 'an object with rank', opts);
  const n = checkLocal(op, img, 'img', allTxt, 'allTxt', opts.rank);
  const ls = checkScalarParam(op, 'logitScale', logitScale, img.device);
  const lb = checkScalarParam(op, 'logitBias', logitBias, img.device);
  return sigmoidTerms(op, img, allTxt, ls, lb, opts.rank * n, 1 / n);
}
