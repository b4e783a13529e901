import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, gradCheck, numelOf, Rng } from '../support/helpers.js';

const test = suite('cross_entropy');
const rng = new Rng(31);

type Reduction = 'mean' | 'sum' | 'none';
interface Opts {
  reduction: Reduction;
  ignoreIndex: number;
  labelSmoothing: number;
}

/** PyTorch's cross_entropy in f64: the loss (per row, or reduced) and d(sum(loss * gy))/dlogits. */
function crossEntropyRef(x: ArrayLike<number>, labels: ArrayLike<number>, c: number, o: Opts, gy: ArrayLike<number>): { loss: number[]; grad: number[] } {
  const rows = labels.length;
  const perRow: number[] = [];
  const probs: number[][] = [];
  let kept = 0;
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let i = 0; i < c; i++) m = Math.max(m, x[r * c + i]!);
    let s = 0, sx = 0;
    for (let i = 0; i < c; i++) {
      s += Math.exp(x[r * c + i]! - m);
      sx += x[r * c + i]!;
    }
    const lse = m + Math.log(s);
    probs.push(Array.from({ length: c }, (_, i) => Math.exp(x[r * c + i]! - lse)));
    const y = labels[r]!;
    if (y === o.ignoreIndex) {
      perRow.push(0);
      continue;
    }
    kept++;
    perRow.push(lse - (1 - o.labelSmoothing) * x[r * c + y]! - (o.labelSmoothing / c) * sx);
  }
  const total = perRow.reduce((a, b) => a + b, 0);
  const loss = o.reduction === 'none' ? perRow : [o.reduction === 'sum' ? total : total / kept];
  const grad: number[] = [];
  for (let r = 0; r < rows; r++) {
    const y = labels[r]!;
    const g = o.reduction === 'none' ? gy[r]! : o.reduction === 'sum' ? gy[0]! : gy[0]! / kept;
    for (let i = 0; i < c; i++) {
      if (y === o.ignoreIndex) grad.push(0);
      else grad.push(g * (probs[r]![i]! - o.labelSmoothing / c - (i === y ? 1 - o.labelSmoothing : 0)));
    }
  }
  return { loss, grad };
}

function randomLabels(rows: number, c: number, ignoreIndex: number, ignoreShare: number): Int32Array {
  return Int32Array.from({ length: rows }, () => (rng.next() < ignoreShare ? ignoreIndex : rng.int(0, c - 1)));
}

const roundBf16 = (a: Float32Array): Float32Array => cf.scope(() => cf.fromArray(a, [a.length], { dtype: 'bf16' }).toArray() as Float32Array);

// [rows..., C]: a single class, odd counts, one warp, a block per row on CUDA, leading dims, unbatched [C].
const shapes = [[1, 1], [4, 1], [5, 7], [17, 2], [3, 1000], [2, 1025], [2, 3000], [2, 3, 5], [9], rng.shape(2, 30)];
const variants: Opts[] = [
  { reduction: 'mean', ignoreIndex: -100, labelSmoothing: 0 },
  { reduction: 'sum', ignoreIndex: -100, labelSmoothing: 0.1 },
  { reduction: 'none', ignoreIndex: -100, labelSmoothing: 0 },
  { reduction: 'mean', ignoreIndex: 1, labelSmoothing: 0.25 },
  { reduction: 'none', ignoreIndex: -1, labelSmoothing: 0.3 },
];

