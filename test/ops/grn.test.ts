import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, gradCheck, Rng } from '../support/helpers.js';

const test = suite('grn');
const rng = new Rng(41);

// GRN in float64 over x [N, H, W, C]: norms over H and W, divided by their channel mean.
function reference(x: ArrayLike<number>, n: number, hw: number, c: number, gamma: ArrayLike<number>, beta: ArrayLike<number> | null): Float64Array {
  const y = new Float64Array(x.length);
  for (let b = 0; b < n; b++) {
    const norms = new Float64Array(c);
    for (let p = 0; p < hw; p++) for (let k = 0; k < c; k++) norms[k] += x[(b * hw + p) * c + k]! ** 2;
    for (let k = 0; k < c; k++) norms[k] = Math.sqrt(norms[k]!);
    const meanNorm = norms.reduce((a, v) => a + v, 0) / c;
    for (let p = 0; p < hw; p++)
      for (let k = 0; k < c; k++) {
        const i = (b * hw + p) * c + k;
        y[i] = (gamma[k]! * (norms[k]! / (meanNorm + 1e-6)) + 1) * x[i]! + (beta ? beta[k]! : 0);
      }
  }
  return y;
}

test('matches the definition, with and without beta, gamma as [C] or [1, 1, 1, C]', () => {
  for (const device of devices()) {
    const [n, h, w, c] = [2, 3, 4, 5];
    const xs = rng.array(n * h * w * c), gs = rng.array(c), bs = rng.array(c);
    cf.scope(() => {
      const x = cf.fromArray(xs, [n, h, w, c], { device });
      const y = cf.grn(x, cf.fromArray(gs, [1, 1, 1, c], { device }), cf.fromArray(bs, [1, 1, 1, c], { device }));
      assertClose(y.toArray(), reference(xs, n, h * w, c, gs, bs), { rtol: 1e-5, atol: 1e-5, what: `with beta on ${device}` });
      const y2 = cf.grn(x, cf.fromArray(gs, [c], { device }));
      assertClose(y2.toArray(), reference(xs, n, h * w, c, gs, null), { rtol: 1e-5, atol: 1e-5, what: `without beta on ${device}` });
    });
  }
});

test('zero gamma and beta (the initialization) make it the identity', () => {
  cf.scope(() => {
    const x = cf.fromArray(rng.array(2 * 2 * 2 * 3), [2, 2, 2, 3]);
    assertClose(cf.grn(x, cf.zeros([1, 1, 1, 3]), cf.zeros([1, 1, 1, 3])).toArray(), x.toArray(), { rtol: 0, atol: 0 });
  });
});

test('gradients match finite differences for x, gamma and beta', () => {
  const [n, h, w, c] = [2, 2, 3, 4];
  gradCheck((x, g, b) => cf.grn(x, g, b), [
    { data: rng.array(n * h * w * c), shape: [n, h, w, c] },
    { data: rng.array(c), shape: [1, 1, 1, c] },
    { data: rng.array(c), shape: [1, 1, 1, c] },
  ]);
});

test('bad arguments throw errors naming the op, the argument and the value', () => {
  cf.scope(() => {
    const x = cf.zeros([1, 2, 2, 4]);
    assert.throws(() => cf.grn(cf.zeros([2, 4]), cf.zeros([4])), /grn: expected a rank-4 tensor \[N, H, W, C\] for x, got \[2, 4\]/);
    assert.throws(() => cf.grn(x, cf.zeros([3])), /grn: expected shape \[C\] or \[1, 1, 1, C\] with C = 4 for gamma, got \[3\]/);
    assert.throws(() => cf.grn(x, cf.zeros([4]), cf.zeros([2, 2])), /grn: expected shape \[C\] or \[1, 1, 1, C\] with C = 4 for beta, got \[2, 2\]/);
  });
});

test.run();
