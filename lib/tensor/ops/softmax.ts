// Softmax and log-softmax over the last axis (numerically stable: the row max is
// subtracted first). The gradient is computed from the saved output.
import { native } from '../../native.js';
import { attachGrad } from '../autograd.js';
import { emptyLike, type Tensor } from '../tensor.js';
import { lastAxis } from './rows.js';
import { floatTensor } from './util.js';

function softmaxOp(op: 'softmax' | 'logSoftmax', xIn: Tensor): Tensor {
  const x = floatTensor(op, 'x', xIn);
  lastAxis(op, 'x', x);
  const log = op === 'logSoftmax';
  const y = emptyLike(x);
  native.softmax(x, y, log);
  return attachGrad(y, op, [x], [y], (gy, [ys]) => {
    const dx = emptyLike(ys!);
    native.softmaxBackward(ys!, gy, dx, log);
    return [dx];
  });
}

/** exp(x) / sum(exp(x)) over the last axis. */
export function softmax(x: Tensor): Tensor {
  return softmaxOp('softmax', x);
}

/** x - log(sum(exp(x))) over the last axis. */
export function logSoftmax(x: Tensor): Tensor {
  return softmaxOp('logSoftmax', x);
}
