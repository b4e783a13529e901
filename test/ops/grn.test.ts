import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, bf16Rounded, devices, gradCheck, hasCuda, maxRelError, recordNativeCalls, Rng } from '../support/helpers.js';

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

/** 'bf16+f32': bf16 activations beside f32 gamma and beta (autocast's mix). */
type Storage = 'f32' | 'bf16' | 'bf16+f32';

function runGrn(device: string, storage: Storage, xs: Float32Array, shape: number[], gs: Float32Array, bs: Float32Array, dys: Float32Array) {
  const dtype = storage === 'f32' ? 'f32' : 'bf16', pDtype = storage === 'bf16' ? 'bf16' : 'f32';
  return cf.scope(() => {
    const c = shape[3]!;
    const x = cf.fromArray(xs, shape, { device, dtype, requiresGrad: true });
    const g = cf.fromArray(gs, [1, 1, 1, c], { device, dtype: pDtype, requiresGrad: true });
    const b = cf.fromArray(bs, [1, 1, 1, c], { device, dtype: pDtype, requiresGrad: true });
    const y = cf.grn(x, g, b);
    assert.is(y.dtype, dtype);
    y.backward(cf.fromArray(dys, shape, { device, dtype }));
    assert.equal([x.grad!.dtype, g.grad!.dtype, b.grad!.dtype], [dtype, pDtype, pDtype]);
    return { y: y.toArray(), dx: x.grad!.toArray(), dg: g.grad!.toArray(), db: b.grad!.toArray() };
  });
}

test('wide channels (several native channel blocks): forward matches, gradients agree across thread counts, bf16 and CUDA', () => {
  const shape = [3, 5, 4, 150];
  const size = 3 * 5 * 4 * 150;
  const xs = rng.array(size), gs = rng.array(150), bs = rng.array(150), dys = rng.array(size);
  cf.setNumThreads(1);
  const one = runGrn('cpu', 'f32', xs, shape, gs, bs, dys);
  cf.setNumThreads(2);
  const two = runGrn('cpu', 'f32', xs, shape, gs, bs, dys);
  for (const k of ['y', 'dx', 'dg', 'db'] as const) assert.equal([...one[k]], [...two[k]], `${k} with 1 and 2 threads`);
  assertClose(one.y, reference(xs, 3, 20, 150, gs, bs), { rtol: 1e-5, atol: 1e-5, what: 'y' });
  // bf16 against f32 on the same (bf16-rounded) inputs: what is left is bf16 storage of the results.
  const rounded = (a: Float32Array): Float32Array => cf.scope(() => cf.fromArray(a, [a.length], { dtype: 'bf16' }).toArray() as Float32Array);
  const [xr, gr, br, dyr] = [xs, gs, bs, dys].map(rounded) as [Float32Array, Float32Array, Float32Array, Float32Array];
  const exact = runGrn('cpu', 'f32', xr, shape, gr, br, dyr);
  for (const device of devices()) {
    for (const storage of ['bf16', 'bf16+f32'] as const) {
      const h = runGrn(device, storage, xr, shape, gr, br, dyr);
      for (const k of ['y', 'dx', 'dg', 'db'] as const) assert.ok(maxRelError(h[k], exact[k], 1) < 1e-2, `${k} ${storage} on ${device}: ${maxRelError(h[k], exact[k], 1)}`);
    }
    // With f32 parameters the sums stay f32: beta's gradient is f32's, not a bf16 rounding of it.
    const mixed = runGrn(device, 'bf16+f32', xr, shape, gr, br, dyr);
    assertClose(mixed.db, exact.db, { rtol: 1e-5, atol: 1e-5, what: `beta's gradient, bf16+f32 on ${device}` });
  }
  if (!hasCuda()) return;
  const cuda = runGrn('cuda:0', 'f32', xs, shape, gs, bs, dys);
  for (const k of ['y', 'dx', 'dg', 'db'] as const) assertClose(cuda[k], one[k], { rtol: 1e-4, atol: 1e-5, what: `${k} CUDA vs CPU` });
});

