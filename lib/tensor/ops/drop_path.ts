// Drop path (stochastic depth): in training, each sample's residual branch is zeroed with
// probability p and the kept ones are scaled by 1 / (1 - p), so the expectation is unchanged;
// at evaluation it is the identity. As timm's DropPath, which UniRepLKNet's blocks use.
import { argError, checkBoolean, checkFinite } from '../check.js';
import { defaultGenerator, type Generator, rand } from '../random.js';
import { scope } from '../scope.js';
import type { Tensor } from '../tensor.js';
import { affine, clamp, mul } from './elementwise.js';
import { cast } from './shape.js';
import { floatTensor } from './util.js';

export interface DropPathOptions {
  /** Drop in training mode only (default true: dropping is what the caller asked for). */
  training?: boolean;
  /** Source of the per-sample draws (default: the default generator). */
  generator?: Generator;
}

const UNIFORM_STEPS = 2 ** 24;

/**
 * x with each sample (index along axis 0) kept with probability 1 - p and scaled by
 * 1 / (1 - p), or zeroed. Returns x itself when p is 0 or training is false. The draws come
 * from `generator` (N numbers), so a seeded generator gives the same mask on every backend.
 */
export function dropPath(xIn: Tensor, p: number, opts: DropPathOptions = {}): Tensor {
  const op = 'dropPath';
  const x = floatTensor(op, 'x', xIn);
  checkFinite(op, 'p', p);
  if (p < 0 || p >= 1) throw argError(op, 'p', 'a probability in [0, 1)', p);
  if (opts === null || typeof opts !== 'object') throw argError(op, 'opts', 'an options object', opts);
  const training = opts.training === undefined ? true : checkBoolean(op, 'training', opts.training);
  if (p === 0 || !training) return x;
  if (x.rank < 1) throw new Error(`${op}: expected a tensor with a batch axis for x, got a scalar`);
  const generator = opts.generator ?? defaultGenerator;
  return scope(() => {
    // Keep sample n when its uniform draw u >= p, as timm's floor(1 - p + u). The draws are
    // multiples of 2^-24, so with p rounded to that grid u * 2^24 + 1 - p * 2^24 is an exact
    // integer: >= 1 when kept, <= 0 when dropped; the clamp turns it into a 0/1 mask.
    const steps = Math.round(p * UNIFORM_STEPS);
    const u = rand([x.shape[0]!, ...x.shape.slice(1).map(() => 1)], { device: x.device, generator });
    const mask = clamp(affine(u, UNIFORM_STEPS, 1 - steps), 0, 1);
    const scaled = affine(mask, 1 / (1 - p));
    return mul(x, cast(scaled, x.dtype));
  });
}
