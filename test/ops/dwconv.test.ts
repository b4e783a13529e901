import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, bf16Rounded, devices, gradCheck, hasCuda, maxRelError, recordNativeCalls, Rng } from '../support/helpers.js';

const test = suite('dwconv');
const rng = new Rng(4);

interface Geom {
  n: number;
  h: number;
  w: number;
  c: number;
  k: number;
  stride: number;
  dil: number;
  ph: number;
  pw: number;
}

const outSize = (size: number, pad: number, g: Geom): number => Math.floor((size + 2 * pad - g.dil * (g.k - 1) - 1) / g.stride) + 1;

// Naive direct convolution in float64, NHWC, zero padding: the reference for everything.
function refForward(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null, g: Geom): Float64Array {
  const oh = outSize(g.h, g.ph, g), ow = outSize(g.w, g.pw, g);
  const y = new Float64Array(g.n * oh * ow * g.c);
  for (let n = 0; n < g.n; n++)
    for (let a = 0; a < oh; a++)
      for (let o = 0; o < ow; o++)
        for (let c = 0; c < g.c; c++) {
          let acc = b ? b[c]! : 0;
          for (let i = 0; i < g.k; i++) {
            const ih = a * g.stride - g.ph + i * g.dil;
            if (ih < 0 || ih >= g.h) continue;
            for (let j = 0; j < g.k; j++) {
              const iw = o * g.stride - g.pw + j * g.dil;
              if (iw < 0 || iw >= g.w) continue;
              acc += w[(c * g.k + i) * g.k + j]! * x[((n * g.h + ih) * g.w + iw) * g.c + c]!;
            }
          }
          y[((n * oh + a) * ow + o) * g.c + c] = acc;
        }
  return y;
}

// The same loops run backwards: every (output, tap) product scattered to dx, dw and db.
function refBackward(x: ArrayLike<number>, w: ArrayLike<number>, dy: ArrayLike<number>, g: Geom) {
  const oh = outSize(g.h, g.ph, g), ow = outSize(g.w, g.pw, g);
  const dx = new Float64Array(g.n * g.h * g.w * g.c);
  const dw = new Float64Array(g.c * g.k * g.k);
  const db = new Float64Array(g.c);
  for (let n = 0; n < g.n; n++)
    for (let a = 0; a < oh; a++)
      for (let o = 0; o < ow; o++)
        for (let c = 0; c < g.c; c++) {
          const gy = dy[((n * oh + a) * ow + o) * g.c + c]!;
          db[c] += gy;
          for (let i = 0; i < g.k; i++) {
            const ih = a * g.stride - g.ph + i * g.dil;
            if (ih < 0 || ih >= g.h) continue;
            for (let j = 0; j < g.k; j++) {
              const iw = o * g.stride - g.pw + j * g.dil;
              if (iw < 0 || iw >= g.w) continue;
              const xi = ((n * g.h + ih) * g.w + iw) * g.c + c;
              dx[xi] += w[(c * g.k + i) * g.k + j]! * gy;
              dw[(c * g.k + i) * g.k + j] += x[xi]! * gy;
            }
          }
        }
  return { dx, dw, db };
}

function toNchw(v: ArrayLike<number>, n: number, h: number, w: number, c: number): Float32Array {
  const out = new Float32Array(n * h * w * c);
  for (let b = 0; b < n; b++)
    for (let i = 0; i < h * w; i++)
      for (let k = 0; k < c; k++) out[(b * c + k) * h * w + i] = v[(b * h * w + i) * c + k]!;
  return out;
}

function randomGeom(maxK: number): Geom {
  const ks = [1, 3, 5, 7, 9, 13, 17, 31].filter((k) => k <= maxK);
  const k = ks[rng.int(0, ks.length - 1)]!;
  const dil = k === 1 ? 1 : rng.int(1, 3);
  const stride = rng.int(1, 2);
  const maxPad = dil * (k - 1);
  const same = rng.next() < 0.5;
  const ph = same ? maxPad / 2 : rng.int(0, maxPad);
  const pw = same ? maxPad / 2 : rng.int(0, maxPad);
  const ext = maxPad + 1;
  // Sizes not multiples of any tile, sometimes smaller than the kernel.
  const h = Math.max(ext - 2 * ph, rng.int(1, 19));
  const w = Math.max(ext - 2 * pw, rng.int(1, 23));
  return { n: rng.int(1, 2), h, w, c: rng.int(1, 37), k, stride, dil, ph, pw };
}

