import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, gradCheck, numelOf, Rng } from '../support/helpers.js';

const test = suite('matmul');
const rng = new Rng(11);

interface Case {
  m: number;
  n: number;
  k: number;
  ta: boolean;
  tb: boolean;
  /** Batch dims of a and b ([] for a shared 2-D operand). */
  batchA: number[];
  batchB: number[];
}

const stored = (rows: number, cols: number, t: boolean): number[] => (t ? [cols, rows] : [rows, cols]);

/** op(a) · op(b) + bias in f64, batch by batch; a rank-2 operand is shared. */
function reference(c: Case, a: ArrayLike<number>, b: ArrayLike<number>, bias: ArrayLike<number> | null): Float64Array {
  const { m, n, k, ta, tb } = c;
  const batch = numelOf(c.batchA.length ? c.batchA : c.batchB);
  const out = new Float64Array(batch * m * n);
  for (let z = 0; z < batch; z++) {
    const ao = c.batchA.length ? z * m * k : 0;
    const bo = c.batchB.length ? z * k * n : 0;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = bias ? bias[j]! : 0;
        for (let p = 0; p < k; p++) s += a[ao + (ta ? p * m + i : i * k + p)]! * b[bo + (tb ? j * k + p : p * n + j)]!;
        out[z * m * n + i * n + j] = s;
      }
    }
  }
  return out;
}

/** Values as bf16 stores them (for references of bf16 products). */
function roundBf16(x: Float32Array): Float32Array {
  return cf.scope(() => cf.fromArray(x, [x.length], { dtype: 'bf16' }).toArray() as Float32Array);
}

function run(c: Case, device: string, dtype: 'f32' | 'bf16', withBias: boolean): void {
  const aShape = [...c.batchA, ...stored(c.m, c.k, c.ta)];
  const bShape = [...c.batchB, ...stored(c.k, c.n, c.tb)];
  let a = rng.array(numelOf(aShape));
  let b = rng.array(numelOf(bShape));
  let bias = withBias ? rng.array(c.n) : null;
  if (dtype === 'bf16') {
    a = roundBf16(a);
    b = roundBf16(b);
    bias = bias && roundBf16(bias);
  }
  const what = `${dtype} ${JSON.stringify(aShape)}${c.ta ? 'ᵀ' : ''} x ${JSON.stringify(bShape)}${c.tb ? 'ᵀ' : ''}${withBias ? ' + bias' : ''} on ${device}`;
  const got = cf.scope(() => {
    const y = cf.matmul(cf.fromArray(a, aShape, { device, dtype }), cf.fromArray(b, bShape, { device, dtype }), {
      transA: c.ta,
      transB: c.tb,
      bias: bias && cf.fromArray(bias, [c.n], { device, dtype }),
    });
    return { shape: [...y.shape], values: y.toArray() };
  });
  assert.equal(got.shape, [...(c.batchA.length ? c.batchA : c.batchB), c.m, c.n], what);
  const tol = dtype === 'f32' ? { rtol: 1e-4, atol: 1e-4 } : { rtol: 1e-2, atol: 1e-2 };
  assertClose(got.values, reference(c, a, b, bias), { ...tol, what });
}

const TRANS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

// Sizes that are not multiples of any tile (CPU 6 x 16, KC 256, MC 144, NC 4080; CUDA 64 and
// 128), ones that cross those blocks, and ones that are (the CUDA kernels' 16-byte path).
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [7, 13, 5], [65, 33, 129], [1, 17, 3], [6, 16, 8], [150, 40, 300], [2, 4100, 3], [64, 136, 72],
];

test('2-D products match the reference for every trans combination, with and without bias', () => {
  for (const device of devices()) {
    for (const [m, n, k] of SHAPES) {
      for (const [ta, tb] of TRANS) {
        run({ m, n, k, ta, tb, batchA: [], batchB: [] }, device, 'f32', false);
        run({ m, n, k, ta, tb, batchA: [], batchB: [] }, device, 'f32', true);
      }
    }
  }
});

