import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { devices, eachLossKernel, gradCheck, Rng } from '../support/helpers.js';

const test = suite('clipLoss');
const rng = new Rng(2024);

interface Terms {
  rows: boolean;
  cols: boolean;
  rowOffset: number;
  colOffset: number;
  wRow: number;
  wCol: number;
}

/** The loss and its gradients from the materialized logit matrix, in f64. */
function clipReference(a: ArrayLike<number>, b: ArrayLike<number>, na: number, nb: number, d: number, t: number, terms: Terms) {
  const s = Math.exp(t);
  const L = Array.from({ length: na }, (_, i) =>
    Array.from({ length: nb }, (_, j) => {
      let x = 0;
      for (let k = 0; k < d; k++) x += a[i * d + k]! * b[j * d + k]!;
      return s * x;
    }),
  );
  const G = Array.from({ length: na }, () => new Float64Array(nb));
  let loss = 0;
  const lse = (xs: number[]): number => {
    const m = Math.max(...xs);
    return m + Math.log(xs.reduce((acc, x) => acc + Math.exp(x - m), 0));
  };
  if (terms.rows) {
    for (let i = 0; i < na; i++) {
      const l = lse(L[i]!);
      loss += terms.wRow * (l - L[i]![i + terms.rowOffset]!);
      for (let j = 0; j < nb; j++) G[i]![j]! += terms.wRow * Math.exp(L[i]![j]! - l);
      G[i]![i + terms.rowOffset]! -= terms.wRow;
    }
  }
  if (terms.cols) {
    for (let j = 0; j < nb; j++) {
      const col = L.map((r) => r[j]!);
      const l = lse(col);
      loss += terms.wCol * (l - L[j + terms.colOffset]![j]!);
      for (let i = 0; i < na; i++) G[i]![j]! += terms.wCol * Math.exp(L[i]![j]! - l);
      G[j + terms.colOffset]![j]! -= terms.wCol;
    }
  }
  const da = new Float64Array(na * d);
  const db = new Float64Array(nb * d);
  let dt = 0;
  for (let i = 0; i < na; i++) {
    for (let j = 0; j < nb; j++) {
      const g = G[i]![j]!;
      dt += g * L[i]![j]!;
      for (let k = 0; k < d; k++) {
        da[i * d + k]! += s * g * b[j * d + k]!;
        db[j * d + k]! += s * g * a[i * d + k]!;
      }
    }
  }
  return { loss, da, db, dt };
}

const symmetric = (n: number): Terms => ({ rows: true, cols: true, rowOffset: 0, colOffset: 0, wRow: 1 / (2 * n), wCol: 1 / (2 * n) });

/** max |a − e| <= tol · max |e| (errors measured against the largest entry). */
function assertNear(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i]! - expected[i]!);
    if (!(err <= tol * Math.max(scale, 1e-30))) assert.unreachable(`${what}[${i}]: got ${actual[i]}, expected ${expected[i]} (max |expected| ${scale}, tol ${tol})`);
  }
}

/** Loss and gradients of clipLoss on a device, as host arrays. */
function run(a: Float32Array, b: Float32Array, n: number, d: number, t: number, device: string, dtype: 'f32' | 'bf16' = 'f32') {
  return cf.scope(() => {
    const img = cf.fromArray(a, [n, d], { device, dtype, requiresGrad: true });
    const txt = cf.fromArray(b, [n, d], { device, dtype, requiresGrad: true });
    const ls = cf.fromArray([t], [], { device, requiresGrad: true });
    const loss = cf.clipLoss(img, txt, ls);
    assert.equal([...loss.shape], []);
    assert.is(loss.dtype, 'f32');
    const value = loss.item();
    loss.backward();
    return { loss: value, da: img.grad!.toArray(), db: txt.grad!.toArray(), dt: ls.grad!.item(), gradDtype: img.grad!.dtype };
  });
}

// N = 1, N below, at and far from the tile sizes (T is 24…96 by D), D not a multiple of 8.
const shapes: [number, number][] = [[1, 1], [1, 7], [2, 3], [5, 17], [13, 64], [50, 33], [97, 100], [250, 40], [1000, 8], [150, 512], [75, 1030]];

