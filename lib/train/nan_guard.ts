// Stops a run whose loss stopped being a number: the error names the step and the value,
// so the log shows where it diverged, and the loop keeps its last good checkpoint.
import { checkInteger } from '../tensor/check.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';

export class NonFiniteLossError extends Error {
  constructor(
    readonly step: number,
    readonly value: number,
  ) {
    super(`training loss is ${value} at step ${step}; stopping (the last checkpoint written before it is intact)`);
    this.name = 'NonFiniteLossError';
  }
}

/**
 * Returns the loss as a number, or throws NonFiniteLossError when it is NaN or infinite. A
 * tensor loss is read from the device (one synchronization: call it where the loss is
 * read anyway, e.g. on logging steps).
 */
export function checkFiniteLoss(loss: number | Tensor, step: number): number {
  checkInteger('checkFiniteLoss', 'step', step, 0);
  let value: number;
  if (isTensor(loss)) value = loss.item();
  else if (typeof loss === 'number') value = loss;
  else throw new Error(`checkFiniteLoss: expected a number or a one-element Tensor for loss, got ${typeof loss}`);
  if (!Number.isFinite(value)) throw new NonFiniteLossError(step, value);
  return value;
}
