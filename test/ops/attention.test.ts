import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { assertClose, devices, gradCheck, hasCuda, maxRelError, numelOf, Rng } from '../support/helpers.js';

const test = suite('attention');
const rng = new Rng(31);

interface Case {
  B: number;
  H: number;
  S: number;
  D: number;
  causal: boolean;
  scale?: number;
}

const scaleOf = (c: Case): number => c.scale ?? 1 / Math.sqrt(c.D);
const plainShape = (c: Case): number[] => [c.B, c.H, c.S, c.D];
const describe = (c: Case): string => `B${c.B} H${c.H} S${c.S} D${c.D}${c.causal ? ' causal' : ''}`;

/** Naive attention in f64 over [B, H, S, D]: materializes each row's scores. */
function refForward(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, c: Case): { out: Float64Array; lse: Float64Array; p: Float64Array[] } {
  const { B, H, S, D, causal } = c;
  const scale = scaleOf(c);
  const out = new Float64Array(B * H * S * D);
  const lse = new Float64Array(B * H * S);
  const p: Float64Array[] = [];
  for (let bh = 0; bh < B * H; bh++) {
    const base = bh * S * D;
    for (let i = 0; i < S; i++) {
      const n = causal ? i + 1 : S;
      const s = new Float64Array(S);
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[base + i * D + d]! * k[base + j * D + d]!;
        s[j] = dot * scale;
        m = Math.max(m, s[j]!);
      }
      let sum = 0;
      for (let j = 0; j < n; j++) sum += Math.exp(s[j]! - m);
      for (let j = 0; j < S; j++) s[j] = j < n ? Math.exp(s[j]! - m) / sum : 0;
      for (let j = 0; j < n; j++) for (let d = 0; d < D; d++) out[base + i * D + d] += s[j]! * v[base + j * D + d]!;
      lse[bh * S + i] = m + Math.log(sum);
      p.push(s);
    }
  }
  return { out, lse, p };
}

/** Naive gradients in f64 from the materialized probabilities. */
function refBackward(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dout: ArrayLike<number>, c: Case): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { B, H, S, D } = c;
  const scale = scaleOf(c);
  const { out, p } = refForward(q, k, v, c);
  const dq = new Float64Array(B * H * S * D);
  const dk = new Float64Array(B * H * S * D);
  const dv = new Float64Array(B * H * S * D);
  for (let bh = 0; bh < B * H; bh++) {
    const base = bh * S * D;
    for (let i = 0; i < S; i++) {
      const pi = p[bh * S + i]!;
      let delta = 0;
      for (let d = 0; d < D; d++) delta += dout[base + i * D + d]! * out[base + i * D + d]!;
      for (let j = 0; j < S; j++) {
        if (pi[j] === 0) continue;
        let dp = 0;
        for (let d = 0; d < D; d++) dp += dout[base + i * D + d]! * v[base + j * D + d]!;
        const ds = pi[j]! * (dp - delta) * scale;
        for (let d = 0; d < D; d++) {
          dv[base + j * D + d] += pi[j]! * dout[base + i * D + d]!;
          dq[base + i * D + d] += ds * k[base + j * D + d]!;
          dk[base + j * D + d] += ds * q[base + i * D + d]!;
        }
      }
    }
  }
  return { dq, dk, dv };
}

interface Result {
  out: Float32Array;
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
}

/** Our attention forward and backward over [B, H, S, D] host arrays. */
function runPlain(q: Float32Array, k: Float32Array, v: Float32Array, dout: Float32Array, c: Case, device: string, dtype: 'f32' | 'bf16' = 'f32'): Result {
  const shape = plainShape(c);
  return cf.scope(() => {
    const [qt, kt, vt] = [q, k, v].map((x) => cf.fromArray(x, shape, { device, dtype, requiresGrad: true })) as [cf.Tensor, cf.Tensor, cf.Tensor];
    const y = cf.attention(qt, kt, vt, { causal: c.causal, scale: scaleOf(c) });
    y.backward(cf.fromArray(dout, shape, { device, dtype }));
    const arr = (t: cf.Tensor | null): Float32Array => t!.toArray() as Float32Array;
    return { out: arr(y), dq: arr(qt.grad), dk: arr(kt.grad), dv: arr(vt.grad) };
  });
}

