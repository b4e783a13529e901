import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, gradCheck, numelOf, Rng } from '../support/helpers.js';

const test = suite('softmax');
const rng = new Rng(21);

/** Softmax or log-softmax over rows of n, in f64. */
function softmaxRef(x: ArrayLike<number>, n: number, log: boolean): number[] {
  const out: number[] = [];
  for (let r = 0; r < x.length / n; r++) {
    let m = -Infinity;
    for (let i = 0; i < n; i++) m = Math.max(m, x[r * n + i]!);
    let s = 0;
    for (let i = 0; i < n; i++) s += Math.exp(x[r * n + i]! - m);
    for (let i = 0; i < n; i++) out.push(log ? x[r * n + i]! - m - Math.log(s) : Math.exp(x[r * n + i]! - m) / s);
  }
  return out;
}

/** Gradient of sum(y * gy) through softmax / log-softmax, in f64, from the reference output. */
function softmaxGradRef(y: number[], gy: ArrayLike<number>, n: number, log: boolean): number[] {
  const out: number[] = [];
  for (let r = 0; r < y.length / n; r++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += log ? gy[r * n + i]! : gy[r * n + i]! * y[r * n + i]!;
    for (let i = 0; i < n; i++) {
      const k = r * n + i;
      out.push(log ? gy[k]! - Math.exp(y[k]!) * s : y[k]! * (gy[k]! - s));
    }
  }
  return out;
}

const roundBf16 = (a: Float32Array): Float32Array => cf.scope(() => cf.fromArray(a, [a.length], { dtype: 'bf16' }).toArray() as Float32Array);

// Size-1 and odd dims, one warp's worth, just past it (a block per row on CUDA) and a long row.
const shapes = [[1], [1, 1], [5, 1], [3, 7], [2, 3, 33], [3, 1024], [2, 1025], [2, 3000], rng.shape(3), rng.shape(2, 40)];

for (const log of [false, true]) {
  const name = log ? 'logSoftmax' : 'softmax';
  const fn = log ? cf.logSoftmax : cf.softmax;

  test(`${name} forward and backward match the f64 reference on every backend, f32 and bf16`, () => {
    for (const device of devices()) {
      for (const shape of shapes) {
        const n = shape[shape.length - 1]!;
        const size = numelOf(shape);
        for (const dtype of ['f32', 'bf16'] as const) {
          const x = dtype === 'bf16' ? roundBf16(rng.array(size, 3)) : rng.array(size, 3);
          const gy = dtype === 'bf16' ? roundBf16(rng.array(size)) : rng.array(size);
          const got = cf.scope(() => {
            const xt = cf.fromArray(x, shape, { device, dtype, requiresGrad: true });
            const y = fn(xt);
            y.backward(cf.fromArray(gy, shape, { device, dtype }));
            return { shape: [...y.shape], y: y.toArray(), dx: xt.grad!.toArray() };
          });
          const yRef = softmaxRef(x, n, log);
          const what = `${name} ${JSON.stringify(shape)} ${dtype} on ${device}`;
          assert.equal(got.shape, shape);
          const tol = dtype === 'f32' ? { rtol: 1e-5, atol: 1e-6 } : { rtol: 1e-2, atol: 1e-2 };
          assertClose(got.y, yRef, { ...tol, what });
          assertClose(got.dx, softmaxGradRef(yRef, gy, n, log), { ...tol, atol: dtype === 'f32' ? 1e-5 : 2e-2, what: `${what} grad` });
        }
      }
    }
  });

  test(`${name} gradient matches finite differences`, () => {
    for (const shape of [[3, 5], [2, 1], [1, 9], [2, 2, 3]]) {
      gradCheck(fn, [{ data: rng.array(numelOf(shape)), shape }]);
    }
  });
}

test('softmax is stable for large logits and exact for -inf', () => {
  for (const device of devices()) {
    const r = cf.scope(() => {
      const x = cf.fromArray([1000, 1001, 1002, -Infinity, 0, -Infinity], [2, 3], { device });
      return { p: cf.softmax(x).toArray(), l: cf.logSoftmax(x).toArray() };
    });
    assertClose(r.p, [...softmaxRef([0, 1, 2], 3, false), 0, 1, 0], { rtol: 1e-6, what: `softmax on ${device}` });
    assertClose(r.l.slice(0, 3), softmaxRef([0, 1, 2], 3, true), { rtol: 1e-5, what: `logSoftmax on ${device}` });
    assert.is(r.p[3], 0);
    assert.is(r.p[5], 0);
    assert.is(r.l[4], 0);
    assert.is(r.l[3], -Infinity);
  }
});

test('softmax keeps relative accuracy down to tiny probabilities, and NaN stays in its row', () => {
  for (const device of devices()) {
    // Logits from -80 to 0: probabilities down to e^-80 (still normal floats).
    const x = Float32Array.from({ length: 161 }, (_, i) => -i / 2);
    const p = cf.scope(() => cf.softmax(cf.fromArray(x, [1, 161], { device })).toArray());
    assertClose(p, softmaxRef(x, 161, false), { rtol: 1e-5, atol: 0, what: `tiny probabilities on ${device}` });
    const r = cf.scope(() => cf.softmax(cf.fromArray([1, NaN, 2, 1, 2, 3], [2, 3], { device })).toArray());
    assert.ok(r.slice(0, 3).every(Number.isNaN), `NaN row on ${device}`);
    assertClose(r.slice(3), softmaxRef([1, 2, 3], 3, false), { rtol: 1e-6, what: `clean row on ${device}` });
  }
});

test('softmax rows sum to one', () => {
  for (const device of devices()) {
    const x = rng.array(4 * 3000, 10);
    const p = cf.scope(() => cf.softmax(cf.fromArray(x, [4, 3000], { device })).toArray());
    for (let r = 0; r < 4; r++) {
      let s = 0;
      for (let i = 0; i < 3000; i++) s += p[r * 3000 + i]!;
      assertClose([s], [1], { rtol: 1e-5, what: `row ${r} on ${device}` });
    }
  }
});

test('bad arguments throw errors naming the op and the argument', () => {
  cf.scope(() => {
    assert.throws(() => cf.softmax(cf.zeros([2], { dtype: 'i32' })), /softmax: expected dtype 'f32' or 'bf16' for x, got 'i32'/);
    assert.throws(() => cf.logSoftmax(cf.zeros([])), /logSoftmax: expected at least one dimension for x.shape, got \[\]/);
    assert.throws(() => cf.softmax(cf.zeros([2, 0])), /softmax: expected a last axis of size >= 1 for x.shape, got \[2, 0\]/);
    assert.throws(() => cf.softmax('x' as never), /softmax: expected a Tensor for x/);
    const x = cf.zeros([2, 3]);
    assert.throws(() => cf.native.softmax(x, cf.zeros([3, 2]), false), /softmax: expected \[2, 3\] for y.shape, got \[3, 2\]/);
    assert.throws(() => cf.native.softmax(x, cf.zeros([2, 3], { dtype: 'bf16' }), false), /same dtype/);
    assert.throws(() => cf.native.softmax(x, cf.zeros([2, 3]), 1 as never), /softmax: expected a boolean for log, got 1/);
    assert.throws(() => cf.native.softmax(x, x, false), /must not share memory/);
    assert.throws(() => cf.native.softmax({} as never, x, false), /softmax: expected a clipforge storage handle for x/);
    assert.throws(() => cf.native.softmaxBackward(x, cf.zeros([2, 4]), cf.zeros([2, 3]), false), /softmaxBackward: expected \[2, 3\] for dy.shape/);
  });
});

test.run();
