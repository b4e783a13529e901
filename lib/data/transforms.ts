// Image transforms as OpenCLIP builds them, from encoded bytes or RGB pixels to a normalized
// CHW float32 slot of a batch:
//
//   train: RandomResizedCrop(size, scale, ratio, bicubic) -> [colour jitter with probability]
//          -> [grayscale with probability] -> /255 -> (x - mean) / std
//   eval:  resize the shorter side to size (bicubic) -> centre crop -> /255 -> (x - mean) / std
//
// Crop and resize of a plain JPEG run in our addon (jpeg.ts), which writes the normalized
// floats itself; other images crop and resize in sharp (libvips) in one pass. Jitter and
// grayscale run here on the size × size result either way. Every random draw comes from the
// SeededRandom the caller passes (the loader seeds one per sample from seed, epoch and
// sample), always in the same order and the same on both paths, so a sample's pixels depend
// on nothing else. A transform is described by plain data
// (`ImageTransformOptions`), which is how worker threads rebuild it.
import { argError, checkInteger } from '../tensor/check.js';
import { cropResize, imageSize, resizeCenterCrop, type CropBox, type ImageInput, type RgbImage } from './image.js';
import { decodeJpegInto, nativeJpegSize } from './jpeg.js';
import { centerSquare } from './resample.js';
import type { SeededRandom } from './seeded.js';

