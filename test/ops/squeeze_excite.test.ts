import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, gradCheck, maxRelError, Rng } from '../support/helpers.js';

const test = suite('squeeze_excite');
const rng = new Rng(51);

// SEBlock in float64: pooled [N, C] -> down [R] -> ReLU -> up [C] -> sigmoid -> rescale x.
function reference(x: ArrayLike<number>, n: number, hw: number, c: number, dw: ArrayLike<number>, db: ArrayLike<number>, uw: ArrayLike<number>, ub: ArrayLike<number>): Float64Array {
  const r = db.length;
  const y = new Float64Array(x.length);
  for (let b = 0; b < n; b++) {
    const pooled = new Float64Array(c);
    for (let p = 0; p < hw; p++) for (let k = 0; k < c; k++) pooled[k] += x[(b * hw + p) * c + k]! / hw;
    const hidden = Float64Array.from({ length: r }, (_, j) => Math.max(0, db[j]! + pooled.reduce((a, v, k) => a + dw[j * c + k]! * v, 0)));
    const gate = Float64Array.from({ length: c }, (_, k) => 1 / (1 + Math.exp(-(ub[k]! + hidden.reduce((a, v, j) => a + uw[k * r + j]! * v, 0)))));
    for (let p = 0; p < hw; p++) for (let k = 0; k < c; k++) y[(b * hw + p) * c + k] = x[(b * hw + p) * c + k]! * gate[k]!;
  }
  return y;
}

test('matches pool -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid -> scale', () => {
  for (const device of devices()) {
    const [n, h, w, c, r] = [2, 3, 3, 8, 2];
    const xs = rng.array(n * h * w * c), dw = rng.array(r * c), db = rng.array(r), uw = rng.array(c * r), ub = rng.array(c);
    cf.scope(() => {
      const t = (d: Float32Array, s: number[]) => cf.fromArray(d, s, { device });
      const y = cf.squeezeExcite(t(xs, [n, h, w, c]), t(dw, [r, c, 1, 1]), t(db, [r]), t(uw, [c, r, 1, 1]), t(ub, [c]));
      assertClose(y.toArray(), reference(xs, n, h * w, c, dw, db, uw, ub), { rtol: 1e-5, atol: 1e-5, what: device });
    });
  }
});

test('gradients match finite differences for x and every weight and bias', () => {
  const [n, h, w, c, r] = [2, 2, 2, 4, 2];
  gradCheck((x, dw, db, uw, ub) => cf.squeezeExcite(x, dw, db, uw, ub), [
    { data: rng.array(n * h * w * c), shape: [n, h, w, c] },
    { data: rng.array(r * c), shape: [r, c, 1, 1] },
    { data: rng.array(r).map((v) => v + 0.5), shape: [r] },
    { data: rng.array(c * r), shape: [c, r, 1, 1] },
    { data: rng.array(c), shape: [c] },
  ]);
});

test('bf16 x beside f32 weights (autocast): y and gradients close to f32, y and dx in bf16, on every backend', () => {
  const [n, h, w, c, r] = [3, 5, 4, 70, 9];
  const xs = rng.array(n * h * w * c), ws = [rng.array(r * c), rng.array(r), rng.array(c * r), rng.array(c)], dys = rng.array(n * h * w * c);
  const shapes = [[r, c, 1, 1], [r], [c, r, 1, 1], [c]];
  const run = (device: string, dtype: 'f32' | 'bf16') =>
    cf.scope(() => {
      const x = cf.fromArray(xs, [n, h, w, c], { device, dtype, requiresGrad: true });
      const params = ws.map((v, i) => cf.fromArray(v, shapes[i]!, { device, requiresGrad: true }));
      const y = cf.autocast(dtype === 'bf16' ? 'bf16' : null, () => cf.squeezeExcite(x, params[0]!, params[1]!, params[2]!, params[3]!));
      y.backward(cf.fromArray(dys, y.shape, { device, dtype }));
      assert.is(y.dtype, dtype);
      assert.is(x.grad!.dtype, dtype);
      return [y.toArray(), x.grad!.toArray(), ...params.map((p) => p.grad!.toArray())];
    });
  const names = ['y', 'dx', 'dDownWeight', 'dDownBias', 'dUpWeight', 'dUpBias'];
  const reference = run('cpu', 'f32');
  for (const device of devices()) {
    const f32 = run(device, 'f32'), bf16 = run(device, 'bf16');
    names.forEach((name, i) => {
      assertClose(f32[i]!, reference[i]!, { rtol: 1e-4, atol: 1e-5, what: `${name} f32 on ${device}` });
      assert.ok(maxRelError(bf16[i]!, reference[i]!, 1) < 3e-2, `${name} bf16 on ${device}: ${maxRelError(bf16[i]!, reference[i]!, 1)}`);
    });
  }
});

test('the backward writes one activation-sized tensor (dx) and reads x and dy twice at most', () => {
  const [n, h, w, c, r] = [2, 6, 6, 16, 4];
  cf.scope(() => {
    const x = cf.fromArray(rng.array(n * h * w * c), [n, h, w, c], { requiresGrad: true });
    const params = [[r, c, 1, 1], [r], [c, r, 1, 1], [c]].map((s) => cf.fromArray(rng.array(s.reduce((a, b) => a * b)), s, { requiresGrad: true }));
    const y = cf.squeezeExcite(x, params[0]!, params[1]!, params[2]!, params[3]!);
    const seed = cf.onesLike(y);
    const calls: string[] = [];
    const addon = cf.native as unknown as Record<string, (...a: unknown[]) => unknown>;
    const originals = new Map(Object.entries(addon).filter(([, f]) => typeof f === 'function'));
    for (const [name, fn] of originals) {
      addon[name] = (...args: unknown[]) => {
        if (args.some((a) => a instanceof cf.Tensor && a.size >= x.size)) calls.push(name);
        return fn.apply(addon, args);
      };
    }
    try {
      y.backward(seed);
    } finally {
      for (const [name, fn] of originals) addon[name] = fn;
    }
    // The copy is backward's of the seed gradient; then S = sum dy * x, and dx in one pass.
    assert.equal(calls, ['copy', 'sampleChannelDot', 'sampleChannelAffine']);
  });
});

test('bad arguments throw errors naming the op, the argument and the value', () => {
  cf.scope(() => {
    const x = cf.zeros([1, 2, 2, 4]);
    const b2 = cf.zeros([2]), b4 = cf.zeros([4]);
    assert.throws(() => cf.squeezeExcite(x, cf.zeros([2, 3, 1, 1]), b2, cf.zeros([4, 2, 1, 1]), b4), /squeezeExcite: expected shape \[R, 4, 1, 1\] \(or \[R, 4\]\) for downWeight, got \[2, 3, 1, 1\]/);
    assert.throws(() => cf.squeezeExcite(x, cf.zeros([2, 4, 1, 1]), b2, cf.zeros([4, 3, 1, 1]), b4), /squeezeExcite: expected shape \[4, 2, 1, 1\] \(or \[4, 2\]\) for upWeight, got \[4, 3, 1, 1\]/);
    assert.throws(() => cf.squeezeExcite(x, cf.zeros([2, 4, 1, 1]), b4, cf.zeros([4, 2, 1, 1]), b4), /squeezeExcite: expected shape \[2\] for downBias, got \[4\]/);
    assert.throws(() => cf.squeezeExcite(cf.zeros([2, 4]), cf.zeros([2, 4, 1, 1]), b2, cf.zeros([4, 2, 1, 1]), b4), /squeezeExcite: expected a rank-4 tensor/);
  });
});

test.run();
