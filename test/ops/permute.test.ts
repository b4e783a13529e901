import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { devices, gradCheck, Rng, numelOf } from '../support/helpers.js';

const test = suite('permute');
const rng = new Rng(23);

/** Naive reference: walks the output in order and reads the input by its strides. */
function permuteRef(x: ArrayLike<number>, shape: readonly number[], perm: readonly number[]): number[] {
  const r = shape.length;
  const strides = new Array<number>(r);
  let s = 1;
  for (let d = r - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d]!;
  }
  const outShape = perm.map((d) => shape[d]!);
  const out: number[] = [];
  const n = numelOf(shape);
  for (let i = 0; i < n; i++) {
    let rem = i, off = 0;
    for (let k = r - 1; k >= 0; k--) {
      off += (rem % outShape[k]!) * strides[perm[k]!]!;
      rem = Math.floor(rem / outShape[k]!);
    }
    out.push(x[off]!);
  }
  return out;
}

function randomPerm(r: number): number[] {
  const p = Array.from({ length: r }, (_, i) => i);
  for (let i = r - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

function makeData(dtype: cf.DType, n: number): Float32Array | Int32Array {
  return dtype === 'i32' ? Int32Array.from({ length: n }, () => rng.int(-1000, 1000)) : rng.array(n);
}

function check(device: cf.Device, dtype: cf.DType, shape: number[], perm: number[]): void {
  const data = makeData(dtype, numelOf(shape));
  const r = cf.scope(() => {
    const x = cf.fromArray(data, shape, { device, dtype });
    const y = cf.permute(x, perm);
    return { shape: [...y.shape], values: Array.from(y.toArray()), stored: x.toArray() };
  });
  const what = `${dtype} ${JSON.stringify(shape)} by ${JSON.stringify(perm)} on ${device}`;
  assert.equal(r.shape, perm.map((d) => shape[d]), what);
  // A permutation moves values: exact equality.
  assert.equal(r.values, permuteRef(r.stored, shape, perm), what);
}

test('random permutations of ranks 1 to 5 match the reference, f32, bf16 and i32', () => {
  for (const device of devices()) {
    for (const dtype of ['f32', 'bf16', 'i32'] as const) {
      for (let rank = 1; rank <= 5; rank++) {
        for (let trial = 0; trial < 6; trial++) check(device, dtype, rng.shape(rank, 6), randomPerm(rank));
      }
    }
  }
});

test('the tiled and run-copy paths: partial tiles, odd sizes, attention layouts, rank 8', () => {
  const cases: [number[], number[]][] = [
    [[67, 45], [1, 0]],
    [[3, 33, 70], [0, 2, 1]],
    [[2, 130, 31], [2, 1, 0]],
    [[2, 5, 3, 8], [0, 2, 1, 3]], // [B, S, H, D] -> [B, H, S, D]
    [[2, 3, 17, 64], [0, 2, 1, 3]],
    [[2, 17, 3, 5], [0, 2, 3, 1]], // innermost moves behind a batch dim
    [[40, 1, 50], [2, 1, 0]],
    [[5, 2], [1, 0]],
    [[2, 40], [1, 0]],
    [[2, 3, 2, 3, 2, 3, 2, 3], [7, 0, 6, 1, 5, 2, 4, 3]],
    [[3, 4, 5], [1, 0, 2]], // runs of 5 elements: 2-byte units for bf16
  ];
  for (const device of devices()) {
    for (const dtype of ['f32', 'bf16', 'i32'] as const) for (const [shape, perm] of cases) check(device, dtype, shape, perm);
  }
});

test('a large transpose splits across threads and matches', () => {
  for (const device of devices()) check(device, 'f32', [3, 129, 257], [0, 2, 1]);
});

test('negative dims, transpose, and permutations that keep memory order are views', () => {
  cf.scope(() => {
    const x = cf.fromArray(rng.array(24), [2, 1, 3, 4]);
    const a = cf.permute(x, [-4, -2, -3, -1]);
    assert.equal([...a.shape], [2, 3, 1, 4]);
    assert.ok(a.storage === x.storage, 'moving a size-1 dim is a view');
    const id = cf.permute(x, [0, 1, 2, 3]);
    assert.ok(id.storage === x.storage, 'the identity is a view');
    const t = cf.transpose(x, -1, 0);
    assert.equal([...t.shape], [4, 1, 3, 2]);
    assert.equal(Array.from(t.toArray()), permuteRef(x.toArray(), x.shape, [3, 1, 2, 0]));
    const s = cf.fromArray([5], []);
    assert.equal([...cf.transpose(s, 0, -1).shape], []);
    assert.equal([...cf.permute(s, []).shape], []);
    assert.equal([...cf.permute(cf.zeros([0, 3]), [1, 0]).shape], [3, 0]);
  });
});

test('gradients match finite differences (backward permutes by the inverse)', () => {
  gradCheck((x) => cf.permute(x, [2, 0, 1]), [{ data: rng.array(30), shape: [2, 3, 5] }]);
  gradCheck((x) => cf.permute(x, [0, 2, 1, 3]), [{ data: rng.array(60), shape: [2, 5, 3, 2] }]);
  gradCheck((x) => cf.transpose(x, 0, 1), [{ data: rng.array(12), shape: [3, 4] }]);
  gradCheck((x) => cf.permute(x, [1, 0, 2]), [{ data: rng.array(10), shape: [1, 2, 5] }]);
});

test('bad dims and arguments throw errors naming the op and the argument', () => {
  cf.scope(() => {
    const x = cf.zeros([2, 3, 4]);
    assert.throws(() => cf.permute(x, [0, 1]), /permute: expected a permutation of the 3 dims of x for dims, got \[0, 1\]/);
    assert.throws(() => cf.permute(x, [0, 1, 1]), /permutation of the 3 dims/);
    assert.throws(() => cf.permute(x, [0, 1, 3]), /permutation of the 3 dims/);
    assert.throws(() => cf.permute(x, [0, 1, 1.5]), /permutation of the 3 dims/);
    assert.throws(() => cf.permute(x, 'abc' as never), /permutation of the 3 dims/);
    assert.throws(() => cf.transpose(x, 0, 3), /transpose: expected an axis in \[-3, 2\] for b, got 3/);
    assert.throws(() => cf.permute(null as never, [0]), /permute: expected a Tensor for x/);
    assert.throws(() => native.permute(x, cf.empty([4, 3, 2]), [2, 1, 2]), /permute: expected a permutation of \[0, 3\) for dims, got \[2, 1, 2\]/);
    assert.throws(() => native.permute(x, cf.empty([4, 3, 2]), [-1, 1, 0]), /permutation of \[0, 3\)/);
    assert.throws(() => native.permute(x, cf.empty([3, 2, 4]), [2, 1, 0]), /permute: expected \[4, 3, 2\] for out.shape, got \[3, 2, 4\]/);
    assert.throws(() => native.permute(x, cf.empty([4, 3, 2], { dtype: 'bf16' }), [2, 1, 0]), /same dtype/);
    assert.throws(() => native.permute(x, x.view([4, 3, 2]), [2, 1, 0]), /permute: out must not share memory with x/);
    assert.throws(() => native.permute(x, cf.empty([4, 3, 2]), 'x' as never), /permute: expected an array of integers for dims/);
  });
});

test.run();
