import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, gradCheck, Rng } from '../support/helpers.js';

const test = suite('batchnorm');
const rng = new Rng(31);

// Per-channel statistics over rows of x [rows, C], in float64.
function stats(x: ArrayLike<number>, c: number) {
  const rows = x.length / c;
  const mean = new Float64Array(c), biased = new Float64Array(c);
  for (let r = 0; r < rows; r++) for (let k = 0; k < c; k++) mean[k] += x[r * c + k]! / rows;
  for (let r = 0; r < rows; r++) for (let k = 0; k < c; k++) biased[k] += (x[r * c + k]! - mean[k]!) ** 2 / rows;
  return { mean, biased, unbiased: biased.map((v) => (v * rows) / (rows - 1)) };
}

function normalize(x: ArrayLike<number>, mean: ArrayLike<number>, variance: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number>, eps: number) {
  const c = mean.length;
  return Float64Array.from(x, (v, i) => ((v - mean[i % c]!) / Math.sqrt(variance[i % c]! + eps)) * w[i % c]! + b[i % c]!);
}

test('training: batch statistics normalize, running statistics move by momentum with the unbiased variance', () => {
  for (const device of devices()) {
    const shape = [3, 4, 5, 6];
    const c = 6;
    const xs = rng.array(3 * 4 * 5 * 6, 2).map((v, i) => v + (i % c));
    const ws = rng.array(c), bs = rng.array(c), rm = rng.array(c), rv = rng.array(c).map((v) => 1 + Math.abs(v));
    cf.scope(() => {
      const runningMean = cf.fromArray(rm, [c], { device });
      const runningVar = cf.fromArray(rv, [c], { device });
      const y = cf.batchNorm(cf.fromArray(xs, shape, { device }), cf.fromArray(ws, [c], { device }), cf.fromArray(bs, [c], { device }), runningMean, runningVar, {
        training: true,
        momentum: 0.25,
        eps: 1e-3,
      });
      const s = stats(xs, c);
      assert.equal([...y.shape], shape);
      assertClose(y.toArray(), normalize(xs, s.mean, s.biased, ws, bs, 1e-3), { rtol: 1e-4, atol: 1e-4, what: `y on ${device}` });
      assertClose(runningMean.toArray(), rm.map((v, k) => 0.75 * v + 0.25 * s.mean[k]!), { rtol: 1e-5, atol: 1e-5, what: 'running mean' });
      assertClose(runningVar.toArray(), rv.map((v, k) => 0.75 * v + 0.25 * s.unbiased[k]!), { rtol: 1e-5, atol: 1e-5, what: 'running var' });
    });
  }
});

test('eval: the running statistics normalize and stay unchanged', () => {
  for (const device of devices()) {
    const c = 5;
    const xs = rng.array(2 * 3 * 3 * c), ws = rng.array(c), bs = rng.array(c), rm = rng.array(c), rv = rng.array(c).map((v) => 0.5 + Math.abs(v));
    cf.scope(() => {
      const runningMean = cf.fromArray(rm, [c], { device });
      const runningVar = cf.fromArray(rv, [c], { device });
      const y = cf.batchNorm(cf.fromArray(xs, [2, 3, 3, c], { device }), cf.fromArray(ws, [c], { device }), cf.fromArray(bs, [c], { device }), runningMean, runningVar);
      assertClose(y.toArray(), normalize(xs, rm, rv, ws, bs, 1e-5), { rtol: 1e-5, atol: 1e-5, what: `y on ${device}` });
      assertClose(runningMean.toArray(), rm, { rtol: 0, atol: 0 });
      assertClose(runningVar.toArray(), rv, { rtol: 0, atol: 0 });
    });
  }
});

test('gradients match finite differences in training and eval modes', () => {
  const c = 3;
  const rm = cf.fromArray(rng.array(c), [c]);
  const rv = cf.fromArray(rng.array(c).map((v) => 1 + Math.abs(v)), [c]);
  const inputs = [
    { data: rng.array(2 * 3 * 2 * c), shape: [2, 3, 2, c] },
    { data: rng.array(c), shape: [c] },
    { data: rng.array(c), shape: [c] },
  ];
  for (const training of [true, false]) {
    gradCheck((x, w, b) => cf.batchNorm(x, w, b, rm, rv, { training, momentum: 0 }), inputs);
  }
  rm.dispose();
  rv.dispose();
});

test('bad arguments throw errors naming the op, the argument and the value', () => {
  cf.scope(() => {
    const v = cf.ones([4]);
    assert.throws(() => cf.batchNorm(cf.zeros([2, 2, 2, 4]), cf.ones([3]), v, v, v), /batchNorm: expected shape \[4\] for weight, got \[3\]/);
    assert.throws(() => cf.batchNorm(cf.zeros([4]), v, v, v, v), /batchNorm: expected a tensor \[\.\.\., C\] of rank >= 2 for x, got \[4\]/);
    assert.throws(() => cf.batchNorm(cf.zeros([1, 4]), v, v, v, v, { training: true }), /batchNorm: expected more than one value per channel in training/);
    assert.throws(() => cf.batchNorm(cf.zeros([2, 4]), v, v, v, v, { momentum: 2 }), /batchNorm: expected a number in \[0, 1\] for momentum, got 2/);
    assert.throws(() => cf.batchNorm(cf.zeros([2, 4]), v, v, v, v, { eps: -1 }), /batchNorm: expected a finite number >= 0 for eps, got -1/);
    assert.throws(() => cf.batchNorm(cf.zeros([2, 4]), v, v, cf.zeros([4], { dtype: 'bf16' }), v), /batchNorm: expected x and runningMean of the same dtype/);
  });
});

test.run();
