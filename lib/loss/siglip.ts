// SigLIP's pairwise sigmoid loss on the tiled native kernels: the N×N logits are never stored.
import { native } from '../native.js';
import { attachGrad, isGradEnabled } from '../tensor/autograd.js';
import { argError } from '../tensor/check.js';
import { empty, full, type DType, type Device, type Tensor } from '../tensor/tensor.js';
import { checkFeatures, checkScalarParam, gradAs } from './clip.js';

/** ln 10: SigLIP's initial log logit scale (OpenCLIP `--siglip`, the SigLIP paper). */
export const SIGLIP_LOGIT_SCALE_INIT = Math.log(10);
/** −10: SigLIP's initial logit bias. */
export const SIGLIP_LOGIT_BIAS_INIT = -10;

/** A learnable logit bias, shape [], requiring a gradient (default −10, as SigLIP). */
export function initLogitBias(value = SIGLIP_LOGIT_BIAS_INIT, opts: { device?: Device; dtype?: DType } = {}): Tensor {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw argError('initLogitBias', 'value', 'a finite number', value);
  const t = full([], value, { device: opts.device ?? 'cpu', dtype: opts.dtype ?? 'f32', requiresGrad: true });
  t.name = 'logit_bias';
  return t;
}

/**
 * @internal weight · Σ_i Σ_j softplus(−z_ij · (exp(t)·a_i·b_j + bias)), z = +1 at j = i + offset
 * and −1 elsewhere, as one autograd node over (a, b, logitScale, logitBias). The gradient needs
 * no global statistic, so when an input needs one the same pass over the logit tiles also
 * writes the gradients of the loss (f32, for dloss = 1); the backward only scales them by the
 * upstream gradient. This saves the tile product a recomputing backward would do, at the cost
 * of holding the gradients from the forward to the backward.
 */
export function sigmoidTerms(op: string, a: Tensor, b: Tensor, logitScale: Tensor, logitBias: Tensor, offset: number, weight: number): Tensor {
  const device = a.device;
  const inputs = [a, b, logitScale, logitBias];
  const wanted = inputs.map((t) => isGradEnabled() && t.requiresGrad);
  const grads = inputs.map((t, i) => (wanted[i] ? empty(t.shape, { device }) : null));
  const loss = empty([], { device });
  try {
    native.siglipLoss(a, b, logitScale, logitBias, offset, weight, loss, grads[0] ?? null, grads[1] ?? null, grads[2] ?? null, grads[3] ?? null);
  } catch (e) {
    for (const t of [loss, ...grads]) t?.dispose();
    throw e;
  }
  const saved = grads.filter((g): g is Tensor => g !== null);
  const out = attachGrad(loss, op, inputs, saved, (gy, s, needs) => {
    let k = 0;
    return inputs.map((t, i) => {
      if (!wanted[i]) return null;
      const g = s[k++]!;
      if (!needs[i]) return null;
      const scaled = empty(g.shape, { device });
      native.binary('mul', g, gy, scaled);
      return gradAs(scaled, t.dtype);
    });
  });
  for (const g of saved) g.dispose();
  return out;
}

/**
 * SigLIP's sigmoid loss (OpenCLIP `SigLipLoss`, the SigLIP paper's normalization): with
 * logits = exp(logitScale) · img · txtᵀ + logitBias and z = +1 on the diagonal, −1 elsewhere,
 *
 *   loss = −(1/N) Σ_i Σ_j log σ(z_ij · logits_ij)
 *
 * a sum over all N² pairs divided by the number of images. img and txt are [N, D] features,
 * L2-normalized by the caller, f32 or bf16. logitScale is the learned *log* scale (exp is
 * applied here; SigLIP starts at ln 10) and logitBias the bias (starts at −10), each of shape
 * [] or [1]. The result is an f32 scalar with gradients for img, txt, logitScale and logitBias.
 * The N×N logits are never materialized: extra memory is O(N) beyond the inputs and gradients
 * (which, when needed, are computed with the loss and kept until the backward).
 */
export function siglipLoss(img: Tensor, txt: Tensor, logitScale: Tensor, logitBias: Tensor): Tensor {
  const op = 'siglipLoss';
  const n = checkFeatures(op, img, 'img', txt, 'txt', true);
  const ls = checkScalarParam(op, 'logitScale', logitScale, img.device);
  const lb = checkScalarParam(op, 'logitBias', logitBias, img.device);
  return sigmoidTerms(op, img, txt, ls, lb, 0, 1 / n);
}
