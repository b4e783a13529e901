import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, Rng } from '../support/helpers.js';

const test = suite('clip_grad');
const rng = new Rng(99);

const roundBf16 = (a: Float32Array): Float32Array => cf.scope(() => cf.fromArray(a, [a.length], { dtype: 'bf16' }).toArray() as Float32Array);

test('global L2 norm and scaled gradients match the f64 reference, clipped and not', () => {
  for (const device of devices()) {
    for (const maxNorm of [0.5, 1e3]) {
      const sizes = [[3, 4], [7], [], [2, 2, 5]];
      const params = sizes.map((s) => cf.zeros(s, { device, requiresGrad: true }));
      const grads = params.map((p, i) => (i === 3 ? roundBf16(rng.array(p.size)) : rng.array(p.size)));
      params.forEach((p, i) => (p.grad = cf.fromArray(grads[i]!, p.shape, { device, dtype: i === 3 ? 'bf16' : 'f32' })));
      const noGradParam = cf.zeros([5], { device, requiresGrad: true });
      const norm = cf.clipGradNorm([...params, noGradParam], maxNorm);
      let ss = 0;
      for (const g of grads) for (const v of g) ss += v * v;
      const refNorm = Math.sqrt(ss);
      const coef = Math.min(1, maxNorm / (refNorm + 1e-6));
      assert.equal([...norm.shape], []);
      assert.is(norm.device, device);
      assertClose([norm.item()], [refNorm], { rtol: 1e-5, what: `norm on ${device}` });
      params.forEach((p, i) => {
        const bf = i === 3;
        assertClose(p.grad!.toArray(), grads[i]!.map((v) => v * coef), { rtol: bf ? 1e-2 : 1e-5, atol: bf ? 1e-3 : 1e-7, what: `grad ${i} on ${device} (max ${maxNorm})` });
      });
      if (maxNorm === 0.5) {
        let after = 0;
        for (const p of params) for (const v of p.grad!.toArray()) after += v * v;
        assertClose([Math.sqrt(after)], [0.5], { rtol: 1e-2, what: 'norm after clipping' });
      }
      assert.is(noGradParam.grad, null);
      for (const t of [...params, noGradParam, norm]) t.dispose();
    }
  }
});

test('no gradients: norm 0; bad arguments', () => {
  const p = cf.zeros([2], { requiresGrad: true });
  const n = cf.clipGradNorm([p], 1);
  assert.is(n.item(), 0);
  n.dispose();
  assert.throws(() => cf.clipGradNorm([p], 0), /clipGradNorm: expected a finite number > 0 for maxNorm, got 0/);
  assert.throws(() => cf.clipGradNorm([p, 3 as never], 1), /clipGradNorm: expected a Tensor for params\[1\]/);
  p.dispose();
});

test.run();