/** [B, S, 3, H, D] from q, k, v in [B, H, S, D], and back. */
function pack(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, c: Case): Float32Array {
  const { B, H, S, D } = c;
  const out = new Float32Array(B * S * 3 * H * D);
  [q, k, v].forEach((x, t) => {
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let s = 0; s < S; s++)
          for (let d = 0; d < D; d++) out[((((b * S + s) * 3 + t) * H + h) * D) + d] = x[(((b * H + h) * S + s) * D) + d]!;
  });
  return out;
}

function unpack(x: ArrayLike<number>, c: Case, t: number): Float32Array {
  const { B, H, S, D } = c;
  const out = new Float32Array(B * H * S * D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let s = 0; s < S; s++)
        for (let d = 0; d < D; d++) out[(((b * H + h) * S + s) * D) + d] = x[((((b * S + s) * 3 + t) * H + h) * D) + d]!;
  return out;
}

/** [B, H, S, D] to [B, S, H, D]. */
function toBSHD(x: ArrayLike<number>, c: Case): Float32Array {
  const { B, H, S, D } = c;
  const out = new Float32Array(B * H * S * D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let s = 0; s < S; s++)
        for (let d = 0; d < D; d++) out[(((b * S + s) * H + h) * D) + d] = x[(((b * H + h) * S + s) * D) + d]!;
  return out;
}

function inputs(c: Case): [Float32Array, Float32Array, Float32Array, Float32Array] {
  const n = numelOf(plainShape(c));
  return [rng.array(n), rng.array(n), rng.array(n), rng.array(n)];
}

function roundBf16(x: Float32Array): Float32Array {
  return cf.scope(() => cf.fromArray(x, [x.length], { dtype: 'bf16' }).toArray() as Float32Array);
}

// S = 1, odd S, S across the CPU's 96-row query blocks and 512-key blocks, D of 1 to 64.
const cases: Case[] = [
  { B: 1, H: 1, S: 1, D: 1, causal: false },
  { B: 2, H: 1, S: 1, D: 8, causal: true },
  { B: 1, H: 2, S: 7, D: 8, causal: false },
  { B: 2, H: 3, S: 13, D: 32, causal: true },
  { B: 1, H: 2, S: 50, D: 64, causal: false },
  { B: 2, H: 1, S: 77, D: 64, causal: true },
  { B: 1, H: 1, S: 97, D: 8, causal: false },
  { B: 1, H: 2, S: 201, D: 32, causal: true },
  { B: 1, H: 1, S: 600, D: 8, causal: false },
  { B: 1, H: 1, S: 600, D: 1, causal: true },
  { B: 1, H: 3, S: 19, D: 5, causal: false, scale: -0.7 },
];

for (const c of cases) {
  test(`matches the naive reference, forward and backward, f32, ${describe(c)}`, () => {
    const [q, k, v, dout] = inputs(c);
    const ref = refForward(q, k, v, c);
    const g = refBackward(q, k, v, dout, c);
    const r = runPlain(q, k, v, dout, c, 'cpu');
    assertClose(r.out, ref.out, { rtol: 1e-4, atol: 1e-5, what: `out ${describe(c)}` });
    assertClose(r.dq, g.dq, { rtol: 1e-4, atol: 2e-5, what: `dq ${describe(c)}` });
    assertClose(r.dk, g.dk, { rtol: 1e-4, atol: 2e-5, what: `dk ${describe(c)}` });
    assertClose(r.dv, g.dv, { rtol: 1e-4, atol: 2e-5, what: `dv ${describe(c)}` });
    const lse = cf.scope(() => {
      const shape = plainShape(c);
      const [qt, kt, vt] = [q, k, v].map((x) => cf.fromArray(x, shape));
      const out = cf.empty(shape);
      const l = cf.empty([c.B, c.H, c.S]);
      native.attentionForward(qt!, kt!, vt!, out, l, c.causal, scaleOf(c));
      return l.toArray();
    });
    assertClose(lse, ref.lse, { rtol: 1e-5, atol: 1e-5, what: `lse ${describe(c)}` });
  });
}