test('matches the materialized f64 reference: loss and gradients, many N and D', () => {
  for (const [n, d] of shapes) {
    const t = rng.next() * Math.log(100);
    const a = rng.unitRows(n, d);
    const b = rng.unitRows(n, d);
    const ref = clipReference(a, b, n, n, d, t, symmetric(n));
    const got = run(a, b, n, d, t, 'cpu');
    assertNear([got.loss], [ref.loss], 2e-6, `loss N ${n} D ${d}`);
    assertNear(got.da, ref.da, 2e-4, `dimg N ${n} D ${d}`);
    assertNear(got.db, ref.db, 2e-4, `dtxt N ${n} D ${d}`);
    assertNear([got.dt], [ref.dt], 1e-4 * Math.max(1, Math.abs(ref.loss)), `dlogitScale N ${n} D ${d}`);
  }
});

test('large logit scale (ln 100) and unnormalized features stay finite and exact', () => {
  const n = 40, d = 24;
  const a = rng.array(n * d, 3);
  const b = rng.array(n * d, 3);
  const t = Math.log(100);
  const ref = clipReference(a, b, n, n, d, t, symmetric(n));
  const got = run(a, b, n, d, t, 'cpu');
  assert.ok(Number.isFinite(got.loss));
  assertNear([got.loss], [ref.loss], 1e-5, 'loss');
  assertNear(got.da, ref.da, 1e-4, 'dimg');
  assertNear(got.db, ref.db, 1e-4, 'dtxt');
});

test('bf16 features: f32 accumulation on the bf16 values, bf16 gradients', () => {
  const n = 60, d = 48;
  const a = rng.unitRows(n, d);
  const b = rng.unitRows(n, d);
  const round = (x: Float32Array) => cf.scope(() => cf.fromArray(x, [x.length], { dtype: 'bf16' }).toArray());
  const ref = clipReference(round(a), round(b), n, n, d, 2.5, symmetric(n));
  const got = run(a, b, n, d, 2.5, 'cpu', 'bf16');
  assert.is(got.gradDtype, 'bf16');
  assertNear([got.loss], [ref.loss], 1e-5, 'loss');
  assertNear(got.da, ref.da, 1e-2, 'dimg');
  assertNear(got.db, ref.db, 1e-2, 'dtxt');
  assertNear([got.dt], [ref.dt], 1e-4, 'dlogitScale');
  // A bf16 log-scale with f32 features gives a bf16 gradient for it.
  const g = cf.scope(() => {
    const ls = cf.fromArray([2.5], [1], { dtype: 'bf16', requiresGrad: true });
    cf.clipLoss(cf.fromArray(a, [n, d]), cf.fromArray(b, [n, d]), ls).backward();
    return { dtype: ls.grad!.dtype, shape: [...ls.grad!.shape] };
  });
  assert.equal(g, { dtype: 'bf16', shape: [1] });
});

test('gradients match finite differences for img, txt and the logit scale', () => {
  const n = 6, d = 5;
  gradCheck((img, txt, ls) => cf.clipLoss(img!, txt!, ls!), [
    { data: rng.array(n * d, 0.6), shape: [n, d] },
    { data: rng.array(n * d, 0.6), shape: [n, d] },
    { data: Float32Array.from([0.8]), shape: [] },
  ]);
});

test('the bits do not depend on the number of threads', () => {
  const n = 700, d = 36;
  const a = rng.unitRows(n, d);
  const b = rng.unitRows(n, d);
  const threads = cf.backendInfo().threads;
  try {
    cf.setNumThreads(1);
    const one = run(a, b, n, d, 2.0, 'cpu');
    cf.setNumThreads(3);
    const three = run(a, b, n, d, 2.0, 'cpu');
    assert.is(one.loss, three.loss);
    assert.is(one.dt, three.dt);
    assert.equal(Array.from(one.da), Array.from(three.da));
    assert.equal(Array.from(one.db), Array.from(three.db));
  } finally {
    cf.setNumThreads(threads);
  }
});

