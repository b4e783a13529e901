import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, gradCheck, numelOf, Rng } from '../support/helpers.js';

const test = suite('l2norm');
const rng = new Rng(51);

/** F.normalize(x, dim=-1) and the gradient of sum(y * gy), in f64. */
function l2Ref(x: ArrayLike<number>, gy: ArrayLike<number>, d: number, eps: number): { y: number[]; dx: number[] } {
  const y: number[] = [];
  const dx: number[] = [];
  for (let r = 0; r < x.length / d; r++) {
    let ss = 0, dot = 0;
    for (let i = 0; i < d; i++) {
      ss += x[r * d + i]! ** 2;
      dot += x[r * d + i]! * gy[r * d + i]!;
    }
    const n = Math.sqrt(ss);
    for (let i = 0; i < d; i++) {
      const k = r * d + i;
      y.push(x[k]! / Math.max(n, eps));
      dx.push(n >= eps ? gy[k]! / n - (x[k]! * dot) / n ** 3 : gy[k]! / eps);
    }
  }
  return { y, dx };
}

const roundBf16 = (a: Float32Array): Float32Array => cf.scope(() => cf.fromArray(a, [a.length], { dtype: 'bf16' }).toArray() as Float32Array);

const shapes = [[1, 1], [4, 1], [6], [3, 7], [2, 3, 33], [4, 512], [2, 1025], [2, 3000], rng.shape(3, 20)];

test('forward and gradient match the f64 reference on every backend, f32 and bf16', () => {
  for (const device of devices()) {
    for (const shape of shapes) {
      const d = shape[shape.length - 1]!;
      const size = numelOf(shape);
      for (const dtype of ['f32', 'bf16'] as const) {
        const round = (a: Float32Array): Float32Array => (dtype === 'bf16' ? roundBf16(a) : a);
        const x = round(rng.array(size, 2));
        // A zero row: norm 0 < eps, the output is 0 and the gradient dy / eps.
        if (size / d > 1) x.fill(0, 0, d);
        const gy = round(rng.array(size));
        const eps = 1e-12;
        const got = cf.scope(() => {
          const xt = cf.fromArray(x, shape, { device, dtype, requiresGrad: true });
          const y = cf.l2Normalize(xt);
          y.backward(cf.fromArray(gy, shape, { device, dtype }));
          return { shape: [...y.shape], y: y.toArray(), dx: xt.grad!.toArray() };
        });
        const ref = l2Ref(x, gy, d, eps);
        const what = `${JSON.stringify(shape)} ${dtype} on ${device}`;
        assert.equal(got.shape, shape);
        const f32 = dtype === 'f32';
        assertClose(got.y, ref.y, { rtol: f32 ? 1e-5 : 1e-2, atol: f32 ? 1e-6 : 1e-2, what: `${what} y` });
        // The zero row's gradient is dy / 1e-12: compared relatively.
        assertClose(got.dx, ref.dx, { rtol: f32 ? 1e-4 : 2e-2, atol: f32 ? 1e-5 : 5e-2, what: `${what} dx` });
      }
    }
  }
});

test('gradient matches finite differences, with and without the eps clamp', () => {
  for (const shape of [[3, 4], [2, 1], [1, 7]]) {
    gradCheck((x) => cf.l2Normalize(x), [{ data: rng.array(numelOf(shape)), shape }]);
  }
  // Rows of norm about 0.1 under eps = 0.5: y = x / eps, a linear map.
  gradCheck((x) => cf.l2Normalize(x, 0.5), [{ data: rng.array(8, 0.04), shape: [2, 4] }]);
});

test('CLIP-style normalized embeddings have unit norm', () => {
  for (const device of devices()) {
    const x = rng.array(8 * 512, 5);
    const y = cf.scope(() => cf.l2Normalize(cf.fromArray(x, [8, 512], { device })).toArray());
    for (let r = 0; r < 8; r++) {
      let s = 0;
      for (let i = 0; i < 512; i++) s += y[r * 512 + i]! ** 2;
      assertClose([s], [1], { rtol: 1e-5, what: `row ${r} on ${device}` });
    }
  }
});

test('bad arguments throw errors naming the op and the argument', () => {
  cf.scope(() => {
    const x = cf.zeros([3, 4]);
    assert.throws(() => cf.l2Normalize(x, -1), /l2Normalize: expected a finite number >= 0 for eps, got -1 of type number/);
    assert.throws(() => cf.l2Normalize(x, Infinity), /l2Normalize: expected a finite number >= 0 for eps, got Infinity/);
    assert.throws(() => cf.l2Normalize(cf.zeros([3, 0])), /l2Normalize: expected a last axis of size >= 1 for x.shape, got \[3, 0\]/);
    assert.throws(() => cf.l2Normalize(cf.zeros([3], { dtype: 'i32' })), /l2Normalize: expected dtype 'f32' or 'bf16' for x/);
    const y = cf.zeros([3, 4]);
    const norm = cf.zeros([3]);
    assert.throws(() => cf.native.l2Normalize(x, y, norm, NaN), /l2Normalize: expected a finite number for eps, got nan/);
    assert.throws(() => cf.native.l2Normalize(x, y, cf.zeros([3, 1]), 1e-12), /l2Normalize: expected \[3\] for norm.shape, got \[3, 1\]/);
    assert.throws(() => cf.native.l2Normalize(x, cf.zeros([12]), norm, 1e-12), /l2Normalize: expected \[3, 4\] for y.shape, got \[12\]/);
    assert.throws(() => cf.native.l2NormalizeBackward(x, norm, y, y, 1e-12), /must not share memory with dy/);
    assert.throws(() => cf.native.l2NormalizeBackward(x, norm, y, cf.zeros([3, 4], { dtype: 'bf16' }), 1e-12), /same dtype/);
  });
});

test.run();
