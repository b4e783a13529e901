import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, gradCheck, numelOf, recordNativeCalls, Rng } from '../support/helpers.js';

const test = suite('layernorm');
const rng = new Rng(41);

interface LnRef {
  y: number[];
  dx: number[];
  dw: number[];
  db: number[];
}

/** LayerNorm forward and the gradients of sum(y * gy), in f64. w / b null mean 1 / 0. */
function layerNormRef(x: ArrayLike<number>, w: ArrayLike<number> | null, b: ArrayLike<number> | null, gy: ArrayLike<number>, d: number, eps: number): LnRef {
  const rows = x.length / d;
  const out: LnRef = { y: [], dx: [], dw: new Array<number>(d).fill(0), db: new Array<number>(d).fill(0) };
  for (let r = 0; r < rows; r++) {
    const row = Array.from({ length: d }, (_, i) => x[r * d + i]!);
    const mu = row.reduce((a, v) => a + v, 0) / d;
    const rs = 1 / Math.sqrt(row.reduce((a, v) => a + (v - mu) ** 2, 0) / d + eps);
    const xh = row.map((v) => (v - mu) * rs);
    const g = xh.map((_, i) => gy[r * d + i]! * (w ? w[i]! : 1));
    const mg = g.reduce((a, v) => a + v, 0) / d;
    const mgx = g.reduce((a, v, i) => a + v * xh[i]!, 0) / d;
    for (let i = 0; i < d; i++) {
      out.y.push(xh[i]! * (w ? w[i]! : 1) + (b ? b[i]! : 0));
      out.dx.push(rs * (g[i]! - mg - xh[i]! * mgx));
      out.dw[i]! += gy[r * d + i]! * xh[i]!;
      out.db[i]! += gy[r * d + i]!;
    }
  }
  return out;
}

const roundBf16 = (a: Float32Array): Float32Array => cf.scope(() => cf.fromArray(a, [a.length], { dtype: 'bf16' }).toArray() as Float32Array);

// Size-1 and odd dims, one warp, a block per row on CUDA, ViT-B width with many rows (several
// chunks of the parameter-gradient reduction), a long row.
const shapes = [[1, 1], [3, 1], [5], [2, 3, 5], [7, 33], [3, 1025], [300, 768], [2, 3000], rng.shape(3, 20)];
const paramModes = [
  { w: true, b: true },
  { w: true, b: false },
  { w: false, b: true },
  { w: false, b: false },
];

test('forward and all gradients match the f64 reference on every backend, f32 and bf16', () => {
  for (const device of devices()) {
    for (const shape of shapes) {
      const d = shape[shape.length - 1]!;
      const size = numelOf(shape);
      for (const mode of paramModes) {
        for (const dtype of ['f32', 'bf16'] as const) {
          const round = (a: Float32Array): Float32Array => (dtype === 'bf16' ? roundBf16(a) : a);
          // An offset mean checks the two-pass variance.
          const x = round(rng.array(size, 2).map((v) => v + 3));
          const w = mode.w ? round(rng.array(d).map((v) => v + 1)) : null;
          const b = mode.b ? round(rng.array(d)) : null;
          const gy = round(rng.array(size));
          const eps = 1e-5;
          const got = cf.scope(() => {
            const xt = cf.fromArray(x, shape, { device, dtype, requiresGrad: true });
            const wt = w ? cf.fromArray(w, [d], { device, dtype, requiresGrad: true }) : null;
            const bt = b ? cf.fromArray(b, [d], { device, dtype, requiresGrad: true }) : null;
            const y = cf.layerNorm(xt, wt, bt, eps);
            y.backward(cf.fromArray(gy, shape, { device, dtype }));
            return { shape: [...y.shape], y: y.toArray(), dx: xt.grad!.toArray(), dw: wt?.grad!.toArray(), db: bt?.grad!.toArray() };
          });
          const ref = layerNormRef(x, w, b, gy, d, eps);
          const what = `${JSON.stringify(shape)} ${JSON.stringify(mode)} ${dtype} on ${device}`;
          assert.equal(got.shape, shape);
          const f32 = dtype === 'f32';
          assertClose(got.y, ref.y, { rtol: f32 ? 1e-5 : 1e-2, atol: f32 ? 1e-5 : 3e-2, what: `${what} y` });
          assertClose(got.dx, ref.dx, { rtol: f32 ? 1e-4 : 2e-2, atol: f32 ? 1e-5 : 5e-2, what: `${what} dx` });
          // dweight / dbias sum over rows: tolerances scale with sqrt(rows).
          const rowsScale = Math.sqrt(size / d);
          if (w) assertClose(got.dw!, ref.dw, { rtol: f32 ? 1e-4 : 2e-2, atol: (f32 ? 1e-4 : 3e-2) * rowsScale, what: `${what} dweight` });
          if (b) assertClose(got.db!, ref.db, { rtol: f32 ? 1e-4 : 2e-2, atol: (f32 ? 1e-4 : 3e-2) * rowsScale, what: `${what} dbias` });
        }
      }
    }
  }
});