const describeGeom = (g: Geom): string =>
  `N${g.n} H${g.h} W${g.w} C${g.c} K${g.k} s${g.stride} d${g.dil} pad[${g.ph},${g.pw}]`;

interface Result {
  y: Float32Array;
  dx: Float32Array;
  dw: Float32Array;
  db: Float32Array;
}

// Forward and all three gradients through the public op (NHWC data in and out).
function run(g: Geom, xs: Float32Array, ws: Float32Array, bs: Float32Array, dys: Float32Array, device: string, dtype: 'f32' | 'bf16', layout: cf.ConvLayout, w4 = false): Result {
  return cf.scope(() => {
    const xData = layout === 'nhwc' ? xs : toNchw(xs, g.n, g.h, g.w, g.c);
    const xShape = layout === 'nhwc' ? [g.n, g.h, g.w, g.c] : [g.n, g.c, g.h, g.w];
    const x = cf.fromArray(xData, xShape, { device, dtype, requiresGrad: true });
    const w = cf.fromArray(ws, w4 ? [g.c, 1, g.k, g.k] : [g.c, g.k, g.k], { device, dtype, requiresGrad: true });
    const b = cf.fromArray(bs, [g.c], { device, dtype, requiresGrad: true });
    const y = cf.depthwiseConv2d(x, w, b, { stride: g.stride, padding: [g.ph, g.pw], dilation: g.dil, layout });
    const oh = outSize(g.h, g.ph, g), ow = outSize(g.w, g.pw, g);
    const yShape = layout === 'nhwc' ? [g.n, oh, ow, g.c] : [g.n, g.c, oh, ow];
    assert.equal([...y.shape], yShape, `output shape for ${describeGeom(g)}`);
    const dyData = layout === 'nhwc' ? dys : toNchw(dys, g.n, oh, ow, g.c);
    y.backward(cf.fromArray(dyData, yShape, { device, dtype }));
    const back = (t: cf.Tensor, h: number, w: number): Float32Array => {
      const v = t.toArray() as Float32Array;
      if (layout === 'nhwc') return v;
      const out = new Float32Array(v.length);
      for (let b2 = 0; b2 < g.n; b2++)
        for (let i = 0; i < h * w; i++)
          for (let k = 0; k < g.c; k++) out[(b2 * h * w + i) * g.c + k] = v[(b2 * g.c + k) * h * w + i]!;
      return out;
    };
    return { y: back(y, oh, ow), dx: back(x.grad!, g.h, g.w), dw: w.grad!.toArray() as Float32Array, db: b.grad!.toArray() as Float32Array };
  });
}

function data(g: Geom) {
  const oh = outSize(g.h, g.ph, g), ow = outSize(g.w, g.pw, g);
  return {
    xs: rng.array(g.n * g.h * g.w * g.c),
    ws: rng.array(g.c * g.k * g.k, 1 / g.k),
    bs: rng.array(g.c),
    dys: rng.array(g.n * oh * ow * g.c),
  };
}

function checkAgainstReference(g: Geom, device: string, layout: cf.ConvLayout, w4 = false): void {
  const { xs, ws, bs, dys } = data(g);
  const r = run(g, xs, ws, bs, dys, device, 'f32', layout, w4);
  const what = `${describeGeom(g)} ${layout} on ${device}`;
  const ref = refBackward(xs, ws, dys, g);
  assertClose(r.y, refForward(xs, ws, bs, g), { rtol: 1e-4, atol: 1e-4, what: `y ${what}` });
  assertClose(r.dx, ref.dx, { rtol: 1e-4, atol: 1e-4, what: `dx ${what}` });
  assertClose(r.dw, ref.dw, { rtol: 1e-4, atol: 1e-3, what: `dw ${what}` });
  assertClose(r.db, ref.db, { rtol: 1e-4, atol: 1e-3, what: `db ${what}` });
}

