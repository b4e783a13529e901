// Image decoding and the train / eval transforms on small images this test makes with sharp:
// output layout and value ranges, determinism per seed, the crop's scale and ratio bounds,
// EXIF orientation, alpha, raw pixels = lossless bytes, jitter and grayscale, --aug-cfg parsing.
import sharp from 'sharp';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cropResize, decodeImage, imageSize, type RgbImage } from '../../lib/data/image.js';
import { headerSize } from '../../lib/data/image_header.js';
import { SeededRandom } from '../../lib/data/seeded.js';
import { createImageTransform, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD, parseAugConfig, randomResizedCropBox } from '../../lib/data/transforms.js';
import { rejects } from '../support/helpers.js';

const test = suite('transforms');

function gradient(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      data[o] = Math.round((x * 255) / (width - 1));
      data[o + 1] = Math.round((y * 255) / (height - 1));
      data[o + 2] = Math.round(((x + y) * 255) / (width + height - 2));
    }
  }
  return { data, width, height };
}

async function encode(img: RgbImage, format: 'png' | 'jpeg' | 'webp'): Promise<Uint8Array> {
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).toFormat(format).toBuffer();
}

async function run(transform: ReturnType<typeof createImageTransform>, input: Parameters<ReturnType<typeof createImageTransform>['apply']>[0], seed: number): Promise<Float32Array> {
  const out = new Float32Array(transform.length);
  await transform.apply(input, new SeededRandom(seed), out);
  return out;
}


test('train transform: CHW of size², values within the normalized [0, 255] range, same seed same output', async () => {
  const jpeg = await encode(gradient(56, 40), 'jpeg');
  const t = createImageTransform({ size: 32, train: true, scale: [0.3, 1] });
  assert.is(t.length, 3 * 32 * 32);
  const a = await run(t, jpeg, 1);
  for (let c = 0; c < 3; c++) {
    const lo = (0 - OPENAI_DATASET_MEAN[c]!) / OPENAI_DATASET_STD[c]! - 1e-5;
    const hi = (1 - OPENAI_DATASET_MEAN[c]!) / OPENAI_DATASET_STD[c]! + 1e-5;
    for (let i = 0; i < 1024; i++) assert.ok(a[c * 1024 + i]! >= lo && a[c * 1024 + i]! <= hi, `channel ${c} value ${a[c * 1024 + i]}`);
  }
  assert.equal(await run(t, jpeg, 1), a);
  assert.not.equal(await run(t, jpeg, 2), a, 'another seed crops elsewhere');
});

test('the crop box keeps to scale and ratio and lies inside the image', () => {
  const scale = [0.4, 1] as const;
  const ratio = [3 / 4, 4 / 3] as const;
  let smallest = 1;
  for (let seed = 0; seed < 2000; seed++) {
    const W = 50 + (seed % 200);
    const H = 40 + ((seed * 7) % 300);
    const b = randomResizedCropBox(W, H, scale, ratio, new SeededRandom(seed));
    assert.ok(b.left >= 0 && b.top >= 0 && b.left + b.width <= W && b.top + b.height <= H, `box inside ${W}x${H}`);
    const frac = (b.width * b.height) / (W * H);
    smallest = Math.min(smallest, frac);
    // Rounding each side moves the area by at most about one row and one column.
    const slack = (b.width + b.height + 1) / (W * H);
    if (frac < scale[0] - slack || frac > scale[1] + slack) {
      // Only the centred fallback may leave the scale range, and it keeps the whole of one side.
      assert.ok(b.width === W || b.height === H, `fallback box ${JSON.stringify(b)} of ${W}x${H}`);
    } else {
      const r = b.width / b.height;
      assert.ok(r >= ratio[0] * (1 - 2 / b.height) - 1e-9 && r <= ratio[1] * (1 + 2 / b.height) + 1e-9, `ratio ${r}`);
    }
  }
  assert.ok(smallest < 0.45, `the low end of the scale range is reached (${smallest})`);
  const thin = randomResizedCropBox(400, 20, [0.9, 1], ratio, new SeededRandom(3));
  assert.equal(thin, { left: 186, top: 0, width: 27, height: 20 }, 'a strip falls back to the widest allowed centre crop');
});