test('batched products: shared weight, shared left operand, matching batch dims, many small matrices', () => {
  for (const device of devices()) {
    for (const [ta, tb] of TRANS) {
      run({ m: 7, n: 5, k: 9, ta, tb, batchA: [3], batchB: [] }, device, 'f32', true);
      run({ m: 5, n: 11, k: 4, ta, tb, batchA: [2, 3], batchB: [] }, device, 'f32', false);
      run({ m: 7, n: 5, k: 9, ta, tb, batchA: [], batchB: [4] }, device, 'f32', true);
      run({ m: 6, n: 10, k: 13, ta, tb, batchA: [2, 3], batchB: [2, 3] }, device, 'f32', false);
      run({ m: 9, n: 10, k: 11, ta, tb, batchA: [24], batchB: [24] }, device, 'f32', true);
    }
    run({ m: 70, n: 90, k: 40, ta: false, tb: true, batchA: [3], batchB: [] }, device, 'f32', true);
  }
});

test('bf16 products accumulate in f32 and round once', () => {
  for (const device of devices()) {
    for (const [m, n, k] of [[7, 13, 5], [65, 33, 129], [64, 136, 72], [130, 9, 260], [500, 7, 9]] as const) {
      for (const [ta, tb] of TRANS) run({ m, n, k, ta, tb, batchA: [], batchB: [] }, device, 'bf16', true);
    }
    run({ m: 17, n: 24, k: 40, ta: false, tb: true, batchA: [2], batchB: [] }, device, 'bf16', true);
    run({ m: 17, n: 24, k: 40, ta: true, tb: false, batchA: [3], batchB: [3] }, device, 'bf16', false);
  }
});

test('the portable CPU micro-kernel (used where AVX2 is missing) gives the same results', () => {
  const before = cf.native.gemmKernel();
  assert.is(cf.native.gemmKernel('generic'), 'generic 6x16');
  try {
    for (const [m, n, k] of [[7, 13, 5], [65, 33, 129], [150, 40, 300]] as const) {
      for (const [ta, tb] of TRANS) run({ m, n, k, ta, tb, batchA: [], batchB: [] }, 'cpu', 'f32', true);
    }
    run({ m: 9, n: 10, k: 11, ta: false, tb: true, batchA: [24], batchB: [24] }, 'cpu', 'bf16', true);
  } finally {
    cf.native.gemmKernel('auto');
  }
  assert.is(cf.native.gemmKernel(), before);
  assert.throws(() => cf.native.gemmKernel('sse9' as never), /gemmKernel: expected 'auto', 'avx2' or 'generic' for which, got 'sse9'/);
});

test('accumulate adds the product to out; K = 0 gives the bias alone', () => {
  for (const device of devices()) {
    for (const dtype of ['f32', 'bf16'] as const) {
      cf.scope(() => {
        const [a, b, bias, c0] = [rng.array(4 * 3), rng.array(3 * 5), rng.array(5), rng.array(4 * 5)].map(roundBf16);
        const out = cf.fromArray(c0!, [4, 5], { device, dtype });
        const t = (x: Float32Array, shape: number[]): cf.Tensor => cf.fromArray(x, shape, { device, dtype });
        cf.native.matmul(t(a!, [4, 3]), t(b!, [3, 5]), t(bias!, [5]), out, false, false, true);
        const ref = reference({ m: 4, n: 5, k: 3, ta: false, tb: false, batchA: [], batchB: [] }, a!, b!, bias!).map((v, i) => v + c0![i]!);
        const tol = dtype === 'f32' ? { rtol: 1e-5, atol: 1e-6 } : { rtol: 1e-2, atol: 1e-2 };
        assertClose(out.toArray(), ref, { ...tol, what: `${dtype} accumulate on ${device}` });
      });
    }
    cf.scope(() => {
      const bias = rng.array(5);
      const empty = cf.matmul(cf.zeros([2, 0], { device }), cf.zeros([0, 5], { device }), { bias: cf.fromArray(bias, [5], { device }) });
      assertClose(empty.toArray(), [...bias, ...bias], { what: `K = 0 on ${device}` });
    });
  }
});