test('gradients for x, weight and bias match finite differences', () => {
  for (const shape of [[4, 5], [2, 3, 3], [3, 1]]) {
    const d = shape[shape.length - 1]!;
    const x = { data: rng.array(numelOf(shape)), shape };
    const w = { data: rng.array(d).map((v) => v + 1), shape: [d] };
    const b = { data: rng.array(d), shape: [d] };
    gradCheck((xt, wt, bt) => cf.layerNorm(xt, wt, bt), [x, w, b]);
    gradCheck((xt, wt) => cf.layerNorm(xt, wt, null, 1e-3), [x, w]);
    gradCheck((xt, bt) => cf.layerNorm(xt, null, bt), [x, b]);
    gradCheck((xt) => cf.layerNorm(xt), [x]);
  }
});

test('only the gradients that are needed are computed', () => {
  const r = cf.scope(() => {
    const x = cf.fromArray(rng.array(12), [3, 4]);
    const w = cf.fromArray(rng.array(4), [4], { requiresGrad: true });
    const b = cf.fromArray(rng.array(4), [4]);
    cf.sum(cf.layerNorm(x, w, b)).backward();
    return { xg: x.grad, wg: w.grad?.shape, bg: b.grad };
  });
  assert.is(r.xg, null);
  assert.equal(r.wg, [4]);
  assert.is(r.bg, null);
});

test('an empty batch gives an empty output and zero parameter gradients', () => {
  for (const device of devices()) {
    const r = cf.scope(() => {
      const w = cf.fromArray([1, 2, 3], [3], { device, requiresGrad: true });
      const b = cf.fromArray([0, 0, 0], [3], { device, requiresGrad: true });
      const y = cf.layerNorm(cf.zeros([0, 3], { device }), w, b);
      cf.sum(y).backward();
      return { shape: [...y.shape], dw: Array.from(w.grad!.toArray()), db: Array.from(b.grad!.toArray()) };
    });
    assert.equal(r, { shape: [0, 3], dw: [0, 0, 0], db: [0, 0, 0] });
  }
});

test('weight and bias gradients do not depend on the thread count', () => {
  const shape = [1000, 96];
  const x = rng.array(numelOf(shape));
  const gy = rng.array(numelOf(shape));
  const run = (): number[][] =>
    cf.scope(() => {
      const w = cf.fromArray(rng.array(96), [96], { requiresGrad: true });
      const b = cf.fromArray(rng.array(96), [96], { requiresGrad: true });
      cf.layerNorm(cf.fromArray(x, shape), w, b).backward(cf.fromArray(gy, shape));
      return [Array.from(w.grad!.toArray()), Array.from(b.grad!.toArray())];
    });
  const threads = cf.backendInfo().threads;
  try {
    cf.setNumThreads(1);
    const one = run();
    cf.setNumThreads(Math.max(2, threads));
    assert.equal(run(), one);
  } finally {
    cf.setNumThreads(threads);
  }
});

