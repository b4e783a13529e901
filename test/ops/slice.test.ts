import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { assertClose, devices, gradCheck, Rng, numelOf } from '../support/helpers.js';

const test = suite('slice');
const rng = new Rng(31);

/** Naive reference: x[..., start:end, ...] along axis. */
function sliceRef(x: ArrayLike<number>, shape: readonly number[], axis: number, start: number, end: number): number[] {
  const outer = numelOf(shape.slice(0, axis)), len = shape[axis]!, inner = numelOf(shape.slice(axis + 1));
  const out: number[] = [];
  for (let o = 0; o < outer; o++) for (let k = start; k < end; k++) for (let i = 0; i < inner; i++) out.push(x[(o * len + k) * inner + i]!);
  return out;
}

function concatRef(parts: { values: ArrayLike<number>; shape: readonly number[] }[], axis: number): number[] {
  const outer = numelOf(parts[0]!.shape.slice(0, axis));
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const block = p.shape[axis]! * numelOf(p.shape.slice(axis + 1));
      for (let j = 0; j < block; j++) out.push(p.values[o * block + j]!);
    }
  }
  return out;
}

function makeData(dtype: cf.DType, n: number): Float32Array | Int32Array {
  return dtype === 'i32' ? Int32Array.from({ length: n }, () => rng.int(-1000, 1000)) : rng.array(n);
}

test('slice matches the reference on random shapes, axes and (negative) bounds, every dtype', () => {
  for (const device of devices()) {
    for (const dtype of ['f32', 'bf16', 'i32'] as const) {
      for (let trial = 0; trial < 25; trial++) {
        const shape = rng.shape(rng.int(1, 4), 6);
        const axis = rng.int(0, shape.length - 1);
        const len = shape[axis]!;
        const s = rng.int(0, len), e = rng.int(s, len);
        // Exercise negative indices and the default end.
        // (-0 is index 0, so only indices below len have a negative spelling.)
        const startArg = rng.next() < 0.3 && s < len ? s - len : s;
        const endArg = e === len && rng.next() < 0.4 ? undefined : e < len && rng.next() < 0.3 ? e - len : e;
        const axisArg = rng.next() < 0.3 ? axis - shape.length : axis;
        const data = makeData(dtype, numelOf(shape));
        const r = cf.scope(() => {
          const x = cf.fromArray(data, shape, { device, dtype });
          const y = cf.slice(x, axisArg, startArg, endArg);
          return { shape: [...y.shape], values: Array.from(y.toArray()), stored: x.toArray() };
        });
        const what = `${dtype} ${JSON.stringify(shape)} axis ${axisArg} [${startArg}, ${endArg}) on ${device}`;
        assert.equal(r.shape, shape.map((d, i) => (i === axis ? e - s : d)), what);
        assert.equal(r.values, sliceRef(r.stored, shape, axis, s, e), what);
      }
    }
  }
});

test('slices of the leading axis (or after size-1 dims) are views sharing memory', () => {
  let view: cf.Tensor;
  cf.scope(() => {
    const x = cf.fromArray(Float32Array.from({ length: 24 }, (_, i) => i), [4, 2, 3]);
    view = cf.keep(cf.slice(x, 0, 1, 3));
    assert.ok(view.storage === x.storage, 'leading-axis slice is a view');
    assert.equal(Array.from(view.toArray()), sliceRef(x.toArray(), [4, 2, 3], 0, 1, 3));
    // Writes through native ops show on both sides.
    native.fill(view, 7);
    const xs = Array.from(x.toArray());
    assert.equal(xs.slice(0, 6), [0, 1, 2, 3, 4, 5]);
    assert.equal(xs.slice(6, 18), new Array(12).fill(7));
    assert.equal(xs.slice(18), [18, 19, 20, 21, 22, 23]);
    native.fill(x, -1);
    assert.equal(Array.from(view.toArray()), new Array(12).fill(-1));

    const y = cf.fromArray(Float32Array.from({ length: 30 }, (_, i) => i), [1, 1, 5, 6]);
    const v2 = cf.slice(y, 2, -3);
    assert.ok(v2.storage === y.storage, 'a slice after size-1 dims is a view');
    assert.equal(Array.from(v2.toArray()), sliceRef(y.toArray(), [1, 1, 5, 6], 2, 2, 5));
    const c = cf.slice(x, 1, 1, 2);
    assert.ok(c.storage !== x.storage, 'a slice of an inner axis is a copy');
  });
  // The scope disposed x; the kept view still holds the memory.
  assert.equal(Array.from(view!.toArray()), new Array(12).fill(-1));
  view!.dispose();
});

