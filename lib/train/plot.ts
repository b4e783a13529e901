// A loss-curve PNG with no drawing library: an RGB raster with axes, "nice" ticks labelled
// in a 3×5 pixel font, and the curve as a 2-pixel polyline; encoded as PNG (filter 0 rows,
// deflate from node:zlib, CRC-32 per chunk).
import { deflateSync } from 'node:zlib';
import { argError } from '../tensor/check.js';
import { crc32 } from './crc.js';

export type Rgb = readonly [number, number, number];

export const CURVE_COLOR: Rgb = [31, 119, 180];
const AXIS_COLOR: Rgb = [0, 0, 0];
const GRID_COLOR: Rgb = [225, 225, 225];

class Raster {
  readonly data: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.data = new Uint8Array(width * height * 3).fill(255);
  }
  set(x: number, y: number, c: Rgb): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const i = (y * this.width + x) * 3;
    this.data[i] = c[0];
    this.data[i + 1] = c[1];
    this.data[i + 2] = c[2];
  }
  /** A straight line (DDA: one pixel per step along the longer axis), `thick` pixels wide. */
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, thick = 1): void {
    const n = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
    for (let s = 0; s <= n; s++) {
      const x = x0 + ((x1 - x0) * s) / n;
      const y = y0 + ((y1 - y0) * s) / n;
      for (let dx = 0; dx < thick; dx++) for (let dy = 0; dy < thick; dy++) this.set(x + dx, y + dy, c);
    }
  }
  /** Text in the 3×5 font scaled by `scale`, with (x, y) its top-left corner. */
  text(s: string, x: number, y: number, c: Rgb, scale = 2): void {
    for (const ch of s) {
      const rows = FONT[ch];
      if (rows) {
        rows.forEach((bits, r) => {
          for (let col = 0; col < 3; col++) {
            if (!(bits & (4 >> col))) continue;
            for (let a = 0; a < scale; a++) for (let b = 0; b < scale; b++) this.set(x + col * scale + a, y + r * scale + b, c);
          }
        });
      }
      x += 4 * scale;
    }
  }
}

// 3×5 glyphs, one row per number, the high bit leftmost.
const FONT: Record<string, readonly number[]> = {
  '0': [7, 5, 5, 5, 7], '1': [2, 6, 2, 2, 7], '2': [7, 1, 7, 4, 7], '3': [7, 1, 7, 1, 7], '4': [5, 5, 7, 1, 1],
  '5': [7, 4, 7, 1, 7], '6': [7, 4, 7, 5, 7], '7': [7, 1, 1, 1, 1], '8': [7, 5, 7, 5, 7], '9': [7, 5, 7, 1, 7],
  '.': [0, 0, 0, 0, 2], '-': [0, 0, 7, 0, 0], '+': [0, 2, 7, 2, 0], e: [0, 7, 7, 4, 7], s: [0, 7, 4, 1, 7],
  t: [2, 7, 2, 2, 3], p: [0, 7, 5, 7, 4], l: [6, 2, 2, 2, 7], o: [0, 7, 5, 5, 7], ' ': [0, 0, 0, 0, 0],
};

const textWidth = (s: string, scale = 2): number => s.length * 4 * scale - scale;

/** Tick values 1, 2 or 5 × 10^k apart covering [lo, hi], about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new Error(`niceTicks: expected finite numbers for lo and hi, got ${lo} and ${hi}`);
  if (!Number.isSafeInteger(count) || count < 1 || count > 100) throw argError('niceTicks', 'count', 'an integer in [1, 100]', count);
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const first = Math.floor(lo / step);
  const last = Math.ceil(hi / step);
  // A range narrower than the floats can resolve at its magnitude has no ticks between its ends.
  if (!(step > 0) || !Number.isFinite(step) || last - first > 10 * count) return [lo, hi];
  return Array.from({ length: last - first + 1 }, (_, i) => Number(((first + i) * step).toPrecision(12)));
}

function label(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace('e+', 'e');
  return String(Number(v.toPrecision(4)));
}

/** Where the plot area lies in the image and the data ranges its edges stand for. */
export interface PlotLayout {
  left: number;
  right: number;
  top: number;
  bottom: number;
  xMin: number;
  xMax: number;
  yMin: number;
  yMax: number;
}

/** Pixel position of a data point (x to the right, y up) in a layout. */
export function toPixel(layout: PlotLayout, x: number, y: number): [number, number] {
  const { left, right, top, bottom, xMin, xMax, yMin, yMax } = layout;
  const px = xMax > xMin ? left + ((x - xMin) / (xMax - xMin)) * (right - left) : (left + right) / 2;
  const py = bottom - ((y - yMin) / (yMax - yMin)) * (bottom - top);
  return [px, py];
}

