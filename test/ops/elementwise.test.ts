import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { assertClose, devices, gradCheck, Rng, numelOf } from '../support/helpers.js';

const test = suite('elementwise');
const rng = new Rng(7);

const erf = (x: number): number => {
  // Abramowitz-Stegun 7.1.26 is too coarse for 1e-5; integrate the series instead.
  let sum = x, term = x;
  for (let n = 1; n < 60; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
};

const unaryRef: Record<string, (x: number) => number> = {
  neg: (x) => -x,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  abs: Math.abs,
  square: (x) => x * x,
  reciprocal: (x) => 1 / x,
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  tanh: Math.tanh,
  relu: (x) => Math.max(0, x),
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  geluTanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  quickGelu: (x) => x / (1 + Math.exp(-1.702 * x)),
};

const unaryFn: Record<string, (x: cf.Tensor) => cf.Tensor> = {
  neg: cf.neg, exp: cf.exp, log: cf.log, sqrt: cf.sqrt, rsqrt: cf.rsqrt, abs: cf.abs, square: cf.square,
  reciprocal: cf.reciprocal, sigmoid: cf.sigmoid, tanh: cf.tanh, relu: cf.relu,
  gelu: (x) => cf.gelu(x), geluTanh: (x) => cf.gelu(x, { approximate: 'tanh' }), quickGelu: cf.quickGelu,
};

const positiveOnly = new Set(['log', 'sqrt', 'rsqrt', 'reciprocal']);

for (const name of Object.keys(unaryRef)) {
  test(`${name} matches the reference on every backend, f32 and bf16`, () => {
    for (const device of devices()) {
      const shape = rng.shape(3);
      const data = rng.array(numelOf(shape), 2).map((v) => (positiveOnly.has(name) ? Math.abs(v) + 0.2 : v));
      const y = cf.scope(() => unaryFn[name]!(cf.fromArray(data, shape, { device })).toArray());
      assertClose(y, Array.from(data, unaryRef[name]!), { rtol: 2e-5, atol: 1e-6, what: `${name} on ${device}` });
      const yb = cf.scope(() => unaryFn[name]!(cf.fromArray(data, shape, { device, dtype: 'bf16' })).toArray());
      const xb = cf.scope(() => cf.fromArray(data, shape, { dtype: 'bf16' }).toArray());
      assertClose(yb, Array.from(xb, unaryRef[name]!), { rtol: 1e-2, atol: 1e-2, what: `${name} bf16 on ${device}` });
    }
  });

  test(`${name} gradient matches finite differences`, () => {
    const shape = [3, 4];
    const data = rng.array(12, 1.5).map((v) => (positiveOnly.has(name) ? Math.abs(v) + 0.5 : name === 'abs' || name === 'relu' ? v + Math.sign(v) * 0.05 : v));
    gradCheck(unaryFn[name]!, [{ data, shape }]);
  });
}

test('pow, clamp and affine with scalars, and their gradients', () => {
  const data = rng.array(10).map((v) => Math.abs(v) + 0.3);
  for (const device of devices()) {
    const r = cf.scope(() => [cf.pow(cf.fromArray(data, [10], { device }), 2.5).toArray(), cf.clamp(cf.fromArray(data, [10], { device }), 0.5, 1).toArray(), cf.affine(cf.fromArray(data, [10], { device }), -2, 3).toArray()]);
    assertClose(r[0]!, Array.from(data, (v) => v ** 2.5), { rtol: 1e-5 });
    assertClose(r[1]!, Array.from(data, (v) => Math.min(Math.max(v, 0.5), 1)));
    assertClose(r[2]!, Array.from(data, (v) => -2 * v + 3), { rtol: 1e-6 });
  }
  gradCheck((x) => cf.pow(x, 2.5), [{ data, shape: [10] }]);
  gradCheck((x) => cf.affine(x, -2, 3), [{ data, shape: [10] }]);
  assert.throws(() => cf.clamp(cf.fromArray([1]), 2, 1), /min <= max/);
  assert.throws(() => cf.pow(cf.fromArray([1]), NaN), /exponent/);
});

const binaryRef: Record<string, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  maximum: (a, b) => Math.max(a, b),
  minimum: (a, b) => Math.min(a, b),
};
const binaryFn: Record<string, (a: cf.Tensor, b: cf.Tensor) => cf.Tensor> = {
  add: cf.add, sub: cf.sub, mul: cf.mul, div: cf.div, maximum: cf.maximum, minimum: cf.minimum,
};