export const OPENAI_DATASET_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const OPENAI_DATASET_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** The `--aug-cfg` settings (OpenCLIP's names in camelCase). */
export interface AugmentOptions {
  /** RandomResizedCrop's range of crop area over image area. Default [0.9, 1.0] (OpenCLIP's). */
  scale?: readonly [number, number];
  /** RandomResizedCrop's range of crop aspect ratio (width / height). Default [3/4, 4/3]. */
  ratio?: readonly [number, number];
  /** Brightness, contrast, saturation and hue strengths, as torchvision's ColorJitter. */
  colorJitter?: readonly [number, number, number, number];
  /** Probability of applying the colour jitter. Default 1 when colorJitter is given. */
  colorJitterProb?: number;
  /** Probability of converting to grayscale (kept as 3 equal channels). Default 0. */
  grayScaleProb?: number;
}

export interface ImageTransformOptions extends AugmentOptions {
  /** Output side in pixels (square). */
  size: number;
  /** The training transform (random crop, augmentation) rather than the evaluation one. Default false. */
  train?: boolean;
  /** Per-channel mean and std of the normalization. Default OpenAI's. */
  mean?: readonly [number, number, number];
  std?: readonly [number, number, number];
}

export interface ImageTransform {
  /** The resolved options, every default filled in: enough to rebuild the transform elsewhere. */
  readonly options: Readonly<Required<Omit<ImageTransformOptions, 'colorJitter'>> & Pick<ImageTransformOptions, 'colorJitter'>>;
  /** Floats one image takes in a batch: 3 × size × size. */
  readonly length: number;
  /** Transforms `input` into out[offset .. offset + length) as CHW. */
  apply(input: ImageInput, random: SeededRandom, out: Float32Array, offset?: number): Promise<void>;
}

const AUG_KEYS: Readonly<Record<string, keyof AugmentOptions>> = {
  scale: 'scale',
  ratio: 'ratio',
  color_jitter: 'colorJitter',
  color_jitter_prob: 'colorJitterProb',
  gray_scale_prob: 'grayScaleProb',
};

/** Splits on whitespace that is outside quotes and brackets. */
function splitAugTokens(text: string): string[] {
  const out: string[] = [];
  let current = '';
  let quote = '';
  let depth = 0;
  for (const ch of text) {
    if (quote) {
      if (ch === quote) quote = '';
      current += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      current += ch;
    } else if (ch === '(' || ch === '[') {
      depth++;
      current += ch;
    } else if (ch === ')' || ch === ']') {
      depth--;
      current += ch;
    } else if (/\s/.test(ch) && depth === 0) {
      if (current) out.push(current);
      current = '';
    } else current += ch;
  }
  if (quote || depth !== 0) throw new Error(`parseAugConfig: expected balanced quotes and brackets for augCfg, got '${text}'`);
  if (current) out.push(current);
  return out;
}

function parseAugValue(key: string, raw: string): number | number[] {
  let text = raw.trim();
  if ((text.startsWith("'") && text.endsWith("'")) || (text.startsWith('"') && text.endsWith('"'))) text = text.slice(1, -1).trim();
  const bad = (): Error => new Error(`parseAugConfig: expected a number or a tuple of numbers for ${key}, got '${raw}'`);
  if (/^[([]/.test(text)) {
    if (!/^\(.*\)$|^\[.*\]$/.test(text)) throw bad();
    const items = text.slice(1, -1).split(',').map((s) => s.trim()).filter((s) => s !== '');
    const values = items.map(Number);
    if (values.length === 0 || values.some((v) => !Number.isFinite(v))) throw bad();
    return values;
  }
  const v = Number(text);
  if (text === '' || !Number.isFinite(v)) throw bad();
  return v;
}

/**
 * OpenCLIP's `--aug-cfg`: `key=value` pairs (one string, whitespace-separated, or a list of
 * them), values as numbers or tuples, quoted or not:
 * `scale='(0.4, 1.0)' color_jitter='(0.32, 0.32, 0.32, 0.08)' color_jitter_prob=0.8 gray_scale_prob=0.2`.
 * A single number for color_jitter means that strength for brightness, contrast and saturation.
 */
export function parseAugConfig(augCfg: string | readonly string[]): AugmentOptions {
  const op = 'parseAugConfig';
  if (typeof augCfg !== 'string' && !(Array.isArray(augCfg) && augCfg.every((s) => typeof s === 'string'))) {
    throw argError(op, 'augCfg', 'a string or an array of strings', augCfg);
  }
  const tokens = typeof augCfg === 'string' ? splitAugTokens(augCfg) : augCfg.flatMap((s) => splitAugTokens(s));
  const out: Record<string, unknown> = {};
  for (const token of tokens) {
    const eq = token.indexOf('=');
    if (eq <= 0) throw new Error(`parseAugConfig: expected key=value for augCfg, got '${token}'`);
    const key = token.slice(0, eq).trim();
    const name = AUG_KEYS[key];
    if (!name) throw new Error(`parseAugConfig: expected one of ${Object.keys(AUG_KEYS).join(', ')} for augCfg key, got '${key}'`);
    const value = parseAugValue(key, token.slice(eq + 1));
    if (name === 'scale' || name === 'ratio') {
      if (!Array.isArray(value) || value.length !== 2) throw new Error(`parseAugConfig: expected a pair (lo, hi) for ${key}, got '${token.slice(eq + 1)}'`);
      out[name] = value;
    } else if (name === 'colorJitter') {
      if (typeof value === 'number') out[name] = [value, value, value, 0];
      else if (value.length === 3) out[name] = [...value, 0];
      else if (value.length === 4) out[name] = value;
      else throw new Error(`parseAugConfig: expected 1, 3 or 4 numbers for color_jitter, got '${token.slice(eq + 1)}'`);
    } else {
      if (typeof value !== 'number') throw new Error(`parseAugConfig: expected a number for ${key}, got '${token.slice(eq + 1)}'`);
      out[name] = value;
    }
  }
  return out as AugmentOptions;
}

function checkRange(op: string, arg: string, v: unknown, min: number, max: number): readonly [number, number] {
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === 'number' && Number.isFinite(x)) || v[0] > v[1] || v[0] < min || v[1] > max) {
    throw argError(op, arg, `a pair [lo, hi] with ${min} <= lo <= hi <= ${max}`, v);
  }
  return [v[0], v[1]];
}

function checkProbability(op: string, arg: string, v: unknown): number {
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw argError(op, arg, 'a probability in [0, 1]', v);
  return v;
}

function checkTriple(op: string, arg: string, v: unknown, positive: boolean): readonly [number, number, number] {
  if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0))) {
    throw argError(op, arg, `3 finite${positive ? ' positive' : ''} numbers`, v);
  }
  return [v[0], v[1], v[2]];
}

/**
 * torchvision's RandomResizedCrop box: up to ten tries of an area fraction drawn from `scale`
 * and a log-uniform aspect ratio from `ratio`, kept when it fits; otherwise the whole image
 * cut to the nearest allowed ratio, centred.
 */
export function randomResizedCropBox(width: number, height: number, scale: readonly [number, number], ratio: readonly [number, number], random: SeededRandom): CropBox {
  const area = width * height;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * random.uniform(scale[0], scale[1]);
    const aspect = Math.exp(random.uniform(logLo, logHi));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      return { left: random.int(width - w + 1), top: random.int(height - h + 1), width: w, height: h };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = Math.max(1, Math.round(w / ratio[0]));
  else if (inRatio > ratio[1]) w = Math.max(1, Math.round(h * ratio[1]));
  return { left: (width - w) >> 1, top: (height - h) >> 1, width: w, height: h };
}

