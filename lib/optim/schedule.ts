// Learning-rate schedules with linear warmup, as OpenCLIP's scheduler.py: each maps the
// optimizer step (0-based, counted in optimizer updates, so with --accum-freq one step per
// accumulated batch) to a learning rate. During warmup lr = baseLr * (step + 1) / warmup.
import { argError } from '../tensor/check.js';

export type LrSchedule = (step: number) => number;

function checkNonNegative(op: string, arg: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw argError(op, arg, 'a finite number >= 0', v);
  return v;
}

function checkCount(op: string, arg: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw argError(op, arg, 'an integer >= 0', v);
  return v;
}

function checkStep(op: string, step: unknown): number {
  return checkCount(op, 'step', step);
}

function warmupLr(baseLr: number, warmup: number, step: number): number {
  return (baseLr * (step + 1)) / warmup;
}

/** Linear warmup to baseLr, then constant. */
export function constLr(baseLr: number, warmupLength: number, steps: number): LrSchedule {
  const op = 'constLr';
  checkNonNegative(op, 'baseLr', baseLr);
  checkCount(op, 'warmupLength', warmupLength);
  checkCount(op, 'steps', steps);
  return (step) => (checkStep(op, step) < warmupLength ? warmupLr(baseLr, warmupLength, step) : baseLr);
}

/**
 * Linear warmup, constant, then a cooldown over the last `cooldownSteps` steps from baseLr
 * to cooldownEndLr: lr = (1 - e / cooldownSteps)^power * (baseLr - endLr) + endLr at e steps
 * into the cooldown (power 1: linear).
 */
export function constCooldownLr(baseLr: number, warmupLength: number, steps: number, cooldownSteps: number, cooldownPower = 1, cooldownEndLr = 0): LrSchedule {
  const op = 'constCooldownLr';
  checkNonNegative(op, 'baseLr', baseLr);
  checkCount(op, 'warmupLength', warmupLength);
  checkCount(op, 'steps', steps);
  checkCount(op, 'cooldownSteps', cooldownSteps);
  if (typeof cooldownPower !== 'number' || !Number.isFinite(cooldownPower)) throw argError(op, 'cooldownPower', 'a finite number', cooldownPower);
  checkNonNegative(op, 'cooldownEndLr', cooldownEndLr);
  const start = steps - cooldownSteps;
  return (step) => {
    if (checkStep(op, step) < warmupLength) return warmupLr(baseLr, warmupLength, step);
    if (step < start) return baseLr;
    if (cooldownSteps === 0) throw new Error(`${op}: step ${step} is in a cooldown of 0 steps (steps ${steps}, cooldownSteps 0)`);
    const decay = (1 - (step - start) / cooldownSteps) ** cooldownPower;
    return decay * (baseLr - cooldownEndLr) + cooldownEndLr;
  };
}

/** Linear warmup, then half a cosine from baseLr down to 0 at `steps`. */
export function cosineLr(baseLr: number, warmupLength: number, steps: number): LrSchedule {
  const op = 'cosineLr';
  checkNonNegative(op, 'baseLr', baseLr);
  checkCount(op, 'warmupLength', warmupLength);
  checkCount(op, 'steps', steps);
  return (step) => {
    if (checkStep(op, step) < warmupLength) return warmupLr(baseLr, warmupLength, step);
    const span = steps - warmupLength;
    if (span <= 0) throw new Error(`${op}: step ${step} is past a warmup (${warmupLength}) that covers all ${steps} steps`);
    return 0.5 * (1 + Math.cos((Math.PI * (step - warmupLength)) / span)) * baseLr;
  };
}