test('eval transform: shorter side resized, centre kept, a flat colour normalizes exactly', async () => {
  const flat = { data: new Uint8Array(64 * 48 * 3).map((_, i) => [200, 100, 50][i % 3]!), width: 64, height: 48 };
  const t = createImageTransform({ size: 24 });
  const out = await run(t, await encode(flat, 'png'), 0);
  for (let c = 0; c < 3; c++) {
    const want = ([200, 100, 50][c]! / 255 - OPENAI_DATASET_MEAN[c]!) / OPENAI_DATASET_STD[c]!;
    for (let i = 0; i < 576; i++) assert.ok(Math.abs(out[c * 576 + i]! - want) < 1e-5);
  }
  // Left third red, middle green, right third blue (96 x 32): the 32 x 32 centre is all green.
  const bands = new Uint8Array(96 * 32 * 3);
  for (let i = 0; i < 96 * 32; i++) bands[3 * i + Math.floor((i % 96) / 32)] = 255;
  const centre = await run(createImageTransform({ size: 16 }), { data: bands, width: 96, height: 32 }, 0);
  const greenHigh = (1 - OPENAI_DATASET_MEAN[1]) / OPENAI_DATASET_STD[1];
  for (let i = 2; i < 14; i++) assert.ok(Math.abs(centre[256 + 8 * 16 + i]! - greenHigh) < 0.05, `column ${i} is green`);
});

test('raw pixels and their lossless PNG give the same floats (close ones for small raw images); WebP and JPEG decode', async () => {
  const large = gradient(160, 120);
  const t = createImageTransform({ size: 20, train: true });
  assert.equal(await run(t, await encode(large, 'png'), 5), await run(t, large, 5));
  // Small raw images resample in JavaScript (a triangle filter, not sharp's cubic): same crop, close values.
  const img = gradient(40, 30);
  const fromPng = await run(t, await encode(img, 'png'), 5);
  const fromRaw = await run(t, img, 5);
  const worst = fromPng.reduce((m, v, i) => Math.max(m, Math.abs(v - fromRaw[i]!)), 0);
  assert.ok(worst < 0.25, `small raw image within ${worst} of its PNG (normalized units)`);
  for (const format of ['jpeg', 'webp'] as const) {
    const decoded = await decodeImage(await encode(img, format));
    assert.is(decoded.width, 40);
    assert.is(decoded.height, 30);
    let err = 0;
    for (let i = 0; i < img.data.length; i++) err = Math.max(err, Math.abs(decoded.data[i]! - img.data[i]!));
    assert.ok(err < 40, `${format} close to the source (max error ${err})`);
  }
});

