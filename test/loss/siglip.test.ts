import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { devices, eachLossKernel, gradCheck, Rng } from '../support/helpers.js';

const test = suite('siglipLoss');
const rng = new Rng(4242);

/** log(1 + e^x) without overflow or cancellation, f64. */
const softplus = (x: number): number => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/**
 * weight · Σ_ij softplus(−z_ij · logit_ij), z = +1 at j = i + offset, and its gradients,
 * from the materialized logits in f64.
 */
function siglipReference(a: ArrayLike<number>, b: ArrayLike<number>, na: number, nb: number, d: number, t: number, bias: number, offset: number, weight: number) {
  const s = Math.exp(t);
  let loss = 0, dt = 0, dbias = 0;
  const da = new Float64Array(na * d);
  const db = new Float64Array(nb * d);
  for (let i = 0; i < na; i++) {
    for (let j = 0; j < nb; j++) {
      let x = 0;
      for (let k = 0; k < d; k++) x += a[i * d + k]! * b[j * d + k]!;
      const logit = s * x + bias;
      const z = j === i + offset ? 1 : -1;
      loss += weight * softplus(-z * logit);
      const g = weight * (sigmoid(logit) - (z > 0 ? 1 : 0));
      dt += g * s * x;
      dbias += g;
      for (let k = 0; k < d; k++) {
        da[i * d + k]! += s * g * b[j * d + k]!;
        db[j * d + k]! += s * g * a[i * d + k]!;
      }
    }
  }
  return { loss, da, db, dt, dbias };
}

function assertNear(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i]! - expected[i]!);
    if (!(err <= tol * Math.max(scale, 1e-30))) assert.unreachable(`${what}[${i}]: got ${actual[i]}, expected ${expected[i]} (max |expected| ${scale}, tol ${tol})`);
  }
}

function run(a: Float32Array, b: Float32Array, n: number, d: number, t: number, bias: number, device: string, dtype: 'f32' | 'bf16' = 'f32') {
  return cf.scope(() => {
    const img = cf.fromArray(a, [n, d], { device, dtype, requiresGrad: true });
    const txt = cf.fromArray(b, [n, d], { device, dtype, requiresGrad: true });
    const ls = cf.fromArray([t], [], { device, requiresGrad: true });
    const lb = cf.fromArray([bias], [1], { device, requiresGrad: true });
    const loss = cf.siglipLoss(img, txt, ls, lb);
    const value = loss.item();
    loss.backward();
    return { loss: value, da: img.grad!.toArray(), db: txt.grad!.toArray(), dt: ls.grad!.item(), dbias: lb.grad!.item(), biasShape: [...lb.grad!.shape] };
  });
}

const shapes: [number, number][] = [[1, 1], [1, 9], [3, 2], [7, 31], [40, 64], [97, 100], [250, 40], [900, 8], [150, 512], [60, 1030]];

test('matches the materialized f64 reference: loss and gradients, many N and D', () => {
  for (const [n, d] of shapes) {
    const t = Math.log(10) + rng.next() * 2;
    const bias = -10 + rng.next() * 8;
    const a = rng.unitRows(n, d);
    const b = rng.unitRows(n, d);
    const ref = siglipReference(a, b, n, n, d, t, bias, 0, 1 / n);
    const got = run(a, b, n, d, t, bias, 'cpu');
    assertNear([got.loss], [ref.loss], 2e-6, `loss N ${n} D ${d}`);
    assertNear(got.da, ref.da, 2e-4, `dimg N ${n} D ${d}`);
    assertNear(got.db, ref.db, 2e-4, `dtxt N ${n} D ${d}`);
    assertNear([got.dt], [ref.dt], 1e-4, `dlogitScale N ${n} D ${d}`);
    assertNear([got.dbias], [ref.dbias], 1e-4, `dlogitBias N ${n} D ${d}`);
    assert.equal(got.biasShape, [1]);
  }
});

test('SigLIP initialization (scale 10, bias −10): tiny negative terms keep their precision', () => {
  // Each negative pair contributes softplus(logit) ≈ e^-10 ≈ 4.5e-5; a naive log(1 + y) in f32
  // would lose about 1e-3 of each term, and the negatives dominate the sum at this size.
  const n = 300, d = 32;
  const a = rng.unitRows(n, d);
  const b = rng.unitRows(n, d);
  const t = cf.scope(() => cf.initLogitScale(cf.SIGLIP_LOGIT_SCALE_INIT).item());
  const bias = cf.scope(() => cf.initLogitBias().item());
  assert.is(bias, -10);
  const ref = siglipReference(a, b, n, n, d, t, bias, 0, 1 / n);
  const got = run(a, b, n, d, t, bias, 'cpu');
  assertNear([got.loss], [ref.loss], 1e-6, 'loss');
  assertNear([got.dbias], [ref.dbias], 1e-5, 'dbias');
});