test('forward and the three gradients match a direct convolution on random shapes, both layouts', () => {
  for (const device of devices()) {
    for (let t = 0; t < 40; t++) checkAgainstReference(randomGeom(17), device, t % 4 === 3 ? 'nchw' : 'nhwc', t % 5 === 0);
  }
});

test('every stride, dilation and padding corner: H or W below K, stride 2 phases with no taps', () => {
  const cases: Geom[] = [
    { n: 1, h: 3, w: 2, c: 5, k: 7, stride: 1, dil: 1, ph: 3, pw: 3 },
    { n: 2, h: 1, w: 9, c: 17, k: 3, stride: 2, dil: 2, ph: 2, pw: 1 },
    { n: 1, h: 9, w: 7, c: 3, k: 5, stride: 2, dil: 2, ph: 0, pw: 4 },
    { n: 1, h: 6, w: 6, c: 33, k: 3, stride: 2, dil: 4, ph: 8, pw: 8 },
    { n: 1, h: 5, w: 11, c: 2, k: 5, stride: 1, dil: 5, ph: 10, pw: 7 },
    { n: 1, h: 4, w: 4, c: 1, k: 1, stride: 2, dil: 1, ph: 0, pw: 0 },
    { n: 2, h: 9, w: 10, c: 16, k: 3, stride: 2, dil: 1, ph: 1, pw: 1 },
    { n: 1, h: 2, w: 2, c: 4, k: 13, stride: 1, dil: 1, ph: 6, pw: 6 },
  ];
  for (const device of devices()) for (const g of cases) for (const layout of ['nhwc', 'nchw'] as const) checkAgainstReference(g, device, layout);
});

test('UniRepLKNet and RepLKNet sizes: K 13 over several row blocks and weight-gradient parts, K 31', () => {
  for (const device of devices()) {
    checkAgainstReference({ n: 2, h: 28, w: 28, c: 40, k: 13, stride: 1, dil: 1, ph: 6, pw: 6 }, device, 'nhwc');
    checkAgainstReference({ n: 1, h: 33, w: 31, c: 19, k: 31, stride: 1, dil: 1, ph: 15, pw: 15 }, device, 'nhwc');
    checkAgainstReference({ n: 1, h: 7, w: 7, c: 48, k: 13, stride: 1, dil: 1, ph: 6, pw: 6 }, device, 'nhwc');
  }
});

test('gradients match finite differences for x, w and bias', () => {
  const cases: [Geom, cf.ConvLayout][] = [
    [{ n: 1, h: 5, w: 6, c: 3, k: 3, stride: 2, dil: 2, ph: 1, pw: 2 }, 'nhwc'],
    [{ n: 2, h: 4, w: 3, c: 2, k: 5, stride: 1, dil: 1, ph: 2, pw: 2 }, 'nchw'],
    [{ n: 1, h: 6, w: 5, c: 2, k: 3, stride: 1, dil: 3, ph: 3, pw: 1 }, 'nhwc'],
  ];
  for (const [g, layout] of cases) {
    const xShape = layout === 'nhwc' ? [g.n, g.h, g.w, g.c] : [g.n, g.c, g.h, g.w];
    gradCheck(
      (x, w, b) => cf.depthwiseConv2d(x, w, b, { stride: g.stride, padding: [g.ph, g.pw], dilation: g.dil, layout }),
      [
        { data: rng.array(g.n * g.h * g.w * g.c), shape: xShape },
        { data: rng.array(g.c * g.k * g.k), shape: [g.c, 1, g.k, g.k] },
        { data: rng.array(g.c), shape: [g.c] },
      ],
    );
  }
});

