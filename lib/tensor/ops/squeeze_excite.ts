// Squeeze-and-excitation (SENet) as UniRepLKNet's SEBlock computes it, on channels-last
// activations: global average pool, a 1x1 conv down to R channels, ReLU, a 1x1 conv back up
// to C, sigmoid, and a per-channel rescale of the input. The 1x1 convs on a pooled [N, C]
// are linear layers; their weights keep PyTorch's Conv2d shape [out, in, 1, 1].
import { native } from '../../native.js';
import { attachGrad, noGrad } from '../autograd.js';
import { autocast } from '../autocast.js';
import { shapeStr } from '../check.js';
import { scope } from '../scope.js';
import { empty, emptyLike, type Tensor } from '../tensor.js';
import { affine, mul, relu, sigmoid } from './elementwise.js';
import { linear, matmul } from './matmul.js';
import { sum } from './reduce.js';
import { cast, reshape } from './shape.js';
import { expectShape, floatTensor, sameDevice } from './util.js';

/** The checked weight of a 1x1 conv [out, inF, 1, 1] (or [out, inF]); out null: any. */
function conv1x1Weight(op: string, arg: string, t: Tensor, x: Tensor, out: number | null, inF: number): Tensor {
  const w = floatTensor(op, arg, t);
  sameDevice(op, ['x', arg], x, w);
  const ok = (w.rank === 4 && w.shape[2] === 1 && w.shape[3] === 1) || w.rank === 2;
  if (!ok || w.shape[1] !== inF || (out !== null && w.shape[0] !== out)) {
    throw new Error(`${op}: expected shape [${out ?? 'R'}, ${inF}, 1, 1] (or [${out ?? 'R'}, ${inF}]) for ${arg}, got ${shapeStr(w.shape)}`);
  }
  return w;
}

/** The [N, C]-sized math: no gradient recorded, products in f32 even inside autocast, temporaries freed. */
function smallPath<R>(fn: () => R): R {
  return noGrad(() => autocast(null, () => scope(fn)));
}

/**
 * y = x * sigmoid(up(relu(down(mean over H, W of x)))) for x [N, H, W, C]; downWeight
 * [R, C, 1, 1] with downBias [R], upWeight [C, R, 1, 1] with upBias [C]. Gradients flow to
 * x and every weight and bias. y has x's dtype; x may be bf16 beside f32 parameters (a
 * BatchNorm's output under autocast).
 *
 * One autograd node: the [N, C]-sized path between the pool and the rescale (two tiny linear
 * layers) runs in f32 and is differentiated here by hand, so that the two passes over x each
 * way are native and fused: forward the pool and the rescale (native GRN pass, y = x * gate),
 * backward S = sum over pixels of dy * x and one pass dx = dy * gate + dPool / (H W), where
 * separate ops would also write x's size for the rescale's product gradient, the pool's
 * broadcast gradient and their sum.
 */
export function squeezeExcite(xIn: Tensor, downWeightIn: Tensor, downBiasIn: Tensor, upWeightIn: Tensor, upBiasIn: Tensor): Tensor {
  const op = 'squeezeExcite';
  const x = floatTensor(op, 'x', xIn);
  if (x.rank !== 4) throw new Error(`${op}: expected a rank-4 tensor [N, H, W, C] for x, got ${shapeStr(x.shape)}`);
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const downWeight = conv1x1Weight(op, 'downWeight', downWeightIn, x, null, c);
  const r = downWeight.shape[0]!;
  const upWeight = conv1x1Weight(op, 'upWeight', upWeightIn, x, c, r);
  const downBias = floatTensor(op, 'downBias', downBiasIn);
  const upBias = floatTensor(op, 'upBias', upBiasIn);
  sameDevice(op, ['x', 'downBias', 'upBias'], x, downBias, upBias);
  expectShape(op, 'downBias', downBias, [r]);
  expectShape(op, 'upBias', upBias, [c]);
  const pixels = h * w;
  const x3 = x.view([n, pixels, c]);
  // The pool, hidden layer and gate, f32 [N, C], [N, R], [N, C], and the weights as f32 [R, C], [C, R].
  const [pooled, hidden, gate, down, up] = smallPath(() => {
    const down32 = cast(reshape(downWeight, [r, c]), 'f32');
    const up32 = cast(reshape(upWeight, [c, r]), 'f32');
    const p = affine(sum(x3, 1, { dtype: 'f32' }), 1 / pixels);
    const hid = relu(linear(p, down32, cast(downBias, 'f32')));
    return [p, hid, sigmoid(linear(hid, up32, cast(upBias, 'f32'))), down32, up32];
  });
  const y = emptyLike(x);
  const y3 = y.view([n, pixels, c]);
  native.sampleChannelAffine(x3, gate, null, null, null, y3, false, null, null);
  y3.dispose();
  attachGrad(y, op, [x, downWeight, downBias, upWeight, upBias], [x, pooled, hidden, gate, down, up], (gy, [xs, p, hid, g, dw, uw], needs) => {
    const gy3 = gy.view([n, pixels, c]);
    const xv = xs!.view([n, pixels, c]);
    const dGate = empty([n, c], { device: gy.device });
    native.sampleChannelDot(gy3, xv, dGate, false, null, null);
    xv.dispose();
    // Back through the sigmoid, the up layer, the ReLU (hidden > 0 exactly where its input is) and the down layer.
    const [dUpIn, dDownIn] = smallPath(() => {
      const dUp = mul(dGate, mul(g!, affine(g!, -1, 1)));
      const dHidden = matmul(dUp, uw!);
      const dDown = emptyLike(dHidden);
      native.unaryBackward('relu', hid!, dHidden, dDown, 0, 0);
      return [dUp, dDown];
    });
    let dx: Tensor | null = null;
    if (needs[0]) {
      const shift = smallPath(() => affine(matmul(dDownIn, dw!), 1 / pixels));
      dx = emptyLike(xs!);
      const dx3 = dx.view([n, pixels, c]);
      native.sampleChannelAffine(gy3, g!, null, null, shift, dx3, false, null, null);
      dx3.dispose();
    }
    const as = (t: Tensor, like: Tensor): Tensor => reshape(cast(t, like.dtype), like.shape);
    return smallPath(() => [
      dx,
      needs[1] ? as(matmul(dDownIn, p!, { transA: true }), downWeight) : null,
      needs[2] ? as(sum(dDownIn, 0), downBias) : null,
      needs[3] ? as(matmul(dUpIn, hid!, { transA: true }), upWeight) : null,
      needs[4] ? as(sum(dUpIn, 0), upBias) : null,
    ]);
  });
  for (const t of [x3, pooled, hidden, gate, down, up]) t.dispose();
  return y;
}