test('few rows and a long K (the weight-gradient shape) match the reference: trans, bias, bf16, accumulate', () => {
  // M <= 144 rows, K over one 256 block, at least as many 16-column panels as threads: the CPU
  // runs these in one parallel region with per-thread packing (matmul.cpp).
  for (const device of devices()) {
    for (const [m, n, k] of [[13, 70, 700], [40, 50, 600], [6, 33, 1030]] as const) {
      for (const [ta, tb] of TRANS) run({ m, n, k, ta, tb, batchA: [], batchB: [] }, device, 'f32', true);
    }
    for (const [ta, tb] of TRANS) run({ m: 9, n: 40, k: 800, ta, tb, batchA: [], batchB: [] }, device, 'bf16', true);
    cf.scope(() => {
      const [a, b, c0] = [rng.array(13 * 700), rng.array(700 * 70), rng.array(13 * 70)];
      const out = cf.fromArray(c0!, [13, 70], { device });
      cf.native.matmul(cf.fromArray(a!, [13, 700], { device }), cf.fromArray(b!, [700, 70], { device }), null, out, false, false, true);
      const ref = reference({ m: 13, n: 70, k: 700, ta: false, tb: false, batchA: [], batchB: [] }, a!, b!, null).map((v, i) => v + c0![i]!);
      assertClose(out.toArray(), ref, { rtol: 1e-4, atol: 1e-4, what: `accumulate, long K, on ${device}` });
    });
  }
});

test('CUDA matches the CPU on a CLIP-like bf16 projection', () => {
  if (!devices().includes('cuda:0')) return;
  const x = rng.array(200 * 768, 0.5), w = rng.array(512 * 768, 0.05), bias = rng.array(512);
  const on = (device: string): Float32Array =>
    cf.scope(() => cf.linear(cf.fromArray(x, [2, 100, 768], { device, dtype: 'bf16' }), cf.fromArray(w, [512, 768], { device, dtype: 'bf16' }), cf.fromArray(bias, [512], { device, dtype: 'bf16' })).toArray() as Float32Array);
  assertClose(on('cuda:0'), on('cpu'), { rtol: 1e-2, atol: 2e-2, what: 'bf16 linear, CUDA vs CPU' });
});

test('bf16 on CUDA: the Hopper kernel (TMA + wgmma) and the mma.sync kernel both match the reference', () => {
  if (!devices().includes('cuda:0')) return;
  const hopper = cf.backendInfo().devices[0]!.computeCapability.startsWith('9.');
  try {
    for (const which of ['auto', 'mma.sync'] as const) {
      const name = cf.native.cudaGemmKernel('cuda:0', which);
      assert.is(name, which === 'auto' && hopper ? 'wgmma + TMA (sm_90a)' : 'mma.sync (sm_80)');
      for (const [ta, tb] of TRANS) {
        // Rows and k multiples of 8 (TMA's 16-byte rows): tails past the 128-row and 128/256-column
        // tiles, K past the stage ring and not a multiple of its 64, a 64 k that one stage holds.
        for (const [m, n, k] of [[200, 264, 584], [136, 72, 64], [8, 392, 136]] as const) {
          run({ m, n, k, ta, tb, batchA: [], batchB: [] }, 'cuda:0', 'bf16', true);
        }
        // More tiles than the 132 blocks of the persistent grid; each operand batched or shared.
        run({ m: 8, n: 16, k: 24, ta, tb, batchA: [140], batchB: [140] }, 'cuda:0', 'bf16', false);
        run({ m: 24, n: 8, k: 16, ta, tb, batchA: [3], batchB: [] }, 'cuda:0', 'bf16', true);
        run({ m: 16, n: 24, k: 8, ta, tb, batchA: [], batchB: [2] }, 'cuda:0', 'bf16', true);
        // One output tile and a long K: split into slices summed by a second kernel.
        run({ m: 40, n: 48, k: 2560, ta, tb, batchA: [], batchB: [] }, 'cuda:0', 'bf16', true);
      }
      cf.scope(() => {
        const [a, b, bias, c0] = [rng.array(96 * 2048), rng.array(2048 * 64), rng.array(64), rng.array(96 * 64)].map(roundBf16);
        const t = (x: Float32Array, shape: number[]): cf.Tensor => cf.fromArray(x, shape, { device: 'cuda:0', dtype: 'bf16' });
        const out = t(c0!, [96, 64]);
        cf.native.matmul(t(a!, [96, 2048]), t(b!, [2048, 64]), t(bias!, [64]), out, false, false, true);
        const ref = reference({ m: 96, n: 64, k: 2048, ta: false, tb: false, batchA: [], batchB: [] }, a!, b!, bias!).map((v, i) => v + c0![i]!);
        assertClose(out.toArray(), ref, { rtol: 1e-2, atol: 5e-2, what: `bf16 accumulate with split K (${name})` });
      });
    }
  } finally {
    cf.native.cudaGemmKernel('cuda:0', 'auto');
  }
  assert.throws(() => cf.native.cudaGemmKernel('cuda:0', 'wgmma' as never), /cudaGemmKernel: expected 'auto' or 'mma.sync' for which, got 'wgmma'/);
  assert.throws(() => cf.native.cudaGemmKernel('cpu'), /cudaGemmKernel: expected a CUDA device for device, got 'cpu'/);
});

