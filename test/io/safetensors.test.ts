import { readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { parseSafetensorsHeader, readSafetensors, writeSafetensors } from '../../lib/io/index.js';
import { devices, Rng } from '../support/helpers.js';
import { assertTensorIs, expected, FIXTURES, tempDir } from '../support/io_fixtures.js';

const test = suite('safetensors');
const rng = new Rng(5);

/** A file made of an 8-byte length, the header text as given, and `data` bytes. */
function rawFile(path: string, header: string | Uint8Array, data = 0, lengthOverride?: bigint): string {
  const h = typeof header === 'string' ? Buffer.from(header, 'utf8') : Buffer.from(header);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(lengthOverride ?? BigInt(h.length));
  writeFileSync(path, Buffer.concat([prefix, h, Buffer.alloc(data, 1)]));
  return path;
}

function throwsNaming(fn: () => unknown, file: string, problem: RegExp): void {
  try {
    fn();
  } catch (e) {
    const msg = (e as Error).message;
    assert.ok(msg.includes(file), `error names the file: ${msg}`);
    assert.match(msg, problem);
    return;
  }
  assert.unreachable(`expected an error matching ${problem}`);
}

test('reads the fixture written by the safetensors library: every dtype, metadata', () => {
  for (const device of devices()) {
    cf.scope(() => {
      const { tensors, metadata } = readSafetensors(join(FIXTURES, 'mixed.safetensors'), { device });
      const want = expected.files['mixed.safetensors']!;
      assert.equal([...tensors.keys()].sort(), Object.keys(want).sort());
      for (const [name, e] of Object.entries(want)) {
        assert.is(tensors.get(name)!.device, device);
        assertTensorIs(tensors.get(name), e, name);
      }
      assert.equal(metadata, { format: 'pt', note: 'clipforge fixture' });
    });
  }
});

test('an I64 value outside the i32 range is an error naming the tensor, and nothing leaks', () => {
  const before = cf.liveTensorCount();
  const file = join(FIXTURES, 'i64_overflow.safetensors');
  throwsNaming(() => readSafetensors(file), file, /tensor 'big' \(I64\) holds 1099511627776 at index 1, outside the i32 range/);
  assert.is(cf.liveTensorCount(), before);
});

// The nearest f16 by search over all finite f16 values (ties to the even bit pattern).
const f16Values = (() => {
  const out: { v: number; bits: number }[] = [];
  for (let b = 0; b < 0x7c00; b++) {
    const e = b >> 10, m = b & 0x3ff;
    out.push({ v: e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15), bits: b });
  }
  return out;
})();

function nearestF16(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  const max = 65504;
  // Beyond max + half an ulp (2^4) rounds to infinity; exactly at the halfway point, to even (infinity).
  if (a >= max + 16) return Math.sign(x) * Infinity;
  let lo = 0, hi = f16Values.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (f16Values[mid]!.v <= a) lo = mid;
    else hi = mid;
  }
  const [p, q] = [f16Values[lo]!, f16Values[hi]!];
  const pick = a - p.v < q.v - a ? p : a - p.v > q.v - a ? q : (p.bits & 1 ? q : p);
  return x < 0 || Object.is(x, -0) ? -pick.v : pick.v;
}

function f32(values: number[]): Float32Array {
  return Float32Array.from(values);
}

