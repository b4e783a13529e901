import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, gradCheck, numelOf, Rng } from '../support/helpers.js';

const test = suite('reduce');
const rng = new Rng(11);

/** Naive reduction over one axis, f64. */
function reduceRef(op: 'sum' | 'mean' | 'max', x: Float32Array, shape: number[], axis: number): { values: number[]; indices: number[] } {
  const outer = numelOf(shape.slice(0, axis));
  const n = shape[axis]!;
  const inner = numelOf(shape.slice(axis + 1));
  const values: number[] = [];
  const indices: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let acc = op === 'max' ? -Infinity : 0;
      let arg = 0;
      for (let k = 0; k < n; k++) {
        const v = x[(o * n + k) * inner + i]!;
        if (op === 'max') {
          if (v > acc) {
            acc = v;
            arg = k;
          }
        } else acc += v;
      }
      values.push(op === 'mean' ? acc / n : acc);
      indices.push(arg);
    }
  }
  return { values, indices };
}

for (const op of ['sum', 'mean', 'max'] as const) {
  const fn = { sum: cf.sum, mean: cf.mean, max: cf.max }[op];

  test(`${op} over each axis matches the reference on every backend`, () => {
    for (const device of devices()) {
      for (let trial = 0; trial < 8; trial++) {
        const shape = rng.shape(rng.int(1, 4), 9);
        const axis = rng.int(0, shape.length - 1);
        const x = rng.array(numelOf(shape));
        const ref = reduceRef(op, x, shape, axis);
        const got = cf.scope(() => {
          const y = fn(cf.fromArray(x, shape, { device }), axis);
          return { shape: [...y.shape], v: y.toArray() };
        });
        assert.equal(got.shape, shape.filter((_, i) => i !== axis));
        assertClose(got.v, ref.values, { rtol: 1e-5, atol: 1e-5, what: `${op} ${JSON.stringify(shape)} axis ${axis} on ${device}` });
      }
    }
  });

  test(`${op} over all elements, keepDims and negative axes`, () => {
    for (const device of devices()) {
      const shape = [3, 5, 4];
      const x = rng.array(60);
      const all = reduceRef(op, x, [60], 0).values[0]!;
      const r = cf.scope(() => {
        const t = cf.fromArray(x, shape, { device });
        const a = fn(t);
        const k = fn(t, -1, { keepDims: true });
        return { a: a.item(), aShape: [...a.shape], kShape: [...k.shape], k: k.toArray() };
      });
      assertClose([r.a], [all], { rtol: 1e-5, atol: 1e-5 });
      assert.equal(r.aShape, []);
      assert.equal(r.kShape, [3, 5, 1]);
      assertClose(r.k, reduceRef(op, x, shape, 2).values, { rtol: 1e-5, atol: 1e-5 });
    }
  });

  test(`${op} gradient matches finite differences`, () => {
    const shape = [3, 4, 5];
    // max: distinct values spaced apart so the argmax does not move under the perturbation
    const x = op === 'max' ? Float32Array.from(rng.array(60), (_, i) => ((i * 37) % 60) * 0.1 - 3) : rng.array(60);
    for (const axis of [0, 1, 2]) gradCheck((t) => fn(t, axis), [{ data: x, shape }]);
    gradCheck((t) => fn(t), [{ data: x, shape }]);
  });
}

test('max backward sends the gradient to the first maximum on every backend, f32 and bf16', () => {
  // Ties (rounded values) so that "the first maximum" matters; each axis of a 3-D tensor.
  const shape = [4, 6, 5];
  const x = Float32Array.from(rng.array(120), (v) => Math.round(v * 3));
  const dy = rng.array(120);
  for (const device of devices()) {
    for (const dtype of ['f32', 'bf16'] as const) {
      for (const axis of [0, 1, 2]) {
        const got = cf.scope(() => {
          const t = cf.fromArray(x, shape, { device, dtype, requiresGrad: true });
          const y = cf.max(t, axis);
          y.backward(cf.fromArray(dy.subarray(0, y.size), [...y.shape], { device, dtype }));
          return t.grad!.toArray();
        });
        const { indices } = reduceRef('max', x, shape, axis);
        const n = shape[axis]!, inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
        const want = new Float32Array(120);
        indices.forEach((k, r) => {
          const o = Math.floor(r / inner), i = r % inner;
          want[(o * n + k) * inner + i] = cf.scope(() => cf.fromArray([dy[r]!], [1], { dtype }).toArray()[0]!);
        });
        assert.equal(Array.from(got), Array.from(want), `${device} ${dtype} axis ${axis}`);
      }
    }
  }
});

test('long axes take the many-threads path and stay accurate', () => {
  for (const device of devices()) {
    const x = rng.array(3 * 5000);
    const got = cf.scope(() => cf.sum(cf.fromArray(x, [3, 5000], { device }), 1).toArray());
    assertClose(got, reduceRef('sum', x, [3, 5000], 1).values, { rtol: 1e-4, atol: 1e-3 });
    const gotMax = cf.scope(() => cf.maxWithIndices(cf.fromArray(x, [3, 5000], { device }), 1).indices.toArray());
    assert.equal(Array.from(gotMax), reduceRef('max', x, [3, 5000], 1).indices);
  }
});

