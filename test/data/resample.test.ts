// The JavaScript resampler for small raw images: exact at 1:1, an antialiased triangle filter
// otherwise (checked against a direct 2-D evaluation of the same filter), and used by the
// image transforms for small raw inputs.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cropResize, resizeCenterCrop } from '../../lib/data/image.js';
import { centerSquare, resampleRgb } from '../../lib/data/resample.js';
import { Rng } from '../support/helpers.js';

const test = suite('resample');

function randomImage(width: number, height: number, seed: number): { data: Uint8Array; width: number; height: number } {
  const rng = new Rng(seed);
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = rng.int(0, 255);
  return { data, width, height };
}

/** The same filter written as one 2-D sum per output pixel, in f64. */
function naive(src: { data: Uint8Array; width: number; height: number }, box: { left: number; top: number; width: number; height: number }, w: number, h: number): Uint8Array {
  const weights = (size: number, start: number, extent: number, out: number, o: number): [number, number][] => {
    const scale = extent / out;
    const support = Math.max(scale, 1);
    const center = start + (o + 0.5) * scale;
    const list: [number, number][] = [];
    for (let s = 0; s < size; s++) {
      const wt = Math.max(0, 1 - Math.abs((s + 0.5 - center) / support));
      if (wt > 0) list.push([s, wt]);
    }
    const total = list.reduce((a, [, wt]) => a + wt, 0);
    return list.map(([s, wt]) => [s, wt / total]);
  };
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const wy = weights(src.height, box.top, box.height, h, y);
    for (let x = 0; x < w; x++) {
      const wx = weights(src.width, box.left, box.width, w, x);
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (const [sy, a] of wy) for (const [sx, b] of wx) acc += a * b * src.data[(sy * src.width + sx) * 3 + c]!;
        out[(y * w + x) * 3 + c] = Math.min(255, Math.max(0, Math.round(acc)));
      }
    }
  }
  return out;
}

test('a 1:1 resample copies the pixels exactly', () => {
  const img = randomImage(17, 11, 1);
  const out = resampleRgb(img, { left: 0, top: 0, width: 17, height: 11 }, 17, 11);
  assert.equal(Array.from(out.data), Array.from(img.data));
});

test('crops, downscales and upscales match the direct 2-D filter (within rounding)', () => {
  const img = randomImage(32, 24, 2);
  const cases: [{ left: number; top: number; width: number; height: number }, number, number][] = [
    [{ left: 3, top: 2, width: 29, height: 20 }, 32, 32],
    [{ left: 0, top: 0, width: 32, height: 24 }, 13, 7],
    [{ left: 5.5, top: 1.25, width: 10, height: 9 }, 40, 31],
    [centerSquare(32, 24), 16, 16],
  ];
  for (const [box, w, h] of cases) {
    const got = resampleRgb(img, box, w, h);
    const want = naive(img, box, w, h);
    assert.is(got.data.length, w * h * 3);
    const worst = got.data.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i]!)), 0);
    assert.ok(worst <= 1, `box ${JSON.stringify(box)} -> ${w}x${h}: worst difference ${worst}`);
  }
});

test('a downscale by 2 of a 1-pixel checkerboard averages to grey (antialiased, no aliasing)', () => {
  const w = 16;
  const data = new Uint8Array(w * w * 3);
  for (let y = 0; y < w; y++) for (let x = 0; x < w; x++) data.fill((x + y) % 2 ? 255 : 0, (y * w + x) * 3, (y * w + x) * 3 + 3);
  const out = resampleRgb({ data, width: w, height: w }, { left: 0, top: 0, width: w, height: w }, 8, 8);
  for (const v of out.data) assert.ok(Math.abs(v - 127.5) <= 32, `pixel ${v} is near grey`);
});

test('the image functions use it for small raw pixels: centre crop of a square at its own size is the identity', async () => {
  const img = randomImage(32, 32, 3);
  const same = await resizeCenterCrop(img, 32);
  assert.equal(Array.from(same.data), Array.from(img.data));
  const cropped = await cropResize(img, { left: 4, top: 4, width: 24, height: 24 }, 12, 12);
  const want = naive(img, { left: 4, top: 4, width: 24, height: 24 }, 12, 12);
  assert.ok(cropped.data.every((v, i) => Math.abs(v - want[i]!) <= 1), 'cropResize resampled in JavaScript');
});

test.run();
