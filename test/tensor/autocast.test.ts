// autocast('bf16'): matrix products read bf16 copies of f32 inputs and give bf16 back, with
// gradients reaching the f32 inputs in f32; an f32 tensor meeting a bf16 product gives f32;
// everything else, and code outside autocast, is unchanged.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { createModel } from '../../lib/nn/factory.js';
import { assertClose, Rng } from '../support/helpers.js';

const test = suite('autocast');
const rng = new Rng(77);

const leaf = (shape: number[]): cf.Tensor => cf.fromArray(rng.array(shape.reduce((a, b) => a * b, 1)), shape, { requiresGrad: true });
const values = (t: cf.Tensor | null): Float32Array => {
  assert.ok(t, 'a tensor is present');
  return t!.toArray() as Float32Array;
};
const maxAbsDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

/** y, da, db of sum(matmul(a, b, opts) * w) with fresh gradients. */
function productAndGrads(a: cf.Tensor, b: cf.Tensor, w: cf.Tensor, run: () => cf.Tensor) {
  a.grad = null;
  b.grad = null;
  return cf.scope(() => {
    const y = run();
    cf.sum(cf.mul(y, w)).backward();
    return { y: values(y), dtype: y.dtype, da: values(a.grad), db: values(b.grad) };
  });
}

test('matmul under autocast equals the product of bf16-rounded inputs, in bf16, with f32 gradients', () => {
  const a = leaf([17, 40]), b = leaf([24, 40]), bias = leaf([24]), w = cf.fromArray(rng.array(17 * 24), [17, 24]);
  const plain = productAndGrads(a, b, w, () => cf.matmul(a, b, { transB: true, bias }));
  const amp = productAndGrads(a, b, w, () => cf.autocast('bf16', () => cf.matmul(a, b, { transB: true, bias })));
  const byHand = productAndGrads(a, b, w, () => cf.matmul(cf.cast(a, 'bf16'), cf.cast(b, 'bf16'), { transB: true, bias: cf.cast(bias, 'bf16') }));
  assert.is(amp.dtype, 'bf16');
  assert.equal(Array.from(amp.y), Array.from(byHand.y), 'the same numbers as casting by hand');
  assert.equal(Array.from(amp.da), Array.from(byHand.da));
  assert.equal(Array.from(amp.db), Array.from(byHand.db));
  assert.ok(maxAbsDiff(amp.y, plain.y) > 0, 'bf16 rounding changed the product');
  assertClose(amp.y, plain.y, { rtol: 2e-2, atol: 5e-2, what: 'bf16 product vs f32' });
  assertClose(amp.da, plain.da, { rtol: 2e-2, atol: 5e-2, what: 'bf16 da vs f32' });
  assert.is(a.grad!.dtype, 'f32', 'the gradient of an f32 input is f32');
  assert.equal(cf.autocastDtype(), null, 'autocast ends with its function');
});

test('linear and attentionPacked follow autocast; autocast(null) inside turns it off', () => {
  const x = leaf([2, 5, 3 * 2 * 16]);
  const packed = (): cf.Tensor => cf.attentionPacked(cf.reshape(x, [2, 5, 3, 2, 16]), { causal: true });
  const plain = cf.scope(() => values(packed()));
  const amp = cf.scope(() => values(cf.autocast('bf16', packed)));
  const manual = cf.scope(() => values(cf.attentionPacked(cf.reshape(cf.cast(x, 'bf16'), [2, 5, 3, 2, 16]), { causal: true })));
  assert.equal(Array.from(amp), Array.from(manual));
  assert.ok(maxAbsDiff(amp, plain) > 0 && maxAbsDiff(amp, plain) < 5e-2, `attention in bf16 is close to f32 but not equal (${maxAbsDiff(amp, plain)})`);
  const off = cf.scope(() => values(cf.autocast('bf16', () => cf.autocast(null, packed))));
  assert.equal(Array.from(off), Array.from(plain), 'autocast(null) restores full precision');

  const weight = leaf([8, 96]);
  const lin = cf.scope(() => {
    const y = cf.autocast('bf16', () => cf.linear(x, weight));
    return { dtype: y.dtype, values: values(y), manual: values(cf.linear(cf.cast(x, 'bf16'), cf.cast(weight, 'bf16'))) };
  });
  assert.is(lin.dtype, 'bf16');
  assert.equal(Array.from(lin.values), Array.from(lin.manual), 'linear under autocast is the product of bf16 copies');
  // A bf16 activation meets an f32 weight in the next product: both go in as bf16.
  const chained = cf.scope(() => {
    const h = cf.autocast('bf16', () => cf.linear(cf.gelu(cf.linear(x, weight)), leaf([4, 8])));
    return h.dtype;
  });
  assert.is(chained, 'bf16');
  assert.throws(() => cf.scope(() => cf.linear(cf.cast(x, 'bf16'), weight)), /linear: expected x and weight of the same dtype, got bf16 and f32/, 'outside autocast the dtypes must agree');
});

