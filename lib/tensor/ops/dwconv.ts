// Depthwise 2-D convolution (one K x K filter per channel, PyTorch's Conv2d(groups=C)) with
// autograd; NCHW <-> NHWC conversions; and the reparameterization that merges UniRepLKNet's
// dilated small-kernel branches into its large kernel.
//
// Layout: the native kernels take NHWC activations ([N, H, W, C]), measured faster than NCHW
// on the CPU and the natural layout for the GPU kernels and for UniRepLKNet's pointwise
// layers (plain GEMMs over C). `layout: 'nchw'` accepts and returns [N, C, H, W] by
// converting on the way in and out. Weights are PyTorch's [C, 1, K, K] (or [C, K, K]).
import { native } from '../../native.js';
import { attachGrad } from '../autograd.js';
import { autocastDtype, autocastProduct, productOperands } from '../autocast.js';
import { argError, isInteger, shapeStr } from '../check.js';
import { empty, fromArray, type Tensor } from '../tensor.js';
import { permute } from './permute.js';
import { expectShape, floatTensor, sameKind } from './util.js';

export type ConvLayout = 'nhwc' | 'nchw';

export interface DepthwiseConv2dOptions {
  /** 1 (default) or 2, both axes. */
  stride?: number;
  /**
   * 'same' (default): dilation * (K - 1) / 2 on every side, which keeps H and W at stride 1
   * and gives ceil(H / 2) at stride 2 (PyTorch's padding = K // 2 convention). A number pads
   * both axes; [ph, pw] pads rows and columns. Each in [0, dilation * (K - 1)].
   */
  padding?: 'same' | number | readonly [number, number];
  /** 1 (default) to 5. */
  dilation?: number;
  /** Layout of x and of the result: 'nhwc' (default, what the kernels take) or 'nchw'. */
  layout?: ConvLayout;
}

export const MAX_DW_KERNEL = 31;
export const MAX_DW_DILATION = 5;

interface Geometry {
  n: number;
  h: number;
  w: number;
  c: number;
  k: number;
  stride: number;
  dilation: number;
  ph: number;
  pw: number;
  oh: number;
  ow: number;
}

/** Kernel size of a depthwise weight [C, 1, K, K] or [C, K, K]: square, odd, 1 to 31. */
function kernelSize(op: string, arg: string, w: Tensor): number {
  const s = w.shape;
  const ok = (s.length === 3 || (s.length === 4 && s[1] === 1)) && s[s.length - 1] === s[s.length - 2];
  if (!ok) throw new Error(`${op}: expected shape [C, 1, K, K] or [C, K, K] for ${arg}, got ${shapeStr(s)}`);
  const k = s[s.length - 1]!;
  if (k < 1 || k > MAX_DW_KERNEL || k % 2 === 0) {
    throw new Error(`${op}: expected an odd kernel size K in [1, ${MAX_DW_KERNEL}] for ${arg}, got shape ${shapeStr(s)}`);
  }
  return k;
}

function checkLayout(op: string, layout: unknown): ConvLayout {
  if (layout !== 'nhwc' && layout !== 'nchw') throw argError(op, 'layout', "'nhwc' or 'nchw'", layout);
  return layout;
}

function geometry(op: string, x: Tensor, k: number, opts: DepthwiseConv2dOptions, layout: ConvLayout): Geometry {
  if (x.rank !== 4) {
    throw new Error(`${op}: expected a rank-4 tensor ${layout === 'nhwc' ? '[N, H, W, C]' : '[N, C, H, W]'} for x, got ${shapeStr(x.shape)}`);
  }
  const [n, a, b, c] = x.shape as [number, number, number, number];
  const [h, w, ch] = layout === 'nhwc' ? [a, b, c] : [b, c, a];
  const stride = opts.stride ?? 1;
  if (stride !== 1 && stride !== 2) throw argError(op, 'stride', '1 or 2', stride);
  const dilation = opts.dilation ?? 1;
  if (!isInteger(dilation) || dilation < 1 || dilation > MAX_DW_DILATION) {
    throw argError(op, 'dilation', `an integer in [1, ${MAX_DW_DILATION}]`, dilation);
  }
  const maxPad = dilation * (k - 1);
  const padding = opts.padding ?? 'same';
  let ph: unknown, pw: unknown;
  if (padding === 'same') {
    ph = pw = maxPad / 2;
  } else if (Array.isArray(padding) && padding.length === 2) {
    [ph, pw] = padding;
  } else {
    ph = pw = padding;
  }
  for (const p of [ph, pw]) {
    if (!isInteger(p) || p < 0 || p > maxPad) {
      throw argError(op, 'padding', `'same', an integer in [0, ${maxPad}] (dilation * (K - 1)) or a pair of them`, padding);
    }
  }
  const padH = ph as number, padW = pw as number;
  const extent = maxPad + 1;
  if (h + 2 * padH < extent || w + 2 * padW < extent) {
    throw new Error(
      `${op}: expected H + 2 ph and W + 2 pw of at least the dilated kernel extent ${extent} (padding [${padH}, ${padW}]) for x, got shape ${shapeStr(x.shape)}`,
    );
  }
  const oh = dwconvOutputSize(h, k, stride, padH, dilation);
  const ow = dwconvOutputSize(w, k, stride, padW, dilation);
  return { n, h, w, c: ch, k, stride, dilation, ph: padH, pw: padW, oh, ow };
}

