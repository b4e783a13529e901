// L2 normalization over the last axis (CLIP normalizes its image and text embeddings with
// it before the contrastive loss).
import { native } from '../../native.js';
import { attachGrad } from '../autograd.js';
import { empty, emptyLike, type Tensor } from '../tensor.js';
import { checkEps, lastAxis } from './rows.js';
import { floatTensor } from './util.js';

/**
 * x / max(||x||, eps) over the last axis, as PyTorch's F.normalize(x, dim=-1); eps is a
 * finite number >= 0. Rows with a norm below eps are divided by eps (their gradient is dy / eps).
 */
export function l2Normalize(xIn: Tensor, eps = 1e-12): Tensor {
  const op = 'l2Normalize';
  const x = floatTensor(op, 'x', xIn);
  lastAxis(op, 'x', x);
  checkEps(op, eps);
  const y = emptyLike(x);
  const norm = empty(x.shape.slice(0, -1), { dtype: 'f32', device: x.device });
  native.l2Normalize(x, y, norm, eps);
  attachGrad(y, op, [x], [x, norm], (gy, [xs, ns]) => {
    const dx = emptyLike(xs!);
    native.l2NormalizeBackward(xs!, ns!, gy, dx, eps);
    return [dx];
  });
  norm.dispose();
  return y;
}