test('outDtype bf16 writes an f32 x\'s rows rounded once; its bf16 gradient gives the f32 gradients of the same numbers', () => {
  for (const device of devices()) {
    for (const shape of [[3, 1], [7, 33], [300, 768], [2, 3000]]) {
      const n = shape[shape.length - 1]!;
      const x = rng.array(numelOf(shape), 2);
      const w = rng.array(n), b = rng.array(n);
      const dyValues = roundBf16(rng.array(numelOf(shape)));
      const run = (outDtype: cf.DType | null, dyDtype: cf.DType) => cf.scope(() => {
        const xt = cf.fromArray(x, shape, { device, requiresGrad: true });
        const wt = cf.fromArray(w, [n], { device, requiresGrad: true });
        const bt = cf.fromArray(b, [n], { device, requiresGrad: true });
        const y = cf.layerNorm(xt, wt, bt, 1e-5, outDtype);
        y.backward(cf.fromArray(dyValues, shape, { device, dtype: dyDtype }));
        const r = { dtype: y.dtype, y: y.toArray() as Float32Array, grads: [xt, wt, bt].map((t) => ({ dtype: t.grad!.dtype, v: t.grad!.toArray() as Float32Array })) };
        for (const t of [xt, wt, bt]) t.dispose();
        return r;
      });
      const low = run('bf16', 'bf16'), full = run(null, 'f32');
      const what = `${JSON.stringify(shape)} on ${device}`;
      assert.is(low.dtype, 'bf16', what);
      assert.equal(Array.from(low.y), Array.from(roundBf16(full.y)), `${what}: y is the f32 result rounded once`);
      low.grads.forEach((g, i) => {
        assert.is(g.dtype, 'f32', `${what}: gradient ${i} is f32`);
        assertClose(g.v, full.grads[i]!.v, { rtol: 1e-5, atol: 1e-5, what: `${what}: gradient ${i}` });
      });
    }
  }
});

test('a pre-norm residual x + f(LN(x)): the norm adds its input gradient into the residual\'s in place', () => {
  const [rows, d] = [5, 24];
  const xs = rng.array(rows * d), ws = rng.array(d), bs = rng.array(d), coef = rng.array(rows * d);
  for (const device of devices()) {
    for (const [dtype, outDtype] of [['f32', null], ['f32', 'bf16'], ['bf16', null]] as const) {
      // asNode: x reaches the block through an op (as in a model), so its gradient is pending
      // there and the norm can add into it; as a leaf the engine sums the two gradients.
      const run = (asNode: boolean): { grad: Float32Array; calls: string[] } =>
        cf.scope(() => {
          const x = cf.fromArray(xs, [rows, d], { device, dtype, requiresGrad: true });
          const h = asNode ? cf.mul(x, 1) : x;
          const w = cf.fromArray(ws, [d], { device, dtype }), b = cf.fromArray(bs, [d], { device, dtype });
          const branch = cf.mul(cf.cast(cf.layerNorm(h, w, b, 1e-5, outDtype), dtype), cf.fromArray(coef, [rows, d], { device, dtype }));
          const y = cf.add(h, branch);
          const { calls } = recordNativeCalls({ binary: (a) => `binary ${a[0]}`, layerNormBackward: (a) => `layerNormBackward accumulate=${a[8]}` }, () =>
            y.backward(cf.ones([rows, d], { device, dtype })),
          );
          return { grad: x.grad!.toArray() as Float32Array, calls };
        });
      const inPlace = run(true), summed = run(false);
      const what = `${dtype} x${outDtype ? `, ${outDtype} y` : ''} on ${device}`;
      assert.ok(inPlace.calls.includes('layerNormBackward accumulate=true'), `${what}: ${inPlace.calls.join(', ')}`);
      assert.not.ok(inPlace.calls.includes('binary add'), `no separate sum, ${what}: ${inPlace.calls.join(', ')}`);
      assert.ok(summed.calls.includes('layerNormBackward accumulate=false') && summed.calls.includes('binary add'), `the leaf's sum, ${what}`);
      const tol = dtype === 'f32' ? 1e-6 : 1e-2;
      assertClose(inPlace.grad, summed.grad, { rtol: tol, atol: tol, what });
    }
  }
});