test('bf16 storage (f32 math) stays within 1e-2 of the reference', () => {
  for (const c of [cases[4]!, cases[5]!, cases[7]!, cases[10]!]) {
    const [q, k, v, dout] = inputs(c).map(roundBf16) as [Float32Array, Float32Array, Float32Array, Float32Array];
    const ref = refForward(q, k, v, c);
    const g = refBackward(q, k, v, dout, c);
    const r = runPlain(q, k, v, dout, c, 'cpu', 'bf16');
    assertClose(r.out, ref.out, { rtol: 1e-2, atol: 1e-2, what: `bf16 out ${describe(c)}` });
    for (const [name, got, want] of [['dq', r.dq, g.dq], ['dk', r.dk, g.dk], ['dv', r.dv, g.dv]] as const) {
      assertClose(got, want, { rtol: 2e-2, atol: 2e-2, what: `bf16 ${name} ${describe(c)}` });
    }
  }
});

test('the packed [B, S, 3, H, D] layout equals the plain one after the equivalent permutes', () => {
  for (const c of [cases[3]!, cases[4]!, cases[7]!, { B: 2, H: 3, S: 33, D: 24, causal: false }]) {
    const [q, k, v, dPlain] = inputs(c);
    const plain = runPlain(q, k, v, dPlain, c, 'cpu');
    const { B, H, S, D } = c;
    const packed = cf.scope(() => {
      const qkv = cf.fromArray(pack(q, k, v, c), [B, S, 3, H, D], { requiresGrad: true });
      const y = cf.attentionPacked(qkv, { causal: c.causal });
      assert.equal([...y.shape], [B, S, H, D]);
      y.backward(cf.fromArray(toBSHD(dPlain, c), [B, S, H, D]));
      return { out: y.toArray(), dqkv: qkv.grad!.toArray() };
    });
    assert.equal(Array.from(packed.out), Array.from(toBSHD(plain.out, c)), `packed out ${describe(c)}`);
    assert.equal(Array.from(unpack(packed.dqkv, c, 0)), Array.from(plain.dq), `packed dq ${describe(c)}`);
    assert.equal(Array.from(unpack(packed.dqkv, c, 1)), Array.from(plain.dk), `packed dk ${describe(c)}`);
    assert.equal(Array.from(unpack(packed.dqkv, c, 2)), Array.from(plain.dv), `packed dv ${describe(c)}`);
  }
});

test('results do not depend on the thread count (heads split across threads)', () => {
  // One head over many query blocks: the backward splits it and sums dK, dV partials.
  const c: Case = { B: 1, H: 1, S: 400, D: 16, causal: true };
  const [q, k, v, dout] = inputs(c);
  const before = cf.backendInfo().threads;
  try {
    cf.setNumThreads(1);
    const one = runPlain(q, k, v, dout, c, 'cpu');
    cf.setNumThreads(4);
    const four = runPlain(q, k, v, dout, c, 'cpu');
    assertClose(four.out, one.out, { rtol: 0, atol: 0, what: 'out' });
    assertClose(four.dq, one.dq, { rtol: 0, atol: 0, what: 'dq' });
    assertClose(four.dk, one.dk, { rtol: 1e-5, atol: 1e-6, what: 'dk' });
    assertClose(four.dv, one.dv, { rtol: 1e-5, atol: 1e-6, what: 'dv' });
    const g = refBackward(q, k, v, dout, c);
    assertClose(four.dk, g.dk, { rtol: 1e-4, atol: 2e-5, what: 'split dk vs reference' });
    assertClose(four.dv, g.dv, { rtol: 1e-4, atol: 2e-5, what: 'split dv vs reference' });
  } finally {
    cf.setNumThreads(before);
  }
});

test('gradients of q, k, v and packed qkv match finite differences', () => {
  for (const causal of [false, true]) {
    const c: Case = { B: 1, H: 2, S: 5, D: 3, causal };
    const n = numelOf(plainShape(c));
    const shape = plainShape(c);
    gradCheck((q, k, v) => cf.attention(q!, k!, v!, { causal }), [
      { data: rng.array(n), shape },
      { data: rng.array(n), shape },
      { data: rng.array(n), shape },
    ]);
    gradCheck((qkv) => cf.attentionPacked(qkv!, { causal, scale: 0.8 }), [{ data: rng.array(3 * n), shape: [1, 5, 3, 2, 3] }]);
  }
});

test('empty batches and sequences give empty results', () => {
  cf.scope(() => {
    const y = cf.attention(cf.zeros([0, 2, 3, 4]), cf.zeros([0, 2, 3, 4]), cf.zeros([0, 2, 3, 4]));
    assert.equal([...y.shape], [0, 2, 3, 4]);
    const z = cf.attentionPacked(cf.zeros([2, 0, 3, 2, 4], { requiresGrad: true }), { causal: true });
    assert.equal([...z.shape], [2, 0, 2, 4]);
  });
});

