import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, gradCheck, hasCuda, maxRelError, Rng } from '../support/helpers.js';

const test = suite('conv2d');
const rng = new Rng(21);

interface Geom {
  n: number;
  h: number;
  w: number;
  c: number;
  o: number;
  k: number;
  stride: number;
  ph: number;
  pw: number;
}

const outH = (g: Geom): number => Math.floor((g.h + 2 * g.ph - g.k) / g.stride) + 1;
const outW = (g: Geom): number => Math.floor((g.w + 2 * g.pw - g.k) / g.stride) + 1;

// Direct convolution in float64, NHWC input and output, PyTorch's [O, C, K, K] weight, and its
// three gradients by running the same loops backwards.
function reference(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number>, dy: ArrayLike<number>, g: Geom) {
  const oh = outH(g), ow = outW(g);
  const y = new Float64Array(g.n * oh * ow * g.o);
  const dx = new Float64Array(x.length), dw = new Float64Array(w.length), db = new Float64Array(g.o);
  for (let n = 0; n < g.n; n++)
    for (let a = 0; a < oh; a++)
      for (let q = 0; q < ow; q++)
        for (let o = 0; o < g.o; o++) {
          const yi = ((n * oh + a) * ow + q) * g.o + o;
          let acc = b[o]!;
          const gy = dy[yi]!;
          db[o] += gy;
          for (let c = 0; c < g.c; c++)
            for (let i = 0; i < g.k; i++) {
              const ih = a * g.stride - g.ph + i;
              if (ih < 0 || ih >= g.h) continue;
              for (let j = 0; j < g.k; j++) {
                const iw = q * g.stride - g.pw + j;
                if (iw < 0 || iw >= g.w) continue;
                const xi = ((n * g.h + ih) * g.w + iw) * g.c + c, wi = ((o * g.c + c) * g.k + i) * g.k + j;
                acc += w[wi]! * x[xi]!;
                dx[xi] += w[wi]! * gy;
                dw[wi] += x[xi]! * gy;
              }
            }
          y[yi] = acc;
        }
  return { y, dx, dw, db };
}

function run(g: Geom, xs: Float32Array, ws: Float32Array, bs: Float32Array, dys: Float32Array, device: string, dtype: 'f32' | 'bf16' = 'f32') {
  return cf.scope(() => {
    const x = cf.fromArray(xs, [g.n, g.h, g.w, g.c], { device, dtype, requiresGrad: true });
    const w = cf.fromArray(ws, [g.o, g.c, g.k, g.k], { device, dtype, requiresGrad: true });
    const b = cf.fromArray(bs, [g.o], { device, dtype, requiresGrad: true });
    const y = cf.conv2d(x, w, b, { stride: g.stride, padding: [g.ph, g.pw] });
    assert.equal([...y.shape], [g.n, outH(g), outW(g), g.o]);
    y.backward(cf.fromArray(dys, [...y.shape], { device, dtype }));
    return { y: y.toArray(), dx: x.grad!.toArray(), dw: w.grad!.toArray(), db: b.grad!.toArray() };
  });
}

function randomGeom(): Geom {
  const k = rng.int(1, 5);
  const g: Geom = { n: rng.int(1, 3), h: rng.int(1, 9), w: rng.int(1, 9), c: rng.int(1, 5), o: rng.int(1, 6), k, stride: rng.int(1, 3), ph: rng.int(0, k - 1), pw: rng.int(0, k - 1) };
  g.h = Math.max(g.h, k - 2 * g.ph);
  g.w = Math.max(g.w, k - 2 * g.pw);
  return g;
}

function data(g: Geom) {
  return { xs: rng.array(g.n * g.h * g.w * g.c), ws: rng.array(g.o * g.c * g.k * g.k, 0.3), bs: rng.array(g.o), dys: rng.array(g.n * outH(g) * outW(g) * g.o) };
}

function check(g: Geom, device: string): void {
  const { xs, ws, bs, dys } = data(g);
  const r = run(g, xs, ws, bs, dys, device);
  const ref = reference(xs, ws, bs, dys, g);
  const what = `${JSON.stringify(g)} on ${device}`;
  assertClose(r.y, ref.y, { rtol: 1e-4, atol: 1e-4, what: `y ${what}` });
  assertClose(r.dx, ref.dx, { rtol: 1e-4, atol: 1e-4, what: `dx ${what}` });
  assertClose(r.dw, ref.dw, { rtol: 1e-4, atol: 1e-3, what: `dw ${what}` });
  assertClose(r.db, ref.db, { rtol: 1e-4, atol: 1e-3, what: `db ${what}` });
}

test('forward and gradients match a direct convolution on random geometries', () => {
  for (const device of devices()) for (let t = 0; t < 30; t++) check(randomGeom(), device);
});

test("UniRepLKNet's stem and downsampling geometry: 3 x 3, stride 2, padding 1, odd and even sizes", () => {
  for (const device of devices()) {
    check({ n: 2, h: 15, w: 16, c: 3, o: 8, k: 3, stride: 2, ph: 1, pw: 1 }, device);
    check({ n: 1, h: 7, w: 7, c: 16, o: 32, k: 3, stride: 2, ph: 1, pw: 1 }, device);
  }
});

