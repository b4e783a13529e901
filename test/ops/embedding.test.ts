import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { assertClose, devices, gradCheck, Rng, numelOf } from '../support/helpers.js';

const test = suite('embedding');
const rng = new Rng(11);

function randomIds(n: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, () => rng.int(0, vocab - 1));
}

function gatherRef(w: ArrayLike<number>, dim: number, ids: Int32Array): number[] {
  const out: number[] = [];
  for (const id of ids) for (let d = 0; d < dim; d++) out.push(w[id * dim + d]!);
  return out;
}

function scatterRef(dy: ArrayLike<number>, dim: number, ids: Int32Array, vocab: number): Float64Array {
  const dw = new Float64Array(vocab * dim);
  ids.forEach((id, p) => {
    for (let d = 0; d < dim; d++) dw[id * dim + d] += dy[p * dim + d]!;
  });
  return dw;
}

const idShapes = [[], [1], [5], [2, 3], [3, 1, 4], [1, 7, 1]];

test('forward gathers rows on every backend, f32 and bf16, ids of rank 0 to 3', () => {
  for (const device of devices()) {
    for (const dtype of ['f32', 'bf16'] as const) {
      for (const idShape of idShapes) {
        const vocab = rng.int(1, 9), dim = rng.int(1, 13);
        const ids = randomIds(numelOf(idShape), vocab);
        const w = rng.array(vocab * dim);
        const r = cf.scope(() => {
          const wt = cf.fromArray(w, [vocab, dim], { device, dtype });
          const y = cf.embedding(wt, cf.fromArray(ids, idShape, { device }));
          return { shape: [...y.shape], values: y.toArray(), table: wt.toArray() };
        });
        assert.equal(r.shape, [...idShape, dim]);
        // A gather moves values: exact equality with the stored table.
        assert.equal(Array.from(r.values), gatherRef(r.table, dim, ids), `${dtype} ids ${JSON.stringify(idShape)} on ${device}`);
      }
    }
  }
});

test('backward scatter-adds repeated ids and zeroes unused rows, f32 and bf16', () => {
  for (const device of devices()) {
    for (const dtype of ['f32', 'bf16'] as const) {
      for (const [n, vocab, dim] of [[1, 1, 1], [17, 4, 5], [40, 11, 33], [64, 300, 8]] as const) {
        const ids = randomIds(n, vocab);
        const dy = rng.array(n * dim);
        const got = cf.scope(() => {
          const w = cf.zeros([vocab, dim], { device, dtype, requiresGrad: true });
          const y = cf.embedding(w, cf.fromArray(ids, [n], { device }));
          y.backward(cf.fromArray(dy, [n, dim], { device, dtype }));
          return { grad: w.grad!.toArray(), dyStored: cf.fromArray(dy, [n, dim], { dtype }).toArray() };
        });
        const ref = scatterRef(got.dyStored, dim, ids, vocab);
        const tol = dtype === 'bf16' ? { rtol: 1e-2, atol: 1e-2 } : { rtol: 1e-5, atol: 1e-5 };
        assertClose(got.grad, ref, { ...tol, what: `${dtype} n=${n} vocab=${vocab} dim=${dim} on ${device}` });
      }
    }
  }
});

test('CPU backward is deterministic across thread counts', () => {
  const n = 3000, vocab = 7, dim = 19;
  const ids = randomIds(n, vocab);
  const dy = rng.array(n * dim);
  const run = (): Float32Array =>
    cf.scope(() => {
      const dw = cf.empty([vocab, dim]);
      native.embeddingBackward(cf.fromArray(dy, [n, dim]), cf.fromArray(ids, [n]), dw);
      return dw.toArray() as Float32Array;
    });
  const threads = cf.backendInfo().threads;
  cf.setNumThreads(1);
  const serial = run();
  cf.setNumThreads(Math.max(threads, 4));
  const parallel = run();
  cf.setNumThreads(threads);
  assert.equal(Array.from(parallel), Array.from(serial));
});