test('slice gradients match finite differences (view and copy paths)', () => {
  gradCheck((x) => cf.slice(x, 0, 1, 3), [{ data: rng.array(20), shape: [4, 5] }]);
  gradCheck((x) => cf.slice(x, 1, -4, -1), [{ data: rng.array(30), shape: [2, 5, 3] }]);
  gradCheck((x) => cf.slice(x, 2, 1), [{ data: rng.array(24), shape: [2, 3, 4] }]);
  gradCheck((x) => cf.mul(cf.slice(x, 1, 0, 2), cf.slice(x, 1, 1, 3)), [{ data: rng.array(12), shape: [2, 3, 2] }]);
});

test('concat matches the reference on random shapes and axes, including empty pieces', () => {
  for (const device of devices()) {
    for (const dtype of ['f32', 'bf16', 'i32'] as const) {
      for (let trial = 0; trial < 12; trial++) {
        const base = rng.shape(rng.int(1, 4), 5);
        const axis = rng.int(0, base.length - 1);
        const shapes = Array.from({ length: rng.int(1, 4) }, () => base.map((d, i) => (i === axis ? rng.int(0, 4) : d)));
        const datas = shapes.map((s) => makeData(dtype, numelOf(s)));
        const r = cf.scope(() => {
          const ts = datas.map((d, i) => cf.fromArray(d, shapes[i]!, { device, dtype }));
          const y = cf.concat(ts, axis);
          return { shape: [...y.shape], values: Array.from(y.toArray()), parts: ts.map((t) => ({ values: t.toArray(), shape: t.shape })) };
        });
        const what = `${dtype} ${JSON.stringify(shapes)} axis ${axis} on ${device}`;
        assert.equal(r.shape, base.map((d, i) => (i === axis ? shapes.reduce((a, s) => a + s[axis]!, 0) : d)), what);
        assert.equal(r.values, concatRef(r.parts, axis), what);
      }
    }
  }
});

test('concat gradients match finite differences for every input', () => {
  gradCheck((a, b, c) => cf.concat([a, b, c], 1), [
    { data: rng.array(6), shape: [2, 1, 3] },
    { data: rng.array(12), shape: [2, 2, 3] },
    { data: rng.array(18), shape: [2, 3, 3] },
  ]);
  gradCheck((a, b) => cf.concat([a, b, a], 0), [
    { data: rng.array(6), shape: [2, 3] },
    { data: rng.array(3), shape: [1, 3] },
  ]);
  gradCheck((a, b) => cf.concat([cf.mul(a, b), b], -1), [
    { data: rng.array(10), shape: [5, 2] },
    { data: rng.array(10), shape: [5, 2] },
  ]);
});

test('split by count and by sizes, and its gradient', () => {
  cf.scope(() => {
    const data = Float32Array.from({ length: 24 }, (_, i) => i);
    const x = cf.fromArray(data, [2, 6, 2]);
    const parts = cf.split(x, 3, 1);
    assert.equal(parts.map((p) => [...p.shape]), [[2, 2, 2], [2, 2, 2], [2, 2, 2]]);
    parts.forEach((p, i) => assert.equal(Array.from(p.toArray()), sliceRef(data, [2, 6, 2], 1, 2 * i, 2 * i + 2)));
    const sized = cf.split(x, [1, 0, 5], -2);
    assert.equal(sized.map((p) => p.shape[1]), [1, 0, 5]);
    assert.equal(Array.from(sized[2]!.toArray()), sliceRef(data, [2, 6, 2], 1, 1, 6));
    const rows = cf.split(x, 2);
    assert.ok(rows.every((r) => r.storage === x.storage), 'pieces of the leading axis are views');
  });
  gradCheck(
    (x) => {
      const [a, b, c] = cf.split(x, [1, 3, 2], 1);
      return cf.concat([cf.mul(a!, a!), c!, b!], 1);
    },
    [{ data: rng.array(18), shape: [3, 6] }],
  );
});

