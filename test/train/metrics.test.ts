import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, Rng } from '../support/helpers.js';

const test = suite('metrics');
const rng = new Rng(2024);

/** Small integer features: every score is an exact integer, so ties are frequent and exact. */
function intFeatures(n: number, d: number): number[] {
  return Array.from({ length: n * d }, () => rng.int(-2, 2));
}

function scoresOf(a: number[], b: number[], n: number, m: number, d: number): number[][] {
  return Array.from({ length: n }, (_, i) => Array.from({ length: m }, (_, j) => {
    let s = 0;
    for (let k = 0; k < d; k++) s += a[i * d + k]! * b[j * d + k]!;
    return s;
  }));
}

/** Position of `target` when candidates are sorted by score (descending), ties by index. */
function sortedRank(scores: number[], target: number): number {
  const order = scores.map((s, i) => [s, i] as const).sort((x, y) => y[0] - x[0] || x[1] - y[1]);
  return order.findIndex(([, i]) => i === target);
}

function refRankMetrics(ranks: number[], name: string): Record<string, number> {
  const sorted = [...ranks].sort((a, b) => a - b);
  const n = ranks.length;
  const median = n % 2 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  const out: Record<string, number> = {
    [`${name}_mean_rank`]: ranks.reduce((a, b) => a + b, 0) / n + 1,
    [`${name}_median_rank`]: Math.floor(median) + 1,
  };
  for (const k of [1, 5, 10]) out[`${name}_R@${k}`] = ranks.filter((r) => r < k).length / n;
  return out;
}

test('retrieval metrics equal a brute-force sort, ties broken by index as OpenCLIP does', () => {
  for (const device of devices()) {
    for (const [n, d] of [[1, 3], [12, 4], [37, 3], [1100, 2]] as const) {
      const a = intFeatures(n, d);
      const b = intFeatures(n, d);
      const s = scoresOf(a, b, n, n, d);
      const i2t = s.map((row, i) => sortedRank(row, i));
      const t2i = Array.from({ length: n }, (_, j) => sortedRank(s.map((row) => row[j]!), j));
      const expected = { ...refRankMetrics(i2t, 'image_to_text'), ...refRankMetrics(t2i, 'text_to_image') };
      const got = cf.scope(() => cf.retrievalMetrics(cf.fromArray(a, [n, d], { device }), cf.fromArray(b, [n, d], { device }), 2));
      assert.equal(got, expected, `n ${n} on ${device}`);
    }
  }
});

test("retrieval metrics equal OpenCLIP's get_clip_metrics (fixture, tie-heavy features)", () => {
  const cases = JSON.parse(readFileSync(new URL('../fixtures/retrieval_openclip.json', import.meta.url), 'utf8')) as
    { n: number; d: number; image: number[]; text: number[]; metrics: Record<string, number> }[];
  for (const device of devices()) {
    for (const c of cases) {
      const got = cf.scope(() => cf.retrievalMetrics(cf.fromArray(c.image, [c.n, c.d], { device }), cf.fromArray(c.text, [c.n, c.d], { device }), 2));
      assert.equal(got, c.metrics, `n ${c.n} on ${device}`);
    }
  }
});

test('perfectly paired features retrieve their partner first', () => {
  const x = rng.array(20 * 8);
  const m = cf.scope(() => {
    const f = cf.l2Normalize(cf.fromArray(x, [20, 8]));
    return cf.retrievalMetrics(f, f, 100);
  });
  assert.is(m['image_to_text_R@1'], 1);
  assert.is(m['text_to_image_mean_rank'], 1);
  assert.is(m['image_to_text_median_rank'], 1);
});

test('zero-shot top-k accuracy equals a brute-force sort, and the classifier averages normalized templates', () => {
  for (const device of devices()) {
    const [n, c, d] = [300, 13, 3];
    const img = intFeatures(n, d);
    const cls = intFeatures(c, d);
    const labels = Array.from({ length: n }, () => rng.int(0, c - 1));
    const s = scoresOf(img, cls, n, c, d);
    const ranks = s.map((row, i) => sortedRank(row, labels[i]!));
    const got = cf.scope(() => cf.zeroShotAccuracy(cf.fromArray(img, [n, d], { device }), cf.fromArray(cls, [c, d], { device }), labels, [1, 3, 5]));
    assert.is(got.n, n);
    for (const k of [1, 3, 5]) {
      const hits = ranks.filter((r) => r < k).length;
      assert.is(got.correct[k], hits, `top-${k} on ${device}`);
      assert.is(got.accuracy[k], hits / n);
    }
  }
  // Templates: class c, template t embeds as a fixed random vector of its text.
  const vectors = new Map<string, Float32Array>();
  const encode = (texts: string[]): cf.Tensor => {
    const rows = texts.map((t) => vectors.get(t) ?? vectors.set(t, rng.array(6)).get(t)!);
    return cf.fromArray(Float32Array.from(rows.flatMap((r) => [...r])), [texts.length, 6]);
  };
  const names = ['cat', 'dog', 'car'];
  const templates = ['a photo of a {}.', (c: string) => `art of the ${c}`];
  const classifier = cf.scope(() => cf.zeroShotClassifier(names, templates, encode, { classesPerBatch: 2 }));
  assert.equal([...classifier.shape], [3, 6]);
  const expected = names.flatMap((name) => {
    const embs = [`a photo of a ${name}.`, `art of the ${name}`].map((t) => {
      const v = [...vectors.get(t)!];
      const norm = Math.hypot(...v);
      return v.map((x) => x / norm);
    });
    const avg = embs[0]!.map((_, k) => (embs[0]![k]! + embs[1]![k]!) / 2);
    const norm = Math.hypot(...avg);
    return avg.map((x) => x / norm);
  });
  assertClose(classifier.toArray(), expected, { rtol: 1e-5, atol: 1e-6 });
  classifier.dispose();
});

test('bad arguments', () => {
  cf.scope(() => {
    const f = cf.zeros([4, 3]);
    assert.throws(() => cf.retrievalMetrics(f, cf.zeros([5, 3])), /retrievalMetrics: expected as many texts as images \(paired\), got 4 images and 5 texts/);
    assert.throws(() => cf.retrievalMetrics(f, cf.zeros([4, 2])), /retrievalMetrics: expected imageFeatures and textFeatures of the same feature size/);
    assert.throws(() => cf.zeroShotAccuracy(f, cf.zeros([2, 3]), [0, 1, 2, 0]), /zeroShotAccuracy: expected class indices in \[0, 2\) for labels, got 2 at 2/);
    assert.throws(() => cf.zeroShotAccuracy(f, cf.zeros([2, 3]), [0, 1]), /expected 4 labels \(one per image\), got 2/);
    assert.throws(() => cf.classifierFromEmbeddings(f), /classifierFromEmbeddings: expected shape \[classes, templates, dim\]/);
    assert.throws(() => cf.zeroShotClassifier(['a'], ['{}'], () => cf.zeros([2, 3])), /expected encodeText to return shape \[1, dim\], got \[2, 3\]/);
  });
});

test.run();