test('weight gradient matches finite differences', () => {
  const vocab = 6, dim = 4;
  const ids = Int32Array.from([0, 3, 3, 5, 1, 3, 0]);
  gradCheck((w, i) => cf.embedding(w, i), [
    { data: rng.array(vocab * dim), shape: [vocab, dim] },
    { data: ids, shape: [7], dtype: 'i32' },
  ]);
  gradCheck((w, i) => cf.embedding(w, i), [
    { data: rng.array(vocab * dim), shape: [vocab, dim] },
    { data: ids.slice(0, 6), shape: [2, 3], dtype: 'i32' },
  ]);
});

test('empty ids and an empty table', () => {
  cf.scope(() => {
    const y = cf.embedding(cf.ones([3, 2]), cf.fromArray(new Int32Array(0), [0, 4]));
    assert.equal([...y.shape], [0, 4, 2]);
    const w = cf.ones([3, 2], { requiresGrad: true });
    cf.sum(cf.embedding(w, cf.fromArray(new Int32Array(0), [0]))).backward();
    assert.equal(Array.from(w.grad!.toArray()), [0, 0, 0, 0, 0, 0]);
    assert.equal([...cf.embedding(cf.ones([0, 5]), cf.fromArray(new Int32Array(0))).shape], [0, 5]);
  });
});

test('out-of-range ids throw on the CPU, forward and backward', () => {
  cf.scope(() => {
    const w = cf.ones([5, 3]);
    assert.throws(() => cf.embedding(w, cf.fromArray(Int32Array.from([1, 5]))), /embedding: expected ids in \[0, 5\) for ids, got 5 at flat index 1/);
    assert.throws(() => cf.embedding(w, cf.fromArray(Int32Array.from([-1]))), /expected ids in \[0, 5\) for ids, got -1/);
    assert.throws(() => native.embeddingBackward(cf.ones([1, 3]), cf.fromArray(Int32Array.from([9])), cf.empty([5, 3])), /got 9/);
  });
});

test('bad arguments throw errors naming the op and the argument', () => {
  cf.scope(() => {
    const w = cf.ones([4, 3]);
    const ids = cf.fromArray(Int32Array.from([0, 2]));
    assert.throws(() => cf.embedding(cf.ones([4]), ids), /embedding: expected a \[vocab, dim\] tensor for weight, got shape \[4\]/);
    assert.throws(() => cf.embedding(w, cf.zeros([2])), /embedding: expected dtype 'i32' for ids, got 'f32'/);
    assert.throws(() => cf.embedding(cf.zeros([4, 3], { dtype: 'i32' }), ids), /embedding: expected dtype 'f32' or 'bf16' for weight/);
    assert.throws(() => cf.embedding(w, cf.zeros([1, 1, 1, 1, 1, 1, 1, 1], { dtype: 'i32' })), /rank 7 or less/);
    assert.throws(() => cf.embedding(w, 'ids' as never), /embedding: expected a Tensor for ids/);
    // Direct calls into the addon are checked as well.
    assert.throws(() => native.embedding(w, ids, cf.empty([2, 4])), /embedding: expected \[2, 3\] for out.shape, got \[2, 4\]/);
    assert.throws(() => native.embedding(w, ids, cf.empty([2, 3], { dtype: 'bf16' })), /embedding: expected weight and out of the same dtype/);
    assert.throws(() => native.embedding(w, cf.zeros([2]), cf.empty([2, 3])), /embedding: expected i32 for ids.dtype, got f32/);
    assert.throws(() => native.embedding(w, ids, w.view([2, 3], 3)), /embedding: out must not share memory with weight/);
    assert.throws(() => native.embedding({} as never, ids, cf.empty([2, 3])), /embedding: expected a clipforge storage handle for weight/);
    assert.throws(() => (native.embedding as (...a: unknown[]) => void)(w, ids), /embedding: expected 3 arguments, got 2/);
    assert.throws(() => native.embeddingBackward(cf.ones([2, 3]), ids, cf.empty([4, 3, 1])), /embeddingBackward: expected rank 2 for dweight.shape/);
    assert.throws(() => native.embeddingBackward(cf.ones([3, 3]), ids, cf.empty([4, 3])), /embeddingBackward: expected \[2, 3\] for dy.shape, got \[3, 3\]/);
  });
});

test.run();