test('gradients match finite differences for x, w and bias', () => {
  const g: Geom = { n: 2, h: 5, w: 4, c: 3, o: 2, k: 3, stride: 2, ph: 1, pw: 1 };
  gradCheck((x, w, b) => cf.conv2d(x, w, b, { stride: 2, padding: 1 }), [
    { data: rng.array(g.n * g.h * g.w * g.c), shape: [g.n, g.h, g.w, g.c] },
    { data: rng.array(g.o * g.c * 9, 0.5), shape: [g.o, g.c, 3, 3] },
    { data: rng.array(g.o), shape: [g.o] },
  ]);
});

test("layout 'nchw' gives the NHWC result transposed, without bias", () => {
  const g: Geom = { n: 2, h: 6, w: 5, c: 3, o: 4, k: 3, stride: 2, ph: 1, pw: 1 };
  const { xs, ws } = data(g);
  cf.scope(() => {
    const x = cf.fromArray(xs, [g.n, g.h, g.w, g.c]);
    const w = cf.fromArray(ws, [g.o, g.c, 3, 3]);
    const nhwc = cf.conv2d(x, w, null, { stride: 2, padding: 1 });
    const nchw = cf.conv2d(cf.nhwcToNchw(x), w, null, { stride: 2, padding: 1, layout: 'nchw' });
    assert.equal([...nchw.shape], [g.n, g.o, outH(g), outW(g)]);
    assertClose(cf.nhwcToNchw(nhwc).toArray(), nchw.toArray(), { rtol: 1e-6, atol: 1e-6 });
  });
});

test('bf16 storage stays within 2e-2 of the f32 reference', () => {
  const g: Geom = { n: 2, h: 9, w: 9, c: 8, o: 6, k: 3, stride: 2, ph: 1, pw: 1 };
  const { xs, ws, bs, dys } = data(g);
  const ref = reference(xs, ws, bs, dys, g);
  for (const device of devices()) {
    const r = run(g, xs, ws, bs, dys, device, 'bf16');
    assert.ok(maxRelError(r.y, ref.y, 1) < 2e-2, `y on ${device}`);
    assert.ok(maxRelError(r.dx, ref.dx, 1) < 2e-2, `dx on ${device}`);
  }
});

test('CUDA matches the CPU', () => {
  if (!hasCuda()) return;
  for (let t = 0; t < 10; t++) {
    const g = randomGeom();
    const { xs, ws, bs, dys } = data(g);
    const a = run(g, xs, ws, bs, dys, 'cpu'), b = run(g, xs, ws, bs, dys, 'cuda:0');
    for (const k of ['y', 'dx', 'dw', 'db'] as const) assertClose(b[k], a[k], { rtol: 1e-4, atol: 1e-4, what: `${k} ${JSON.stringify(g)}` });
  }
});

test('bad arguments throw errors naming the op, the argument and the value', () => {
  cf.scope(() => {
    const x = cf.zeros([1, 4, 4, 3]);
    const w = cf.zeros([2, 3, 3, 3]);
    assert.throws(() => cf.conv2d(x, cf.zeros([2, 3, 3])), /conv2d: expected shape \[O, C, K, K\] for w, got \[2, 3, 3\]/);
    assert.throws(() => cf.conv2d(x, cf.zeros([2, 4, 3, 3])), /conv2d: expected 3 input channels \(those of x\)/);
    assert.throws(() => cf.conv2d(cf.zeros([4, 4, 3]), w), /conv2d: expected a rank-4 tensor \[N, H, W, C\] for x/);
    assert.throws(() => cf.conv2d(x, w, cf.zeros([3])), /conv2d: expected shape \[2\] for bias, got \[3\]/);
    assert.throws(() => cf.conv2d(x, w, null, { stride: 0 }), /conv2d: expected an integer in \[1, 8\] for stride, got 0/);
    assert.throws(() => cf.conv2d(x, w, null, { padding: 3 }), /conv2d: expected an integer in \[0, 2\] \(K - 1\) or a pair of them for padding, got 3/);
    assert.throws(() => cf.conv2d(cf.zeros([1, 2, 2, 3]), w), /conv2d: expected H \+ 2 ph and W \+ 2 pw of at least the kernel size 3/);
    assert.throws(() => cf.conv2d(x, w, null, { layout: 'nwhc' as cf.ConvLayout }), /conv2d: expected 'nhwc' or 'nchw' for layout/);
    assert.throws(() => cf.native.im2col(x, cf.zeros([16, 26]), 3, 1, 1, 1), /im2col: expected \[16, 27\] for cols.shape, got \[16, 26\]/);
    assert.throws(() => cf.native.col2im(cf.zeros([16, 27]), x, 3, 1, 5, 1), /col2im: expected an integer in \[0, 2\] for padH, got 5/);
  });
});

test.run();