// Head dims with CUDA fast paths (32, 64, 80, 96, 128) and generic ones; CLIP's sequence lengths.
const cudaCases: Case[] = [
  { B: 2, H: 3, S: 1, D: 64, causal: false },
  { B: 2, H: 2, S: 17, D: 32, causal: false },
  { B: 2, H: 3, S: 50, D: 64, causal: false },
  { B: 2, H: 2, S: 77, D: 64, causal: true },
  { B: 1, H: 2, S: 197, D: 80, causal: false },
  { B: 1, H: 2, S: 257, D: 96, causal: true },
  { B: 1, H: 1, S: 300, D: 128, causal: false },
  { B: 1, H: 1, S: 1030, D: 64, causal: true },
  { B: 1, H: 2, S: 45, D: 40, causal: true },
  { B: 1, H: 2, S: 33, D: 7, causal: false },
  { B: 1, H: 1, S: 70, D: 256, causal: false },
];

const l2 = (x: ArrayLike<number>): number => Math.sqrt(Array.from(x).reduce((s, v) => s + v * v, 0));

/** ||actual - expected|| / scale, the scale ||expected|| unless given. */
function normRelError(actual: ArrayLike<number>, expected: ArrayLike<number>, scale = l2(expected)): number {
  return l2(Array.from(expected, (e, i) => actual[i]! - e)) / Math.max(scale, 1e-30);
}

// f32: elementwise within 1e-4. bf16: two bf16 computations differ by about bf16's own error
// (the CUDA kernels also round P and dS to bf16 for the tensor cores), so as FlashAttention's
// tests do, the CUDA result's error against the f32 reference may be at most twice the CPU
// bf16 result's, and the two bf16 results agree within 1e-2 in relative L2 norm.
test('CUDA matches the CPU (f32 within 1e-4, bf16 within 1e-2), both layouts', () => {
  const gpus = devices().filter((d) => d !== 'cpu');
  for (const device of gpus) {
    for (const c of cudaCases) {
      const [q, k, v, dout] = inputs(c);
      const ref = runPlain(q, k, v, dout, c, 'cpu', 'f32');
      const gpu32 = runPlain(q, k, v, dout, c, device, 'f32');
      const cpu16 = runPlain(q, k, v, dout, c, 'cpu', 'bf16');
      const gpu16 = runPlain(q, k, v, dout, c, device, 'bf16');
      for (const key of ['out', 'dq', 'dk', 'dv'] as const) {
        // With one key, dq and dk are exact cancellations (dS = dP - delta = 0), so their
        // rounding noise has the scale of dv, not their own.
        const cancels = c.S === 1 && (key === 'dq' || key === 'dk');
        const scaleRef = Math.max(1e-3, ...Array.from(ref[key], Math.abs), ...(cancels ? Array.from(ref.dv, Math.abs) : []));
        const what = `${key} ${describe(c)} on ${device}`;
        const err32 = maxRelError(gpu32[key], ref[key], 0.05 * scaleRef);
        assert.ok(err32 < 1e-4, `${what} f32: relative error ${err32}`);
        const errGpu = maxRelError(gpu16[key], ref[key], 0.05 * scaleRef);
        const errCpu = maxRelError(cpu16[key], ref[key], 0.05 * scaleRef);
        assert.ok(errGpu <= 2 * errCpu + 1e-3, `${what} bf16: error ${errGpu} against f32, the CPU's bf16 error is ${errCpu}`);
        const errNorm = normRelError(gpu16[key], cpu16[key], cancels ? l2(cpu16.dv) : undefined);
        assert.ok(errNorm < 1e-2, `${what} bf16: relative L2 error ${errNorm} against the CPU's bf16`);
      }
      const { B, H, S, D } = c;
      const packed = cf.scope(() => {
        const qkv = cf.fromArray(pack(q, k, v, c), [B, S, 3, H, D], { device, requiresGrad: true });
        const y = cf.attentionPacked(qkv, { causal: c.causal });
        y.backward(cf.fromArray(toBSHD(dout, c), [B, S, H, D], { device }));
        return { out: y.toArray(), dqkv: qkv.grad!.toArray() };
      });
      assertClose(packed.out, toBSHD(ref.out, c), { rtol: 1e-4, atol: 1e-5, what: `packed out ${describe(c)} on ${device}` });
      assertClose(unpack(packed.dqkv, c, 1), ref.dk, { rtol: 1e-4, atol: 1e-4, what: `packed dk ${describe(c)} on ${device}` });
    }
  }
  if (!hasCuda()) assert.is(gpus.length, 0);
});

