// Structural reparameterization of UniRepLKNet on a state dict: the training form's
// multi-branch, batch-normed blocks become the deploy form's single large kernel with bias.
// It works on names alone (any prefix: a bare trunk, `trunk.`, `visual.trunk.`), so both
// UniRepLKNetTower.reparameterize() and `clipforge convert` use it, and a checkpoint
// converts without knowing its architecture.
//
// Per block (prefix P), in eval-mode semantics (running statistics), with a BatchNorm folded
// into the linear map before it as s = weight / sqrt(running_var + eps),
// W' = W * s (per output channel), b' = bias + (b - running_mean) * s:
//  1. P.dwconv: the Dilated Reparam Block's main kernel and each dilated branch fold their
//     own BatchNorm, the branches are merged into the main kernel (mergeDilatedBranches) and
//     the biases add up; a plain 3 x 3 / 5 x 5 conv has no branch. Then the block's `norm`
//     BatchNorm folds into that one conv, which gains a bias.
//  2. P.pwconv2: Linear(4C -> C, no bias) -> BatchNorm -> layer scale gamma, with GRN's beta
//     added before it, becomes one Linear with bias:
//     W' = diag(s * gamma) W,  b' = gamma * (bias + (W beta_grn - running_mean) * s).
// Every other tensor passes through unchanged. The math runs in float64 on the host.
import { mergeDilatedBranches } from '../tensor/ops/dwconv.js';
import { fromArray, type Tensor } from '../tensor/tensor.js';

/** PyTorch's BatchNorm2d eps, which the official model uses everywhere (a state dict does not record it). */
export const BATCHNORM_EPS = 1e-5;

const BLOCK_MARKER = 'pwconv2.2.running_var';

interface Folded {
  scale: Float64Array;
  shift: Float64Array;
}

function f64(t: Tensor): Float64Array {
  return Float64Array.from(t.toArray());
}

/**
 * Converts a UniRepLKNet training-form state dict into the deploy form's. The result holds
 * the unchanged tensors of `state` themselves and new tensors (in the current scope) for the
 * fused ones. Throws when `state` has no training-form block or a block lacks a tensor.
 */
