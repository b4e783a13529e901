// A minimal safetensors reader for golden fixtures (F32 and I32 only), used by the tests
// until the library's reader (lib/io/safetensors.ts) is on this branch.
import { readFileSync } from 'node:fs';
import { fromArray, type Tensor } from '../../lib/index.js';

interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** Every tensor of the file by name (caller disposes them). */
export function readFixture(path: string): Map<string, Tensor> {
  const buf = readFileSync(path);
  const headerLength = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, Entry>;
  const base = 8 + headerLength;
  const out = new Map<string, Tensor>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [start, end] = e.data_offsets;
    const bytes = buf.subarray(base + start, base + end);
    const copy = new Uint8Array(bytes).buffer;
    if (e.dtype === 'F32') out.set(name, fromArray(new Float32Array(copy), e.shape));
    else if (e.dtype === 'I32') out.set(name, fromArray(new Int32Array(copy), e.shape, { dtype: 'i32' }));
    else throw new Error(`readFixture: unsupported dtype ${e.dtype} for ${name} in ${path}`);
  }
  return out;
}