test('round trip write -> read for every dtype and file dtype on every device', () => {
  const { dir, remove } = tempDir();
  try {
    for (const device of devices()) {
      cf.scope(() => {
        const special = [0, -0, 1, -2.5, 65504, 65519, 65520, 1e6, -1e-8, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -14 * 1.5, Infinity, -Infinity, NaN, 1 + 2 ** -11, 1 + 3 * 2 ** -11];
        const values = f32([...special, ...rng.array(200, 3)]);
        const shape = [values.length];
        const x32 = cf.fromArray(values, shape, { device });
        const x16 = cf.fromArray(values, shape, { dtype: 'bf16', device });
        const ids = cf.fromArray(Int32Array.from([-(2 ** 31), -1, 0, 2 ** 31 - 1, 42]), [5, 1], { device });
        const scalar = cf.scalar(7.5, { device });
        const none = cf.zeros([0, 4], { device });
        const window = x32.view([2, 5], 7);
        const bf16Of = (t: cf.Tensor): Float32Array => cf.fromArray(t.toArray() as Float32Array, [t.size], { dtype: 'bf16' }).toArray() as Float32Array;
        const cases: { dtype?: 'f32' | 'bf16' | 'f16'; want: (t: cf.Tensor) => Float32Array; readAs: (t: cf.Tensor) => string }[] = [
          { want: (t) => t.toArray() as Float32Array, readAs: (t) => t.dtype },
          { dtype: 'f32', want: (t) => t.toArray() as Float32Array, readAs: () => 'f32' },
          { dtype: 'bf16', want: bf16Of, readAs: () => 'bf16' },
          { dtype: 'f16', want: (t) => f32([...t.toArray()].map(nearestF16)), readAs: () => 'f32' },
        ];
        for (const c of cases) {
          const path = join(dir, `rt-${c.dtype ?? 'own'}.safetensors`);
          writeSafetensors(path, { x32, x16, ids, scalar, none, window }, { dtype: c.dtype, metadata: { step: '3', 'ünïcode': 'ok ✓' } });
          const { tensors, metadata } = readSafetensors(path, { device });
          assert.equal(metadata, { step: '3', 'ünïcode': 'ok ✓' });
          for (const [name, t] of Object.entries({ x32, x16, scalar, none, window })) {
            const back = tensors.get(name)!;
            assert.is(back.device, device);
            assert.is(back.dtype, c.readAs(t), `${name} (${c.dtype}) dtype`);
            assert.equal([...back.shape], [...t.shape]);
            const got = back.toArray();
            const want = c.want(t);
            for (let i = 0; i < want.length; i++) {
              if (!Object.is(got[i], want[i])) assert.unreachable(`${name} as ${c.dtype ?? 'own'} [${i}] (of ${values[i]}): got ${got[i]}, expected ${want[i]}`);
            }
          }
          assert.is(tensors.get('ids')!.dtype, 'i32');
          assert.equal([...tensors.get('ids')!.toArray()], [...ids.toArray()]);
        }
      });
    }
  } finally {
    remove();
  }
});

test('written files: header padded to 8 bytes, keys sorted, data covered exactly', () => {
  const { dir, remove } = tempDir();
  try {
    cf.scope(() => {
      const path = join(dir, 'layout.safetensors');
      const tensors = new Map([['b', cf.ones([3])], ['a', cf.ones([1])], ['10', cf.zeros([2, 2], { dtype: 'bf16' })], ['2', cf.arange(5)]]);
      writeSafetensors(path, tensors);
      const buf = readFileSync(path);
      const header = parseSafetensorsHeader(buf, path);
      assert.is(header.dataStart % 8, 0);
      assert.equal(header.entries.map((e) => e.name), ['10', '2', 'a', 'b']);
      assert.equal(header.entries.map((e) => e.dtype), ['BF16', 'I32', 'F32', 'F32']);
      assert.equal(header.metadata, {});
      assert.is(buf.length, header.dataStart + 8 + 20 + 4 + 12);
    });
  } finally {
    remove();
  }
});