test('the GELU form equals GRN of a separate GELU, forward and backward, on every backend and storage', () => {
  const [n, h, w, c] = [2, 5, 3, 70];
  const size = n * h * w * c;
  const xs = Float32Array.from(rng.array(size), (v) => 2 * v), gs = rng.array(c), bs = rng.array(c), dys = rng.array(size);
  const run = (device: string, storage: Storage, fused: boolean, withBeta: boolean) => {
    const dtype = storage === 'f32' ? 'f32' : 'bf16', pDtype = storage === 'bf16' ? 'bf16' : 'f32';
    return cf.scope(() => {
      const x = cf.fromArray(xs, [n, h, w, c], { device, dtype, requiresGrad: true });
      const g = cf.fromArray(gs, [c], { device, dtype: pDtype, requiresGrad: true });
      const b = withBeta ? cf.fromArray(bs, [c], { device, dtype: pDtype, requiresGrad: true }) : null;
      const y = fused ? cf.grn(x, g, b, { gelu: true }) : cf.grn(cf.gelu(x), g, b);
      y.backward(cf.fromArray(dys, [n, h, w, c], { device, dtype }));
      return { y: y.toArray(), dx: x.grad!.toArray(), dg: g.grad!.toArray(), db: b ? b.grad!.toArray() : new Float32Array(0) };
    });
  };
  for (const device of devices()) {
    for (const withBeta of [true, false]) {
      const composed = run(device, 'f32', false, withBeta), fused = run(device, 'f32', true, withBeta);
      for (const k of ['y', 'dx', 'dg', 'db'] as const) assertClose(fused[k], composed[k], { rtol: 1e-4, atol: 1e-5, what: `${k} f32 on ${device}${withBeta ? '' : ' without beta'}` });
    }
    // bf16: the separate GELU rounds its output to bf16, the fused form does not.
    for (const storage of ['bf16', 'bf16+f32'] as const) {
      const composed = run(device, storage, false, true), fused = run(device, storage, true, true);
      for (const k of ['y', 'dx', 'dg', 'db'] as const) {
        assert.ok(maxRelError(fused[k], composed[k], 1) < 3e-2, `${k} ${storage} on ${device}: ${maxRelError(fused[k], composed[k], 1)}`);
      }
    }
  }
  if (!hasCuda()) return;
  const cpu = run('cpu', 'f32', true, true), cuda = run('cuda:0', 'f32', true, true);
  for (const k of ['y', 'dx', 'dg', 'db'] as const) assertClose(cuda[k], cpu[k], { rtol: 1e-4, atol: 1e-5, what: `${k} CUDA vs CPU` });
});