/** Runs a script in a fresh process (own memory statistics, own environment) and parses its JSON output. */
function child(body: string, env: Record<string, string> = {}): unknown {
  const dir = mkdtempSync(join(tmpdir(), 'clipforge-loss-'));
  try {
    const lib = pathToFileURL(fileURLToPath(new URL('../../lib/index.ts', import.meta.url))).href;
    const helpers = pathToFileURL(fileURLToPath(new URL('../support/helpers.ts', import.meta.url))).href;
    const file = join(dir, 'child.ts');
    writeFileSync(file, `import * as cf from '${lib}';\nimport { Rng } from '${helpers}';\n${body}\n`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8', env: { ...process.env, ...env } });
    if (r.status !== 0) throw new Error(`child process failed (${r.status}): ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('extra memory is O(N): N = 2048 uses far less than N²·4 bytes', () => {
  const n = 2048, d = 64;
  const r = child(`
    const rng = new Rng(5);
    const n = ${n}, d = ${d};
    const img = cf.fromArray(rng.array(n * d, 0.1), [n, d], { requiresGrad: true });
    const txt = cf.fromArray(rng.array(n * d, 0.1), [n, d], { requiresGrad: true });
    const ls = cf.initLogitScale();
    const lb = cf.initLogitBias();
    const out: Record<string, number> = {};
    for (const kind of ['clip', 'siglip']) {
      const before = cf.memoryStats().cpu;
      const loss = kind === 'clip' ? cf.clipLoss(img, txt, ls) : cf.siglipLoss(img, txt, ls, lb);
      loss.backward();
      const after = cf.memoryStats().cpu;
      out[kind] = after.peakAllocatedBytes - before.allocatedBytes;
      out[kind + 'Floor'] = before.peakAllocatedBytes - before.allocatedBytes;
      loss.dispose();
      for (const t of [img, txt, ls, lb]) { t.grad?.dispose(); t.grad = null; }
    }
    console.log(JSON.stringify(out));
  `, { CLIPFORGE_NUM_THREADS: '2' }) as Record<string, number>;
  const gradients = 2 * n * d * 4;
  const matrix = n * n * 4;
  for (const kind of ['clip', 'siglip']) {
    // The first measurement starts at the peak; the second may start below an earlier peak,
    // which only makes the measured growth larger, never smaller. Two threads' tile scratch
    // (about 0.5 MB here) and the O(N) statistics are all there is beyond the gradients.
    const growth = r[kind]!;
    assert.ok(growth - gradients < matrix / 8, `${kind}: peak growth ${growth} bytes beyond ${gradients} bytes of gradients (N² · 4 = ${matrix})`);
  }
});

test('CUDA extra memory grows linearly with N: chunks of A rows, never the N × N matrix (runs only with a GPU)', () => {
  const d = 64;
  for (const device of devices()) {
    if (device === 'cpu') continue;
    // A fresh process per measurement: the allocator's peak is never reset.
    const growth = (n: number, kind: 'clip' | 'siglip'): number =>
      (child(`
        const rng = new Rng(9);
        const device = '${device}', n = ${n}, d = ${d};
        cf.native.cudaLossChunkRows(device, 128);
        const img = cf.fromArray(rng.unitRows(n, d), [n, d], { device, dtype: 'bf16', requiresGrad: true });
        const txt = cf.fromArray(rng.unitRows(n, d), [n, d], { device, dtype: 'bf16', requiresGrad: true });
        const ls = cf.fromArray([2.6], [], { device, requiresGrad: true });
        const lb = cf.fromArray([-5], [], { device, requiresGrad: true });
        cf.synchronize(device);
        const before = cf.memoryStats().cuda[0]!;
        const loss = '${kind}' === 'clip' ? cf.clipLoss(img, txt, ls) : cf.siglipLoss(img, txt, ls, lb);
        loss.backward();
        cf.synchronize(device);
        console.log(JSON.stringify(cf.memoryStats().cuda[0]!.peakAllocatedBytes - before.allocatedBytes));
      `) as number) - 2 * n * d * (4 + 2); // the gradients: f32 while accumulated, bf16 when handed back
    for (const kind of ['clip', 'siglip'] as const) {
      const [g1, g2] = [growth(512, kind), growth(1024, kind)];
      assert.ok(g2 < 3 * Math.max(g1, 1), `${device} ${kind}: ${g1} bytes at N 512, ${g2} at N 1024 (linear would double)`);
      assert.ok(g2 < (1024 * 1024 * 4) / 4, `${device} ${kind}: ${g2} bytes at N 1024 against N² · 4 = ${1024 * 1024 * 4}`);
    }
  }
});

test('the portable (non-AVX2) kernels give the same results', () => {
  const n = 130, d = 45;
  const body = `
    const rng = new Rng(77);
    const n = ${n}, d = ${d};
    const img = cf.fromArray(rng.array(n * d, 0.2), [n, d], { requiresGrad: true });
    const txt = cf.fromArray(rng.array(n * d, 0.2), [n, d], { requiresGrad: true });
    const ls = cf.scalar(2.9, { requiresGrad: true });
    const lb = cf.scalar(-4, { requiresGrad: true });
    const c = cf.clipLoss(img, txt, ls);
    const cv = c.item();
    c.backward();
    const cg = [Array.from(img.grad!.toArray()), Array.from(txt.grad!.toArray()), ls.grad!.item()];
    for (const t of [img, txt, ls]) { t.grad!.dispose(); t.grad = null; }
    const s = cf.siglipLoss(img, txt, ls, lb);
    const sv = s.item();
    s.backward();
    const sg = [Array.from(img.grad!.toArray()), Array.from(txt.grad!.toArray()), ls.grad!.item(), lb.grad!.item()];
    console.log(JSON.stringify({ cv, cg, sv, sg }));
  `;
  type Out = { cv: number; cg: [number[], number[], number]; sv: number; sg: [number[], number[], number, number] };
  const fast = child(body) as Out;
  const generic = child(body, { CLIPFORGE_CPU_KERNELS: 'generic' }) as Out;
  assertNear([generic.cv], [fast.cv], 1e-6, 'clip loss');
  assertNear(generic.cg[0], fast.cg[0], 1e-5, 'clip dimg');
  assertNear(generic.cg[1], fast.cg[1], 1e-5, 'clip dtxt');
  assertNear([generic.cg[2]], [fast.cg[2]], 1e-5, 'clip dscale');
  assertNear([generic.sv], [fast.sv], 1e-6, 'siglip loss');
  assertNear(generic.sg[0], fast.sg[0], 1e-5, 'siglip dimg');
  assertNear(generic.sg[1], fast.sg[1], 1e-5, 'siglip dtxt');
  assertNear([generic.sg[2], generic.sg[3]], [fast.sg[2], fast.sg[3]], 1e-5, 'siglip dscale, dbias');
});

test('CUDA matches the CPU, f32 and bf16 (runs only with a GPU)', () => {
  for (const device of devices()) {
    if (device === 'cpu') continue;
    // d 45 (not a multiple of 8) takes the SIMT tiles for bf16 too; the others the tensor-core tiles.
    for (const [n, d] of [[1, 8], [77, 40], [300, 512], [1100, 96], [130, 45]] as [number, number][]) {
      const a = rng.unitRows(n, d);
      const b = rng.unitRows(n, d);
      const cpu = { f32: run(a, b, n, d, 3.1, 'cpu', 'f32'), bf16: run(a, b, n, d, 3.1, 'cpu', 'bf16') };
      eachLossKernel(device, (kernel) => {
        // f32 features take the SIMT tiles under either kernel choice.
        for (const dtype of kernel === 'auto' ? (['f32', 'bf16'] as const) : (['bf16'] as const)) {
          const gpu = run(a, b, n, d, 3.1, device, dtype);
          const what = `${device} ${kernel} ${dtype} N ${n} D ${d}`;
          const tol = dtype === 'f32' ? 1e-5 : 1e-2;
          assertNear([gpu.loss], [cpu[dtype].loss], tol, `${what} loss`);
          assertNear(gpu.da, cpu[dtype].da, dtype === 'f32' ? 1e-4 : 2e-2, `${what} dimg`);
          assertNear(gpu.db, cpu[dtype].db, dtype === 'f32' ? 1e-4 : 2e-2, `${what} dtxt`);
          assertNear([gpu.dt], [cpu[dtype].dt], dtype === 'f32' ? 1e-4 : 1e-2, `${what} dscale`);
        }
      });
    }
  }
});

test('CUDA local terms (rows or columns only, label offsets, na != nb) match the CPU (runs only with a GPU)', () => {
  // The native op directly: OpenCLIP's local loss is the row term of the local rows against
  // all gathered columns, labels offset by rank × local batch.
  const cases = [
    { na: 200, nb: 520, rows: true, cols: false, rowOffset: 130, colOffset: 0 },
    { na: 520, nb: 200, rows: false, cols: true, rowOffset: 0, colOffset: 300 },
    { na: 260, nb: 260, rows: true, cols: true, rowOffset: 0, colOffset: 0 },
  ];
  const d = 64;
  const runNative = (device: string, c: (typeof cases)[number], a: Float32Array, b: Float32Array) =>
    cf.scope(() => {
      const n = cf.native;
      const A = cf.fromArray(a, [c.na, d], { device, dtype: 'bf16' });
      const B = cf.fromArray(b, [c.nb, d], { device, dtype: 'bf16' });
      const ls = cf.fromArray([2.9], [], { device });
      const loss = cf.empty([], { device });
      const lseRow = c.rows ? cf.empty([c.na], { device }) : null;
      const lseCol = c.cols ? cf.empty([c.nb], { device }) : null;
      const wRow = 1 / (2 * c.na), wCol = 1 / (2 * c.nb);
      n.clipLossForward(A, B, ls, c.rowOffset, c.colOffset, wRow, wCol, loss, lseRow, lseCol);
      const da = cf.empty([c.na, d], { device });
      const db = cf.empty([c.nb, d], { device });
      const dls = cf.empty([], { device });
      n.clipLossBackward(A, B, ls, lseRow, lseCol, c.rowOffset, c.colOffset, wRow, wCol, cf.fromArray([0.7], [], { device }), da, db, dls);
      return { loss: loss.item(), lseRow: lseRow?.toArray() ?? [], lseCol: lseCol?.toArray() ?? [], da: da.toArray(), db: db.toArray(), dt: dls.item() };
    });
  for (const device of devices()) {
    if (device === 'cpu') continue;
    for (const c of cases) {
      const a = rng.unitRows(c.na, d);
      const b = rng.unitRows(c.nb, d);
      const cpu = runNative('cpu', c, a, b);
      eachLossKernel(device, (kernel) => {
        const gpu = runNative(device, c, a, b);
        const what = `${device} ${kernel} na ${c.na} nb ${c.nb} rows ${c.rows} cols ${c.cols}`;
        assertNear([gpu.loss], [cpu.loss], 1e-2, `${what} loss`);
        assertNear(gpu.lseRow, cpu.lseRow, 1e-3, `${what} lseRow`);
        assertNear(gpu.lseCol, cpu.lseCol, 1e-3, `${what} lseCol`);
        assertNear(gpu.da, cpu.da, 2e-2, `${what} da`);
        assertNear(gpu.db, cpu.db, 2e-2, `${what} db`);
        assertNear([gpu.dt], [cpu.dt], 1e-2, `${what} dscale`);
      });
    }
  }
});

test('initLogitScale and clampLogitScale', () => {
  cf.scope(() => {
    const t = cf.initLogitScale();
    assert.ok(t.requiresGrad);
    assert.equal([...t.shape], []);
    assert.ok(Math.abs(t.item() - Math.log(1 / 0.07)) < 1e-6);
    cf.native.fill(t, 7);
    assert.is(cf.clampLogitScale(t), t);
    assert.ok(Math.abs(t.item() - Math.log(100)) < 1e-6);
    cf.native.fill(t, -1);
    cf.clampLogitScale(t);
    assert.is(t.item(), 0);
    assert.throws(() => cf.clampLogitScale(t, -1), /clampLogitScale: expected a number >= 0 for max/);
    assert.throws(() => cf.initLogitScale(NaN), /initLogitScale: expected a finite number for value/);
  });
});

test('bad inputs throw clear errors', () => {
  cf.scope(() => {
    const x = cf.zeros([4, 3]);
    const s = cf.scalar(1);
    assert.throws(() => cf.clipLoss(cf.zeros([4]), x, s), /clipLoss: expected features of shape \[N, D\] with N, D >= 1 for img/);
    assert.throws(() => cf.clipLoss(x, cf.zeros([5, 3]), s), /clipLoss: expected shape \[4, 3\] for txt, got \[5, 3\]/);
    assert.throws(() => cf.clipLoss(x, cf.zeros([4, 2]), s), /clipLoss: expected shape \[N, 3\] for txt, got \[4, 2\]/);
    assert.throws(() => cf.clipLoss(cf.zeros([0, 3]), cf.zeros([0, 3]), s), /clipLoss: expected features of shape \[N, D\]/);
    assert.throws(() => cf.clipLoss(x, cf.zeros([4, 3], { dtype: 'bf16' }), s), /clipLoss: expected img and txt of the same dtype, got f32 and bf16/);
    assert.throws(() => cf.clipLoss(cf.zeros([4, 3], { dtype: 'i32' }), x, s), /clipLoss: expected dtype 'f32' or 'bf16' for img, got 'i32'/);
    assert.throws(() => cf.clipLoss(x, x, cf.zeros([2])), /clipLoss: expected shape \[\] or \[1\] for logitScale, got \[2\]/);
    assert.throws(() => cf.clipLoss(x, x, 2.0 as unknown as cf.Tensor), /clipLoss: expected a Tensor for logitScale, got 2 of type number/);
    const gone = cf.zeros([4, 3]);
    gone.dispose();
    assert.throws(() => cf.clipLoss(gone, x, s), /clipLoss: img has been disposed/);
    // The addon checks again for direct callers.
    const n = cf.native;
    const loss = cf.empty([]);
    const lse = cf.empty([4]);
    assert.throws(() => n.clipLossForward(x, x, s, 0, 0, 1, 1, loss, null, null), /clipLossForward: expected lseRow, lseCol or both/);
    assert.throws(() => n.clipLossForward(x, x, s, 1, 0, 1, 1, loss, lse, null), /clipLossForward: expected an integer in \[0, 0\] .* for rowOffset, got 1/);
    assert.throws(() => n.clipLossForward(x, x, s, 0, 0, 1, 1, loss, cf.empty([3]), null), /clipLossForward: expected \[4\] for lseRow.shape, got \[3\]/);
    assert.throws(() => n.clipLossForward(x, x, s, 0, 0, NaN, 1, loss, lse, null), /clipLossForward: expected a finite number for wRow/);
    assert.throws(() => n.clipLossForward(x, x, s, 0, 0, 1, 1, x.view([1]), lse, null), /clipLossForward: out must not share memory with a/);
    assert.throws(() => n.clipLossForward(x, x, s, 0, 0, 1, 1, loss, cf.empty([4], { dtype: 'bf16' }), null), /clipLossForward: expected f32 for lseRow.dtype, got bf16/);
    assert.throws(() => n.clipLossForward(x, cf.zeros([4, 3], { dtype: 'bf16' }), s, 0, 0, 1, 1, loss, lse, null), /clipLossForward: expected a and b of the same dtype/);
    assert.throws(() => n.clipLossForward(x, {} as cf.Tensor, s, 0, 0, 1, 1, loss, lse, null), /clipLossForward: expected a clipforge storage handle for b, got undefined/);
    assert.throws(() => n.clipLossBackward(x, x, s, lse, null, 0, 0, 1, 1, cf.empty([2]), null, null, null), /clipLossBackward: expected \[\] or \[1\] for dloss.shape, got \[2\]/);
    assert.throws(() => n.clipLossBackward(x, x, s, lse, null, 0, 0, 1, 1, loss, cf.empty([4, 2]), null, null), /clipLossBackward: expected \[4, 3\] for da.shape, got \[4, 2\]/);
    assert.throws(() => n.clipLossBackward(x, x, s, lse, null, 0, 0, 1, 1, loss, null, null, loss), /clipLossBackward: out must not share memory with dloss/);
  });
});

test.run();