/** Naive broadcast reference in JS. */
function broadcastRef(f: (a: number, b: number) => number, a: Float32Array, as: number[], b: Float32Array, bs: number[]): { out: number[]; shape: number[] } {
  const r = Math.max(as.length, bs.length);
  const pa = [...Array(r - as.length).fill(1), ...as];
  const pb = [...Array(r - bs.length).fill(1), ...bs];
  const shape = pa.map((d, i) => Math.max(d, pb[i]!));
  const out: number[] = [];
  const n = numelOf(shape);
  for (let i = 0; i < n; i++) {
    let rem = i, ia = 0, ib = 0, sa = 1, sb = 1;
    for (let d = r - 1; d >= 0; d--) {
      const k = rem % shape[d]!;
      rem = Math.floor(rem / shape[d]!);
      ia += (pa[d] === 1 ? 0 : k) * sa;
      ib += (pb[d] === 1 ? 0 : k) * sb;
      sa *= pa[d]!;
      sb *= pb[d]!;
    }
    out.push(f(a[ia]!, b[ib]!));
  }
  return { out, shape };
}

function broadcastPair(): [number[], number[]] {
  const full = rng.shape(rng.int(1, 4), 5);
  const b = full.slice(rng.int(0, full.length - 1)).map((d) => (rng.next() < 0.4 ? 1 : d));
  const a = full.map((d) => (rng.next() < 0.2 ? 1 : d));
  return rng.next() < 0.5 ? [a, b] : [b, a];
}

for (const name of Object.keys(binaryRef)) {
  test(`${name} broadcasts like numpy on every backend`, () => {
    for (const device of devices()) {
      for (let trial = 0; trial < 6; trial++) {
        const [as, bs] = broadcastPair();
        const a = rng.array(numelOf(as));
        const b = rng.array(numelOf(bs)).map((v) => (name === 'div' ? Math.sign(v) * (Math.abs(v) + 0.5) : v));
        const ref = broadcastRef(binaryRef[name]!, a, as, b, bs);
        const y = cf.scope(() => {
          const t = binaryFn[name]!(cf.fromArray(a, as, { device }), cf.fromArray(b, bs, { device }));
          return { shape: [...t.shape], values: t.toArray() };
        });
        assert.equal(y.shape, ref.shape, `${name} ${JSON.stringify(as)} x ${JSON.stringify(bs)}`);
        assertClose(y.values, ref.out, { rtol: 1e-6, what: `${name} ${JSON.stringify(as)} x ${JSON.stringify(bs)} on ${device}` });
      }
    }
  });

  test(`${name} gradients (with broadcasting) match finite differences`, () => {
    for (let trial = 0; trial < 3; trial++) {
      const [as, bs] = broadcastPair();
      // maximum/minimum: values on interleaved grids keep every pair 0.25 apart, away from the kink.
      const kinked = name === 'maximum' || name === 'minimum';
      const a = rng.array(numelOf(as)).map((v) => (kinked ? Math.round(v * 4) / 2 : v));
      const b = rng.array(numelOf(bs)).map((v) => (name === 'div' ? Math.sign(v) * (Math.abs(v) + 0.5) : kinked ? Math.round(v * 4) / 2 + 0.25 : v));
      gradCheck(binaryFn[name]!, [{ data: a, shape: as }, { data: b, shape: bs }]);
    }
  });
}