const LUMA = [0.299, 0.587, 0.114] as const;

function clamp01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

/** Hue rotation of one pixel by `shift` turns, through HSV as torchvision does it. */
function rotateHue(px: Float32Array, i: number, shift: number): void {
  const r = px[i]!;
  const g = px[i + 1]!;
  const b = px[i + 2]!;
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  const chroma = max - min;
  if (chroma === 0) return;
  let h: number;
  if (max === r) h = ((g - b) / chroma) / 6;
  else if (max === g) h = ((b - r) / chroma + 2) / 6;
  else h = ((r - g) / chroma + 4) / 6;
  h = (((h + shift) % 1) + 1) % 1;
  const s = chroma / max;
  const v = max;
  const sector = h * 6;
  const k = Math.floor(sector) % 6;
  const f = sector - Math.floor(sector);
  const p = v * (1 - s);
  const q = v * (1 - s * f);
  const t = v * (1 - s * (1 - f));
  const rgb = [
    [v, t, p],
    [q, v, p],
    [p, v, t],
    [p, q, v],
    [t, p, v],
    [v, p, q],
  ][k]!;
  px[i] = rgb[0]!;
  px[i + 1] = rgb[1]!;
  px[i + 2] = rgb[2]!;
}

/**
 * torchvision's ColorJitter on HWC floats in [0, 1]: the four factors are drawn first, then
 * applied in a random order; a zero strength is skipped (and draws nothing).
 */
function colorJitter(px: Float32Array, strengths: readonly [number, number, number, number], random: SeededRandom): void {
  const [bs, cs, ss, hs] = strengths;
  const order = random.shuffle([0, 1, 2, 3]);
  const brightness = bs > 0 ? random.uniform(Math.max(0, 1 - bs), 1 + bs) : 1;
  const contrast = cs > 0 ? random.uniform(Math.max(0, 1 - cs), 1 + cs) : 1;
  const saturation = ss > 0 ? random.uniform(Math.max(0, 1 - ss), 1 + ss) : 1;
  const hue = hs > 0 ? random.uniform(-hs, hs) : 0;
  const n = px.length;
  for (const step of order) {
    if (step === 0 && bs > 0) {
      for (let i = 0; i < n; i++) px[i] = clamp01(px[i]! * brightness);
    } else if (step === 1 && cs > 0) {
      let mean = 0;
      for (let i = 0; i < n; i += 3) mean += LUMA[0] * px[i]! + LUMA[1] * px[i + 1]! + LUMA[2] * px[i + 2]!;
      mean /= n / 3;
      for (let i = 0; i < n; i++) px[i] = clamp01(contrast * px[i]! + (1 - contrast) * mean);
    } else if (step === 2 && ss > 0) {
      for (let i = 0; i < n; i += 3) {
        const grey = LUMA[0] * px[i]! + LUMA[1] * px[i + 1]! + LUMA[2] * px[i + 2]!;
        for (let c = 0; c < 3; c++) px[i + c] = clamp01(saturation * px[i + c]! + (1 - saturation) * grey);
      }
    } else if (step === 3 && hs > 0) {
      for (let i = 0; i < n; i += 3) rotateHue(px, i, hue);
    }
  }
}