test('extreme logits (scale 100, |bias| 30) stay finite and exact', () => {
  const n = 30, d = 16;
  const a = rng.array(n * d, 2);
  const b = rng.array(n * d, 2);
  for (const bias of [-30, 30]) {
    const ref = siglipReference(a, b, n, n, d, Math.log(100), bias, 0, 1 / n);
    const got = run(a, b, n, d, Math.log(100), bias, 'cpu');
    assert.ok(Number.isFinite(got.loss));
    assertNear([got.loss], [ref.loss], 1e-5, `loss bias ${bias}`);
    assertNear(got.da, ref.da, 1e-4, `dimg bias ${bias}`);
    assertNear([got.dbias], [ref.dbias], 1e-4, `dbias bias ${bias}`);
  }
});

test('bf16 features', () => {
  const n = 64, d = 40;
  const a = rng.unitRows(n, d);
  const b = rng.unitRows(n, d);
  const round = (x: Float32Array) => cf.scope(() => cf.fromArray(x, [x.length], { dtype: 'bf16' }).toArray());
  const ref = siglipReference(round(a), round(b), n, n, d, 2.3, -5, 0, 1 / n);
  const got = run(a, b, n, d, 2.3, -5, 'cpu', 'bf16');
  assertNear([got.loss], [ref.loss], 1e-5, 'loss');
  assertNear(got.da, ref.da, 1e-2, 'dimg');
  assertNear(got.db, ref.db, 1e-2, 'dtxt');
  assertNear([got.dt, got.dbias], [ref.dt, ref.dbias], 1e-4, 'dscale, dbias');
});

test('gradients match finite differences for img, txt, the scale and the bias', () => {
  const n = 5, d = 4;
  gradCheck((img, txt, ls, lb) => cf.siglipLoss(img!, txt!, ls!, lb!), [
    { data: rng.array(n * d, 0.7), shape: [n, d] },
    { data: rng.array(n * d, 0.7), shape: [n, d] },
    { data: Float32Array.from([0.9]), shape: [] },
    { data: Float32Array.from([-1.5]), shape: [] },
  ]);
});

test('only the gradients asked for are computed', () => {
  const n = 20, d = 8;
  const a = rng.unitRows(n, d);
  const b = rng.unitRows(n, d);
  const ref = siglipReference(a, b, n, n, d, 1.5, -2, 0, 1 / n);
  cf.scope(() => {
    const img = cf.fromArray(a, [n, d]);
    const txt = cf.fromArray(b, [n, d], { requiresGrad: true });
    const ls = cf.scalar(1.5);
    const lb = cf.scalar(-2, { requiresGrad: true });
    cf.siglipLoss(img, txt, ls, lb).backward();
    assert.is(img.grad, null);
    assert.is(ls.grad, null);
    assertNear(txt.grad!.toArray(), ref.db, 2e-4, 'dtxt');
    assertNear([lb.grad!.item()], [ref.dbias], 1e-4, 'dbias');
  });
});

test('CUDA matches the CPU, f32 and bf16 (runs only with a GPU)', () => {
  for (const device of devices()) {
    if (device === 'cpu') continue;
    // d 45 (not a multiple of 8) takes the SIMT tiles for bf16 too; the others the tensor-core tiles.
    for (const [n, d] of [[1, 8], [77, 40], [300, 512], [1100, 96], [130, 45]] as [number, number][]) {
      const a = rng.unitRows(n, d);
      const b = rng.unitRows(n, d);
      const cpu = { f32: run(a, b, n, d, 2.3, -10, 'cpu', 'f32'), bf16: run(a, b, n, d, 2.3, -10, 'cpu', 'bf16') };
      eachLossKernel(device, (kernel) => {
        for (const dtype of kernel === 'auto' ? (['f32', 'bf16'] as const) : (['bf16'] as const)) {
          const gpu = run(a, b, n, d, 2.3, -10, device, dtype);
          const f32 = dtype === 'f32';
          const what = `${device} ${kernel} ${dtype} N ${n} D ${d}`;
          assertNear([gpu.loss], [cpu[dtype].loss], f32 ? 1e-5 : 1e-2, `${what} loss`);
          assertNear(gpu.da, cpu[dtype].da, f32 ? 1e-4 : 2e-2, `${what} dimg`);
          assertNear(gpu.db, cpu[dtype].db, f32 ? 1e-4 : 2e-2, `${what} dtxt`);
          assertNear([gpu.dt, gpu.dbias], [cpu[dtype].dt, cpu[dtype].dbias], f32 ? 1e-4 : 1e-2, `${what} dscale, dbias`);
        }
      });
    }
  }
});

