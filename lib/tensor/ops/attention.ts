// Fused scaled-dot-product attention with its gradient, in two layouts: separate q, k, v
// [B, H, S, D], and the packed [B, S, 3, H, D] tensor that a transformer's QKV projection
// writes (OpenCLIP's in_proj), read in place and answered in [B, S, H, D] for the output
// projection, so no permute copies surround the kernel.
import { native } from '../../native.js';
import { attachGrad } from '../autograd.js';
import { autocastDtype, autocastProduct, productOperands } from '../autocast.js';
import { argError, checkBoolean, checkFinite, sameShape, shapeStr } from '../check.js';
import { empty, type Tensor } from '../tensor.js';
import { expectShape, floatTensor } from './util.js';

export interface AttentionOptions {
  /** Position i attends to positions j <= i only (a text tower's mask). Default false. */
  causal?: boolean;
  /** Multiplies q . k before the softmax. Default 1 / sqrt(D). */
  scale?: number;
}

function resolveOptions(op: string, opts: AttentionOptions | undefined, dim: number): { causal: boolean; scale: number } {
  if (opts !== undefined && (opts === null || typeof opts !== 'object')) throw argError(op, 'options', 'an object', opts);
  const causal = opts?.causal === undefined ? false : checkBoolean(op, 'causal', opts.causal);
  const scale = opts?.scale === undefined ? 1 / Math.sqrt(dim) : checkFinite(op, 'scale', opts.scale);
  return { causal, scale };
}

function checkHeadDim(op: string, arg: string, t: Tensor, dim: number): void {
  if (dim < 1) throw new Error(`${op}: expected a head dim of at least 1 for ${arg}, got shape ${shapeStr(t.shape)}`);
}

/** `gy` in the output's shape (autograd may hand back a same-size view of another shape). */
function asShape(gy: Tensor, shape: readonly number[]): Tensor {
  return sameShape(gy.shape, shape) ? gy : gy.view(shape);
}

/**
 * Scaled-dot-product attention over separate q, k, v of shape [B, H, S, D] (batch, heads,
 * positions, head dim; any S >= 0 and D >= 1, f32 or bf16, one device):
 *
 *     out[b, h, i] = sum_j softmax_j(scale * q[b, h, i] . k[b, h, j]) v[b, h, j]
 *
 * with j <= i only when `causal`. Returns [B, H, S, D] in q's dtype. Memory stays O(S): the
 * kernel runs an online softmax and keeps only each row's logsumexp (f32 [B, H, S]) for the
 * backward, which recomputes the probabilities. Gradients flow to q, k and v.
 *
 * @example
 *   const y = attention(q, k, v, { causal: true });   // scale defaults to 1 / sqrt(D)
 */
export function attention(qIn: Tensor, kIn: Tensor, vIn: Tensor, opts?: AttentionOptions): Tensor {
  const op = 'attention';
  const q = floatTensor(op, 'q', qIn);
  const k = floatTensor(op, 'k', kIn);
  const v = floatTensor(op, 'v', vIn);
  if (q.rank !== 4) throw new Error(`${op}: expected a [B, H, S, D] tensor for q, got shape ${shapeStr(q.shape)}`);
  productOperands(op, ['q', 'k', 'v'], q, k, v);
  expectShape(op, 'k', k, q.shape);
  expectShape(op, 'v', v, q.shape);
  const [B, H, S, D] = q.shape as [number, number, number, number];
  checkHeadDim(op, 'q', q, D);
  const { causal, scale } = resolveOptions(op, opts, D);
  if (autocastDtype() !== null) {
    const amp = autocastProduct([q, k, v], ([q2, k2, v2]) => attention(q2!, k2!, v2!, { causal, scale }));
    if (amp) return amp;
  }
  const shape = q.shape;
  const out = empty(shape, { dtype: q.dtype, device: q.device });
  const lse = empty([B, H, S], { dtype: 'f32', device: q.device });
  try {
    native.attentionForward(q, k, v, out, lse, causal, scale);
  } catch (e) {
    out.dispose();
    lse.dispose();
    throw e;
  }
  attachGrad(out, op, [q, k, v], [q, k, v, out, lse], (gy, [qs, ks, vs, os, ls], needs) => {
    const g = asShape(gy, shape);
    const grads = [0, 1, 2].map(() => empty(shape, { dtype: qs!.dtype, device: qs!.device }));
    try {
      native.attentionBackward(qs!, ks!, vs!, os!, g, ls!, grads[0]!, grads[1]!, grads[2]!, causal, scale);
    } catch (e) {
      for (const t of grads) t.dispose();
      throw e;
    } finally {
      if (g !== gy) g.dispose();
    }
    return grads.map((t, i) => {
      if (needs[i]) return t;
      t.dispose();
      return null;
    });
  });
  lse.dispose();
  return out;
}

/**
 * Attention over the packed projection output qkv of shape [B, S, 3, H, D], where
 * qkv[:, :, 0], qkv[:, :, 1] and qkv[:, :, 2] are q, k and v (the layout of
 * `x @ in_proj_weight^T` reshaped to [B, S, 3, H, D]). Returns [B, S, H, D], which reshapes
 * to [B, S, H * D] for the output projection without a copy. Same math, options, dtypes and
 * memory as `attention`; the gradient is one [B, S, 3, H, D] tensor for qkv. Equal to
 * `attention(q, k, v)` with q = qkv[:, :, 0] permuted to [B, H, S, D] (and likewise k, v),
 * its result permuted back to [B, S, H, D].
 *
 * @example
 *   const qkv = linear(x, inProjWeight, inProjBias).view([B, S, 3, H, D]);   // x: [B, S, H * D]
 *   const y = attentionPacked(qkv).view([B, S, H * D]);
 */
export function attentionPacked(qkvIn: Tensor, opts?: AttentionOptions): Tensor {
  const op = 'attentionPacked';
  const qkv = floatTensor(op, 'qkv', qkvIn);
  if (qkv.rank !== 5 || qkv.shape[2] !== 3) {
    throw new Error(`${op}: expected a [B, S, 3, H, D] tensor for qkv, got shape ${shapeStr(qkv.shape)}`);
  }
  const [B, S, , H, D] = qkv.shape as [number, number, number, number, number];
  checkHeadDim(op, 'qkv', qkv, D);
  const { causal, scale } = resolveOptions(op, opts, D);
  if (autocastDtype() !== null) {
    const amp = autocastProduct([qkv], ([low]) => attentionPacked(low!, { causal, scale }));
    if (amp) return amp;
  }
  const outShape = [B, S, H, D];
  const qkvShape = qkv.shape;
  const out = empty(outShape, { dtype: qkv.dtype, device: qkv.device });
  const lse = empty([B, H, S], { dtype: 'f32', device: qkv.device });
  try {
    native.attentionPackedForward(qkv, out, lse, causal, scale);
  } catch (e) {
    out.dispose();
    lse.dispose();
    throw e;
  }
  attachGrad(out, op, [qkv], [qkv, out, lse], (gy, [xs, os, ls]) => {
    const g = asShape(gy, outShape);
    const dqkv = empty(qkvShape, { dtype: xs!.dtype, device: xs!.device });
    try {
      native.attentionPackedBackward(xs!, os!, g, ls!, dqkv, causal, scale);
    } catch (e) {
      dqkv.dispose();
      throw e;
    } finally {
      if (g !== gy) g.dispose();
    }
    return [dqkv];
  });
  lse.dispose();
  return out;
}