/** A transform from options; throws on any bad option, naming it. */
export function createImageTransform(options: ImageTransformOptions): ImageTransform {
  const op = 'createImageTransform';
  if (typeof options !== 'object' || options === null) throw argError(op, 'options', 'an object', options);
  const size = checkInteger(op, 'options.size', options.size, 1, 8192);
  const train = options.train ?? false;
  if (typeof train !== 'boolean') throw argError(op, 'options.train', 'a boolean', train);
  const mean = checkTriple(op, 'options.mean', options.mean ?? OPENAI_DATASET_MEAN, false);
  const std = checkTriple(op, 'options.std', options.std ?? OPENAI_DATASET_STD, true);
  const scale = checkRange(op, 'options.scale', options.scale ?? [0.9, 1.0], Number.MIN_VALUE, 1);
  const ratio = checkRange(op, 'options.ratio', options.ratio ?? [3 / 4, 4 / 3], Number.MIN_VALUE, Infinity);
  let jitter: readonly [number, number, number, number] | null = null;
  if (options.colorJitter !== undefined) {
    const j = options.colorJitter as unknown;
    if (!Array.isArray(j) || j.length !== 4 || !j.every((x) => typeof x === 'number' && x >= 0 && Number.isFinite(x)) || j[3] > 0.5) {
      throw argError(op, 'options.colorJitter', '4 non-negative strengths [brightness, contrast, saturation, hue <= 0.5]', j);
    }
    jitter = [j[0], j[1], j[2], j[3]];
  }
  const colorJitterProb = checkProbability(op, 'options.colorJitterProb', options.colorJitterProb ?? (jitter ? 1 : 0));
  if (colorJitterProb > 0 && !jitter) throw new Error(`${op}: expected options.colorJitter with options.colorJitterProb, got colorJitterProb ${colorJitterProb} alone`);
  const grayScaleProb = checkProbability(op, 'options.grayScaleProb', options.grayScaleProb ?? 0);

  const resolved = { size, train, mean, std, scale, ratio, ...(jitter ? { colorJitter: jitter } : {}), colorJitterProb, grayScaleProb };
  const plane = size * size;
  const gain = std.map((s) => 1 / (255 * s));
  const shift = mean.map((m, c) => -m / std[c]!);
  const floatGain = std.map((s) => 1 / s);

  function normalize(src: Uint8Array, out: Float32Array, offset: number): void {
    for (let c = 0; c < 3; c++) {
      const g = gain[c]!;
      const b = shift[c]!;
      const base = offset + c * plane;
      for (let i = 0; i < plane; i++) out[base + i] = src[3 * i + c]! * g + b;
    }
  }

  async function pixels(input: ImageInput, random: SeededRandom): Promise<RgbImage> {
    if (!train) return resizeCenterCrop(input, size);
    const dims = await imageSize(input);
    return cropResize(input, randomResizedCropBox(dims.width, dims.height, scale, ratio, random), size, size);
  }

  return {
    options: resolved,
    length: 3 * plane,
    async apply(input: ImageInput, random: SeededRandom, out: Float32Array, offset = 0): Promise<void> {
      if (!(out instanceof Float32Array) || !Number.isSafeInteger(offset) || offset < 0 || offset + 3 * plane > out.length) {
        throw new Error(`ImageTransform.apply: expected a Float32Array with ${3 * plane} floats free at offset ${offset} for out, got ${out instanceof Float32Array ? `length ${out.length}` : typeof out}`);
      }
      // A plain JPEG is decoded, cropped, resized and normalized into `out` natively, with
      // the crop box drawn as the sharp path draws it (eval: the exact centre square, where
      // sharp rounds the offset to a whole pixel of its resized image); anything else becomes
      // RGB bytes in sharp.
      const jpeg = input instanceof Uint8Array ? nativeJpegSize(input) : null;
      let rgb: RgbImage | null = null;
      if (jpeg) {
        const box = train ? randomResizedCropBox(jpeg.width, jpeg.height, scale, ratio, random) : centerSquare(jpeg.width, jpeg.height);
        decodeJpegInto(input as Uint8Array, box, size, size, mean, std, out, offset);
      } else rgb = await pixels(input, random);
      // Both draws happen for every sample, used or not, so later draws never shift.
      const doJitter = train && random.next() < colorJitterProb;
      const doGray = train && random.next() < grayScaleProb;
      if (!doJitter && !doGray) {
        if (rgb) normalize(rgb.data, out, offset);
        return;
      }
      // Augmentation works on HWC floats in [0, 1]: from the bytes, or back from the native output.
      const px = new Float32Array(3 * plane);
      if (rgb) {
        for (let i = 0; i < px.length; i++) px[i] = rgb.data[i]! / 255;
      } else {
        for (let c = 0; c < 3; c++) {
          const base = offset + c * plane;
          for (let i = 0; i < plane; i++) px[3 * i + c] = out[base + i]! * std[c]! + mean[c]!;
        }
      }
      if (doJitter) colorJitter(px, jitter!, random);
      if (doGray) {
        for (let i = 0; i < px.length; i += 3) px[i] = px[i + 1] = px[i + 2] = LUMA[0] * px[i]! + LUMA[1] * px[i + 1]! + LUMA[2] * px[i + 2]!;
      }
      for (let c = 0; c < 3; c++) {
        const g = floatGain[c]!;
        const m = mean[c]!;
        const base = offset + c * plane;
        for (let i = 0; i < plane; i++) out[base + i] = (px[3 * i + c]! - m) * g;
      }
    },
  };
}