test('bad arguments throw errors naming the op and the argument', () => {
  cf.scope(() => {
    assert.throws(() => cf.layerNorm(cf.zeros([2, 4], { dtype: 'bf16' }), null, null, 1e-5, 'f32'), /layerNorm: expected null or 'bf16' for a bf16 x \(only f32 rows can be written as bf16\) for outDtype, got 'f32'/);
    assert.throws(() => cf.layerNorm(cf.zeros([2, 4]), null, null, 1e-5, 'i32'), /layerNorm: expected 'f32', 'bf16' or null for outDtype, got 'i32'/);
    assert.throws(() => cf.native.layerNorm(cf.zeros([2, 4], { dtype: 'bf16' }), null, null, cf.zeros([2, 4]), cf.zeros([2]), cf.zeros([2]), 1e-5), /layerNorm: expected dtype bf16 for y \(x is bf16\), got f32/);
  });
  cf.scope(() => {
    const x = cf.zeros([3, 4]);
    assert.throws(() => cf.layerNorm(x, cf.zeros([5])), /layerNorm: expected shape \[4\] for weight, got \[5\]/);
    assert.throws(() => cf.layerNorm(x, null, cf.zeros([4, 1])), /layerNorm: expected shape \[4\] for bias, got \[4, 1\]/);
    assert.throws(() => cf.layerNorm(x, cf.zeros([4], { dtype: 'bf16' })), /layerNorm: expected x and weight of the same dtype, got f32 and bf16/);
    assert.throws(() => cf.layerNorm(x, null, null, -1), /layerNorm: expected a finite number >= 0 for eps, got -1 of type number/);
    assert.throws(() => cf.layerNorm(x, null, null, NaN), /layerNorm: expected a finite number >= 0 for eps, got NaN/);
    assert.throws(() => cf.layerNorm(cf.zeros([]), null, null), /layerNorm: expected at least one dimension for x.shape/);
    assert.throws(() => cf.layerNorm(cf.zeros([2], { dtype: 'i32' })), /layerNorm: expected dtype 'f32' or 'bf16' for x/);
    const y = cf.zeros([3, 4]);
    const mean = cf.zeros([3]);
    const rstd = cf.zeros([3]);
    assert.throws(() => cf.native.layerNorm(x, null, null, y, mean, rstd, NaN), /layerNorm: expected a finite number for eps, got nan/);
    assert.throws(() => cf.native.layerNorm(x, null, null, y, mean, rstd, -1), /layerNorm: expected a finite number >= 0 for eps, got -1/);
    assert.throws(() => cf.native.layerNorm(x, null, null, y, cf.zeros([3], { dtype: 'bf16' }), rstd, 1e-5), /layerNorm: expected f32 for mean.dtype, got bf16/);
    assert.throws(() => cf.native.layerNorm(x, null, null, y, mean, cf.zeros([4]), 1e-5), /layerNorm: expected \[3\] for rstd.shape, got \[4\]/);
    assert.throws(() => cf.native.layerNorm(x, 'w' as never, null, y, mean, rstd, 1e-5), /layerNorm: expected a Tensor for weight, got 'w'/);
    assert.throws(() => cf.native.layerNorm(x, null, null, x, mean, rstd, 1e-5), /must not share memory with x/);
    assert.throws(() => cf.native.layerNormBackward(x, null, mean, rstd, y, null, cf.zeros([3]), null, false), /layerNormBackward: expected \[4\] for dweight.shape, got \[3\]/);
    assert.throws(() => cf.native.layerNormBackward(x, null, mean, rstd, y, y, null, null, false), /must not share memory with dy/);
    assert.throws(() => cf.native.layerNormBackward(x, null, mean, rstd, y, null, null, cf.zeros([4]), true), /layerNormBackward: expected false when dx is null for accumulate, got true/);
  });
});

test.run();
