// Squeeze-and-excitation (SENet) as UniRepLKNet's SEBlock computes it, on channels-last
// activations: global average pool, a 1x1 conv down to R channels, ReLU, a 1x1 conv back up
// to C, sigmoid, and a per-channel rescale of the input. The 1x1 convs on a pooled [N, C]
// are linear layers; their weights keep PyTorch's Conv2d shape [out, in, 1, 1].
import { shapeStr } from '../check.js';
import { scope } from '../scope.js';
import type { Tensor } from '../tensor.js';
import { mul, relu, sigmoid } from './elementwise.js';
import { linear } from './matmul.js';
import { mean } from './reduce.js';
import { reshape } from './shape.js';
import { expectShape, floatTensor, sameDevice } from './util.js';

function conv1x1Weight(op: string, arg: string, t: Tensor, x: Tensor, out: number | null, inF: number): Tensor {
  const w = floatTensor(op, arg, t);
  sameDevice(op, ['x', arg], x, w);
  const ok = (w.rank === 4 && w.shape[2] === 1 && w.shape[3] === 1) || w.rank === 2;
  if (!ok || w.shape[1] !== inF || (out !== null && w.shape[0] !== out)) {
    throw new Error(`${op}: expected shape [${out ?? 'R'}, ${inF}, 1, 1] (or [${out ?? 'R'}, ${inF}]) for ${arg}, got ${shapeStr(w.shape)}`);
  }
  return reshape(w, [w.shape[0]!, inF]);
}

/**
 * y = x * sigmoid(up(relu(down(mean over H, W of x)))) for x [N, H, W, C]; downWeight
 * [R, C, 1, 1] with downBias [R], upWeight [C, R, 1, 1] with upBias [C]. Gradients flow to
 * x and every weight and bias. x may be bf16 beside f32 parameters (a depthwise conv's output
 * under autocast): the 1x1 convs and the rescale follow linear's and mul's dtype rules.
 */
export function squeezeExcite(xIn: Tensor, downWeightIn: Tensor, downBiasIn: Tensor, upWeightIn: Tensor, upBiasIn: Tensor): Tensor {
  const op = 'squeezeExcite';
  const x = floatTensor(op, 'x', xIn);
  if (x.rank !== 4) throw new Error(`${op}: expected a rank-4 tensor [N, H, W, C] for x, got ${shapeStr(x.shape)}`);
  const [n, h, w, c] = x.shape as [number, number, number, number];
  return scope(() => {
    const down = conv1x1Weight(op, 'downWeight', downWeightIn, x, null, c);
    const r = down.shape[0]!;
    const up = conv1x1Weight(op, 'upWeight', upWeightIn, x, c, r);
    const downBias = floatTensor(op, 'downBias', downBiasIn);
    const upBias = floatTensor(op, 'upBias', upBiasIn);
    sameDevice(op, ['x', 'downBias', 'upBias'], x, downBias, upBias);
    expectShape(op, 'downBias', downBias, [r]);
    expectShape(op, 'upBias', upBias, [c]);
    const x3 = reshape(x, [n, h * w, c]);
    const hidden = relu(linear(mean(x3, 1), down, downBias));
    const gate = sigmoid(linear(hidden, up, upBias));
    return reshape(mul(x3, reshape(gate, [n, 1, c])), x.shape);
  });
}