test('only the gradients asked for are computed: bias alone, weight alone', () => {
  for (const device of devices()) {
    const g: Geom = { n: 1, h: 6, w: 5, c: 9, k: 3, stride: 1, dil: 1, ph: 1, pw: 1 };
    const { xs, ws, bs, dys } = data(g);
    const ref = refBackward(xs, ws, dys, g);
    cf.scope(() => {
      const x = cf.fromArray(xs, [1, 6, 5, 9], { device });
      const w = cf.fromArray(ws, [9, 3, 3], { device });
      const b = cf.fromArray(bs, [9], { device, requiresGrad: true });
      cf.depthwiseConv2d(x, w, b).backward(cf.fromArray(dys, [1, 6, 5, 9], { device }));
      assertClose(b.grad!.toArray(), ref.db, { rtol: 1e-5, atol: 1e-5, what: 'db alone' });
      const w2 = cf.fromArray(ws, [9, 1, 3, 3], { device, requiresGrad: true });
      cf.depthwiseConv2d(x, w2).backward(cf.fromArray(dys, [1, 6, 5, 9], { device }));
      assert.equal([...w2.grad!.shape], [9, 1, 3, 3]);
      assertClose(w2.grad!.toArray(), ref.dw, { rtol: 1e-5, atol: 1e-4, what: 'dw alone' });
    });
  }
});

test('an empty batch gives an empty output and zero weight and bias gradients', () => {
  for (const device of devices()) {
    cf.scope(() => {
      const x = cf.zeros([0, 6, 5, 4], { device, requiresGrad: true });
      const w = cf.ones([4, 3, 3], { device, requiresGrad: true });
      const b = cf.ones([4], { device, requiresGrad: true });
      const y = cf.depthwiseConv2d(x, w, b);
      assert.equal([...y.shape], [0, 6, 5, 4]);
      y.backward(cf.zeros([0, 6, 5, 4], { device }));
      assert.equal(Array.from(w.grad!.toArray()), new Array(36).fill(0), `dw on ${device}`);
      assert.equal(Array.from(b.grad!.toArray()), [0, 0, 0, 0], `db on ${device}`);
    });
  }
});

test('bf16 storage with f32 accumulation stays within 1e-2 of the reference', () => {
  const round = (a: Float32Array): Float32Array => cf.scope(() => cf.fromArray(a, [a.length], { dtype: 'bf16' }).toArray() as Float32Array);
  for (const device of devices()) {
    for (const g of [
      { n: 2, h: 14, w: 13, c: 24, k: 13, stride: 1, dil: 1, ph: 6, pw: 6 },
      { n: 1, h: 9, w: 10, c: 7, k: 3, stride: 2, dil: 2, ph: 2, pw: 2 },
    ]) {
      const d = data(g);
      const [xs, ws, bs, dys] = [round(d.xs), round(d.ws), round(d.bs), round(d.dys)];
      const r = run(g, xs, ws, bs, dys, device, 'bf16', 'nhwc');
      const ref = refBackward(xs, ws, dys, g);
      const what = `${describeGeom(g)} bf16 on ${device}`;
      assert.ok(maxRelError(r.y, refForward(xs, ws, bs, g), 0.5) < 1e-2, `y ${what}`);
      assert.ok(maxRelError(r.dx, ref.dx, 0.5) < 1e-2, `dx ${what}`);
      assert.ok(maxRelError(r.dw, ref.dw, 2) < 1e-2, `dw ${what}`);
      assert.ok(maxRelError(r.db, ref.db, 2) < 1e-2, `db ${what}`);
    }
  }
});

test('CUDA matches the CPU, f32 and bf16', () => {
  if (!hasCuda()) return;
  for (let t = 0; t < 12; t++) {
    const g = randomGeom(31);
    const { xs, ws, bs, dys } = data(g);
    for (const dtype of ['f32', 'bf16'] as const) {
      const a = run(g, xs, ws, bs, dys, 'cpu', dtype, 'nhwc');
      const b = run(g, xs, ws, bs, dys, 'cuda:0', dtype, 'nhwc');
      const tol = dtype === 'f32' ? { rtol: 1e-4, atol: 1e-3 } : { rtol: 2e-2, atol: 5e-2 };
      for (const k of ['y', 'dx', 'dw', 'db'] as const) assertClose(b[k], a[k], { ...tol, what: `${k} ${describeGeom(g)} ${dtype}` });
    }
  }
});

