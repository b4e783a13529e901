import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { Rng } from '../support/helpers.js';

const test = suite('distributed losses');
const rng = new Rng(99);

function assertNear(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i]! - expected[i]!);
    if (!(err <= tol * Math.max(scale, 1e-30))) assert.unreachable(`${what}[${i}]: got ${actual[i]}, expected ${expected[i]} (max |expected| ${scale}, tol ${tol})`);
  }
}

const times = (x: ArrayLike<number>, k: number): number[] => Array.from(x, (v) => v * k);

interface Setup {
  w: number;
  n: number;
  d: number;
  img: Float32Array;
  txt: Float32Array;
}

function setup(w: number, n: number, d: number): Setup {
  return { w, n, d, img: rng.array(w * n * d, 0.3), txt: rng.array(w * n * d, 0.3) };
}

/** Each simulated rank's features as its own leaf tensor. */
function parts(s: Setup, data: Float32Array): cf.Tensor[] {
  return Array.from({ length: s.w }, (_, r) => cf.fromArray(data.subarray(r * s.n * s.d, (r + 1) * s.n * s.d), [s.n, s.d], { requiresGrad: true }));
}

const concatGrads = (ps: cf.Tensor[]): number[] => ps.flatMap((p) => Array.from(p.grad!.toArray()));

/** The full loss over all W·n pairs and its gradients, on whole tensors. */
function full(s: Setup, kind: 'clip' | 'siglip', t: number, bias: number) {
  return cf.scope(() => {
    const img = cf.fromArray(s.img, [s.w * s.n, s.d], { requiresGrad: true });
    const txt = cf.fromArray(s.txt, [s.w * s.n, s.d], { requiresGrad: true });
    const ls = cf.scalar(t, { requiresGrad: true });
    const lb = cf.scalar(bias, { requiresGrad: true });
    const loss = kind === 'clip' ? cf.clipLoss(img, txt, ls) : cf.siglipLoss(img, txt, ls, lb);
    const value = loss.item();
    loss.backward();
    return { loss: value, img: Array.from(img.grad!.toArray()), txt: Array.from(txt.grad!.toArray()), ls: ls.grad!.item(), lb: kind === 'siglip' ? lb.grad!.item() : 0 };
  });
}

const configs: [number, number, number][] = [[2, 3, 8], [3, 5, 16], [4, 7, 12], [3, 150, 40]];

test('local CLIP losses with gradient-carrying gathers: Σ loss_r = W·L and Σ_r ∇loss_r = W·∇L', () => {
  for (const [w, n, d] of configs) {
    const s = setup(w, n, d);
    const t = 1 + rng.next() * 2;
    const ref = full(s, 'clip', t, 0);
    cf.scope(() => {
      const imgs = parts(s, s.img);
      const txts = parts(s, s.txt);
      const ls = cf.scalar(t, { requiresGrad: true });
      let sum = 0;
      for (let r = 0; r < w; r++) {
        // What rank r computes: its own backward, the gathered gradients flowing to their owners.
        const allImg = cf.gatherFeatures(imgs, r, { withGrad: true });
        const allTxt = cf.gatherFeatures(txts, r, { withGrad: true });
        const loss = cf.localClipLoss(imgs[r]!, txts[r]!, allImg, allTxt, ls, { rank: r });
        sum += loss.item();
        loss.backward();
      }
      const what = `W ${w} n ${n}`;
      assertNear([sum], [w * ref.loss], 1e-5, `${what} Σ loss`);
      assertNear(concatGrads(imgs), times(ref.img, w), 1e-4, `${what} Σ dimg`);
      assertNear(concatGrads(txts), times(ref.txt, w), 1e-4, `${what} Σ dtxt`);
      assertNear([ls.grad!.item()], [w * ref.ls], 1e-4, `${what} Σ dlogitScale`);
    });
  }
});

test('full loss on gathered features with local-slice gradients: each rank holds ∂L/∂(its slice)', () => {
  for (const [w, n, d] of configs.slice(0, 3)) {
    const s = setup(w, n, d);
    const ref = full(s, 'clip', 2.2, 0);
    cf.scope(() => {
      const imgs = parts(s, s.img);
      const txts = parts(s, s.txt);
      const ls = cf.scalar(2.2, { requiresGrad: true });
      for (let r = 0; r < w; r++) {
        const loss = cf.clipLoss(cf.gatherFeatures(imgs, r), cf.gatherFeatures(txts, r), ls);
        assertNear([loss.item()], [ref.loss], 1e-6, `rank ${r} loss`);
        loss.backward();
      }
      // Disjoint slices: the sum over ranks is the full gradient. The shared logit scale gets
      // one full gradient per rank (data-parallel averaging divides by W).
      assertNear(concatGrads(imgs), ref.img, 1e-4, `W ${w} dimg`);
      assertNear(concatGrads(txts), ref.txt, 1e-4, `W ${w} dtxt`);
      assertNear([ls.grad!.item()], [w * ref.ls], 1e-4, `W ${w} dlogitScale`);
    });
  }
});