test('a crop 3x or more larger than the output (decoded at reduced scale) matches the direct crop', async () => {
  const big = gradient(720, 700);
  const png = await encode(big, 'png');
  const jpg = await sharp(big.data, { raw: { width: 720, height: 700, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
  const box = { left: 31, top: 17, width: 680, height: 672 };
  const direct = await cropResize(big, box, 224, 224);
  for (const encoded of [png, jpg]) {
    const reduced = await cropResize(encoded, box, 224, 224);
    assert.equal([reduced.width, reduced.height, reduced.data.length], [224, 224, 224 * 224 * 3]);
    let sum = 0;
    for (let i = 0; i < direct.data.length; i++) sum += Math.abs(direct.data[i]! - reduced.data[i]!);
    assert.ok(sum / direct.data.length < 1, `mean difference ${(sum / direct.data.length).toFixed(2)}`);
  }
});

test('EXIF orientation is applied and alpha dropped', async () => {
  const img = gradient(40, 20);
  const rotated = await sharp(img.data, { raw: { width: 40, height: 20, channels: 3 } }).jpeg().withMetadata({ orientation: 6 }).toBuffer();
  assert.equal(await imageSize(rotated), { width: 20, height: 40 });
  const decoded = await decodeImage(rotated);
  assert.equal([decoded.width, decoded.height, decoded.data.length], [20, 40, 20 * 40 * 3]);
  const rgba = await sharp({ create: { width: 8, height: 6, channels: 4, background: { r: 10, g: 20, b: 30, alpha: 0.5 } } }).png().toBuffer();
  const flat = await decodeImage(rgba);
  assert.equal([flat.data.length, flat.data[0], flat.data[1], flat.data[2]], [8 * 6 * 3, 10, 20, 30]);
  const grey = await sharp({ create: { width: 8, height: 6, channels: 3, background: { r: 90, g: 90, b: 90 } } }).toColourspace('b-w').png().toBuffer();
  const g = await decodeImage(grey);
  assert.equal([g.data.length, g.data[0], g.data[1], g.data[2]], [8 * 6 * 3, 90, 90, 90]);
});

test('header dimensions agree with the decoder for JPEG (EXIF rotated), PNG and WebP; odd headers defer', async () => {
  const img = gradient(37, 23);
  const raw = () => sharp(img.data, { raw: { width: 37, height: 23, channels: 3 } });
  const files = [
    await raw().jpeg().toBuffer(),
    await raw().jpeg({ progressive: true }).withMetadata({ orientation: 8 }).toBuffer(),
    await raw().png().toBuffer(),
    await raw().webp().toBuffer(),
    await raw().webp({ lossless: true }).toBuffer(),
    await raw().ensureAlpha(0.5).webp().toBuffer(),
  ];
  for (const [i, f] of files.entries()) {
    const meta = await sharp(f).metadata();
    const want = meta.autoOrient ?? { width: meta.width, height: meta.height };
    assert.equal(headerSize(f), { width: want.width, height: want.height }, `file ${i} (${meta.format})`);
  }
  assert.equal(headerSize(files[1]!), { width: 23, height: 37 });
  assert.is(headerSize(new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 200])), null, 'a header cut short defers');
  assert.is(headerSize(new Uint8Array(40)), null);
});

test('grayscale with probability 1 gives equal channels; jitter changes pixels, deterministically', async () => {
  const img = gradient(32, 32);
  const unnormalize = (v: Float32Array, c: number, i: number): number => v[c * 256 + i]! * OPENAI_DATASET_STD[c]! + OPENAI_DATASET_MEAN[c]!;
  const gray = await run(createImageTransform({ size: 16, train: true, grayScaleProb: 1 }), img, 3);
  for (let i = 0; i < 256; i++) {
    assert.ok(Math.abs(unnormalize(gray, 0, i) - unnormalize(gray, 1, i)) < 1e-5);
    assert.ok(Math.abs(unnormalize(gray, 0, i) - unnormalize(gray, 2, i)) < 1e-5);
  }
  const plain = createImageTransform({ size: 16, train: true, colorJitter: [0.4, 0.4, 0.4, 0.1], colorJitterProb: 0 });
  const jittered = createImageTransform({ size: 16, train: true, colorJitter: [0.4, 0.4, 0.4, 0.1], colorJitterProb: 1 });
  const a = await run(plain, img, 9);
  const b = await run(jittered, img, 9);
  assert.not.equal(a, b);
  assert.equal(await run(jittered, img, 9), b);
  const grey = { data: new Uint8Array(16 * 16 * 3).fill(128), width: 16, height: 16 };
  const hueOnly = await run(createImageTransform({ size: 16, train: true, colorJitter: [0, 0, 0, 0.5] }), grey, 1);
  const untouched = await run(createImageTransform({ size: 16, train: true }), grey, 1);
  assert.ok(hueOnly.every((v, i) => Math.abs(v - untouched[i]!) < 1e-5), 'a hue rotation leaves grey alone');
  const red = { data: new Uint8Array(16 * 16 * 3).map((_, i) => (i % 3 === 0 ? 200 : 20)), width: 16, height: 16 };
  const rotated = await run(createImageTransform({ size: 16, train: true, colorJitter: [0, 0, 0, 0.5] }), red, 1);
  assert.ok(unnormalize(rotated, 0, 0) < 0.7, 'a hue rotation moves red away from red');
});

test('--aug-cfg parses quoted tuples, bare pairs, lists, and rejects unknown keys', () => {
  const cfg = parseAugConfig(`scale='(0.4, 1.0)' color_jitter='(0.32, 0.32, 0.32, 0.08)' color_jitter_prob=0.8 gray_scale_prob=0.2`);
  assert.equal(cfg, { scale: [0.4, 1], colorJitter: [0.32, 0.32, 0.32, 0.08], colorJitterProb: 0.8, grayScaleProb: 0.2 });
  assert.equal(parseAugConfig(['scale=(0.5,1)', 'ratio=[0.5, 2]', 'color_jitter=0.2']), { scale: [0.5, 1], ratio: [0.5, 2], colorJitter: [0.2, 0.2, 0.2, 0] });
  assert.equal(parseAugConfig(''), {});
  assert.throws(() => parseAugConfig('use_timm=True'), /parseAugConfig: expected one of scale, ratio, .* for augCfg key, got 'use_timm'/);
  assert.throws(() => parseAugConfig("scale='(0.4, 1.0"), /balanced quotes/);
  assert.throws(() => parseAugConfig('scale=0.4'), /expected a pair \(lo, hi\) for scale/);
  assert.throws(() => parseAugConfig('gray_scale_prob=lots'), /expected a number or a tuple of numbers for gray_scale_prob, got 'lots'/);
  assert.throws(() => parseAugConfig(3 as never), /parseAugConfig: expected a string or an array of strings for augCfg, got 3 of type number/);
  const t = createImageTransform({ size: 8, train: true, ...cfg });
  assert.equal(t.options.scale, [0.4, 1]);
});

test('bad options and undecodable bytes are clear errors', async () => {
  assert.throws(() => createImageTransform({ size: 0 }), /createImageTransform: expected an integer in \[1, 8192\] for options.size, got 0/);
  assert.throws(() => createImageTransform({ size: 8, scale: [0.9, 0.1] }), /options.scale/);
  assert.throws(() => createImageTransform({ size: 8, std: [1, 0, 1] }), /options.std/);
  assert.throws(() => createImageTransform({ size: 8, colorJitterProb: 0.5 }), /colorJitter with options.colorJitterProb/);
  const t = createImageTransform({ size: 8, train: true });
  await rejects(run(t, new Uint8Array([0xff, 0xd8, 0xff, 1, 2, 3, 4]), 0), /imageSize: cannot read image header/);
  const jpeg = await encode(gradient(40, 40), 'jpeg');
  await rejects(run(t, jpeg.subarray(0, 120), 0), /imageSize: cannot read image header: .*premature end/);
  // The native JPEG path's errors are tested in jpeg.test.ts; these are sharp's.
  process.env.CLIPFORGE_NATIVE_JPEG = '0';
  try {
    await rejects(run(t, jpeg.subarray(0, jpeg.length >> 1), 0), /cropResize: cannot decode image: .*premature end/);
    await rejects(run(t, jpeg.subarray(0, jpeg.length - 10), 0), /cropResize: cannot decode image: .*premature end/);
  } finally {
    delete process.env.CLIPFORGE_NATIVE_JPEG;
  }
  await rejects(run(t, { data: new Uint8Array(5), width: 2, height: 2 }, 0), /imageSize: expected encoded image bytes or .* for input/);
  await rejects(t.apply(jpeg, new SeededRandom(0), new Float32Array(10)), /ImageTransform.apply: expected a Float32Array with 192 floats/);
});

test.run();