test('the input gradient adds into dx with accumulate: every backend, dtype, stride and dilation', () => {
  for (const device of devices()) {
    for (const g of [
      { n: 2, h: 11, w: 13, c: 19, k: 13, stride: 1, dil: 1, ph: 6, pw: 6 },
      { n: 1, h: 12, w: 9, c: 21, k: 3, stride: 1, dil: 3, ph: 3, pw: 3 },
      { n: 2, h: 9, w: 10, c: 7, k: 5, stride: 2, dil: 2, ph: 4, pw: 3 },
    ]) {
      const d = data(g);
      const prior = rng.array(g.n * g.h * g.w * g.c);
      for (const dtype of ['f32', 'bf16'] as const) {
        cf.scope(() => {
          const [ws, dys, ps] = dtype === 'f32' ? [d.ws, d.dys, prior] : [bf16Rounded(d.ws), bf16Rounded(d.dys), bf16Rounded(prior)];
          const oh = outSize(g.h, g.ph, g), ow = outSize(g.w, g.pw, g);
          const dx = cf.fromArray(ps, [g.n, g.h, g.w, g.c], { device, dtype });
          const w = cf.fromArray(ws, [g.c, g.k, g.k], { device, dtype });
          cf.native.dwconvBackwardInput(cf.fromArray(dys, [g.n, oh, ow, g.c], { device, dtype }), w, dx, g.stride, g.ph, g.pw, g.dil, true);
          const ref = refBackward(d.xs, ws, dys, g).dx.map((v, i) => v + ps[i]!);
          const what = `${describeGeom(g)} ${dtype} on ${device}`;
          if (dtype === 'f32') assertClose(dx.toArray(), ref, { rtol: 1e-4, atol: 1e-4, what });
          else assert.ok(maxRelError(dx.toArray(), ref, 0.5) < 1e-2, what);
        });
      }
    }
  }
});

test('parallel convolutions of one input sum their input gradients in place, without a separate add', () => {
  const [n, h, w, c] = [2, 9, 8, 12];
  const xs = rng.array(n * h * w * c);
  const branches = [
    { k: 7, dil: 1 },
    { k: 3, dil: 2 },
    { k: 3, dil: 3 },
  ];
  const weights = branches.map((b) => rng.array(c * b.k * b.k, 1 / b.k));
  const coef = rng.array(n * h * w * c);
  for (const device of devices()) {
    for (const dtype of ['f32', 'bf16'] as const) {
      const { result: dx, calls } = cf.scope(() => {
        const x = cf.fromArray(xs, [n, h, w, c], { device, requiresGrad: true });
        // A node (the bf16 cast, or x * 1) feeding every branch, as a Dilated Reparam Block's input.
        const input = dtype === 'bf16' ? cf.cast(x, 'bf16') : cf.mul(x, 1);
        const ys = branches.map((b, i) => cf.depthwiseConv2d(input, cf.fromArray(weights[i]!, [c, b.k, b.k], { device, dtype }), null, { dilation: b.dil }));
        const y = cf.add(cf.add(ys[0]!, ys[1]!), ys[2]!);
        const loss = cf.sum(cf.mul(cf.cast(y, 'f32'), cf.fromArray(coef, [n, h, w, c], { device })));
        return recordNativeCalls({ binary: (a) => `binary ${a[0]}`, dwconvBackwardInput: (a) => `dwconvBackwardInput accumulate=${a[7]}` }, () => {
          loss.backward();
          return x.grad!.toArray();
        });
      });
      const what = `${dtype} on ${device}`;
      assert.equal(calls.filter((s) => s.startsWith('dwconv')), ['dwconvBackwardInput accumulate=false', 'dwconvBackwardInput accumulate=true', 'dwconvBackwardInput accumulate=true'], what);
      // (The loss's sum broadcasts its gradient with an add before the branches run.)
      const afterBranches = calls.slice(calls.indexOf('dwconvBackwardInput accumulate=false'));
      assert.not.ok(afterBranches.includes('binary add'), `no gradient sum, ${what}: ${calls.join(', ')}`);
      // The reference: the sum of the branches' own input gradients.
      const g0 = { n, h, w, c, k: 0, stride: 1, dil: 1, ph: 0, pw: 0 };
      const want = new Float64Array(xs.length);
      branches.forEach((b, i) => {
        const pad = (b.dil * (b.k - 1)) / 2;
        const ws = dtype === 'f32' ? weights[i]! : bf16Rounded(weights[i]!);
        refBackward(xs, ws, coef, { ...g0, k: b.k, dil: b.dil, ph: pad, pw: pad }).dx.forEach((v, j) => (want[j] += v));
      });
      if (dtype === 'f32') assertClose(dx, want, { rtol: 1e-4, atol: 1e-4, what });
      else assert.ok(maxRelError(dx, want, 1) < 2e-2, `${what}: ${maxRelError(dx, want, 1)}`);
    }
  }
});