test('f32 with bf16 operands gives f32 (PyTorch promotion) with gradients in each operand\'s dtype, on every backend', () => {
  for (const device of devices()) {
    for (const name of Object.keys(binaryRef)) {
      for (const bf16Side of [0, 1] as const) {
        const [as, bs] = broadcastPair();
        const a = rng.array(numelOf(as));
        const b = rng.array(numelOf(bs)).map((v) => (name === 'div' ? Math.sign(v) * (Math.abs(v) + 0.5) : v));
        const what = `${name} ${bf16Side === 0 ? 'bf16' : 'f32'}${JSON.stringify(as)} x ${bf16Side === 1 ? 'bf16' : 'f32'}${JSON.stringify(bs)} on ${device}`;
        const rounded = (data: ArrayLike<number>, shape: number[]): number[] => cf.scope(() => Array.from(cf.fromArray(data, shape, { dtype: 'bf16' }).toArray()));
        const aVals = bf16Side === 0 ? rounded(a, as) : Array.from(a);
        const bVals = bf16Side === 1 ? rounded(b, bs) : Array.from(b);
        const ref = broadcastRef(binaryRef[name]!, Float32Array.from(aVals), as, Float32Array.from(bVals), bs);
        // The reference gradients: the same op all in f32 on the rounded values, upstream gradient 1.
        const want = cf.scope(() => {
          const ta = cf.fromArray(aVals, as, { requiresGrad: true });
          const tb = cf.fromArray(bVals, bs, { requiresGrad: true });
          cf.sum(binaryFn[name]!(ta, tb)).backward();
          const r = [Array.from(ta.grad!.toArray()), Array.from(tb.grad!.toArray())];
          ta.dispose();
          tb.dispose();
          return r;
        });
        const got = cf.scope(() => {
          const ta = cf.fromArray(a, as, { device, dtype: bf16Side === 0 ? 'bf16' : 'f32', requiresGrad: true });
          const tb = cf.fromArray(b, bs, { device, dtype: bf16Side === 1 ? 'bf16' : 'f32', requiresGrad: true });
          const y = binaryFn[name]!(ta, tb);
          assert.is(y.dtype, 'f32', what);
          const values = Array.from(y.toArray());
          cf.sum(y).backward();
          const r = { values, grads: [ta.grad!, tb.grad!].map((g) => ({ dtype: g.dtype, values: Array.from(g.toArray()) })) };
          ta.dispose();
          tb.dispose();
          return r;
        });
        assertClose(got.values, ref.out, { rtol: 1e-6, what });
        got.grads.forEach((g, side) => {
          assert.is(g.dtype, side === bf16Side ? 'bf16' : 'f32', `${what}: dtype of gradient ${side}`);
          assertClose(g.values, side === bf16Side ? rounded(want[side]!, side === 0 ? as : bs) : want[side]!, { rtol: 1e-5, atol: 1e-6, what: `${what}: gradient ${side}` });
        });
      }
    }
  }
});

test('scalar operands and in-graph reuse of one tensor', () => {
  const data = rng.array(6).map((v) => v + 3);
  const y = cf.scope(() => [cf.add(cf.fromArray(data), 2), cf.sub(1, cf.fromArray(data)), cf.mul(cf.fromArray(data), 3), cf.div(2, cf.fromArray(data))].map((t) => t.toArray()));
  assertClose(y[0]!, Array.from(data, (v) => v + 2));
  assertClose(y[1]!, Array.from(data, (v) => 1 - v));
  assertClose(y[2]!, Array.from(data, (v) => v * 3));
  assertClose(y[3]!, Array.from(data, (v) => 2 / v), { rtol: 1e-6 });
  gradCheck((x) => cf.div(2, cf.mul(x, x)), [{ data, shape: [6] }]);
  assert.throws(() => cf.add(1 as never, 2 as never), /at least one Tensor/);
});

test('bad operands throw errors that name the op and the shapes', () => {
  cf.scope(() => {
    const a = cf.zeros([2, 3]);
    assert.throws(() => cf.add(a, cf.zeros([4])), /add: shapes \[2, 3\] and \[4\] do not broadcast/);
    assert.throws(() => cf.mul(a, cf.zeros([2, 3], { dtype: 'i32' })), /mul: expected dtype 'f32' or 'bf16' for b/);
    assert.throws(() => native.binary('add', a, cf.zeros([2, 3], { dtype: 'bf16' }), cf.zeros([2, 3], { dtype: 'bf16' })), /binary: expected dtype f32 for out \(a is f32, b bf16\), got bf16/);
    assert.throws(() => cf.exp(cf.zeros([2], { dtype: 'i32' })), /exp: expected dtype 'f32' or 'bf16' for x/);
    const d = cf.zeros([2, 3]);
    d.dispose();
    assert.throws(() => cf.add(a, d), /disposed/);
    assert.throws(() => cf.exp('x' as never), /exp: expected a Tensor for x/);
  });
});

test.run();