test('ops outside the products stay f32 and exact under autocast', () => {
  const x = leaf([6, 32]);
  const ln = (): Float32Array => cf.scope(() => values(cf.softmax(cf.layerNorm(x, null, null))));
  assert.equal(Array.from(cf.autocast('bf16', ln)), Array.from(ln()));
});

test('a bf16 product joins an f32 residual as f32, and the gradient of each side keeps its dtype', () => {
  const x = leaf([3, 16]), w = leaf([16, 16]);
  const r = cf.scope(() => {
    let product: cf.Tensor | null = null;
    const y = cf.autocast('bf16', () => cf.add(x, (product = cf.matmul(x, w))));
    // By hand: the bf16 product (autocast's), widened and added to the f32 residual.
    const byHand = cf.add(x, cf.cast(cf.matmul(cf.cast(x, 'bf16'), cf.cast(w, 'bf16')), 'f32'));
    cf.sum(y).backward();
    return { dtype: y.dtype, productDtype: product!.dtype, y: values(y), byHand: values(byHand) };
  });
  assert.is(r.productDtype, 'bf16');
  assert.is(r.dtype, 'f32');
  assert.equal(Array.from(r.y), Array.from(r.byHand));
  assert.is(x.grad!.dtype, 'f32');
  assert.is(w.grad!.dtype, 'f32');
});