test('local losses without gradient-carrying gathers miss the other ranks\' terms (OpenCLIP needs --gather-with-grad)', () => {
  const s = setup(3, 4, 8);
  const ref = full(s, 'clip', 2, 0);
  cf.scope(() => {
    const imgs = parts(s, s.img);
    const txts = parts(s, s.txt);
    const ls = cf.scalar(2);
    for (let r = 0; r < s.w; r++) {
      cf.localClipLoss(imgs[r]!, txts[r]!, cf.gatherFeatures(imgs, r), cf.gatherFeatures(txts, r), ls, { rank: r }).backward();
    }
    const got = concatGrads(imgs);
    const want = times(ref.img, s.w);
    const maxDiff = Math.max(...got.map((g, i) => Math.abs(g - want[i]!)));
    assert.ok(maxDiff > 1e-3 * Math.max(...want.map(Math.abs)), `local-only gathers should differ from W·∇L, max diff ${maxDiff}`);
  });
});

test('local SigLIP losses: Σ loss_r = W·L and Σ_r ∇loss_r = W·∇L, bias included', () => {
  for (const [w, n, d] of configs) {
    const s = setup(w, n, d);
    const t = Math.log(10), bias = -3;
    const ref = full(s, 'siglip', t, bias);
    cf.scope(() => {
      const imgs = parts(s, s.img);
      const txts = parts(s, s.txt);
      const ls = cf.scalar(t, { requiresGrad: true });
      const lb = cf.scalar(bias, { requiresGrad: true });
      let sum = 0;
      for (let r = 0; r < w; r++) {
        const loss = cf.localSiglipLoss(imgs[r]!, cf.gatherFeatures(txts, r, { withGrad: true }), ls, lb, { rank: r });
        sum += loss.item();
        loss.backward();
      }
      const what = `W ${w} n ${n}`;
      assertNear([sum], [w * ref.loss], 1e-5, `${what} Σ loss`);
      assertNear(concatGrads(imgs), times(ref.img, w), 1e-4, `${what} Σ dimg`);
      assertNear(concatGrads(txts), times(ref.txt, w), 1e-4, `${what} Σ dtxt`);
      assertNear([ls.grad!.item(), lb.grad!.item()], [w * ref.ls, w * ref.lb], 1e-4, `${what} Σ dscale, dbias`);
    });
  }
});

test('gatherFeatures concatenates in rank order and routes gradients', () => {
  cf.scope(() => {
    const ps = [0, 1, 2].map((r) => cf.fromArray([r, r + 0.5, r + 0.25, r + 0.75], [2, 2], { requiresGrad: true }));
    const g = cf.gatherFeatures(ps, 1);
    assert.equal([...g.shape], [6, 2]);
    assert.equal(Array.from(g.toArray()), [0, 0.5, 0.25, 0.75, 1, 1.5, 1.25, 1.75, 2, 2.5, 2.25, 2.75]);
    cf.sum(cf.mul(g, cf.fromArray([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [6, 2]))).backward();
    assert.is(ps[0]!.grad, null);
    assert.equal(Array.from(ps[1]!.grad!.toArray()), [5, 6, 7, 8]);
    assert.is(ps[2]!.grad, null);
    const h = cf.gatherFeatures(ps, 0, { withGrad: true });
    cf.sum(h).backward();
    assert.equal(Array.from(ps[0]!.grad!.toArray()), [1, 1, 1, 1]);
    assert.equal(Array.from(ps[2]!.grad!.toArray()), [1, 1, 1, 1]);
  });
});

test('bad inputs throw clear errors', () => {
  cf.scope(() => {
    const a = cf.zeros([2, 4]);
    const s = cf.scalar(1);
    assert.throws(() => cf.gatherFeatures([], 0), /gatherFeatures: expected a non-empty array of Tensors for parts/);
    assert.throws(() => cf.gatherFeatures([a, a], 2), /gatherFeatures: expected an integer in \[0, 1\] for rank, got 2/);
    assert.throws(() => cf.gatherFeatures([a, cf.zeros([3, 4])], 0), /gatherFeatures: expected shape \[2, 4\] for parts\[1\]/);
    assert.throws(() => cf.gatherFeatures([a, cf.zeros([2, 4], { dtype: 'bf16' })], 0), /gatherFeatures: expected parts\[1\] like parts\[0\]/);
    assert.throws(() => cf.gatherFeatures([a], 0, { withGrad: 1 as unknown as boolean }), /gatherFeatures: expected a boolean for opts.withGrad/);
    const all = cf.zeros([6, 4]);
    assert.throws(() => cf.localClipLoss(a, a, all, all, s, { rank: 3 }), /localClipLoss: expected an integer in \[0, 2\] for opts.rank, got 3/);
    assert.throws(() => cf.localClipLoss(a, a, cf.zeros([5, 4]), cf.zeros([5, 4]), s, { rank: 0 }), /localClipLoss: expected allTxt to hold a whole number of local batches of 2 rows/);
    assert.throws(() => cf.localClipLoss(a, a, cf.zeros([4, 4]), all, s, { rank: 0 }), /localClipLoss: expected shape \[6, 4\] for allImg, got \[4, 4\]/);
    assert.throws(() => cf.localClipLoss(a, a, all, all, s, undefined as unknown as { rank: number }), /localClipLoss: expected an object with rank for opts/);
    assert.throws(() => cf.localSiglipLoss(a, cf.zeros([6, 3]), s, s, { rank: 0 }), /localSiglipLoss: expected shape \[N, 4\] for allTxt, got \[6, 3\]/);
  });
});

test.run();