test('the weight gradient is deterministic, whatever the CPU thread count', () => {
  const g: Geom = { n: 3, h: 20, w: 18, c: 21, k: 7, stride: 1, dil: 1, ph: 3, pw: 3 };
  const { xs, ws, bs, dys } = data(g);
  for (const device of devices()) {
    const a = run(g, xs, ws, bs, dys, device, 'f32', 'nhwc');
    const b = run(g, xs, ws, bs, dys, device, 'f32', 'nhwc');
    assert.equal(Array.from(a.dw), Array.from(b.dw), `dw on ${device}`);
    assert.equal(Array.from(a.db), Array.from(b.db), `db on ${device}`);
  }
  const threads = cf.backendInfo().threads;
  const results = [1, 3].map((n) => {
    cf.setNumThreads(n);
    return run(g, xs, ws, bs, dys, 'cpu', 'f32', 'nhwc');
  });
  cf.setNumThreads(threads);
  assert.equal(Array.from(results[0]!.dw), Array.from(results[1]!.dw), 'dw with 1 and 3 threads');
  assert.equal(Array.from(results[0]!.y), Array.from(results[1]!.y), 'y with 1 and 3 threads');
});

test('reparameterization: 13 x 13 plus dilated branches (5 d1, 7 d2, 3 d3, 3 d4, 3 d5) equals the merged kernel', () => {
  const C = 6;
  const branches: [number, number][] = [[5, 1], [7, 2], [3, 3], [3, 4], [3, 5]];
  for (const device of devices()) {
    cf.scope(() => {
      const x = cf.fromArray(rng.array(2 * 19 * 17 * C), [2, 19, 17, C], { device });
      const main = cf.fromArray(rng.array(C * 169, 0.1), [C, 1, 13, 13], { device });
      const mainB = cf.fromArray(rng.array(C), [C], { device });
      let sum = cf.depthwiseConv2d(x, main, mainB);
      let bias = mainB;
      const parts = branches.map(([k, d]) => {
        const w = cf.fromArray(rng.array(C * k * k, 0.3), [C, 1, k, k], { device });
        const b = cf.fromArray(rng.array(C), [C], { device });
        sum = cf.add(sum, cf.depthwiseConv2d(x, w, b, { dilation: d }));
        bias = cf.add(bias, b);
        return { w, dilation: d };
      });
      const merged = cf.mergeDilatedBranches(main, parts);
      assert.equal([...merged.shape], [C, 1, 13, 13]);
      assert.is(merged.device, main.device);
      const one = cf.depthwiseConv2d(x, merged, bias);
      assertClose(one.toArray(), sum.toArray(), { rtol: 1e-4, atol: 1e-4, what: `merged on ${device}` });
    });
  }
});