test('CUDA local loss (na != nb, positives offset) and the loss alone match the CPU (runs only with a GPU)', () => {
  const na = 200, nb = 520, d = 32, offset = 130;
  const runNative = (device: string, a: Float32Array, b: Float32Array, grads: boolean) =>
    cf.scope(() => {
      const A = cf.fromArray(a, [na, d], { device, dtype: 'bf16' });
      const B = cf.fromArray(b, [nb, d], { device, dtype: 'bf16' });
      const ls = cf.fromArray([Math.log(10)], [], { device });
      const bias = cf.fromArray([-4], [], { device });
      const loss = cf.empty([], { device });
      const da = grads ? cf.empty([na, d], { device }) : null;
      const db = grads ? cf.empty([nb, d], { device }) : null;
      const dls = grads ? cf.empty([], { device }) : null;
      const dbias = grads ? cf.empty([], { device }) : null;
      cf.native.siglipLoss(A, B, ls, bias, offset, 1 / na, loss, da, db, dls, dbias);
      return { loss: loss.item(), da: da?.toArray() ?? [], db: db?.toArray() ?? [], dt: dls?.item() ?? 0, dbias: dbias?.item() ?? 0 };
    });
  for (const device of devices()) {
    if (device === 'cpu') continue;
    const a = rng.unitRows(na, d);
    const b = rng.unitRows(nb, d);
    const cpu = runNative('cpu', a, b, true);
    eachLossKernel(device, (kernel) => {
      for (const grads of [true, false]) {
        const gpu = runNative(device, a, b, grads);
        const what = `${device} ${kernel} grads ${grads}`;
        assertNear([gpu.loss], [cpu.loss], 1e-2, `${what} loss`);
        if (!grads) continue;
        assertNear(gpu.da, cpu.da, 2e-2, `${what} da`);
        assertNear(gpu.db, cpu.db, 2e-2, `${what} db`);
        assertNear([gpu.dt, gpu.dbias], [cpu.dt, cpu.dbias], 1e-2, `${what} dscale, dbias`);
      }
    });
  }
});

test('bad inputs throw clear errors', () => {
  cf.scope(() => {
    const x = cf.zeros([4, 3]);
    const s = cf.scalar(1);
    assert.throws(() => cf.siglipLoss(x, x, s, cf.zeros([1, 1])), /siglipLoss: expected shape \[\] or \[1\] for logitBias, got \[1, 1\]/);
    assert.throws(() => cf.siglipLoss(x, x, s, undefined as unknown as cf.Tensor), /siglipLoss: expected a Tensor for logitBias, got undefined/);
    assert.throws(() => cf.siglipLoss(x, cf.zeros([3, 3]), s, s), /siglipLoss: expected shape \[4, 3\] for txt, got \[3, 3\]/);
    assert.throws(() => cf.siglipLoss(x, x, cf.scalar(1, { dtype: 'i32' }), s), /siglipLoss: expected a tensor of dtype 'f32' or 'bf16' for logitScale/);
    const n = cf.native;
    const loss = cf.empty([]);
    assert.throws(() => n.siglipLoss(x, x, s, s, 2, 1, loss, null, null, null, null), /siglipLoss: expected an integer in \[0, 0\] .* for offset, got 2/);
    assert.throws(() => n.siglipLoss(x, x, s, s, -1, 1, loss, null, null, null, null), /siglipLoss: expected an integer in \[0, 2147483647\] for offset, got -1/);
    assert.throws(() => n.siglipLoss(x, x, s, cf.zeros([2]), 0, 1, loss, null, null, null, null), /siglipLoss: expected \[\] or \[1\] for bias.shape, got \[2\]/);
    assert.throws(() => n.siglipLoss(x, x, s, s, 0, Infinity, loss, null, null, null, null), /siglipLoss: expected a finite number for weight/);
    assert.throws(() => n.siglipLoss(x, x, s, s, 0, 1, s, null, null, null, null), /siglipLoss: out must not share memory with logScale/);
    assert.throws(() => n.siglipLoss(x, x, s, s, 0, 1, loss, null, null, null, cf.empty([2])), /siglipLoss: expected \[\] or \[1\] for dBias.shape, got \[2\]/);
    assert.throws(() => n.siglipLoss(x, x, s, s, 0, 1, loss, cf.empty([4, 3], { dtype: 'bf16' }), null, null, null), /siglipLoss: expected f32 for da.dtype, got bf16/);
    assert.throws(() => n.siglipLoss(x, x, s, s, 0, 1, loss, loss, null, null, null), /siglipLoss: expected \[4, 3\] for da.shape, got \[\]/);
    const loose = n.siglipLoss as unknown as (...args: unknown[]) => void;
    assert.throws(() => loose(x, x, s, s), /siglipLoss: expected 7 arguments, got 4/);
  });
});

test.run();