test('norms take a bf16 input beside f32 parameters: LayerNorm gives f32, BatchNorm and GRN bf16; convolutions are products under autocast', () => {
  const xData = rng.array(2 * 3 * 3 * 8);
  const xb = cf.fromArray(xData, [2, 3, 3, 8], { dtype: 'bf16' });
  const c8 = (): cf.Tensor => leaf([8]);
  const gamma = c8(), beta = c8(), runMean = cf.zeros([8]), runVar = cf.ones([8]);
  // LayerNorm runs on an f32 copy (PyTorch's autocast runs layer_norm in f32); BatchNorm's and
  // GRN's kernels read the bf16 input beside the f32 parameters and give x's dtype, as PyTorch's
  // batch norm does: the f32 result rounded once.
  const norms: [string, cf.DType, (x: cf.Tensor) => cf.Tensor][] = [
    ['layerNorm', 'f32', (x) => cf.layerNorm(x, gamma, beta)],
    ['batchNorm', 'bf16', (x) => cf.batchNorm(x, gamma, beta, runMean, runVar, { training: true, updateRunningStats: false })],
    ['grn', 'bf16', (x) => cf.grn(x, gamma, beta)],
  ];
  for (const [name, dtype, norm] of norms) {
    const run = (input: (x: cf.Tensor) => cf.Tensor) =>
      cf.scope(() => {
        for (const p of [gamma, beta]) p.grad = null;
        const x = cf.fromArray(xData, [2, 3, 3, 8], { dtype: 'bf16', requiresGrad: true });
        const y = norm(input(x));
        cf.sum(cf.mul(y, y)).backward();
        const r = { dtype: y.dtype, y: values(y), gradDtype: x.grad!.dtype, dx: values(x.grad), paramGrads: [gamma, beta].map((p) => [p.grad!.dtype, values(p.grad)] as const) };
        x.dispose();
        return r;
      });
    const got = run((x) => x);
    const widened = run((x) => cf.cast(x, 'f32'));
    const rounded = cf.scope(() => values(cf.cast(cf.fromArray(widened.y, [widened.y.length]), dtype)));
    assert.is(got.dtype, dtype, `${name} gives ${dtype}`);
    assert.is(got.gradDtype, 'bf16', `${name}: the bf16 input's gradient is bf16`);
    assert.equal(Array.from(got.y), Array.from(rounded), `${name}: the f32 result on the widened input${dtype === 'bf16' ? ', rounded to bf16' : ''}`);
    assertClose(got.dx, widened.dx, { rtol: 3e-2, atol: 3e-2, what: `${name} dx` });
    got.paramGrads.forEach(([gradDtype, g], i) => {
      assert.is(gradDtype, 'f32', `${name}: parameter ${i}'s gradient is f32`);
      assertClose(g, widened.paramGrads[i]![1], { rtol: 3e-2, atol: 3e-2, what: `${name} parameter ${i} gradient` });
    });
  }
  const w3 = leaf([8, 8, 3, 3]), wd = leaf([8, 1, 3, 3]);
  const convs = cf.scope(() => cf.autocast('bf16', () => [cf.conv2d(xb, w3, null, { padding: 1 }).dtype, cf.depthwiseConv2d(xb, wd, null, { padding: 1 }).dtype]));
  assert.equal(convs, ['bf16', 'bf16']);
  const byHand = cf.scope(() => values(cf.conv2d(xb, cf.cast(w3, 'bf16'), null, { padding: 1 })));
  const amp = cf.scope(() => values(cf.autocast('bf16', () => cf.conv2d(xb, w3, null, { padding: 1 }))));
  assert.equal(Array.from(amp), Array.from(byHand), 'conv2d under autocast is the bf16 convolution');
  assert.throws(() => cf.scope(() => cf.layerNorm(cf.zeros([2, 8]), cf.zeros([8], { dtype: 'bf16' }))), /layerNorm: expected x and weight of the same dtype, got f32 and bf16/);
  assert.throws(() => cf.scope(() => cf.grn(cf.zeros([1, 2, 2, 8]), cf.zeros([8], { dtype: 'bf16' }))), /grn: expected gamma of x's dtype f32, got bf16/);
  assert.throws(() => cf.scope(() => cf.grn(xb, gamma, cf.zeros([8], { dtype: 'bf16' }))), /grn: expected gamma and beta of the same dtype, got f32 and bf16/);
  // UniRepLKNet's deploy form: a depthwise conv's bf16 output straight into squeeze-excite,
  // whose 1x1 convs are products under autocast.
  const se = [leaf([2, 8, 1, 1]), leaf([2]), leaf([8, 2, 1, 1]), leaf([8])] as const;
  const seOut = cf.scope(() => {
    const y = cf.autocast('bf16', () => cf.squeezeExcite(cf.depthwiseConv2d(xb, wd, null, { padding: 1 }), ...se));
    cf.sum(y).backward();
    return { dtype: y.dtype, grads: se.map((p) => p.grad!.dtype) };
  });
  assert.equal(seOut, { dtype: 'bf16', grads: ['f32', 'f32', 'f32', 'f32'] });
  for (const t of [xb, gamma, beta, runMean, runVar, w3, wd, ...se]) t.dispose();
});

test('a checkpointed block recomputes in the precision of its forward', () => {
  const x = leaf([4, 16]), w1 = leaf([16, 16]), w2 = leaf([16, 16]);
  const block = (t: cf.Tensor): cf.Tensor => cf.matmul(cf.gelu(cf.matmul(t, w1)), w2);
  const grads = (useCheckpoint: boolean): Float32Array[] => {
    for (const p of [x, w1, w2]) p.grad = null;
    cf.scope(() => {
      const y = cf.autocast('bf16', () => (useCheckpoint ? cf.checkpoint(block, x) : block(x)));
      cf.sum(y).backward();
    });
    return [values(x.grad), values(w1.grad), values(w2.grad)];
  };
  const plain = grads(false), checkpointed = grads(true);
  plain.forEach((g, i) => assert.equal(Array.from(checkpointed[i]!), Array.from(g), `gradient ${i}`));
});

test('a CLIP forward under autocast stays close to f32: features agree to cosine > 0.99', () => {
  const model = createModel('tiny-builtin', { seed: 5 });
  try {
    const images = cf.fromArray(rng.array(2 * 3 * 32 * 32), [2, 3, 32, 32]);
    const texts = cf.fromArray(Int32Array.from({ length: 2 * 20 }, (_, i) => (i % 20 < 6 ? 1 + ((i * 7) % 50) : 0)), [2, 20], { dtype: 'i32' });
    const feats = (): Float32Array[] =>
      cf.noGrad(() =>
        cf.scope(() => {
          const out = model.forward(images, texts);
          return [values(out.imageFeatures), values(out.textFeatures)];
        }),
      );
    const plain = feats(), amp = cf.autocast('bf16', feats);
    for (let k = 0; k < 2; k++) {
      assert.ok(maxAbsDiff(amp[k]!, plain[k]!) > 0, 'the features changed');
      const d = plain[k]!.length / 2;
      for (let r = 0; r < 2; r++) {
        let dot = 0;
        for (let j = 0; j < d; j++) dot += amp[k]![r * d + j]! * plain[k]![r * d + j]!;
        assert.ok(dot > 0.99, `tower ${k} row ${r}: cosine ${dot}`);
      }
    }
    images.dispose();
    texts.dispose();
  } finally {
    model.dispose();
  }
});

test('autocast refuses a dtype it does not support and a missing function', () => {
  assert.throws(() => cf.autocast('f16' as 'bf16', () => 0), /autocast: expected 'bf16' or null for dtype/);
  assert.throws(() => cf.autocast('bf16', null as unknown as () => number), /autocast: expected a function for fn/);
});

test.run();