export function deployStateDict(state: Map<string, Tensor>): Map<string, Tensor> {
  const op = 'deployStateDict';
  if (!(state instanceof Map)) throw new Error(`${op}: expected a Map of name -> Tensor for state, got ${typeof state}`);
  // A block is recognized by its FFN output: pwconv2's Linear followed by a BatchNorm.
  const prefixes = [...state.keys()]
    .filter((k) => k === BLOCK_MARKER || k.endsWith(`.${BLOCK_MARKER}`))
    .map((k) => k.slice(0, -BLOCK_MARKER.length))
    .filter((p) => state.has(`${p}pwconv2.0.weight`));
  if (prefixes.length === 0) {
    throw new Error(`${op}: found no UniRepLKNet block in training form in the state dict (no key ending in '${BLOCK_MARKER}'); is it already in deploy form?`);
  }
  const get = (key: string): Tensor => {
    const t = state.get(key);
    if (!t) throw new Error(`${op}: expected tensor '${key}' in the state dict (a training-form UniRepLKNet block has it), got none`);
    return t;
  };
  const consumed = new Set<string>();
  const produced = new Map<string, Tensor>();
  const take = (key: string): Tensor => {
    consumed.add(key);
    return get(key);
  };
  const foldBn = (bnPrefix: string): Folded => {
    const [w, b, mean, variance] = ['weight', 'bias', 'running_mean', 'running_var'].map((s) => f64(take(`${bnPrefix}.${s}`))) as [Float64Array, Float64Array, Float64Array, Float64Array];
    if (state.has(`${bnPrefix}.num_batches_tracked`)) consumed.add(`${bnPrefix}.num_batches_tracked`);
    const scale = w.map((g, c) => g / Math.sqrt(variance[c]! + BATCHNORM_EPS));
    return { scale, shift: b.map((beta, c) => beta - mean[c]! * scale[c]!) };
  };
  // W * s per output channel (dim 0), as a tensor like `like`.
  const scaled = (w: Tensor, scale: Float64Array): Tensor => {
    const v = f64(w);
    const per = v.length / scale.length;
    return fromArray(Float32Array.from(v, (x, i) => x * scale[Math.floor(i / per)]!), w.shape, { dtype: w.dtype, device: w.device });
  };
  const vector = (v: Float64Array, like: Tensor): Tensor => fromArray(Float32Array.from(v), [v.length], { dtype: like.dtype, device: like.device });

  for (const p of prefixes) {
    // 1. The depthwise conv with its BatchNorms.
    let kernelKey: string | null = null;
    let weight: Tensor | null = null;
    let bias: Float64Array | null = null;
    if (state.has(`${p}dwconv.origin_bn.weight`)) {
      kernelKey = `${p}dwconv.lk_origin`;
      const main = foldBn(`${p}dwconv.origin_bn`);
      const mainW = take(`${kernelKey}.weight`);
      bias = main.shift;
      const branchPattern = new RegExp(`^${escapeRegExp(p)}dwconv\\.dil_conv_k(\\d+)_(\\d+)\\.weight$`);
      const branches: { w: Tensor; dilation: number }[] = [];
      for (const key of state.keys()) {
        const m = branchPattern.exec(key);
        if (!m) continue;
        const folded = foldBn(`${p}dwconv.dil_bn_k${m[1]}_${m[2]}`);
        branches.push({ w: scaled(take(key), folded.scale), dilation: Number(m[2]) });
        bias = bias.map((v, c) => v + folded.shift[c]!);
      }
      weight = mergeDilatedBranches(scaled(mainW, main.scale), branches);
    } else if (state.has(`${p}dwconv.weight`)) {
      kernelKey = `${p}dwconv`;
      weight = take(`${kernelKey}.weight`);
      bias = state.has(`${kernelKey}.bias`) ? f64(take(`${kernelKey}.bias`)) : new Float64Array(weight.shape[0]!);
    }
    if (kernelKey && weight && bias) {
      const norm = foldBn(`${p}norm`);
      produced.set(`${kernelKey}.weight`, scaled(weight, norm.scale));
      produced.set(`${kernelKey}.bias`, vector(bias.map((v, c) => v * norm.scale[c]! + norm.shift[c]!), weight));
    }

    // 2. pwconv2 -> BatchNorm -> layer scale, with GRN's beta before it.
    const w2 = take(`${p}pwconv2.0.weight`);
    const [outF, inF] = w2.shape as [number, number];
    const w2v = f64(w2);
    const bn2 = foldBn(`${p}pwconv2.2`);
    const gamma = state.has(`${p}gamma`) ? f64(take(`${p}gamma`)) : new Float64Array(outF).fill(1);
    const grnBeta = state.has(`${p}act.1.beta`) ? f64(take(`${p}act.1.beta`)) : new Float64Array(inF);
    const linearBias = state.has(`${p}pwconv2.0.bias`) ? f64(take(`${p}pwconv2.0.bias`)) : new Float64Array(outF);
    const rowScale = bn2.scale.map((s, c) => s * gamma[c]!);
    const b2 = new Float64Array(outF);
    for (let c = 0; c < outF; c++) {
      let projected = linearBias[c]!;
      for (let j = 0; j < inF; j++) projected += w2v[c * inF + j]! * grnBeta[j]!;
      b2[c] = gamma[c]! * (projected * bn2.scale[c]! + bn2.shift[c]!);
    }
    produced.set(`${p}pwconv2.0.weight`, scaled(w2, rowScale));
    produced.set(`${p}pwconv2.0.bias`, vector(b2, w2));
  }

  const out = new Map<string, Tensor>();
  for (const [key, t] of state) {
    if (produced.has(key)) out.set(key, produced.get(key)!);
    else if (!consumed.has(key)) out.set(key, t);
  }
  for (const [key, t] of produced) if (!out.has(key)) out.set(key, t);
  return out;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
