// Dense 2-D convolution (PyTorch's Conv2d with groups = 1) as one GEMM over unfolded patches:
// im2col turns x into a matrix whose rows are the K x K x C patches of the output pixels, in
// the (c, kh, kw) order of PyTorch's weight [O, C, K, K], so the weight is a [O, C*K*K]
// matrix as stored and conv2d = linear(im2col(x), weight). UniRepLKNet uses it for its stem
// and downsampling layers (3 x 3, stride 2, padding 1), where C*K*K is 27 to 13824.
//
// Layout: NHWC ([N, H, W, C]) like the depthwise convolution, so the GEMM's output rows are
// the output pixels with channels innermost, i.e. the NHWC result without a transpose.
import { native } from '../../native.js';
import { attachGrad } from '../autograd.js';
import { autocastDtype, autocastProduct, productOperands } from '../autocast.js';
import { argError, isInteger, shapeStr } from '../check.js';
import { empty, type Tensor } from '../tensor.js';
import { type ConvLayout, nchwToNhwc, nhwcToNchw } from './dwconv.js';
import { linear } from './matmul.js';
import { reshape } from './shape.js';
import { expectShape, floatTensor } from './util.js';

export const MAX_CONV_KERNEL = 31;
export const MAX_CONV_STRIDE = 8;

export interface Conv2dOptions {
  /** 1 (default) to 8, both axes. */
  stride?: number;
  /** A number for both axes or [ph, pw]; each in [0, K - 1]. Default 0. */
  padding?: number | readonly [number, number];
  /** Layout of x and of the result: 'nhwc' (default) or 'nchw'. */
  layout?: ConvLayout;
}

interface Geometry {
  n: number;
  h: number;
  w: number;
  c: number;
  k: number;
  stride: number;
  ph: number;
  pw: number;
  oh: number;
  ow: number;
}

/** Output spatial size of a dense convolution along one axis. */
export function conv2dOutputSize(size: number, kernel: number, stride = 1, padding = 0): number {
  return Math.floor((size + 2 * padding - kernel) / stride) + 1;
}

function geometry(op: string, x: Tensor, k: number, opts: Conv2dOptions): Geometry {
  if (x.rank !== 4) throw new Error(`${op}: expected a rank-4 tensor [N, H, W, C] for x, got ${shapeStr(x.shape)}`);
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const stride = opts.stride ?? 1;
  if (!isInteger(stride) || stride < 1 || stride > MAX_CONV_STRIDE) throw argError(op, 'stride', `an integer in [1, ${MAX_CONV_STRIDE}]`, stride);
  const padding = opts.padding ?? 0;
  const [ph, pw] = Array.isArray(padding) && padding.length === 2 ? padding : [padding, padding];
  for (const p of [ph, pw]) {
    if (!isInteger(p) || p < 0 || p > k - 1) throw argError(op, 'padding', `an integer in [0, ${k - 1}] (K - 1) or a pair of them`, padding);
  }
  if (h + 2 * ph < k || w + 2 * pw < k) {
    throw new Error(`${op}: expected H + 2 ph and W + 2 pw of at least the kernel size ${k} (padding [${ph}, ${pw}]) for x, got shape ${shapeStr(x.shape)}`);
  }
  return { n, h, w, c, k, stride, ph, pw, oh: conv2dOutputSize(h, k, stride, ph), ow: conv2dOutputSize(w, k, stride, pw) };
}

/** x [N, H, W, C] -> [N * Ho * Wo, C * K * K] patches, with its gradient (col2im). */
function unfold(x: Tensor, g: Geometry): Tensor {
  const cols = empty([g.n * g.oh * g.ow, g.c * g.k * g.k], { dtype: x.dtype, device: x.device });
  native.im2col(x, cols, g.k, g.stride, g.ph, g.pw);
  const xShape = x.shape;
  return attachGrad(cols, 'im2col', [x], [], (gy) => {
    const dx = empty(xShape, { dtype: gy.dtype, device: gy.device });
    native.col2im(gy, dx, g.k, g.stride, g.ph, g.pw);
    return [dx];
  });
}

/**
 * Dense 2-D convolution: y[n, oh, ow, o] = bias[o] + sum over c, kh, kw of
 * w[o, c, kh, kw] * x[n, oh * stride - ph + kh, ow * stride - pw + kw, c] (zero outside x),
 * as PyTorch's Conv2d(C, O, K, stride, padding). x is [N, H, W, C] (or [N, C, H, W] with
 * layout 'nchw'), w [O, C, K, K] with K in [1, 31], bias [O] or null; one float dtype and
 * device (under autocast, a product: f32 operands are lowered to bf16 and the result is bf16).
 * Gradients flow to x, w and bias.
 */
export function conv2d(xIn: Tensor, wIn: Tensor, biasIn: Tensor | null = null, opts: Conv2dOptions = {}): Tensor {
  const op = 'conv2d';
  const x0 = floatTensor(op, 'x', xIn);
  const w = floatTensor(op, 'w', wIn);
  productOperands(op, ['x', 'w'], x0, w);
  if (opts === null || typeof opts !== 'object') throw argError(op, 'opts', 'an options object', opts);
  const layout = opts.layout ?? 'nhwc';
  if (layout !== 'nhwc' && layout !== 'nchw') throw argError(op, 'layout', "'nhwc' or 'nchw'", layout);
  if (w.rank !== 4 || w.shape[2] !== w.shape[3]) throw new Error(`${op}: expected shape [O, C, K, K] for w, got ${shapeStr(w.shape)}`);
  const [o, wc, k] = w.shape as [number, number, number];
  if (k < 1 || k > MAX_CONV_KERNEL) throw new Error(`${op}: expected a kernel size K in [1, ${MAX_CONV_KERNEL}] for w, got shape ${shapeStr(w.shape)}`);
  let bias: Tensor | null = null;
  if (biasIn !== null && biasIn !== undefined) {
    bias = floatTensor(op, 'bias', biasIn);
    productOperands(op, ['x', 'bias'], x0, bias);
    expectShape(op, 'bias', bias, [o]);
  }
  if (x0.rank !== 4) throw new Error(`${op}: expected a rank-4 tensor ${layout === 'nhwc' ? '[N, H, W, C]' : '[N, C, H, W]'} for x, got ${shapeStr(x0.shape)}`);
  // Lowered before the unfold, so the column matrix is built in bf16 already.
  if (autocastDtype() !== null) {
    const amp = autocastProduct([x0, w, bias], ([x2, w2, b2]) => conv2d(x2!, w2!, b2, opts));
    if (amp) return amp;
  }
  const x = layout === 'nchw' ? nchwToNhwc(x0) : x0;
  const g = geometry(op, x, k, opts);
  if (g.c !== wc) {
    if (x !== x0) x.dispose();
    throw new Error(`${op}: expected ${g.c} input channels (those of x) in w [O, C, K, K], got shape ${shapeStr(w.shape)}`);
  }
  const cols = unfold(x, g);
  if (x !== x0) x.dispose();
  const w2 = reshape(w, [o, wc * k * k]);
  const y2 = linear(cols, w2, bias);
  cols.dispose();
  w2.dispose();
  const y = reshape(y2, [g.n, g.oh, g.ow, o]);
  y2.dispose();
  if (layout === 'nhwc') return y;
  const yc = nhwcToNchw(y);
  y.dispose();
  return yc;
}