test('loss and gradient match the f64 reference for every reduction, ignoreIndex and smoothing, f32 and bf16', () => {
  for (const device of devices()) {
    for (const shape of shapes) {
      const c = shape[shape.length - 1]!;
      const lead = shape.slice(0, -1);
      const rows = numelOf(lead);
      for (const o of variants) {
        for (const dtype of ['f32', 'bf16'] as const) {
          const x = dtype === 'bf16' ? roundBf16(rng.array(rows * c, 3)) : rng.array(rows * c, 3);
          const labels = randomLabels(rows, c, o.ignoreIndex, 0.3);
          const lossShape = o.reduction === 'none' ? lead : [];
          const gy = dtype === 'bf16' ? roundBf16(rng.array(numelOf(lossShape))) : rng.array(numelOf(lossShape));
          const got = cf.scope(() => {
            const xt = cf.fromArray(x, shape, { device, dtype, requiresGrad: true });
            const loss = cf.crossEntropy(xt, cf.fromArray(labels, lead, { device }), o);
            loss.backward(cf.fromArray(gy, lossShape, { device, dtype }));
            return { shape: [...loss.shape], dtype: loss.dtype, loss: loss.toArray(), dx: xt.grad!.toArray() };
          });
          const ref = crossEntropyRef(x, labels, c, o, gy);
          const what = `${JSON.stringify(shape)} ${JSON.stringify(o)} ${dtype} on ${device}`;
          assert.equal(got.shape, lossShape, what);
          assert.is(got.dtype, dtype);
          const tol = dtype === 'f32' ? { rtol: 1e-5, atol: 1e-5 } : { rtol: 1e-2, atol: 2e-2 };
          assertClose(got.loss, ref.loss, { ...tol, what: `${what} loss` });
          assertClose(got.dx, ref.grad, { ...tol, atol: dtype === 'f32' ? 1e-6 : 1e-2, what: `${what} grad` });
        }
      }
    }
  }
});

test('gradient matches finite differences', () => {
  for (const o of variants) {
    for (const shape of [[5, 4], [1, 3], [2, 2, 3]]) {
      const c = shape[shape.length - 1]!;
      const lead = shape.slice(0, -1);
      const labels = randomLabels(numelOf(lead), c, o.ignoreIndex, 0.25);
      if (o.reduction === 'mean' && labels.every((l) => l === o.ignoreIndex)) labels[0] = 0;
      gradCheck((x, y) => cf.crossEntropy(x, y, o), [
        { data: rng.array(numelOf(shape), 2), shape },
        { data: labels, shape: lead, dtype: 'i32' },
      ]);
    }
  }
});

test('a mean over only ignored rows is NaN with a zero gradient; a sum is 0', () => {
  for (const device of devices()) {
    const r = cf.scope(() => {
      const x = cf.fromArray(rng.array(6), [2, 3], { device, requiresGrad: true });
      const labels = cf.fromArray(new Int32Array([-100, -100]), [2], { device });
      const mean = cf.crossEntropy(x, labels);
      mean.backward();
      return { mean: mean.item(), sum: cf.crossEntropy(x, labels, { reduction: 'sum' }).item(), dx: x.grad!.toArray() };
    });
    assert.ok(Number.isNaN(r.mean), `mean on ${device}`);
    assert.is(r.sum, 0);
    assert.equal(Array.from(r.dx), [0, 0, 0, 0, 0, 0]);
  }
});

test('an empty batch: mean is NaN, sum is 0, none is empty', () => {
  for (const device of devices()) {
    const r = cf.scope(() => {
      const x = cf.zeros([0, 4], { device });
      const y = cf.zeros([0], { dtype: 'i32', device });
      return {
        mean: cf.crossEntropy(x, y).item(),
        sum: cf.crossEntropy(x, y, { reduction: 'sum' }).item(),
        none: [...cf.crossEntropy(x, y, { reduction: 'none' }).shape],
      };
    });
    assert.ok(Number.isNaN(r.mean));
    assert.is(r.sum, 0);
    assert.equal(r.none, [0]);
  }
});

test('large logits stay accurate (max subtraction)', () => {
  for (const device of devices()) {
    const x = Float32Array.from([1000, 1001, 1002, -1000, -1001, -1002]);
    const labels = new Int32Array([2, 1]);
    const loss = cf.scope(() => cf.crossEntropy(cf.fromArray(x, [2, 3], { device }), cf.fromArray(labels, [2], { device }), { reduction: 'none' }).toArray());
    const o: Opts = { reduction: 'none', ignoreIndex: -100, labelSmoothing: 0 };
    assertClose(loss, crossEntropyRef(x, labels, 3, o, [1, 1]).loss, { rtol: 1e-5, what: `on ${device}` });
  }
});

