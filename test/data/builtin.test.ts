// The built-in dataset: determinism and split independence, image sizes and content, labels
// tied to both pixels and captions, zero-shot classes and templates, argument errors.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createBuiltinDataset } from '../../lib/data/builtin/index.js';
import { hashSeed, SampleRandom } from '../../lib/data/builtin/random.js';
import { drawScene } from '../../lib/data/builtin/scene.js';
import { COLOUR_KINDS, COLOUR_WORDS, SHAPE_KINDS, SHAPE_WORDS } from '../../lib/data/builtin/vocabulary.js';
import { throwsShaped } from '../support/helpers.js';

const test = suite('builtin dataset');


const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((v, i) => v === b[i]);

test('a sample is a pure function of seed, split and index', () => {
  const a = createBuiltinDataset({ split: 'train', imageSize: 24, seed: 7 });
  const b = createBuiltinDataset({ split: 'train', imageSize: 24, seed: 7 });
  for (const index of [0, 1, 99_999, 4242]) {
    const x = a.get(index);
    // Out of order and from a second instance: random access gives the same sample.
    const y = b.get(index);
    assert.ok(sameBytes(x.image, y.image), `image ${index}`);
    assert.is(x.caption, y.caption);
    assert.is(x.label, y.label);
  }
  assert.ok(sameBytes(a.get(3).image, a.get(3).image));
});

test('splits, seeds and indices give different samples', () => {
  const train = createBuiltinDataset({ split: 'train', imageSize: 24 });
  const val = createBuiltinDataset({ split: 'val', imageSize: 24 });
  const reseeded = createBuiltinDataset({ split: 'train', imageSize: 24, seed: 1 });
  let sameAsVal = 0;
  let sameAsSeed = 0;
  const captions = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const t = train.get(i);
    if (sameBytes(t.image, val.get(i).image)) sameAsVal++;
    if (sameBytes(t.image, reseeded.get(i).image)) sameAsSeed++;
    captions.add(t.caption);
  }
  assert.is(sameAsVal, 0);
  assert.is(sameAsSeed, 0);
  assert.ok(captions.size >= 48, `captions repeat too often: ${captions.size} distinct of 50`);
});

test('images have the declared size and are not blank', () => {
  for (const imageSize of [16, 32, 64]) {
    const ds = createBuiltinDataset({ split: 'val', imageSize });
    for (let i = 0; i < 10; i++) {
      const s = ds.get(i);
      assert.is(s.width, imageSize);
      assert.is(s.height, imageSize);
      assert.is(s.image.length, imageSize * imageSize * 3);
      let mean = 0;
      for (const v of s.image) mean += v;
      mean /= s.image.length;
      let variance = 0;
      for (const v of s.image) variance += (v - mean) ** 2;
      assert.ok(Math.sqrt(variance / s.image.length) > 10, `image ${i} at ${imageSize} px is nearly flat`);
    }
  }
});

test("the label's colour is painted over a visible part of the image", () => {
  const ds = createBuiltinDataset({ split: 'train', imageSize: 48 });
  for (let i = 0; i < 60; i++) {
    const s = ds.get(i);
    const colour = COLOUR_KINDS[s.label % COLOUR_KINDS.length]!;
    const [r, g, b] = COLOUR_WORDS[colour].rgb;
    let near = 0;
    for (let p = 0; p < s.image.length; p += 3) {
      if (Math.hypot(s.image[p]! - r, s.image[p + 1]! - g, s.image[p + 2]! - b) < 70) near++;
    }
    // The least-covering main object (one striped cross at the smallest radius) covers ~7%.
    assert.ok(near > 0.04 * 48 * 48, `sample ${i} (${ds.classNames[s.label]}): ${near} pixels near ${colour}`);
  }
});

