// Resampling of small raw RGB images in plain JavaScript. A sharp call costs about a
// millisecond of fixed overhead, which dwarfs the work on a 32×32 image from the built-in
// dataset (tens of microseconds here); large images and encoded files still go to sharp.
//
// The filter is the antialiased triangle (bilinear) filter as PIL applies it: each output
// pixel averages the source pixels under a triangle whose width grows with the
// downscaling factor, taps clamped to the image. A 1:1 resample copies the pixels exactly.
import type { CropBox, RgbImage } from './image.js';

/** Raw images up to this many pixels resample here rather than in sharp. */
export const JS_RESAMPLE_MAX_PIXELS = 128 * 128;

interface Taps {
  first: Int32Array;
  count: Int32Array;
  weights: Float32Array;
  stride: number;
}

/** Filter taps along one axis: `out` samples covering [start, start + extent) of `size` pixels. */
function taps(size: number, start: number, extent: number, out: number): Taps {
  const scale = extent / out;
  const support = Math.max(scale, 1);
  const stride = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(out);
  const count = new Int32Array(out);
  const weights = new Float32Array(out * stride);
  for (let o = 0; o < out; o++) {
    const center = start + (o + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - support));
    const hi = Math.min(size, Math.ceil(center + support));
    let total = 0;
    let n = 0;
    for (let s = lo; s < hi && n < stride; s++, n++) {
      const w = Math.max(0, 1 - Math.abs((s + 0.5 - center) / support));
      weights[o * stride + n] = w;
      total += w;
    }
    for (let k = 0; k < n; k++) weights[o * stride + k]! /= total || 1;
    first[o] = lo;
    count[o] = n;
  }
  return { first, count, weights, stride };
}

/** `box` of `src` resampled to width × height. */
export function resampleRgb(src: RgbImage, box: CropBox, width: number, height: number): RgbImage {
  const h = taps(src.width, box.left, box.width, width);
  const v = taps(src.height, box.top, box.height, height);
  // Horizontal pass over the source rows the vertical taps read.
  const rowLo = v.first[0]!;
  const rowHi = v.first[height - 1]! + v.count[height - 1]!;
  const mid = new Float32Array((rowHi - rowLo) * width * 3);
  const sdata = src.data;
  const { first: hFirst, count: hCount, weights: hWeights, stride: hStride } = h;
  for (let y = rowLo; y < rowHi; y++) {
    const srcRow = y * src.width * 3;
    const midRow = (y - rowLo) * width * 3;
    for (let x = 0; x < width; x++) {
      let r = 0;
      let g = 0;
      let b = 0;
      const wBase = x * hStride;
      let p = srcRow + hFirst[x]! * 3;
      for (let k = 0, n = hCount[x]!; k < n; k++, p += 3) {
        const w = hWeights[wBase + k]!;
        r += w * sdata[p]!;
        g += w * sdata[p + 1]!;
        b += w * sdata[p + 2]!;
      }
      mid[midRow + 3 * x] = r;
      mid[midRow + 3 * x + 1] = g;
      mid[midRow + 3 * x + 2] = b;
    }
  }
  // Vertical pass a row of taps at a time over contiguous memory; each output still sums its
  // taps in the same order, so the result is the same to the bit.
  const rowLength = width * 3;
  const data = new Uint8Array(rowLength * height);
  const acc = new Float64Array(rowLength);
  for (let y = 0; y < height; y++) {
    const base = v.first[y]! - rowLo;
    acc.fill(0);
    for (let k = 0, n = v.count[y]!; k < n; k++) {
      const w = v.weights[y * v.stride + k]!;
      const row = (base + k) * rowLength;
      for (let i = 0; i < rowLength; i++) acc[i]! += w * mid[row + i]!;
    }
    const out = y * rowLength;
    for (let i = 0; i < rowLength; i++) data[out + i] = Math.min(255, Math.max(0, Math.round(acc[i]!)));
  }
  return { data, width, height };
}

/** The centred square of the shorter side, as sharp's `fit: 'cover'` crops it. */
export function centerSquare(width: number, height: number): CropBox {
  const side = Math.min(width, height);
  return { left: (width - side) / 2, top: (height - side) / 2, width: side, height: side };
}