test('every kind of corrupt header is an error naming the file and the problem', () => {
  const { dir, remove } = tempDir();
  const before = cf.liveTensorCount();
  try {
    const ok = '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}';
    const cases: [string, () => string, RegExp][] = [
      ['short', () => (writeFileSync(join(dir, 'short'), Buffer.from([1, 2, 3])), join(dir, 'short')), /file is 3 bytes, shorter than the 8-byte header length/],
      ['empty', () => (writeFileSync(join(dir, 'empty'), Buffer.alloc(0)), join(dir, 'empty')), /file is 0 bytes/],
      ['too long', () => rawFile(join(dir, 'long'), `{${ok}}`, 8, 1000n), /header length 1000 is larger than the file \(70 bytes\)/],
      ['absurd', () => rawFile(join(dir, 'absurd'), `{${ok}}`, 8, 1n << 40n), /header length 1099511627776 is absurd/],
      ['utf8', () => rawFile(join(dir, 'utf8'), Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d])), /header is not valid UTF-8/],
      ['json', () => rawFile(join(dir, 'json'), '{"a":'), /header is not valid JSON/],
      ['array', () => rawFile(join(dir, 'array'), '[1, 2]'), /header is not a JSON object \(got an array of length 2\)/],
      ['null', () => rawFile(join(dir, 'null'), 'null'), /header is not a JSON object \(got null\)/],
      ['entry type', () => rawFile(join(dir, 'entry'), '{"a":5}'), /tensor 'a': expected an object, got 5/],
      ['no dtype', () => rawFile(join(dir, 'nodtype'), '{"a":{"shape":[2],"data_offsets":[0,8]}}', 8), /tensor 'a': missing dtype/],
      ['no shape', () => rawFile(join(dir, 'noshape'), '{"a":{"dtype":"F32","data_offsets":[0,8]}}', 8), /tensor 'a': missing shape/],
      ['no offsets', () => rawFile(join(dir, 'nooffsets'), '{"a":{"dtype":"F32","shape":[2]}}', 8), /tensor 'a': missing data_offsets/],
      ['extra field', () => rawFile(join(dir, 'extra'), '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}', 8), /tensor 'a': unexpected field 'x'/],
      ['unknown dtype', () => rawFile(join(dir, 'dtype'), '{"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}', 8), /tensor 'a': unknown dtype 'F17'/],
      ['inherited name as dtype', () => rawFile(join(dir, 'proto'), '{"a":{"dtype":"toString","shape":[2],"data_offsets":[0,8]}}', 8), /tensor 'a': unknown dtype 'toString'/],
      ['negative dim', () => rawFile(join(dir, 'neg'), '{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', 8), /shape of non-negative integers, got \[-2\]/],
      ['fractional dim', () => rawFile(join(dir, 'frac'), '{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}}', 8), /shape of non-negative integers, got \[1.5\]/],
      ['shape type', () => rawFile(join(dir, 'shapetype'), '{"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}}', 8), /shape of non-negative integers, got "2"/],
      ['offsets reversed', () => rawFile(join(dir, 'rev'), '{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}', 8), /data_offsets \[begin, end\] with 0 <= begin <= end, got \[8,0\]/],
      ['offsets arity', () => rawFile(join(dir, 'arity'), '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}', 8), /got \[0\]/],
      ['out of range', () => rawFile(join(dir, 'range'), '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 4), /data_offsets \[0, 8\] out of range \(data region is 4 bytes\)/],
      ['byte length', () => rawFile(join(dir, 'bytes'), '{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', 8), /hold 8 bytes, but shape \[3\] of F32 needs 12/],
      ['overlap', () => rawFile(join(dir, 'overlap'), `{${ok},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12), /tensors 'a' and 'b' overlap/],
      ['gap', () => rawFile(join(dir, 'gap'), `{${ok},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}`, 16), /bytes 8\.\.12 of the data region belong to no tensor \(a gap before 'b'\)/],
      ['leading gap', () => rawFile(join(dir, 'lead'), '{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8), /bytes 0\.\.4 of the data region belong to no tensor/],
      ['trailing', () => rawFile(join(dir, 'trailing'), `{${ok}}`, 11), /data region is 11 bytes but the tensors cover 8: 3 trailing bytes/],
      ['metadata type', () => rawFile(join(dir, 'meta'), `{"__metadata__":[1],${ok}}`, 8), /__metadata__ must be an object of strings, got an array/],
      ['metadata value', () => rawFile(join(dir, 'metaval'), `{"__metadata__":{"k":1},${ok}}`, 8), /__metadata__\['k'\] must be a string, got 1 of type number/],
      ['unsupported dtype', () => rawFile(join(dir, 'f64'), '{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}', 8), /tensor 'a' has dtype F64, which is not supported/],
      ['rank', () => rawFile(join(dir, 'rank'), '{"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}}', 4), /tensor 'a' has 9 dimensions; at most 8/],
    ];
    for (const [what, make, problem] of cases) {
      const file = make();
      try {
        throwsNaming(() => readSafetensors(file), file, problem);
      } catch (e) {
        throw new Error(`${what}: ${(e as Error).message}`);
      }
    }
    assert.is(cf.liveTensorCount(), before, 'no tensor leaks from a failed read');
  } finally {
    remove();
  }
});

test('a truncated file is an error, wherever it is cut', () => {
  const { dir, remove } = tempDir();
  try {
    cf.scope(() => {
      const path = join(dir, 'full.safetensors');
      writeSafetensors(path, { a: cf.ones([16]), b: cf.zeros([3, 3]) });
      const size = readFileSync(path).length;
      const cuts: [number, RegExp][] = [[size - 1, /tensor 'b': data_offsets \[64, 100\] out of range \(data region is 99 bytes\)/], [size - 36, /out of range/], [20, /header length \d+ is larger than the file \(20 bytes\)/], [5, /file is 5 bytes/]];
      for (const [cut, problem] of cuts) {
        truncateSync(path, cut);
        throwsNaming(() => readSafetensors(path), path, problem);
      }
    });
  } finally {
    remove();
  }
});

test('parseSafetensorsHeader checks its buffer', () => {
  assert.throws(() => parseSafetensorsHeader('abc' as unknown as Uint8Array, 'x'), /parseSafetensorsHeader: expected a Uint8Array for buf/);
  const buf = Buffer.alloc(16);
  buf.writeBigUInt64LE(100n);
  assert.throws(() => parseSafetensorsHeader(buf, 'part', 1000), /safetensors: part: the buffer holds 16 bytes, not the whole 100-byte header/);
  assert.throws(() => parseSafetensorsHeader(buf, 'part', -1), /parseSafetensorsHeader: expected a non-negative integer for fileSize, got -1/);
  assert.throws(() => parseSafetensorsHeader(buf, 3 as unknown as string), /parseSafetensorsHeader: expected a string for file/);
});

test('writing over a file is atomic: a failure mid-write leaves the old file intact and no temporary file', () => {
  const { dir, remove } = tempDir();
  try {
    cf.scope(() => {
      const path = join(dir, 'model.safetensors');
      writeSafetensors(path, { w: cf.fromArray([1, 2, 3]) }, { metadata: { version: 'old' } });
      const old = readFileSync(path);
      const first = cf.ones([1000]);
      const second = cf.ones([10]);
      // The failure comes after the header and the first tensor are written.
      second.toArray = () => {
        throw new Error('simulated device failure');
      };
      assert.throws(() => writeSafetensors(path, { a: first, b: second }, { metadata: { version: 'new' } }), /simulated device failure/);
      assert.ok(readFileSync(path).equals(old), 'old file unchanged');
      assert.equal(readdirSync(dir), ['model.safetensors']);
      assert.equal(readSafetensors(path).metadata, { version: 'old' });
    });
  } finally {
    remove();
  }
});

test('bad arguments are errors naming the function and the argument', () => {
  const { dir, remove } = tempDir();
  try {
    cf.scope(() => {
      const path = join(dir, 'x.safetensors');
      const t = cf.ones([2]);
      assert.throws(() => readSafetensors(''), /readSafetensors: expected a non-empty file path for path/);
      assert.throws(() => readSafetensors(path, { device: 'gpu' }), /readSafetensors: expected 'cpu', 'cuda' or 'cuda:N' for opts.device/);
      assert.throws(() => readSafetensors(join(dir, 'missing.safetensors')), /ENOENT.*missing\.safetensors/);
      assert.throws(() => writeSafetensors(path, [t] as unknown as Record<string, cf.Tensor>), /writeSafetensors: expected a Map or a plain object of tensors for tensors/);
      assert.throws(() => writeSafetensors(path, { a: [1, 2] as unknown as cf.Tensor }), /writeSafetensors: expected a Tensor for tensors\['a'\]/);
      assert.throws(() => writeSafetensors(path, { a: t }, { dtype: 'f64' as 'f32' }), /writeSafetensors: expected 'f32', 'bf16' or 'f16' for opts.dtype, got 'f64'/);
      assert.throws(() => writeSafetensors(path, { a: t }, { dtype: 'constructor' as 'f32' }), /writeSafetensors: expected 'f32', 'bf16' or 'f16' for opts.dtype/);
      assert.throws(() => writeSafetensors(path, { a: t }, { metadata: { n: 3 as unknown as string } }), /writeSafetensors: expected a string for opts.metadata\['n'\], got 3/);
      assert.throws(() => writeSafetensors(path, { __metadata__: t }), /the tensor name '__metadata__' is reserved/);
      assert.throws(() => writeSafetensors(join(dir, 'no', 'such', 'dir.safetensors'), { a: t }), /writeSafetensors: .*dir\.safetensors: cannot create a temporary file beside it \(ENOENT/);
      const gone = cf.ones([2]);
      gone.dispose();
      assert.throws(() => writeSafetensors(path, { a: gone }), /writeSafetensors: tensors\['a'\] has been disposed/);
      assert.equal(readdirSync(dir), []);
    });
  } finally {
    remove();
  }
});

test.run();