test('max returns the index of the first maximum and propagates NaN', () => {
  const r = cf.scope(() => {
    const { values, indices } = cf.maxWithIndices(cf.fromArray([1, 3, 3, 2, NaN, 0], [2, 3]), 1);
    return { v: values.toArray(), i: indices.toArray() };
  });
  assert.equal(Array.from(r.i.slice(0, 1)), [1]);
  assert.is(r.v[0], 3);
  assert.ok(Number.isNaN(r.v[1]!));
});

test('max over a long axis returns the index of the first NaN on every backend', () => {
  // 600 elements and one output: CUDA splits the axis over a block's threads (thread 1 meets
  // k = 1, thread 0 k = 256 and 512), so the NaN it keeps depends on how partials combine.
  for (const device of devices()) {
    const x = rng.array(600);
    x[256] = NaN;
    x[1] = NaN;
    x[512] = NaN;
    const r = cf.scope(() => {
      const { values, indices } = cf.maxWithIndices(cf.fromArray(x, [600], { device }), 0);
      return { v: values.toArray(), i: indices.toArray() };
    });
    assert.ok(Number.isNaN(r.v[0]!), device);
    assert.equal(Array.from(r.i), [1], device);
  }
});

test('sumTo reduces broadcast dims back to the input shape', () => {
  const x = rng.array(2 * 3 * 4);
  const got = cf.scope(() => {
    const t = cf.fromArray(x, [2, 3, 4]);
    return [cf.sumTo(t, [3, 1]).toArray(), cf.sumTo(t, [4]).toArray(), cf.sumTo(t, [1, 3, 4]).toArray()];
  });
  const ref31 = [0, 1, 2].map((j) => {
    let s = 0;
    for (let b = 0; b < 2; b++) for (let k = 0; k < 4; k++) s += x[(b * 3 + j) * 4 + k]!;
    return s;
  });
  assertClose(got[0]!, ref31, { rtol: 1e-5 });
  assertClose(got[1]!, reduceRef('sum', x, [6, 4], 0).values, { rtol: 1e-5 });
  assertClose(got[2]!, reduceRef('sum', x, [2, 12], 0).values, { rtol: 1e-5 });
});

test("a bf16 tensor's sum in f32 is not rounded to bf16; its gradient comes back in bf16", () => {
  // Values 1 + k / 128 sum exactly in f32 but not in bf16 (8 significant bits).
  const shape = [64, 3];
  const x = Float32Array.from({ length: 192 }, (_, i) => 1 + (i % 7) / 128);
  const exact = reduceRef('sum', x, shape, 0).values;
  for (const device of devices()) {
    const got = cf.scope(() => {
      const t = cf.fromArray(x, shape, { dtype: 'bf16', device, requiresGrad: true });
      const wide = cf.sum(t, 0, { dtype: 'f32' });
      const narrow = cf.sum(t, 0);
      cf.sum(cf.mul(wide, cf.fromArray([1, 2, 3], [3], { device }))).backward();
      const r = { dtype: wide.dtype, wide: wide.toArray(), narrow: narrow.toArray(), all: cf.sum(t, null, { dtype: 'f32' }).item(), gradDtype: t.grad!.dtype, grad: t.grad!.toArray() };
      t.dispose();
      return r;
    });
    assert.is(got.dtype, 'f32');
    assert.equal(Array.from(got.wide), exact, `f32 sums on ${device}`);
    assert.ok(Array.from(got.narrow).some((v, i) => v !== exact[i]), `the bf16 sums are rounded on ${device}`);
    assert.is(got.all, exact.reduce((a, b) => a + b, 0));
    assert.is(got.gradDtype, 'bf16');
    assert.equal(Array.from(got.grad), Array.from({ length: 192 }, (_, i) => 1 + (i % 3)), `gradient on ${device}`);
  }
  cf.scope(() => {
    assert.throws(() => cf.sum(cf.zeros([2]), 0, { dtype: 'bf16' }), /sum: expected x's dtype f32 for dtype, got 'bf16'/);
    assert.throws(() => cf.native.reduce('max', cf.zeros([2], { dtype: 'bf16' }), cf.zeros([1]), 0), /reduce: expected x and out of the same dtype, got bf16 and f32/);
  });
});

test('bad arguments throw clear errors', () => {
  cf.scope(() => {
    const t = cf.zeros([2, 3]);
    assert.throws(() => cf.sum(t, 2), /sum: expected an axis in \[-2, 1\] for axis, got 2/);
    assert.throws(() => cf.mean(t, 0.5), /axis/);
    assert.throws(() => cf.max(cf.zeros([2, 0]), 1), /max over an empty axis/);
    assert.throws(() => cf.sum(cf.zeros([2], { dtype: 'i32' })), /'f32' or 'bf16'/);
  });
});

test.run();