test('the main object is the largest shape in its scene', () => {
  for (let i = 0; i < 200; i++) {
    const scene = drawScene(new SampleRandom(hashSeed(3, i)));
    const mains = scene.drawables.slice(scene.drawables.length - scene.count);
    const smallestMain = Math.min(...mains.map((d) => d.radius));
    for (const d of scene.drawables.slice(0, scene.drawables.length - scene.count)) {
      assert.ok(d.radius < smallestMain, `scene ${i}: a distractor of radius ${d.radius} against ${smallestMain}`);
    }
  }
});

test("the caption names the label's shape and colour, by some synonym", () => {
  const ds = createBuiltinDataset({ split: 'train', imageSize: 8, size: 1000 });
  const canonical = { shape: 0, colour: 0 };
  for (let i = 0; i < 300; i++) {
    const s = ds.get(i);
    const shape = SHAPE_KINDS[Math.floor(s.label / COLOUR_KINDS.length)]!;
    const colour = COLOUR_KINDS[s.label % COLOUR_KINDS.length]!;
    const shapeWords = SHAPE_WORDS[shape].nouns.flatMap((n) => [n.singular, n.plural]);
    const has = (w: string): boolean => new RegExp(`\\b${w}\\b`).test(s.caption);
    assert.ok(shapeWords.some(has), `'${s.caption}' does not name a ${shape}`);
    assert.ok(COLOUR_WORDS[colour].names.some(has), `'${s.caption}' does not name ${colour}`);
    if (has(SHAPE_WORDS[shape].nouns[0]!.singular) || has(SHAPE_WORDS[shape].nouns[0]!.plural)) canonical.shape++;
    if (has(COLOUR_WORDS[colour].names[0]!)) canonical.colour++;
  }
  // Synonyms are used, but the canonical words (those of the class names) dominate.
  for (const [what, n] of Object.entries(canonical)) assert.ok(n > 150 && n < 290, `canonical ${what} words in ${n} of 300 captions`);
});

test('at least 20 classes, each seen in a few hundred samples', () => {
  const ds = createBuiltinDataset({ split: 'val', imageSize: 8 });
  assert.ok(ds.classNames.length >= 20);
  assert.is(new Set(ds.classNames).size, ds.classNames.length);
  const counts = new Array<number>(ds.classNames.length).fill(0);
  for (let i = 0; i < 500; i++) counts[ds.get(i).label]!++;
  assert.ok(Math.min(...counts) >= 5, `class counts ${counts.join(',')}`);
  assert.ok(Math.max(...counts) <= 45, `class counts ${counts.join(',')}`);
});

test('every template has a word that no training caption uses', () => {
  const ds = createBuiltinDataset({ split: 'train', imageSize: 8 });
  assert.ok(ds.templates.length >= 5);
  const captionWords = new Set<string>();
  for (let i = 0; i < 2000; i++) for (const w of ds.get(i).caption.toLowerCase().match(/[a-z-]+/g) ?? []) captionWords.add(w);
  for (const template of ds.templates) {
    assert.ok(template.includes('{}'), template);
    const words = template.replace('{}', ' ').toLowerCase().match(/[a-z-]+/g) ?? [];
    assert.ok(words.some((w) => !captionWords.has(w)), `every word of '${template}' appears in training captions`);
  }
});

test('bad options and indices are errors naming the argument', () => {
  throwsShaped(() => createBuiltinDataset({ split: 'test' as 'train' }), /options\.split/);
  throwsShaped(() => createBuiltinDataset({ split: 'train', imageSize: 4 }), /\[8, 4096\] for options\.imageSize, got 4/);
  throwsShaped(() => createBuiltinDataset({ split: 'train', size: 0 }), /options\.size/);
  throwsShaped(() => createBuiltinDataset({ split: 'val', seed: -1 }), /options\.seed/);
  throwsShaped(() => createBuiltinDataset(null as never), /options/);
  const ds = createBuiltinDataset({ split: 'val', size: 10, imageSize: 8 });
  assert.is(ds.length, 10);
  throwsShaped(() => ds.get(10), /BuiltinDataset\.get: expected an integer in \[0, 9\] for index, got 10/);
  throwsShaped(() => ds.get(1.5), /index/);
});

test.run();