test('bad bounds, axes and shapes throw errors naming the op and the argument', () => {
  cf.scope(() => {
    const x = cf.zeros([2, 5, 3]);
    assert.throws(() => cf.slice(x, 1, 6), /slice: expected an index in \[-5, 5\] \(axis 1 has size 5\) for start, got 6 of type number/);
    assert.throws(() => cf.slice(x, 1, 0, -6), /slice: expected an index in \[-5, 5\] \(axis 1 has size 5\) for end, got -6/);
    assert.throws(() => cf.slice(x, 1, 4, 2), /slice: expected an index at or after start \(4\) on axis 1 of size 5 for end, got 2/);
    assert.throws(() => cf.slice(x, 1, 1.5), /for start, got 1.5/);
    assert.throws(() => cf.slice(x, 3, 0), /slice: expected an axis in \[-3, 2\] for axis, got 3/);
    assert.throws(() => cf.slice(cf.scalar(1), 0, 0), /slice: expected a tensor of rank 1 or more for x, got shape \[\]/);
    assert.throws(() => cf.concat([], 0), /concat: expected a non-empty array of Tensors for tensors/);
    assert.throws(() => cf.concat([x, cf.zeros([2, 5, 4])], 1), /concat: expected a shape equal to \[2, 5, 3\] except on axis 1 for tensors\[1\], got \[2, 5, 4\]/);
    assert.throws(() => cf.concat([x, cf.zeros([2, 5])], 0), /except on axis 0 for tensors\[1\]/);
    assert.throws(() => cf.concat([x, cf.zeros([2, 5, 3], { dtype: 'i32' })], 0), /concat: expected tensors\[0\] and tensors\[1\] of the same dtype, got f32 and i32/);
    assert.throws(() => cf.concat([x, 3 as never]), /concat: expected a Tensor for tensors\[1\]/);
    assert.throws(() => cf.split(x, 2, 1), /split: expected a count that divides 5 \(axis 1 of \[2, 5, 3\]\) for sizes, got 2/);
    assert.throws(() => cf.split(x, [2, 2], 1), /split: expected sizes summing to 5 \(axis 1 of \[2, 5, 3\]\) for sizes, got \[2, 2\]/);
    assert.throws(() => cf.split(x, [6, -1], 1), /split: expected an integer in \[0, Infinity\] for sizes\[1\]/);
    assert.throws(() => cf.split(x, 0), /split: expected an integer in \[1, Infinity\] for sizes, got 0/);
    // Direct calls into the addon.
    const dst = cf.zeros([2, 4, 3]);
    assert.throws(() => native.sliceCopy(x, dst, 1, 0, 0, 5), /sliceCopy: expected an integer in \[0, 4\] for count, got 5/);
    assert.throws(() => native.sliceCopy(x, dst, 1, 6, 0, 1), /sliceCopy: expected an integer in \[0, 5\] for srcStart, got 6/);
    assert.throws(() => native.sliceCopy(x, dst, 1, 0, -1, 1), /sliceCopy: expected an integer in \[0, 4\] for dstStart, got -1/);
    assert.throws(() => native.sliceCopy(x, dst, 3, 0, 0, 1), /sliceCopy: expected an integer in \[-3, 2\] for axis, got 3/);
    assert.throws(() => native.sliceCopy(x, cf.zeros([2, 5, 2]), 1, 0, 0, 1), /sliceCopy: expected src and dst of equal sizes except on axis 1, got \[2, 5, 3\] and \[2, 5, 2\]/);
    assert.throws(() => native.sliceCopy(x, cf.zeros([10, 3]), 0, 0, 0, 1), /sliceCopy: expected rank 3 for dst.shape, got \[10, 3\]/);
    assert.throws(() => native.sliceCopy(x, cf.zeros([2, 5, 3], { dtype: 'i32' }), 0, 0, 0, 1), /same dtype/);
    assert.throws(() => native.sliceCopy(x, x.view([1, 5, 3], 15), 0, 0, 0, 1), /sliceCopy: out must not share memory with src/);
    assert.throws(() => (native.sliceCopy as (...a: unknown[]) => void)(x, dst, 1, 0, 0), /sliceCopy: expected 6 arguments, got 5/);
  });
});

test('concat of f32 and bf16 gives f32 (PyTorch promotion); each input gets its gradient in its own dtype', () => {
  for (const device of devices()) {
    cf.scope(() => {
      const a = cf.fromArray([1.5, -2, 3.25], [1, 3], { device, requiresGrad: true });
      const b = cf.fromArray([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [2, 3], { device, dtype: 'bf16', requiresGrad: true });
      const y = cf.concat([a, b], 0);
      assert.is(y.dtype, 'f32');
      const bRounded = Array.from(b.toArray());
      assertClose(y.toArray(), [1.5, -2, 3.25, ...bRounded], { atol: 0, what: `values on ${device}` });
      cf.sum(cf.mul(y, cf.fromArray([1, 2, 3, 4, 5, 6, 7, 8, 9], [3, 3], { device }))).backward();
      assert.is(a.grad!.dtype, 'f32');
      assert.is(b.grad!.dtype, 'bf16');
      assertClose(a.grad!.toArray(), [1, 2, 3], { atol: 0 });
      assertClose(b.grad!.toArray(), [4, 5, 6, 7, 8, 9], { atol: 0 });
      for (const t of [a, b]) t.dispose();
    });
  }
});

test.run();