/** NHWC convolution with its gradient record. */
function dwconvNhwc(x: Tensor, w: Tensor, bias: Tensor | null, g: Geometry): Tensor {
  const y = empty([g.n, g.oh, g.ow, g.c], { dtype: x.dtype, device: x.device });
  native.dwconvForward(x, w, bias, y, g.stride, g.ph, g.pw, g.dilation);
  // The input gradient reads w, the weight gradient reads x: save only what will be needed.
  const saved: Tensor[] = [];
  const wi = x.requiresGrad ? saved.push(w) - 1 : -1;
  const xi = w.requiresGrad ? saved.push(x) - 1 : -1;
  const xShape = x.shape, wShape = w.shape;
  return attachGrad(y, 'depthwiseConv2d', bias ? [x, w, bias] : [x, w], saved, (gy, s, needs, pendingGrad) => {
    let dx: Tensor | null = null;
    if (needs[0] && wi >= 0) {
      // The parallel convolutions of a Dilated Reparam Block share x: each adds its gradient
      // into the one tensor the first wrote.
      const sum = pendingGrad(0);
      dx = sum ?? empty(xShape, { dtype: gy.dtype, device: gy.device });
      native.dwconvBackwardInput(gy, s[wi]!, dx, g.stride, g.ph, g.pw, g.dilation, sum !== null);
    }
    const dw = needs[1] && xi >= 0 ? empty(wShape, { dtype: gy.dtype, device: gy.device }) : null;
    const db = bias && needs[2] ? empty([g.c], { dtype: gy.dtype, device: gy.device }) : null;
    if (dw || db) native.dwconvBackwardWeight(dw ? s[xi]! : null, gy, dw, db, g.k, g.stride, g.ph, g.pw, g.dilation);
    return bias ? [dx, dw, db] : [dx, dw];
  });
}

/**
 * Depthwise 2-D convolution: y[n, oh, ow, c] = bias[c] + sum over kh, kw < K of
 * w[c, kh, kw] * x[n, oh * stride - ph + kh * dilation, ow * stride - pw + kw * dilation, c]
 * (zero outside x), as PyTorch's Conv2d(C, C, K, groups=C). x is [N, H, W, C] (or
 * [N, C, H, W] with layout 'nchw'), w [C, 1, K, K] or [C, K, K] with K odd in [1, 31], bias
 * [C] or null; all of one float dtype (f32 or bf16; f32 accumulation) and device; under
 * autocast it is a product like conv2d (PyTorch's autocast runs every convolution in bf16).
 * Gradients flow to x, w and bias; only the needed ones are computed.
 */
export function depthwiseConv2d(xIn: Tensor, wIn: Tensor, biasIn: Tensor | null = null, opts: DepthwiseConv2dOptions = {}): Tensor {
  const op = 'depthwiseConv2d';
  const x = floatTensor(op, 'x', xIn);
  const w = floatTensor(op, 'w', wIn);
  productOperands(op, ['x', 'w'], x, w);
  if (opts === null || typeof opts !== 'object') throw argError(op, 'opts', 'an options object', opts);
  const layout = checkLayout(op, opts.layout ?? 'nhwc');
  const k = kernelSize(op, 'w', w);
  const g = geometry(op, x, k, opts, layout);
  if (w.shape[0] !== g.c) throw new Error(`${op}: expected one filter per channel (${g.c}) for w, got shape ${shapeStr(w.shape)}`);
  let bias: Tensor | null = null;
  if (biasIn !== null && biasIn !== undefined) {
    bias = floatTensor(op, 'bias', biasIn);
    productOperands(op, ['x', 'bias'], x, bias);
    expectShape(op, 'bias', bias, [g.c]);
  }
  if (autocastDtype() !== null) {
    const amp = autocastProduct([x, w, bias], ([x2, w2, b2]) => depthwiseConv2d(x2!, w2!, b2, opts));
    if (amp) return amp;
  }
  if (layout === 'nhwc') return dwconvNhwc(x, w, bias, g);
  const xn = nchwToNhwc(x);
  const yn = dwconvNhwc(xn, w, bias, g);
  xn.dispose();
  const y = nhwcToNchw(yn);
  yn.dispose();
  return y;
}