test('labels out of range: the CPU throws, CUDA flags the row as NaN without reading out of bounds', () => {
  for (const device of devices()) {
    for (const bad of [5, -1, 1 << 30]) {
      cf.scope(() => {
        const x = cf.fromArray(rng.array(10), [2, 5], { device, requiresGrad: true });
        const labels = cf.fromArray(new Int32Array([0, bad]), [2], { device });
        if (device === 'cpu') {
          const msg = new RegExp(`crossEntropy: expected labels in \\[0, 5\\) or ignoreIndex -100 for labels\\[1\\], got ${bad}`);
          assert.throws(() => cf.crossEntropy(x, labels), msg);
        } else {
          const loss = cf.crossEntropy(x, labels, { reduction: 'none' });
          const mean = cf.crossEntropy(x, labels);
          mean.backward();
          const l = loss.toArray();
          const g = x.grad!.toArray();
          assert.ok(Number.isFinite(l[0]!) && Number.isNaN(l[1]!), `row losses on ${device}`);
          assert.ok(Number.isNaN(mean.item()), `mean on ${device}`);
          assert.ok(g.slice(5).every(Number.isNaN), `grad of the bad row on ${device}`);
        }
      });
    }
  }
});

test('bad arguments throw errors naming the op and the argument', () => {
  cf.scope(() => {
    const x = cf.zeros([3, 4]);
    const y = cf.fromArray(new Int32Array([0, 1, 2]), [3]);
    assert.throws(() => cf.crossEntropy(x, cf.zeros([3])), /crossEntropy: expected dtype 'i32' for labels, got 'f32'/);
    assert.throws(() => cf.crossEntropy(x, cf.fromArray(new Int32Array([0, 1]), [2])), /crossEntropy: expected shape \[3\] for labels \(logits \[3, 4\]\), got \[2\]/);
    assert.throws(() => cf.crossEntropy(cf.zeros([3, 4], { dtype: 'i32' }), y), /crossEntropy: expected dtype 'f32' or 'bf16' for logits, got 'i32'/);
    assert.throws(() => cf.crossEntropy(cf.zeros([3, 0]), y), /crossEntropy: expected a last axis of size >= 1 for logits.shape/);
    assert.throws(() => cf.crossEntropy(x, y, { reduction: 'avg' as never }), /crossEntropy: expected 'mean', 'sum' or 'none' for reduction, got 'avg'/);
    assert.throws(() => cf.crossEntropy(x, y, { labelSmoothing: 1.5 }), /crossEntropy: expected a number in \[0, 1\] for labelSmoothing, got 1.5/);
    assert.throws(() => cf.crossEntropy(x, y, { labelSmoothing: NaN }), /labelSmoothing, got NaN/);
    assert.throws(() => cf.crossEntropy(x, y, { ignoreIndex: 0.5 }), /crossEntropy: expected an integer .* for ignoreIndex, got 0.5/);
    const out = cf.zeros([]);
    const lse = cf.zeros([3]);
    assert.throws(() => cf.native.crossEntropy(x, y, out, lse, 'mean', -100, NaN), /crossEntropy: expected a number in \[0, 1\] for labelSmoothing, got nan/i);
    assert.throws(() => cf.native.crossEntropy(x, y, out, lse, 'none', -100, 0), /crossEntropy: expected \[3\] for out.shape, got \[\]/);
    assert.throws(() => cf.native.crossEntropy(x, y, out, cf.zeros([3], { dtype: 'bf16' }), 'mean', -100, 0), /crossEntropy: expected f32 for lse.dtype, got bf16/);
    assert.throws(() => cf.native.crossEntropy(x, y, out, lse, 'mean', 2 ** 31, 0), /crossEntropy: expected an integer in \[-2147483648, 2147483647\] for ignoreIndex/);
    assert.throws(() => cf.native.crossEntropy(x, x, out, lse, 'mean', -100, 0), /crossEntropy: expected i32 for labels.dtype, got f32/);
    assert.throws(() => cf.native.crossEntropyBackward(x, y, lse, cf.zeros([3]), cf.zeros([3, 4]), 'mean', -100, 0), /crossEntropyBackward: expected \[\] for dy.shape, got \[3\]/);
    assert.throws(() => cf.native.crossEntropyBackward(x, y, lse, out, x, 'mean', -100, 0), /must not share memory with logits/);
  });
});

test.run();
