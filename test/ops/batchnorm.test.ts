import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, bf16Rounded, devices, gradCheck, hasCuda, maxRelError, recordNativeCalls, Rng } from '../support/helpers.js';

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

test('statistics stay exact when the mean is large against the spread (1e6 against 0.1)', () => {
  const c = 4, rows = 2000;
  // Raw moments in f64 would lose ~1e12 / 1e-2 * 2^-53 ~ 1e-2 of the variance here.
  const xs = Float32Array.from(rng.array(rows * c), (v, i) => 1e6 * ((i % c) + 1) + 0.1 * v * ((i % c) + 1));
  const s = stats(xs, c);
  for (const device of devices()) {
    cf.scope(() => {
      const out = () => cf.zeros([c], { device });
      const [mean, variance, rstd] = [out(), out(), out()];
      cf.native.batchNormStats(cf.fromArray(xs, [rows, c], { device }), mean, variance, rstd, 1e-5);
      assertClose(mean.toArray(), s.mean, { rtol: 1e-7, atol: 0, what: `mean on ${device}` });
      assertClose(variance.toArray(), s.biased, { rtol: 1e-5, atol: 0, what: `variance on ${device}` });
      assertClose(rstd.toArray(), s.biased.map((v) => 1 / Math.sqrt(v + 1e-5)), { rtol: 1e-5, atol: 0, what: `rstd on ${device}` });
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

// The gradients in float64 from the definition: with batch statistics, dx carries the terms
// through the mean and variance; with constant (running) statistics it is dy * weight * rstd.
function refBackward(x: ArrayLike<number>, dy: ArrayLike<number>, mean: ArrayLike<number>, variance: ArrayLike<number>, w: ArrayLike<number>, eps: number, batchStats: boolean) {
  const c = mean.length, rows = x.length / c;
  const rstd = Float64Array.from(variance, (v) => 1 / Math.sqrt(v + eps));
  const dw = new Float64Array(c), db = new Float64Array(c);
  for (let i = 0; i < x.length; i++) {
    db[i % c] += dy[i]!;
    dw[i % c] += dy[i]! * (x[i]! - mean[i % c]!) * rstd[i % c]!;
  }
  const dx = Float64Array.from(x, (v, i) => {
    const k = i % c;
    const xhat = (v - mean[k]!) * rstd[k]!;
    return w[k]! * rstd[k]! * (dy[i]! - (batchStats ? (db[k]! + xhat * dw[k]!) / rows : 0));
  });
  return { dx, dw, db };
}

/** 'bf16+f32': bf16 activations beside f32 parameters (autocast's mix). */
type Storage = 'f32' | 'bf16' | 'bf16+f32';

function runBoth(device: string, storage: Storage, training: boolean, xs: Float32Array, dys: Float32Array, c: number, seed: number) {
  const r = new Rng(seed);
  const ws = r.array(c), bs = r.array(c), rm = r.array(c), rv = Float32Array.from(r.array(c), (v) => 0.5 + Math.abs(v));
  const xDtype = storage === 'f32' ? 'f32' : 'bf16', pDtype = storage === 'bf16' ? 'bf16' : 'f32';
  return cf.scope(() => {
    const t = (d: Float32Array, shape: number[], dtype: cf.DType, grad = false) => cf.fromArray(d, shape, { device, dtype, requiresGrad: grad });
    const x = t(xs, [xs.length / c, c], xDtype, true), w = t(ws, [c], pDtype, true), b = t(bs, [c], pDtype, true);
    const y = cf.batchNorm(x, w, b, t(rm, [c], pDtype), t(rv, [c], pDtype), { training });
    assert.is(y.dtype, xDtype);
    y.backward(t(dys, [xs.length / c, c], xDtype));
    assert.equal([x.grad!.dtype, w.grad!.dtype, b.grad!.dtype], [xDtype, pDtype, pDtype]);
    return { y: y.toArray(), dx: x.grad!.toArray(), dw: w.grad!.toArray(), db: b.grad!.toArray(), ws, bs, rm, rv };
  });
}

test('backward matches the definition in both modes, over several blocks of rows', () => {
  const c = 7, rows = 1000;
  const xs = Float32Array.from(rng.array(rows * c), (v, i) => 3 * v + (i % c));
  const dys = rng.array(rows * c);
  for (const device of devices()) {
    for (const training of [true, false]) {
      const r = runBoth(device, 'f32', training, xs, dys, c, 5);
      const s = stats(xs, c);
      const [m, v] = training ? [s.mean, s.biased] : [r.rm, r.rv];
      const ref = refBackward(xs, dys, m, v, r.ws, 1e-5, training);
      const what = `${training ? 'training' : 'eval'} on ${device}`;
      assertClose(r.y, normalize(xs, m, v, r.ws, r.bs, 1e-5), { rtol: 1e-4, atol: 1e-4, what: `y ${what}` });
      assertClose(r.dx, ref.dx, { rtol: 1e-3, atol: 1e-4, what: `dx ${what}` });
      assertClose(r.dw, ref.dw, { rtol: 1e-4, atol: 1e-3, what: `dweight ${what}` });
      assertClose(r.db, ref.db, { rtol: 1e-4, atol: 1e-3, what: `dbias ${what}` });
    }
  }
});

test('the statistics and gradients do not depend on the CPU thread count', () => {
  const c = 5, xs = rng.array(3000 * c), dys = rng.array(3000 * c);
  cf.setNumThreads(1);
  const one = runBoth('cpu', 'f32', true, xs, dys, c, 6);
  cf.setNumThreads(2);
  const two = runBoth('cpu', 'f32', true, xs, dys, c, 6);
  for (const k of ['y', 'dx', 'dw', 'db'] as const) assert.equal([...one[k]], [...two[k]], k);
});

test('bf16 storage, and bf16 activations beside f32 parameters, stay within 2e-2 of f32; CUDA matches the CPU', () => {
  const c = 6, xs = rng.array(64 * c), dys = rng.array(64 * c);
  for (const device of devices()) {
    const f = runBoth(device, 'f32', true, xs, dys, c, 7);
    for (const storage of ['bf16', 'bf16+f32'] as const) {
      const h = runBoth(device, storage, true, xs, dys, c, 7);
      for (const k of ['y', 'dx', 'dw', 'db'] as const) {
        // dw and db sum 64 rows of O(1) terms, each off by bf16's 2^-9: their error grows like
        // sqrt(64) units, so it is measured against that scale, not against 1.
        const err = maxRelError(h[k], f[k], k === 'dw' || k === 'db' ? Math.sqrt(64) : 1);
        assert.ok(err < 2e-2, `${k} ${storage} on ${device}: relative error ${err}`);
      }
    }
  }
  // The mix reads the f32 parameters unrounded: on bf16-exact inputs its y is f32's rounded once.
  const rounded = (a: ArrayLike<number>): Float32Array => cf.scope(() => cf.fromArray(Float32Array.from(a), [a.length], { dtype: 'bf16' }).toArray() as Float32Array);
  const exact = runBoth('cpu', 'f32', true, rounded(xs), rounded(dys), c, 9);
  for (const device of devices()) {
    const mixed = runBoth(device, 'bf16+f32', true, rounded(xs), rounded(dys), c, 9);
    // CUDA's statistics sum in another order: their last bit may move a rounding by one bf16 step.
    if (device === 'cpu') assert.equal(Array.from(mixed.y), Array.from(rounded(exact.y)), 'y bf16+f32 on cpu');
    else assertClose(mixed.y, rounded(exact.y), { rtol: 2 ** -8, atol: 1e-6, what: `y bf16+f32 on ${device}` });
    for (const k of ['dw', 'db'] as const) assertClose(mixed[k], exact[k], { rtol: 1e-5, atol: 1e-5, what: `${k} bf16+f32 on ${device}` });
  }
  if (!hasCuda()) return;
  for (const storage of ['bf16', 'bf16+f32'] as const) {
    const a = runBoth('cpu', storage, true, xs, dys, c, 10), b = runBoth('cuda:0', storage, true, xs, dys, c, 10);
    for (const k of ['y', 'dx', 'dw', 'db'] as const) assertClose(b[k], a[k], { rtol: 1e-2, atol: 1e-2, what: `${k} ${storage} CUDA vs CPU` });
  }
  for (const training of [true, false]) {
    const a = runBoth('cpu', 'f32', training, xs, dys, c, 8), b = runBoth('cuda:0', 'f32', training, xs, dys, c, 8);
    for (const k of ['y', 'dx', 'dw', 'db'] as const) assertClose(b[k], a[k], { rtol: 1e-4, atol: 1e-5, what: `${k} CUDA vs CPU` });
  }
});

// batchNorm(x, ...) with { residual } (fused) or residual + batchNorm(x, ...) (separate), run
// forward and backward with dy: y and the gradients of x, weight, bias and the residual.
function runResidual(device: string, storage: Storage, fused: boolean, training: boolean, xs: Float32Array, rs: Float32Array, dys: Float32Array, c: number, seed: number) {
  const r = new Rng(seed);
  const ws = r.array(c), bs = r.array(c), rm = r.array(c), rv = Float32Array.from(r.array(c), (v) => 0.5 + Math.abs(v));
  const xDtype = storage === 'f32' ? 'f32' : 'bf16', wide = storage === 'bf16' ? 'bf16' : 'f32';
  return cf.scope(() => {
    const t = (d: Float32Array, shape: number[], dtype: cf.DType, grad = false) => cf.fromArray(d, shape, { device, dtype, requiresGrad: grad });
    const shape = [xs.length / c, c];
    const x = t(xs, shape, xDtype, true), w = t(ws, [c], wide, true), b = t(bs, [c], wide, true), res = t(rs, shape, wide, true);
    const opts = { training, updateRunningStats: false };
    const y = fused ? cf.batchNorm(x, w, b, t(rm, [c], wide), t(rv, [c], wide), { ...opts, residual: res }) : cf.add(res, cf.batchNorm(x, w, b, t(rm, [c], wide), t(rv, [c], wide), opts));
    assert.is(y.dtype, wide);
    y.backward(t(dys, shape, wide));
    assert.equal([x.grad!.dtype, res.grad!.dtype], [xDtype, wide]);
    return { y: y.toArray(), dx: x.grad!.toArray(), dw: w.grad!.toArray(), db: b.grad!.toArray(), dr: res.grad!.toArray() };
  });
}

test("residual: y = residual + batchNorm(x) in the residual's dtype, with the separate form's gradients; bf16 x beside an f32 stream reads its gradient unrounded", () => {
  const c = 9, rows = 300;
  const xs = Float32Array.from(rng.array(rows * c), (v, i) => 2 * v + (i % c)), rs = rng.array(rows * c), dys = rng.array(rows * c);
  for (const device of devices()) {
    for (const training of [true, false]) {
      const what = `${training ? 'training' : 'eval'} on ${device}`;
      const fused = runResidual(device, 'f32', true, training, xs, rs, dys, c, 3), separate = runResidual(device, 'f32', false, training, xs, rs, dys, c, 3);
      for (const k of ['y', 'dx', 'dw', 'db', 'dr'] as const) assertClose(fused[k], separate[k], { rtol: 1e-5, atol: 1e-5, what: `${k} f32 ${what}` });
      assert.equal(Array.from(fused.dr), Array.from(dys), `the residual's gradient is dy itself, ${what}`);
      // bf16 x and f32 stream against the f32 form on the same (bf16-exact) x: the stream, its
      // gradient and the parameters' gradients never pass through bf16; dx is rounded once.
      const xr = bf16Rounded(xs);
      const mixed = runResidual(device, 'bf16+f32', true, training, xr, rs, dys, c, 3), exact = runResidual(device, 'f32', true, training, xr, rs, dys, c, 3);
      for (const k of ['y', 'dw', 'db', 'dr'] as const) assertClose(mixed[k], exact[k], { rtol: 1e-5, atol: 1e-5, what: `${k} bf16 x, f32 stream, ${what}` });
      assertClose(mixed.dx, bf16Rounded(exact.dx as Float32Array), { rtol: 2 ** -8, atol: 1e-6, what: `dx bf16 x, f32 stream, ${what}` });
      const bf16 = runResidual(device, 'bf16', true, training, xs, rs, dys, c, 3);
      for (const k of ['y', 'dx', 'dw', 'db'] as const) {
        const err = maxRelError(bf16[k], separate[k], k === 'dw' || k === 'db' ? Math.sqrt(rows) : 1);
        assert.ok(err < 3e-2, `${k} all bf16 ${what}: relative error ${err}`);
      }
    }
  }
  if (!hasCuda()) return;
  for (const storage of ['f32', 'bf16', 'bf16+f32'] as const) {
    const a = runResidual('cpu', storage, true, true, xs, rs, dys, c, 4), b = runResidual('cuda:0', storage, true, true, xs, rs, dys, c, 4);
    const tol = storage === 'f32' ? 1e-4 : 1e-2;
    for (const k of ['y', 'dx', 'dw', 'db', 'dr'] as const) assertClose(b[k], a[k], { rtol: tol, atol: tol, what: `${k} ${storage} CUDA vs CPU` });
  }
});

test('residual: gradients match finite differences in training and eval modes', () => {
  const c = 3;
  const rm = cf.fromArray(rng.array(c), [c]);
  const rv = cf.fromArray(rng.array(c).map((v) => 1 + Math.abs(v)), [c]);
  const act = () => ({ data: rng.array(2 * 3 * c), shape: [2, 3, c] });
  for (const training of [true, false]) {
    gradCheck((x, w, b, r) => cf.batchNorm(x, w, b, rm, rv, { training, updateRunningStats: false, residual: r }), [act(), { data: rng.array(c), shape: [c] }, { data: rng.array(c), shape: [c] }, act()]);
  }
  rm.dispose();
  rv.dispose();
});

test('batchNormSum equals the separate BatchNorms added: values, running statistics, every gradient; both modes, every backend and storage', () => {
  const [rows, c, k] = [300, 37, 3];
  const xs = Array.from({ length: k }, (_, i) => Float32Array.from(rng.array(rows * c), (v) => 2 * v + i));
  const vecs = Array.from({ length: k }, () => [rng.array(c), rng.array(c), rng.array(c), Float32Array.from(rng.array(c), (v) => 1 + Math.abs(v))]);
  const dys = rng.array(rows * c);
  const run = (device: string, storage: 'f32' | 'bf16+f32', training: boolean, fused: boolean) =>
    cf.scope(() => {
      const dtype = storage === 'f32' ? 'f32' : 'bf16';
      const branches = xs.map((x, i) => {
        const [w, b, rm, rv] = vecs[i]!.map((v, j) => cf.fromArray(v, [c], { device, requiresGrad: j < 2 }));
        return { x: cf.fromArray(x, [rows, c], { device, dtype, requiresGrad: true }), weight: w!, bias: b!, runningMean: rm!, runningVar: rv! };
      });
      const y = fused ? cf.batchNormSum(branches, { training }) : branches.map((b) => cf.batchNorm(b.x, b.weight, b.bias, b.runningMean, b.runningVar, { training })).reduce((a, b) => cf.add(a, b));
      assert.is(y.dtype, dtype);
      y.backward(cf.fromArray(dys, [rows, c], { device, dtype }));
      return [y, ...branches.flatMap((b) => [b.x.grad!, b.weight.grad!, b.bias.grad!, b.runningMean, b.runningVar])].map((t) => t.toArray());
    });
  for (const device of devices()) {
    for (const training of [true, false]) {
      const f32 = run(device, 'f32', training, false);
      run(device, 'f32', training, true).forEach((got, i) => assertClose(got, f32[i]!, { rtol: 1e-5, atol: 1e-5, what: `f32 ${training ? 'training' : 'eval'} on ${device}, tensor ${i}` }));
      // bf16 x beside f32 vectors: the separate norms round each branch's output before the sum,
      // the fused pass only the sum; the gradients and statistics are the same computation.
      const separate = run(device, 'bf16+f32', training, false);
      run(device, 'bf16+f32', training, true).forEach((got, i) => {
        const what = `bf16 x, f32 vectors (${training ? 'training' : 'eval'}) on ${device}, tensor ${i}`;
        // Five roundings (three outputs, two sums) against one: a few bf16 steps apart at most.
        if (i === 0) assert.ok(maxRelError(got, separate[0]!, 1) < 4e-2, `${what}: ${maxRelError(got, separate[0]!, 1)}`);
        else assertClose(got, separate[i]!, { rtol: 1e-5, atol: 1e-5, what });
      });
    }
  }
});

test('batchNormSum backward: one reduction and one input pass for all branches; only the needed gradients, each its own tensor; CPU sums equal the separate ones', () => {
  const [rows, c] = [40, 5];
  const xs = [0, 1, 2].map((i) => Float32Array.from(rng.array(rows * c), (v) => v + i));
  const vecs = [0, 1, 2].map(() => [rng.array(c), rng.array(c), rng.array(c), Float32Array.from(rng.array(c), (v) => 1 + Math.abs(v))]);
  const dys = rng.array(rows * c);
  // Branch 1's input and branch 2's weight need no gradient.
  const run = (device: string, fused: boolean) =>
    cf.scope(() => {
      const branches = xs.map((x, i) => {
        const [w, b, rm, rv] = vecs[i]!.map((v, j) => cf.fromArray(v, [c], { device, requiresGrad: j === 1 || (j === 0 && i !== 2) }));
        return { x: cf.fromArray(x, [rows, c], { device, requiresGrad: i !== 1 }), weight: w!, bias: b!, runningMean: rm!, runningVar: rv! };
      });
      const opts = { training: true, updateRunningStats: false };
      const y = fused ? cf.batchNormSum(branches, opts) : branches.map((b) => cf.batchNorm(b.x, b.weight, b.bias, b.runningMean, b.runningVar, opts)).reduce((a, b) => cf.add(a, b));
      const describe = Object.fromEntries(
        ['batchNormBackwardReduce', 'batchNormBackwardInput', 'batchNormSumBackwardReduce', 'batchNormSumBackwardInput'].map((k) => [k, (a: unknown[]) => (k.startsWith('batchNormSum') ? `${k} dxs ${(a[7] as unknown[] | undefined)?.map((d) => (d === null ? '-' : 'x')).join('') ?? ''}`.trim() : k)]),
      );
      const { calls } = recordNativeCalls(describe, () => y.backward(cf.fromArray(dys, [rows, c], { device })));
      assert.equal(branches.map((b) => [b.x.grad === null, b.weight.grad === null, b.bias.grad === null]), [[false, false, false], [true, false, false], [false, true, false]]);
      const biasGrads = branches.map((b) => b.bias.grad!);
      assert.is(new Set(biasGrads.map((g) => g.storage)).size, 3, 'every bias gradient has its own storage');
      const grads = branches.flatMap((b) => [b.x.grad, b.weight.grad, b.bias.grad].filter((g) => g !== null).map((g) => g!.toArray()));
      return { calls, grads };
    });
  for (const device of devices()) {
    const fused = run(device, true), separate = run(device, false);
    assert.equal(fused.calls, ['batchNormSumBackwardReduce dxs', 'batchNormSumBackwardInput dxs x-x']);
    assert.equal(separate.calls.filter((k) => k === 'batchNormBackwardReduce').length, 3);
    fused.grads.forEach((g, i) => {
      if (device === 'cpu') assert.equal(Array.from(g), Array.from(separate.grads[i]!), `gradient ${i} on cpu`);
      else assertClose(g, separate.grads[i]!, { rtol: 1e-5, atol: 1e-5, what: `gradient ${i} on ${device}` });
    });
  }
});

test('batchNormSum: gradients match finite differences', () => {
  const [rows, c] = [6, 3];
  const vec = () => ({ data: rng.array(c), shape: [c] });
  const running = Array.from({ length: 4 }, () => cf.fromArray(Float32Array.from(rng.array(c), (v) => 1 + Math.abs(v)), [c]));
  for (const training of [true, false]) {
    gradCheck(
      (x0, w0, b0, x1, w1, b1) =>
        cf.batchNormSum([{ x: x0, weight: w0, bias: b0, runningMean: running[0]!, runningVar: running[1]! }, { x: x1, weight: w1, bias: b1, runningMean: running[2]!, runningVar: running[3]! }], { training, updateRunningStats: false }),
      [{ data: rng.array(rows * c), shape: [rows, c] }, vec(), vec(), { data: rng.array(rows * c), shape: [rows, c] }, vec(), vec()],
    );
  }
  for (const t of running) t.dispose();
});

test('batchNormSum: bad branches throw errors naming the branch and the argument', () => {
  cf.scope(() => {
    const branch = (x = cf.zeros([4, 3]), v = cf.ones([3])) => ({ x, weight: v, bias: v, runningMean: v, runningVar: v });
    assert.throws(() => cf.batchNormSum([]), /batchNormSum: expected an array of 1 to 8 branches for branches, got/);
    assert.throws(() => cf.batchNormSum(Array.from({ length: 9 }, () => branch())), /batchNormSum: expected an array of 1 to 8 branches/);
    assert.throws(() => cf.batchNormSum([branch(), null as unknown as cf.BatchNormBranch]), /batchNormSum: expected an object \{ x, weight, bias, runningMean, runningVar \} for branches\[1\], got null/);
    assert.throws(() => cf.batchNormSum([branch(), branch(cf.zeros([5, 3]))]), /batchNormSum: expected branches\[1\].x like branches\[0\].x \(f32 \[4, 3\]\), got f32 \[5, 3\]/);
    assert.throws(() => cf.batchNormSum([branch(), branch(cf.zeros([4, 3], { dtype: 'bf16' }))]), /batchNormSum: expected branches\[1\].x like branches\[0\].x/);
    assert.throws(() => cf.batchNormSum([branch(), branch(cf.zeros([4, 3]), cf.ones([2]))]), /batchNormSum: expected shape \[3\] for branches\[1\].weight, got \[2\]/);
    const bx = cf.zeros([4, 3], { dtype: 'bf16' });
    assert.throws(() => cf.batchNormSum([branch(bx), branch(bx, cf.ones([3], { dtype: 'bf16' }))]), /batchNormSum: expected the weights and biases of every branch in one dtype \(f32, as branches\[0\]'s\), got bf16 in branches\[1\]/);
    const x = cf.zeros([4, 3]), v = cf.ones([3]), y = cf.zeros([4, 3]);
    assert.throws(() => cf.native.batchNormSumApply([x, x], [v], [v, v], [v, v], [v, v], y), /batchNormSumApply: expected an array of 2 entries \(one per branch\) for means, got an array of length 1/);
    assert.throws(() => cf.native.batchNormSumApply([x, cf.zeros([4, 2])], [v, v], [v, v], [v, v], [v, v], y), /batchNormSumApply: expected \[4, 3\] for xs\[1\].shape, got \[4, 2\]/);
    assert.throws(() => cf.native.batchNormSumApply([x, y], [v, v], [v, v], [null, null], [null, null], y), /batchNormSumApply: .*y.*xs\[1\]|xs\[1\].*y/);
    assert.throws(() => cf.native.batchNormSumApply([], [], [], [], [], y), /batchNormSumApply: expected an array of 1 to 8 tensors for xs, got an array of length 0/);
    const s = (): cf.Tensor => cf.zeros([3]);
    assert.throws(() => cf.native.batchNormSumBackwardReduce([x, x], [v, v], [v, v], y, s(), [s()]), /batchNormSumBackwardReduce: expected an array of 2 entries \(one per branch\) for sumDyXhats, got an array of length 1/);
    assert.throws(() => cf.native.batchNormSumBackwardReduce([x], [v], [v], cf.zeros([4, 3], { dtype: 'bf16' }), s(), [s()]), /batchNormSumBackwardReduce: expected x and dy of the same dtype, got f32 and bf16/);
    const sum = s();
    assert.throws(() => cf.native.batchNormSumBackwardReduce([x], [v], [v], y, sum, [sum]), /batchNormSumBackwardReduce: sumDyXhats\[0\] must not share memory with sumDy/);
    assert.throws(() => cf.native.batchNormSumBackwardInput([x, y], [v, v], [v, v], [null, null], y, s(), [s(), s()], [null, x], true), /batchNormSumBackwardInput: dxs\[1\] must not share memory with xs\[0\]/);
    assert.throws(() => cf.native.batchNormSumBackwardInput([x], [v], [v], [null], y, s(), [s()], [cf.zeros([4, 2])], true), /batchNormSumBackwardInput: expected \[4, 3\] for dxs\[0\].shape, got \[4, 2\]/);
    assert.throws(() => cf.native.batchNormSumBackwardInput([x], [v], [v], [null], y, s(), [s()], [], true), /batchNormSumBackwardInput: expected an array of 1 entries \(one per branch\) for dxs, got an array of length 0/);
  });
});

test('the native kernels check their arguments', () => {
  cf.scope(() => {
    const x = cf.zeros([4, 3]);
    const s3 = (): cf.Tensor => cf.zeros([3]);
    assert.throws(() => cf.native.batchNormStats(x, cf.zeros([2]), s3(), s3(), 1e-5), /batchNormStats: expected \[3\] for mean.shape, got \[2\]/);
    assert.throws(() => cf.native.batchNormStats(x, cf.zeros([3], { dtype: 'bf16' }), s3(), s3(), 1e-5), /batchNormStats: expected f32 for mean.dtype, got bf16/);
    assert.throws(() => cf.native.batchNormApply(x, s3(), s3(), null, null, null, cf.zeros([4, 4])), /batchNormApply: expected \[4, 3\] for y.shape, got \[4, 4\]/);
    assert.throws(() => cf.native.batchNormBackwardInput(x, x, s3(), s3(), null, s3(), s3(), x, true), /batchNormBackwardInput: out must not share memory with x/);
    const b3 = cf.zeros([3], { dtype: 'bf16' });
    assert.throws(() => cf.native.batchNormApply(x, s3(), s3(), b3, null, null, cf.zeros([4, 3])), /batchNormApply: expected weight of x's dtype f32, got bf16/);
    const xb = cf.zeros([4, 3], { dtype: 'bf16' });
    assert.throws(() => cf.native.batchNormApply(xb, s3(), s3(), s3(), b3, null, cf.zeros([4, 3], { dtype: 'bf16' })), /batchNormApply: expected weight and bias of the same dtype, got f32 and bf16/);
    assert.throws(() => cf.native.batchNormApply(x, s3(), s3(), null, null, s3(), x), /batchNormApply: expected \[4, 3\] for residual.shape, got \[3\]/);
    assert.throws(() => cf.native.batchNormApply(x, s3(), s3(), null, null, cf.zeros([4, 3], { dtype: 'bf16' }), cf.zeros([4, 3])), /batchNormApply: expected residual of x's dtype f32, got bf16/);
    assert.throws(() => cf.native.batchNormApply(xb, s3(), s3(), null, null, cf.zeros([4, 3]), cf.zeros([4, 3], { dtype: 'bf16' })), /batchNormApply: expected residual and y of the same dtype, got f32 and bf16/);
    const y = cf.zeros([4, 3]);
    assert.throws(() => cf.native.batchNormApply(xb, s3(), s3(), null, null, y, y), /batchNormApply: out must not share memory with residual/);
    assert.throws(() => cf.native.batchNormBackwardReduce(x, xb, s3(), s3(), s3(), s3()), /batchNormBackwardReduce: expected dy of x's dtype f32, got bf16/);
    assert.throws(() => cf.native.batchNormBackwardInput(xb, cf.zeros([4, 3]), s3(), s3(), null, s3(), s3(), cf.zeros([4, 3]), true), /batchNormBackwardInput: expected x and dx of the same dtype, got bf16 and f32/);
  });
});

test('bad arguments throw errors naming the op, the argument and the value', () => {
  cf.scope(() => {
    const v = cf.ones([4]);
    assert.throws(() => cf.batchNorm(cf.zeros([2, 2, 2, 4]), cf.ones([3]), v, v, v), /batchNorm: expected shape \[4\] for weight, got \[3\]/);
    assert.throws(() => cf.batchNorm(cf.zeros([4]), v, v, v, v), /batchNorm: expected a tensor \[\.\.\., C\] of rank >= 2 for x, got \[4\]/);
    assert.throws(() => cf.batchNorm(cf.zeros([1, 4]), v, v, v, v, { training: true }), /batchNorm: expected more than one value per channel in training/);
    assert.throws(() => cf.batchNorm(cf.zeros([2, 4]), v, v, v, v, { momentum: 2 }), /batchNorm: expected a number in \[0, 1\] for momentum, got 2/);
    assert.throws(() => cf.batchNorm(cf.zeros([2, 4]), v, v, v, v, { eps: -1 }), /batchNorm: expected a finite number >= 0 for eps, got -1/);
    assert.throws(() => cf.batchNorm(cf.zeros([2, 4]), v, v, cf.zeros([4], { dtype: 'bf16' }), v), /batchNorm: expected weight and runningMean of the same dtype, got f32 and bf16/);
    const b4 = cf.ones([4], { dtype: 'bf16' });
    assert.throws(() => cf.batchNorm(cf.zeros([2, 4]), b4, b4, b4, b4), /batchNorm: expected weight of x's dtype f32, got bf16/);
    assert.throws(() => cf.batchNorm(cf.zeros([2, 4]), v, v, v, v, { residual: cf.zeros([4, 2]) }), /batchNorm: expected shape \[2, 4\] for residual, got \[4, 2\]/);
    assert.throws(() => cf.batchNorm(cf.zeros([2, 4]), v, v, v, v, { residual: cf.zeros([2, 4], { dtype: 'bf16' }) }), /batchNorm: expected residual of x's dtype f32, got bf16/);
    assert.throws(() => cf.batchNorm(cf.zeros([2, 4]), v, v, v, v, { residual: 1 as unknown as cf.Tensor }), /batchNorm: expected .*residual/);
  });
});

test.run();