function rank4(op: string, x: Tensor, what: string): Tensor {
  const t = floatTensor(op, 'x', x);
  if (t.rank !== 4) throw new Error(`${op}: expected a rank-4 tensor ${what} for x, got ${shapeStr(t.shape)}`);
  return t;
}

/** [N, C, H, W] -> [N, H, W, C] (a copy, with gradient). */
export function nchwToNhwc(x: Tensor): Tensor {
  return permute(rank4('nchwToNhwc', x, '[N, C, H, W]'), [0, 2, 3, 1]);
}

/** [N, H, W, C] -> [N, C, H, W] (a copy, with gradient). */
export function nhwcToNchw(x: Tensor): Tensor {
  return permute(rank4('nhwcToNchw', x, '[N, H, W, C]'), [0, 3, 1, 2]);
}

export interface DilatedBranch {
  /** [C, 1, k, k] or [C, k, k], k odd. */
  w: Tensor;
  /** 1 to 5; the branch covers (k - 1) * dilation + 1 pixels, at most the main K. */
  dilation: number;
}

/**
 * Structural reparameterization of UniRepLKNet's Dilated Reparam Block: one K x K kernel equal
 * to the main kernel plus every branch, each dilated branch zero-inserted (tap [i, j] lands at
 * [i * d, j * d]) and added into the centre. With every conv padded 'same',
 * conv(x, main) + sum of conv(x, w_b, dilation d_b) == conv(x, merged); biases add up. A
 * conversion-time helper: it returns a new tensor shaped like mainW (same dtype and device)
 * and records no gradient.
 */
export function mergeDilatedBranches(mainWIn: Tensor, branches: readonly DilatedBranch[]): Tensor {
  const op = 'mergeDilatedBranches';
  const mainW = floatTensor(op, 'mainW', mainWIn);
  const K = kernelSize(op, 'mainW', mainW);
  const C = mainW.shape[0]!;
  if (!Array.isArray(branches)) throw argError(op, 'branches', 'an array of { w, dilation }', branches);
  const merged = Float32Array.from(mainW.toArray());
  branches.forEach((b, i) => {
    const arg = `branches[${i}]`;
    if (b === null || typeof b !== 'object') throw argError(op, arg, 'an object { w, dilation }', b);
    const bw = floatTensor(op, `${arg}.w`, b.w);
    sameKind(op, ['mainW', `${arg}.w`], mainW, bw);
    const k = kernelSize(op, `${arg}.w`, bw);
    if (bw.shape[0] !== C) throw new Error(`${op}: expected ${C} channels for ${arg}.w, got shape ${shapeStr(bw.shape)}`);
    const d = b.dilation;
    if (!isInteger(d) || d < 1 || d > MAX_DW_DILATION) throw argError(op, `${arg}.dilation`, `an integer in [1, ${MAX_DW_DILATION}]`, d);
    const extent = (k - 1) * d + 1;
    if (extent > K) throw new Error(`${op}: expected a dilated extent (k - 1) * d + 1 <= ${K} for ${arg}, got ${extent} (k ${k}, d ${d})`);
    const src = bw.toArray();
    const off = (K - extent) / 2;
    for (let c = 0; c < C; c++) {
      for (let r = 0; r < k; r++) {
        for (let s = 0; s < k; s++) merged[(c * K + off + r * d) * K + off + s * d]! += src[(c * k + r) * k + s]!;
      }
    }
  });
  return fromArray(merged, mainW.shape, { dtype: mainW.dtype, device: mainW.device });
}

/** Output spatial size of a depthwise convolution along one axis. */
export function dwconvOutputSize(size: number, kernel: number, stride = 1, padding = 0, dilation = 1): number {
  return Math.floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1;
}

