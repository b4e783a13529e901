// Argument predicates and the one error shape used across the library:
// "<op>: expected <what> for <arg>, got <value>" (the addon uses the same shape).

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${String(v)} of type ${typeof v}`;
  if (typeof v === 'string') return `'${v.length > 40 ? v.slice(0, 40) + '...' : v}' of type string`;
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (typeof v === 'function') return 'a function';
  const name = (v as object).constructor?.name;
  return name ? `an instance of ${name}` : 'an object';
}

export function argError(op: string, arg: string, expected: string, got: unknown): Error {
  return new Error(`${op}: expected ${expected} for ${arg}, got ${describe(got)}`);
}

export function isInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

export function checkInteger(op: string, arg: string, v: unknown, min = -Infinity, max = Infinity): number {
  if (!isInteger(v) || v < min || v > max) {
    const range = min === -Infinity && max === Infinity ? 'an integer' : `an integer in [${min}, ${max}]`;
    throw argError(op, arg, range, v);
  }
  return v;
}

export function checkFinite(op: string, arg: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw argError(op, arg, 'a finite number', v);
  return v;
}

export function checkBoolean(op: string, arg: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw argError(op, arg, 'a boolean', v);
  return v;
}

export function checkShape(op: string, arg: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) throw argError(op, arg, 'an array of non-negative integers', shape);
  if (shape.length > 8) throw argError(op, arg, 'at most 8 dimensions', shape);
  for (const d of shape) {
    if (!isInteger(d) || d < 0) throw new Error(`${op}: expected non-negative integer sizes for ${arg}, got [${shape.map(String).join(', ')}]`);
  }
  const numel = shape.reduce((a: number, b: number) => a * b, 1);
  if (numel > 2 ** 48) throw new Error(`${op}: shape [${shape.join(', ')}] has too many elements (${numel})`);
  return shape as number[];
}

/** Resolves a possibly negative axis against a rank. */
export function checkAxis(op: string, arg: string, axis: unknown, rank: number): number {
  if (!isInteger(axis) || axis < -Math.max(rank, 1) || axis >= Math.max(rank, 1)) {
    throw argError(op, arg, `an axis in [${-Math.max(rank, 1)}, ${Math.max(rank, 1) - 1}]`, axis);
  }
  return axis < 0 ? axis + rank : axis;
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The activations of OpenCLIP's transformer MLPs: nn.GELU (exact) or OpenAI's QuickGELU. */
export type MlpActivation = 'gelu' | 'quickGelu';

export function checkActivation(op: string, v: unknown): MlpActivation {
  if (v !== 'gelu' && v !== 'quickGelu') throw argError(op, 'activation', "'gelu' or 'quickGelu'", v);
  return v;
}
