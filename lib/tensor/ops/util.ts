// Shared checks for the functional ops.
import { sameShape, shapeStr } from '../check.js';
import { checkTensor, type Tensor } from '../tensor.js';

/** Checks a live tensor with a floating dtype (f32 or bf16). */
export function floatTensor(op: string, arg: string, x: unknown): Tensor {
  const t = checkTensor(op, arg, x);
  if (t.dtype === 'i32') throw new Error(`${op}: expected dtype 'f32' or 'bf16' for ${arg}, got 'i32'`);
  return t;
}

/** Checks that tensors share a device with the first. */
export function sameDevice(op: string, names: string[], ...ts: Tensor[]): void {
  const first = ts[0]!;
  ts.forEach((t, i) => {
    if (t.device !== first.device) throw new Error(`${op}: expected ${names[0]} and ${names[i]} on the same device, got ${first.device} and ${t.device}`);
  });
}

/** Checks that tensors share a device and dtype with the first. */
export function sameKind(op: string, names: string[], ...ts: Tensor[]): void {
  sameDevice(op, names, ...ts);
  const first = ts[0]!;
  ts.forEach((t, i) => {
    if (t.dtype !== first.dtype) throw new Error(`${op}: expected ${names[0]} and ${names[i]} of the same dtype, got ${first.dtype} and ${t.dtype}`);
  });
}

export function expectShape(op: string, arg: string, t: Tensor, shape: readonly number[]): void {
  if (!sameShape(t.shape, shape)) throw new Error(`${op}: expected shape ${shapeStr(shape)} for ${arg}, got ${shapeStr(t.shape)}`);
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