test('reparameterization places a dilated tap at d * i from the centre', () => {
  cf.scope(() => {
    const main = cf.zeros([1, 7, 7]);
    const merged = cf.mergeDilatedBranches(main, [{ w: cf.fromArray([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 3, 3]), dilation: 3 }]);
    const m = merged.toArray();
    const want = new Float32Array(49);
    [0, 3, 6].forEach((r, i) => [0, 3, 6].forEach((c, j) => (want[r * 7 + c] = i * 3 + j + 1)));
    assert.equal(Array.from(m), Array.from(want));
    assert.throws(() => cf.mergeDilatedBranches(main, [{ w: cf.zeros([1, 5, 5]), dilation: 2 }]), /dilated extent/);
    assert.throws(() => cf.mergeDilatedBranches(main, [{ w: cf.zeros([2, 3, 3]), dilation: 1 }]), /channels/);
    assert.throws(() => cf.mergeDilatedBranches(main, [{ w: cf.zeros([1, 3, 3]), dilation: 0 }]), /dilation/);
  });
});

test('nchwToNhwc and nhwcToNchw are inverse copies with gradients', () => {
  cf.scope(() => {
    const v = rng.array(2 * 3 * 4 * 5);
    const x = cf.fromArray(v, [2, 3, 4, 5]);
    const y = cf.nchwToNhwc(x);
    assert.equal([...y.shape], [2, 4, 5, 3]);
    // y[n, h, w, c] = x[n, c, h, w], and the round trip gives x back.
    const want = new Float32Array(v.length);
    for (let n = 0; n < 2; n++)
      for (let c = 0; c < 3; c++)
        for (let i = 0; i < 20; i++) want[(n * 20 + i) * 3 + c] = v[(n * 3 + c) * 20 + i]!;
    assert.equal(Array.from(y.toArray()), Array.from(want));
    assert.equal(Array.from(cf.nhwcToNchw(y).toArray()), Array.from(v));
    assert.throws(() => cf.nchwToNhwc(cf.zeros([2, 3, 4])), /rank-4/);
  });
  gradCheck((x) => cf.nhwcToNchw(x), [{ data: rng.array(24), shape: [1, 2, 3, 4] }]);
});

test('bad arguments throw errors naming the op, the argument and the value', () => {
  cf.scope(() => {
    const x = cf.zeros([1, 8, 8, 4]);
    const w = cf.zeros([4, 1, 3, 3]);
    const conv = (opts: cf.DepthwiseConv2dOptions, xx = x, ww = w, b: cf.Tensor | null = null) => () => cf.depthwiseConv2d(xx, ww, b, opts);
    assert.throws(conv({}, x, cf.zeros([4, 1, 4, 4])), /depthwiseConv2d: expected an odd kernel size K in \[1, 31\] for w, got shape \[4, 1, 4, 4\]/);
    assert.throws(conv({}, x, cf.zeros([4, 1, 33, 33])), /odd kernel size/);
    assert.throws(conv({}, x, cf.zeros([4, 3, 5])), /\[C, 1, K, K\] or \[C, K, K\]/);
    assert.throws(conv({}, x, cf.zeros([4, 2, 3, 3])), /\[C, 1, K, K\] or \[C, K, K\]/);
    assert.throws(conv({}, x, cf.zeros([5, 3, 3])), /one filter per channel \(4\)/);
    assert.throws(conv({ stride: 3 }), /expected 1 or 2 for stride, got 3/);
    assert.throws(conv({ dilation: 6 }), /expected an integer in \[1, 5\] for dilation, got 6/);
    assert.throws(conv({ dilation: 1.5 }), /dilation/);
    assert.throws(conv({ padding: 3 }), /expected 'same', an integer in \[0, 2\].* for padding, got 3/);
    assert.throws(conv({ padding: -1 }), /for padding/);
    assert.throws(conv({ padding: [1, 0.5] }), /for padding/);
    assert.throws(conv({ padding: 'valid' as 'same' }), /for padding/);
    assert.throws(conv({ layout: 'nwhc' as cf.ConvLayout }), /expected 'nhwc' or 'nchw' for layout/);
    assert.throws(conv({}, cf.zeros([8, 8, 4])), /rank-4/);
    assert.throws(conv({ padding: 0 }, cf.zeros([1, 2, 8, 4])), /dilated kernel extent 3/);
    assert.throws(conv({}, x, w, cf.zeros([3])), /bias/);
    assert.throws(conv({}, x, cf.zeros([4, 1, 3, 3], { dtype: 'bf16' })), /same dtype/);
    assert.throws(conv({}, cf.zeros([1, 8, 8, 4], { dtype: 'i32' })), /dtype/);
    assert.throws(() => cf.depthwiseConv2d(x, 3 as unknown as cf.Tensor), /expected a Tensor for w/);
    assert.throws(() => cf.depthwiseConv2d(x, w, null, null as unknown as cf.DepthwiseConv2dOptions), /options/);
    const d = cf.zeros([1, 8, 8, 4]);
    d.dispose();
    assert.throws(conv({}, d), /disposed/);
  });
});