test('the GELU form: gradients match finite differences; bad options are refused', () => {
  const [n, h, w, c] = [2, 2, 3, 4];
  gradCheck((x, g, b) => cf.grn(x, g, b, { gelu: true }), [
    { data: rng.array(n * h * w * c), shape: [n, h, w, c] },
    { data: rng.array(c), shape: [1, 1, 1, c] },
    { data: rng.array(c), shape: [1, 1, 1, c] },
  ]);
  cf.scope(() => {
    const x = cf.zeros([1, 2, 2, 4]), v = cf.zeros([4]);
    assert.throws(() => cf.grn(x, v, v, { gelu: 1 as unknown as boolean }), /grn: expected a boolean for gelu, got 1/);
    assert.throws(() => cf.grn(x, v, v, null as unknown as cf.GrnOptions), /grn: expected an options object for opts, got null/);
    const a = cf.zeros([1, 4, 4]), f = cf.zeros([1, 4]);
    assert.throws(() => cf.native.sampleChannelAffine(a, f, a, f, v, cf.zeros([1, 4, 4]), true, null, null), /sampleChannelAffine: expected null \(the GELU form's gradient, b given, has no shift\) for beta, got \[4\]/);
    assert.throws(() => cf.native.sampleChannelDot(a, null, f, 'yes' as unknown as boolean, null, null), /sampleChannelDot: expected a boolean for gelu/);
  });
});

test('an input bias: grn(x, { inputBias }) equals grn(x + inputBias), forward and all gradients, GELU form or not, every backend and storage', () => {
  const [n, h, w, c] = [2, 3, 5, 70];
  const size = n * h * w * c;
  // bf16-exact inputs, so bf16 storage differs from f32 only in what it rounds on the way.
  const [xs, gs, bs, ibs, dys] = [Float32Array.from(rng.array(size), (v) => 2 * v), rng.array(c), rng.array(c), rng.array(c), rng.array(size)].map(bf16Rounded) as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
  const run = (device: string, storage: Storage, fused: boolean, withGelu: boolean) => {
    const dtype = storage === 'f32' ? 'f32' : 'bf16', pDtype = storage === 'bf16' ? 'bf16' : 'f32';
    return cf.scope(() => {
      const x = cf.fromArray(xs, [n, h, w, c], { device, dtype, requiresGrad: true });
      const g = cf.fromArray(gs, [c], { device, dtype: pDtype, requiresGrad: true });
      const b = cf.fromArray(bs, [c], { device, dtype: pDtype, requiresGrad: true });
      const ib = cf.fromArray(ibs, [c], { device, dtype: pDtype, requiresGrad: true });
      // The composed form adds in f32 and rounds once to x's dtype, as the fused passes read it.
      const shifted = fused ? x : cf.cast(cf.add(cf.cast(x, 'f32'), cf.cast(ib, 'f32')), dtype);
      const y = cf.grn(shifted, g, b, { gelu: withGelu, inputBias: fused ? ib : null });
      y.backward(cf.fromArray(dys, [n, h, w, c], { device, dtype }));
      return { y: y.toArray(), dx: x.grad!.toArray(), dg: g.grad!.toArray(), db: b.grad!.toArray(), dib: ib.grad!.toArray() };
    });
  };
  for (const device of devices()) {
    for (const withGelu of [false, true]) {
      const composed = run(device, 'f32', false, withGelu), fused = run(device, 'f32', true, withGelu);
      for (const k of ['y', 'dx', 'dg', 'db', 'dib'] as const) {
        assertClose(fused[k], composed[k], { rtol: 1e-4, atol: 1e-4, what: `${k} f32${withGelu ? ' GELU form' : ''} on ${device}` });
      }
      // bf16 storage against f32 (the composed bf16 form would round x + inputBias once more).
      for (const storage of ['bf16', 'bf16+f32'] as const) {
        const f2 = run(device, storage, true, withGelu);
        for (const k of ['y', 'dx', 'dg', 'db', 'dib'] as const) {
          assert.ok(maxRelError(f2[k], fused[k], 1) < 2e-2, `${k} ${storage}${withGelu ? ' GELU form' : ''} on ${device}: ${maxRelError(f2[k], fused[k], 1)}`);
        }
      }
    }
  }
});

test('an input bias: gradients match finite differences; the bias gradient needs no pass of its own', () => {
  const [n, h, w, c] = [2, 2, 3, 4];
  gradCheck((x, g, b, ib) => cf.grn(x, g, b, { gelu: true, inputBias: ib }), [
    { data: rng.array(n * h * w * c), shape: [n, h, w, c] },
    { data: rng.array(c), shape: [1, 1, 1, c] },
    { data: rng.array(c), shape: [1, 1, 1, c] },
    { data: rng.array(c), shape: [c] },
  ]);
  const size = n * h * w * c;
  // Only calls that touch an activation-sized tensor.
  const activationSized = (name: string) => (a: unknown[]) => (a.some((t) => t instanceof cf.Tensor && t.size >= size) ? name : null);
  const names = ['sampleChannelDot', 'sampleChannelAffine', 'reduce', 'binary', 'cast', 'copy'];
  const { calls } = cf.scope(() => {
    const x = cf.fromArray(rng.array(size), [n, h, w, c], { requiresGrad: true });
    const param = () => cf.fromArray(rng.array(c), [c], { requiresGrad: true });
    const y = cf.grn(x, param(), param(), { gelu: true, inputBias: param() });
    const dy = cf.fromArray(rng.array(size), [n, h, w, c]);
    return recordNativeCalls(Object.fromEntries(names.map((k) => [k, activationSized(k)])), () => y.backward(dy));
  });
  // The backward copies dy for the root and runs GRN's two passes: nothing else reads the activations.
  assert.equal(calls, ['copy', 'sampleChannelDot', 'sampleChannelAffine']);
});

test('the affine pass sums its output per sample when asked, on every backend and storage', () => {
  const [n, p, c] = [3, 6, 37];
  const as = rng.array(n * p * c), bs = rng.array(n * p * c), fas = rng.array(n * c), fbs = rng.array(n * c), xbs = rng.array(c);
  for (const device of devices()) {
    for (const dtype of ['f32', 'bf16'] as const) {
      for (const [withB, withGelu] of [[false, false], [true, false], [false, true], [true, true]] as const) {
        cf.scope(() => {
          const a = cf.fromArray(as, [n, p, c], { device, dtype });
          const b = withB ? cf.fromArray(bs, [n, p, c], { device, dtype }) : null;
          const fb = withB ? cf.fromArray(fbs, [n, c], { device }) : null;
          const fa = cf.fromArray(fas, [n, c], { device }), xb = cf.fromArray(xbs, [c], { device });
          const y = cf.zeros([n, p, c], { device, dtype }), alone = cf.zeros([n, p, c], { device, dtype });
          const sums = cf.zeros([n, c], { device });
          cf.native.sampleChannelAffine(a, fa, b, fb, null, y, withGelu, xb, sums);
          cf.native.sampleChannelAffine(a, fa, b, fb, null, alone, withGelu, xb, null);
          const what = `${dtype}${withB ? ', b' : ''}${withGelu ? ', GELU form' : ''} on ${device}`;
          assert.equal(y.toArray(), alone.toArray(), `y unchanged by the sums, ${what}`);
          const yv = y.toArray();
          const want = new Float64Array(n * c);
          for (let i = 0; i < yv.length; i++) want[Math.floor(i / (p * c)) * c + (i % c)] += yv[i]!;
          // The sums are of the values before rounding to y's dtype.
          const tol = dtype === 'f32' ? 1e-5 : 2e-2;
          assertClose(sums.toArray(), want, { rtol: tol, atol: tol, what });
        });
      }
    }
  }
  cf.scope(() => {
    const a = cf.zeros([2, 3, 4]), f = cf.zeros([2, 4]), y = cf.zeros([2, 3, 4]);
    assert.throws(() => cf.native.sampleChannelAffine(a, f, null, null, null, y, false, cf.zeros([3]), null), /sampleChannelAffine: expected \[4\] for xBias.shape, got \[3\]/);
    assert.throws(() => cf.native.sampleChannelAffine(a, f, null, null, null, y, false, null, cf.zeros([4])), /sampleChannelAffine: expected \[2, 4\] for ySums.shape, got \[4\]/);
    assert.throws(() => cf.native.sampleChannelAffine(a, f, null, null, null, y, false, null, f), /sampleChannelAffine: ySums must not share memory with fa/);
    const ab = cf.zeros([2, 3, 4], { dtype: 'bf16' }), yb = cf.zeros([2, 3, 4], { dtype: 'bf16' });
    assert.throws(() => cf.native.sampleChannelAffine(ab, f, null, null, cf.zeros([4]), yb, false, cf.zeros([4], { dtype: 'bf16' }), null), /sampleChannelAffine: .*beta.*xBias/);
    assert.throws(() => cf.native.sampleChannelDot(a, null, f, false, null, cf.zeros([5])), /sampleChannelDot: expected \[4\] for xBias.shape, got \[5\]/);
    assert.throws(() => cf.grn(cf.zeros([1, 2, 2, 4]), cf.zeros([4]), null, { inputBias: 3 as unknown as cf.Tensor }), /grn: expected a Tensor or null for inputBias, got 3/);
    assert.throws(() => cf.grn(cf.zeros([1, 2, 2, 4]), cf.zeros([4]), null, { inputBias: cf.zeros([4], { dtype: 'bf16' }) }), /grn: expected gamma and inputBias of the same dtype, got f32 and bf16/);
  });
});

test('an all-zero channel gets a zero gradient, not NaN', () => {
  const c = 3;
  const xs = rng.array(2 * 2 * 2 * c);
  for (let i = 0; i < xs.length; i += c) xs[i] = 0;
  const r = runGrn('cpu', 'f32', xs, [2, 2, 2, c], rng.array(c), rng.array(c), rng.array(xs.length));
  assert.ok(r.dx.every((v) => Number.isFinite(v)), 'finite dx');
  for (let i = 0; i < xs.length; i += c) assert.is(r.dx[i], r.dx[i]);
});

test('the native passes check their arguments', () => {
  cf.scope(() => {
    const a = cf.zeros([2, 3, 4]);
    assert.throws(() => cf.native.sampleChannelDot(a, null, cf.zeros([2, 3]), false, null, null), /sampleChannelDot: expected \[2, 4\] for out.shape, got \[2, 3\]/);
    assert.throws(() => cf.native.sampleChannelDot(cf.zeros([2, 4]), null, cf.zeros([2, 4]), false, null, null), /sampleChannelDot: .*a/);
    assert.throws(() => cf.native.sampleChannelDot(a, a, cf.zeros([2, 4]), false, cf.zeros([4]), null), /sampleChannelDot: expected \[2, 4\] for aSums.shape, got \[4\]/);
    const out = cf.zeros([2, 4]);
    assert.throws(() => cf.native.sampleChannelDot(a, a, out, false, out, null), /sampleChannelDot: out must not share memory with aSums/);
    assert.throws(() => cf.native.sampleChannelAffine(a, cf.zeros([2, 4]), a, null, null, cf.zeros([2, 3, 4]), false, null, null), /sampleChannelAffine: expected a tensor \(b is given\) for fb, got null/);
    assert.throws(() => cf.native.sampleChannelAffine(a, cf.zeros([2, 4]), null, null, cf.zeros([3]), cf.zeros([2, 3, 4]), false, null, null), /sampleChannelAffine: expected shape \[4\] or \[2, 4\] for beta, got \[3\]/);
    assert.throws(() => cf.native.sampleChannelAffine(a, cf.zeros([2, 4]), null, null, cf.zeros([1, 4]), cf.zeros([2, 3, 4]), false, null, null), /sampleChannelAffine: expected shape \[4\] or \[2, 4\] for beta, got \[1, 4\]/);
  });
});

test('the affine pass takes a shift per sample, beta [N, C], in the GELU form too, on every backend and storage', () => {
  const [n, p, c] = [3, 5, 37];
  const as = rng.array(n * p * c), fas = rng.array(n * c), shifts = rng.array(n * c);
  for (const device of devices()) {
    for (const [dtype, shiftDtype] of [['f32', 'f32'], ['bf16', 'f32'], ['bf16', 'bf16']] as const) {
      for (const withGelu of [false, true]) {
        cf.scope(() => {
          const a = cf.fromArray(as, [n, p, c], { device, dtype });
          const y = cf.zeros([n, p, c], { device, dtype });
          cf.native.sampleChannelAffine(a, cf.fromArray(fas, [n, c], { device }), null, null, cf.fromArray(shifts, [n, c], { device, dtype: shiftDtype }), y, withGelu, null, null);
          // The operand as stored (bf16-rounded), GELU'd by the CPU's checked elementwise GELU.
          const av = cf.fromArray(a.toArray(), [n * p * c]);
          const xv = (withGelu ? cf.gelu(av) : av).toArray(), sv = cf.fromArray(shifts, [n, c], { dtype: shiftDtype }).toArray();
          const want = Float64Array.from(xv, (v, i) => {
            const s = Math.floor(i / (p * c)), k = i % c;
            return v * fas[s * c + k]! + sv[s * c + k]!;
          });
          const tol = dtype === 'f32' ? 1e-5 : 1e-2;
          assertClose(y.toArray(), want, { rtol: tol, atol: tol, what: `${dtype} a, ${shiftDtype} shift${withGelu ? ', GELU form' : ''} on ${device}` });
        });
      }
    }
  }
});

test('the dot pass sums a per sample beside the products, in the GELU form too, on every backend and storage', () => {
  const [n, p, c] = [3, 7, 37];
  const as = rng.array(n * p * c), bs = rng.array(n * p * c);
  for (const device of devices()) {
    for (const dtype of ['f32', 'bf16'] as const) {
      for (const withGelu of [false, true]) {
        cf.scope(() => {
          const a = cf.fromArray(as, [n, p, c], { device, dtype }), b = cf.fromArray(bs, [n, p, c], { device, dtype });
          const out = cf.zeros([n, c], { device }), sums = cf.zeros([n, c], { device });
          const alone = cf.zeros([n, c], { device });
          cf.native.sampleChannelDot(a, b, out, withGelu, sums, null);
          cf.native.sampleChannelDot(a, b, alone, withGelu, null, null);
          // The products are those of the pass without sums; the sums are of a as stored.
          assert.equal(out.toArray(), alone.toArray(), `products unchanged, ${dtype}${withGelu ? ', GELU form' : ''} on ${device}`);
          const av = a.toArray();
          const want = new Float64Array(n * c);
          for (let i = 0; i < av.length; i++) want[Math.floor(i / (p * c)) * c + (i % c)] += av[i]!;
          assertClose(sums.toArray(), want, { rtol: 1e-5, atol: 1e-5, what: `sums of a, ${dtype}${withGelu ? ', GELU form' : ''} on ${device}` });
        });
      }
    }
  }
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