test('linear uses the [out, in] weight layout for inputs of any rank', () => {
  for (const device of devices()) {
    for (const lead of [[], [5], [2, 3]]) {
      const x = rng.array(numelOf(lead) * 6), w = rng.array(4 * 6), bias = rng.array(4);
      const rows = numelOf(lead);
      const c: Case = { m: rows, n: 4, k: 6, ta: false, tb: true, batchA: [], batchB: [] };
      for (const withBias of [false, true]) {
        const got = cf.scope(() => {
          const y = cf.linear(cf.fromArray(x, [...lead, 6], { device }), cf.fromArray(w, [4, 6], { device }), withBias ? cf.fromArray(bias, [4], { device }) : null);
          return { shape: [...y.shape], values: y.toArray() };
        });
        assert.equal(got.shape, [...lead, 4]);
        assertClose(got.values, reference(c, x, w, withBias ? bias : null), { rtol: 1e-5, what: `linear ${JSON.stringify(lead)} on ${device}` });
      }
    }
  }
});

test('gradients of a, b and bias match finite differences for every trans combination', () => {
  for (const [ta, tb] of TRANS) {
    const [m, n, k] = [3, 4, 5];
    const fn = (a: cf.Tensor, b: cf.Tensor, bias: cf.Tensor): cf.Tensor => cf.matmul(a, b, { transA: ta, transB: tb, bias });
    gradCheck(fn, [
      { data: rng.array(m * k), shape: stored(m, k, ta) },
      { data: rng.array(k * n), shape: stored(k, n, tb) },
      { data: rng.array(n), shape: [n] },
    ]);
  }
});

test('batched gradients, including a shared weight or a shared left operand', () => {
  for (const [ta, tb] of TRANS) {
    const [m, n, k] = [3, 2, 4];
    const fn = (a: cf.Tensor, b: cf.Tensor): cf.Tensor => cf.matmul(a, b, { transA: ta, transB: tb });
    gradCheck(fn, [{ data: rng.array(2 * m * k), shape: [2, ...stored(m, k, ta)] }, { data: rng.array(k * n), shape: stored(k, n, tb) }]);
    gradCheck(fn, [{ data: rng.array(m * k), shape: stored(m, k, ta) }, { data: rng.array(3 * k * n), shape: [3, ...stored(k, n, tb)] }]);
    gradCheck(fn, [{ data: rng.array(2 * m * k), shape: [2, ...stored(m, k, ta)] }, { data: rng.array(2 * k * n), shape: [2, ...stored(k, n, tb)] }]);
  }
  // Only one side requiring a gradient (a frozen weight, a constant input).
  const one = [{ data: rng.array(2 * 3 * 4), shape: [2, 3, 4] }, { data: rng.array(4 * 5), shape: [5, 4] }];
  gradCheck((x, w) => cf.matmul(x, w, { transB: true }), one, { check: [0] });
  gradCheck((x, w) => cf.matmul(x, w, { transB: true }), one, { check: [1] });
  gradCheck((x, w, b) => cf.linear(x, w, b), [
    { data: rng.array(2 * 3 * 4), shape: [2, 3, 4] },
    { data: rng.array(5 * 4), shape: [5, 4] },
    { data: rng.array(5), shape: [5] },
  ]);
  gradCheck((x, w) => cf.linear(x, w), [{ data: rng.array(4), shape: [4] }, { data: rng.array(3 * 4), shape: [3, 4] }]);
});