test('the addon checks direct callers too', () => {
  const { native } = cf;
  cf.scope(() => {
    const x = cf.zeros([1, 8, 8, 4]);
    const w = cf.zeros([4, 3, 3]);
    const y = cf.zeros([1, 8, 8, 4]);
    assert.throws(() => native.dwconvForward(x, w, null, cf.zeros([1, 8, 7, 4]), 1, 1, 1, 1), /dwconvForward: expected \[1, 8, 8, 4\] for y.shape, got \[1, 8, 7, 4\]/);
    assert.throws(() => native.dwconvForward(x, w, null, y, 3, 1, 1, 1), /dwconvForward: expected an integer in \[1, 2\] for stride, got 3/);
    assert.throws(() => native.dwconvForward(x, w, null, y, 1, 3, 1, 1), /for padH, got 3/);
    assert.throws(() => native.dwconvForward(x, w, null, y, 1, 1, 1, 0), /for dilation, got 0/);
    assert.throws(() => native.dwconvForward(x, cf.zeros([4, 2, 2]), null, y, 1, 1, 1, 1), /odd kernel size/);
    assert.throws(() => native.dwconvForward(x, w, null, x, 1, 1, 1, 1), /must not share memory with x/);
    assert.throws(() => native.dwconvForward(x, w, cf.zeros([4, 1]), y, 1, 1, 1, 1), /for bias.shape/);
    assert.throws(() => native.dwconvForward(x, w, 7 as unknown as cf.Tensor, y, 1, 1, 1, 1), /expected a Tensor for bias/);
    assert.throws(() => native.dwconvForward(cf.zeros([1, 2, 2, 4]), w, null, y, 1, 0, 0, 1), /dilated kernel extent 3/);
    assert.throws(() => native.dwconvBackwardInput(y, w, cf.zeros([1, 8, 8, 4], { dtype: 'bf16' }), 1, 1, 1, 1, false), /same dtype/);
    assert.throws(() => native.dwconvBackwardInput(y, w, x, 1, 1, 1, 1, 1 as unknown as boolean), /dwconvBackwardInput: expected a boolean for accumulate, got 1/);
    assert.throws(() => native.dwconvBackwardWeight(x, y, null, null, 3, 1, 1, 1, 1), /at least one output tensor/);
    assert.throws(() => native.dwconvBackwardWeight(null, y, cf.zeros([4, 3, 3]), null, 3, 1, 1, 1, 1), /dw needs the input/);
    assert.throws(() => native.dwconvBackwardWeight(x, y, cf.zeros([4, 5, 5]), null, 3, 1, 1, 1, 1), /kernelSize 3/);
    assert.throws(() => native.dwconvBackwardWeight(x, y, cf.zeros([4, 3, 3]), null, 4, 1, 1, 1, 1), /odd integer/);
    assert.throws(() => native.dwconvBackwardWeight(x, y, null, cf.zeros([5]), 3, 1, 1, 1, 1), /for db.shape/);
    assert.throws(() => (native.dwconvForward as unknown as (...a: unknown[]) => void)(x, w), /expected 8 arguments/);
  });
});

test.run();