test('bad arguments throw errors that name the op, the argument and the shapes', () => {
  cf.scope(() => {
    const q = cf.zeros([1, 2, 3, 4]);
    assert.throws(() => cf.attention(cf.zeros([2, 3, 4]), q, q), /attention: expected a \[B, H, S, D\] tensor for q, got shape \[2, 3, 4\]/);
    assert.throws(() => cf.attention(q, cf.zeros([1, 2, 4, 4]), q), /attention: expected shape \[1, 2, 3, 4\] for k, got \[1, 2, 4, 4\]/);
    assert.throws(() => cf.attention(q, q, cf.zeros([1, 2, 3, 4], { dtype: 'bf16' })), /attention: expected q and v of the same dtype/);
    assert.throws(() => cf.attention(cf.zeros([1, 2, 3, 4], { dtype: 'i32' }), q, q), /attention: expected dtype 'f32' or 'bf16' for q/);
    assert.throws(() => cf.attention(cf.zeros([1, 2, 3, 0]), cf.zeros([1, 2, 3, 0]), cf.zeros([1, 2, 3, 0])), /expected a head dim of at least 1 for q/);
    assert.throws(() => cf.attention(q, q, q, { scale: NaN }), /attention: expected a finite number for scale, got NaN/);
    assert.throws(() => cf.attention(q, q, q, { causal: 1 as never }), /attention: expected a boolean for causal, got 1/);
    assert.throws(() => cf.attention(q, q, 'v' as never), /attention: expected a Tensor for v/);
    assert.throws(() => cf.attentionPacked(cf.zeros([1, 3, 2, 2, 4])), /attentionPacked: expected a \[B, S, 3, H, D\] tensor for qkv, got shape \[1, 3, 2, 2, 4\]/);
    const gone = cf.zeros([1, 2, 3, 4]);
    gone.dispose();
    assert.throws(() => cf.attention(q, gone, q), /attention: k has been disposed/);

    // The addon checks again for direct callers.
    const out = cf.zeros([1, 2, 3, 4]);
    const lse = cf.zeros([1, 2, 3]);
    assert.throws(() => native.attentionForward(q, q, q, out, cf.zeros([1, 2, 4]), false, 1), /attentionForward: expected \[1, 2, 3\] for lse.shape, got \[1, 2, 4\]/);
    assert.throws(() => native.attentionForward(q, q, q, out, cf.zeros([1, 2, 3], { dtype: 'bf16' }), false, 1), /attentionForward: expected f32 for lse.dtype, got bf16/);
    assert.throws(() => native.attentionForward(q, q, q, out, lse, false, Infinity), /attentionForward: expected a finite number for scale/);
    assert.throws(() => native.attentionForward(q, q, q, out, lse, 'no' as never, 1), /attentionForward: expected a boolean for causal/);
    assert.throws(() => native.attentionForward(q, q, q, q, lse, false, 1), /attentionForward: expected memory not shared with q for out/);
    assert.throws(() => native.attentionForward(q, q, q, cf.zeros([1, 2, 3, 5]), lse, false, 1), /attentionForward: expected \[1, 2, 3, 4\] for out.shape/);
    const loose = native.attentionForward as (...a: unknown[]) => void;
    assert.throws(() => loose(q, q, q, out, lse, false), /attentionForward: expected 7 arguments, got 6/);
    const g = cf.zeros([1, 2, 3, 4]);
    assert.throws(() => native.attentionBackward(q, q, q, out, out, lse, g, g, cf.zeros([1, 2, 3, 4]), false, 1), /attentionBackward: expected memory not shared with dq for dk/);
    const qkv = cf.zeros([1, 3, 3, 2, 4]);
    assert.throws(() => native.attentionPackedForward(qkv, cf.zeros([1, 2, 3, 4]), lse, false, 1), /attentionPackedForward: expected \[1, 3, 2, 4\] for out.shape, got \[1, 2, 3, 4\]/);
    assert.throws(() => native.attentionPackedBackward(qkv, cf.zeros([1, 3, 2, 4]), cf.zeros([1, 3, 2, 4]), lse, qkv, false, 1), /attentionPackedBackward: expected memory not shared with qkv for dqkv/);
  });
});

test.run();
