// Embedding lookup (token and position tables): rows of a [vocab, dim] table gathered by
// i32 ids of any shape.
import { native } from '../../native.js';
import { attachGrad } from '../autograd.js';
import { shapeStr } from '../check.js';
import { checkTensor, empty, type Tensor } from '../tensor.js';
import { floatTensor } from './util.js';

/**
 * out[...idx, :] = weight[ids[...idx], :], shape [...ids.shape, dim]. The gradient flows to
 * weight only (ids are integers). Ids must lie in [0, vocab): the CPU backend throws on
 * others; the CUDA backend, which cannot check without waiting for the GPU, gathers a zero
 * row for them and leaves them out of the gradient.
 */
export function embedding(weightIn: Tensor, idsIn: Tensor): Tensor {
  const op = 'embedding';
  const weight = floatTensor(op, 'weight', weightIn);
  const ids = checkTensor(op, 'ids', idsIn);
  if (weight.rank !== 2) throw new Error(`${op}: expected a [vocab, dim] tensor for weight, got shape ${shapeStr(weight.shape)}`);
  if (ids.dtype !== 'i32') throw new Error(`${op}: expected dtype 'i32' for ids, got '${ids.dtype}'`);
  if (ids.device !== weight.device) {
    throw new Error(`${op}: expected weight and ids on the same device, got ${weight.device} and ${ids.device}`);
  }
  if (ids.rank > 7) throw new Error(`${op}: expected ids of rank 7 or less (the output adds one dim), got shape ${shapeStr(ids.shape)}`);
  const out = empty([...ids.shape, weight.shape[1]!], { dtype: weight.dtype, device: weight.device });
  try {
    native.embedding(weight, ids, out);
  } catch (e) {
    out.dispose();
    throw e;
  }
  const { shape, dtype, device } = weight;
  return attachGrad(out, op, [weight], [ids], (gy, [savedIds]) => {
    const dw = empty(shape, { dtype, device });
    native.embeddingBackward(gy, savedIds!, dw);
    return [dw];
  });
}
