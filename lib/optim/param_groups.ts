// OpenCLIP's weight-decay split: gains, biases, norms and the logit scale train without
// weight decay, everything else with it.
import { argError } from '../tensor/check.js';
import { checkTensor, type Tensor } from '../tensor/tensor.js';
import type { ParamGroupSpec } from './adamw.js';

/**
 * OpenCLIP's `exclude` rule (open_clip_train main.py): a parameter of fewer than 2 dimensions,
 * or whose name contains "bn", "ln", "bias" or "logit_scale" (substrings, as OpenCLIP tests
 * them: "ln_final.weight" and "visual.ln_pre.bias" are excluded, 2-D embeddings such as
 * "positional_embedding" and "token_embedding.weight" are decayed; the 1-D
 * "class_embedding" is excluded by its rank).
 */
export function excludedFromWeightDecay(name: string, param: Tensor): boolean {
  return param.rank < 2 || name.includes('bn') || name.includes('ln') || name.includes('bias') || name.includes('logit_scale');
}

/**
 * Two AdamW groups from a model's named parameters, as OpenCLIP builds them: the excluded
 * parameters with weight decay 0, the rest with `weightDecay`. Parameters that do not require
 * a gradient (locked towers) are left out of both.
 */
export function paramGroups(namedParameters: Iterable<[string, Tensor]>, weightDecay: number): ParamGroupSpec[] {
  const op = 'paramGroups';
  if (typeof weightDecay !== 'number' || !Number.isFinite(weightDecay) || weightDecay < 0) {
    throw argError(op, 'weightDecay', 'a finite number >= 0', weightDecay);
  }
  if (namedParameters === null || typeof (namedParameters as Iterable<unknown>)?.[Symbol.iterator] !== 'function') {
    throw argError(op, 'namedParameters', 'an iterable of [name, Tensor] pairs', namedParameters);
  }
  const gainOrBias: Tensor[] = [];
  const rest: Tensor[] = [];
  let i = 0;
  for (const entry of namedParameters) {
    if (!Array.isArray(entry) || typeof entry[0] !== 'string') throw argError(op, `namedParameters[${i}]`, 'a [name, Tensor] pair', entry);
    const [name, p] = entry;
    checkTensor(op, `the parameter ${name}`, p);
    i++;
    if (!p.requiresGrad) continue;
    (excludedFromWeightDecay(name, p) ? gainOrBias : rest).push(p);
  }
  return [
    { params: gainOrBias, weightDecay: 0 },
    { params: rest, weightDecay },
  ];
}
