// The checkpoint fixtures of test/fixtures/io (written by test/fixtures/gen/io_fixtures.py)
// and the values each tensor must read back as.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import type { Tensor } from '../../lib/index.js';

export const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'io');

export interface ExpectedTensor {
  shape: number[];
  dtype: 'f32' | 'bf16' | 'i32';
  values: (number | string)[];
}

interface Expected {
  marker: string;
  files: Record<string, Record<string, ExpectedTensor>>;
  pickles: Record<string, string>;
}

export const expected: Expected = JSON.parse(readFileSync(join(FIXTURES, 'expected.json'), 'utf8'));

const SPECIAL: Record<string, number> = { nan: NaN, inf: Infinity, '-inf': -Infinity, '-0': -0 };

function decodeValue(v: number | string): number {
  if (typeof v === 'number') return v;
  if (!(v in SPECIAL)) throw new Error(`expected.json: unknown special value '${v}'`);
  return SPECIAL[v]!;
}

/** Asserts that `t` is exactly the expected tensor (NaN matches NaN, -0 only -0). */
export function assertTensorIs(t: Tensor | undefined, e: ExpectedTensor, what: string): void {
  assert.ok(t, `${what}: missing`);
  assert.equal([...t!.shape], e.shape, `${what}: shape`);
  assert.is(t!.dtype, e.dtype, `${what}: dtype`);
  const got = t!.toArray();
  assert.is(got.length, e.values.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    const want = decodeValue(e.values[i]!);
    if (!Object.is(got[i], want)) assert.unreachable(`${what}[${i}]: got ${got[i]}, expected ${want}`);
  }
}

/** A fresh temporary directory, removed by the returned function. */
export function tempDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'clipforge-io-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