test('bad inputs throw errors that name the op, the argument and the shapes', () => {
  cf.scope(() => {
    const a = cf.zeros([2, 3]);
    assert.throws(() => cf.matmul(a, cf.zeros([4, 5])), /matmul: expected shape \[\.\.\., 3, N\] for b \(K = 3 from a \[2, 3\]/);
    assert.throws(() => cf.matmul(a, cf.zeros([5, 4]), { transB: true }), /expected shape \[\.\.\., N, 3\] for b/);
    assert.throws(() => cf.matmul(cf.zeros([3]), cf.zeros([3, 2])), /matmul: expected a tensor of rank >= 2 for a, got shape \[3\]/);
    assert.throws(() => cf.matmul(cf.zeros([2, 2, 3]), cf.zeros([3, 3, 4])), /expected batch dims \[2\] \(those of a\) for b/);
    assert.throws(() => cf.matmul(a, cf.zeros([3, 4]), { bias: cf.zeros([3]) }), /matmul: expected shape \[4\] for bias, got \[3\]/);
    assert.throws(() => cf.matmul(a, cf.zeros([3, 4], { dtype: 'bf16' })), /same dtype/);
    assert.throws(() => cf.matmul(a, cf.zeros([3, 4], { dtype: 'i32' })), /matmul: expected dtype 'f32' or 'bf16' for b/);
    assert.throws(() => cf.matmul(a, cf.zeros([3, 4]), { transA: 1 as never }), /matmul: expected a boolean for transA/);
    assert.throws(() => cf.matmul(a, 'b' as never), /matmul: expected a Tensor for b/);
    assert.throws(() => cf.linear(cf.zeros([2, 5]), cf.zeros([4, 6])), /linear: expected shape \[\.\.\., 6\] for x/);
    assert.throws(() => cf.linear(cf.zeros([2, 6]), cf.zeros([4, 6]), cf.zeros([6])), /linear: expected shape \[4\] for bias/);
    // The addon checks again for direct callers, and never lets out alias an input.
    const n = cf.native;
    const b = cf.zeros([3, 4]);
    assert.throws(() => n.matmul(a, b, null, cf.zeros([2, 5]), false, false, false), /matmul: expected \[2, 4\] for out.shape, got \[2, 5\]/);
    assert.throws(() => n.matmul(a, b, null, cf.zeros([2, 4], { dtype: 'bf16' }), false, false, false), /matmul: expected a and out of the same dtype/);
    assert.throws(() => n.matmul(a, b, cf.zeros([4, 1]), cf.zeros([2, 4]), false, false, false), /matmul: expected \[4\] for bias.shape, got \[4, 1\]/);
    assert.throws(() => n.matmul(a, b, null, cf.zeros([2, 4]), 'yes' as never, false, false), /matmul: expected a boolean for transA, got 'yes'/);
    assert.throws(() => n.matmul(cf.zeros([3]), b, null, cf.zeros([2, 4]), false, false, false), /matmul: expected rank 2 to 8 for a.shape, got \[3\]/);
    const big = cf.zeros([4, 4]);
    assert.throws(() => n.matmul(big, cf.zeros([4, 4]), null, big, false, false, false), /matmul: out must not share memory with a/);
    assert.throws(() => n.matmul({} as never, b, null, cf.zeros([2, 4]), false, false, false), /matmul: expected a clipforge storage handle for a/);
  });
});

test.run();