/** Encodes an RGB raster (3 bytes per pixel, rows top to bottom) as PNG. */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  if (!Number.isSafeInteger(width) || width < 1 || !Number.isSafeInteger(height) || height < 1) throw new Error(`encodePng: expected a positive width and height, got ${width}×${height}`);
  if (rgb.length !== width * height * 3) throw new Error(`encodePng: expected ${width * height * 3} bytes of RGB for ${width}×${height}, got ${rgb.length}`);
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) rows.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (width * 3 + 1) + 1);
  const chunk = (type: string, data: Uint8Array): Buffer => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'latin1');
    out.set(data, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(rows)), chunk('IEND', new Uint8Array(0))]);
}

export interface LossPoint {
  step: number;
  loss: number;
}

/** Renders loss against step as a PNG; returns the image and where the plot area lies. */
export function renderLossCurve(points: readonly LossPoint[], opts: { width?: number; height?: number } = {}): { png: Buffer; layout: PlotLayout } {
  const op = 'renderLossCurve';
  if (!Array.isArray(points) || points.length === 0) throw argError(op, 'points', 'a non-empty array of {step, loss}', points);
  points.forEach((p, i) => {
    if (p === null || typeof p !== 'object' || !Number.isFinite(p.step) || !Number.isFinite(p.loss)) throw argError(op, `points[${i}]`, '{step, loss} with finite numbers', p);
  });
  const width = opts.width ?? 640;
  const height = opts.height ?? 400;
  if (!Number.isSafeInteger(width) || width < 160 || width > 4096) throw argError(op, 'opts.width', 'an integer in [160, 4096]', width);
  if (!Number.isSafeInteger(height) || height < 120 || height > 4096) throw argError(op, 'opts.height', 'an integer in [120, 4096]', height);
  let [lo, hi, xMin, xMax] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const p of points) {
    [lo, hi] = [Math.min(lo, p.loss), Math.max(hi, p.loss)];
    [xMin, xMax] = [Math.min(xMin, p.step), Math.max(xMax, p.step)];
  }
  if (hi === lo) {
    const pad = Math.max(0.5, Math.abs(lo) * 0.05);
    [lo, hi] = [lo - pad, hi + pad];
  }
  const yTicks = niceTicks(lo, hi);
  const yLabels = yTicks.map(label);
  const left = 16 + yLabels.reduce((w, l) => Math.max(w, textWidth(l)), 0) + 8;
  const layout: PlotLayout = { left, right: width - 20, top: 28, bottom: height - 44, xMin, xMax, yMin: yTicks[0]!, yMax: yTicks[yTicks.length - 1]! };
  const r = new Raster(width, height);
  yTicks.forEach((v, i) => {
    const [, py] = toPixel(layout, xMin, v);
    r.line(layout.left, py, layout.right, py, GRID_COLOR);
    r.line(layout.left - 5, py, layout.left, py, AXIS_COLOR);
    r.text(yLabels[i]!, layout.left - 8 - textWidth(yLabels[i]!), py - 5, AXIS_COLOR);
  });
  for (const v of xMax > xMin ? niceTicks(xMin, xMax).filter((t) => t >= xMin && t <= xMax) : [xMin]) {
    const [px] = toPixel(layout, v, layout.yMin);
    r.line(px, layout.bottom, px, layout.bottom + 5, AXIS_COLOR);
    r.text(label(v), px - textWidth(label(v)) / 2, layout.bottom + 9, AXIS_COLOR);
  }
  r.line(layout.left, layout.top, layout.left, layout.bottom, AXIS_COLOR);
  r.line(layout.left, layout.bottom, layout.right, layout.bottom, AXIS_COLOR);
  r.text('step', (layout.left + layout.right) / 2 - textWidth('step') / 2, height - 16, AXIS_COLOR);
  r.text('loss', 4, 2, AXIS_COLOR);
  const pixels = points.map((p) => toPixel(layout, p.step, p.loss));
  if (pixels.length === 1) r.line(pixels[0]![0] - 1, pixels[0]![1], pixels[0]![0] + 1, pixels[0]![1], CURVE_COLOR, 2);
  for (let i = 1; i < pixels.length; i++) r.line(pixels[i - 1]![0], pixels[i - 1]![1], pixels[i]![0], pixels[i]![1], CURVE_COLOR, 2);
  return { png: encodePng(width, height, r.data), layout };
}
