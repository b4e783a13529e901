// JPEG decoding in our addon (native/cpu/jpeg.cpp, over libjpeg-turbo) for the image
// transforms: decode at a reduced DCT scale, crop, bicubic resize and normalize into the
// batch's floats in one synchronous call, where sharp costs about 1 ms of fixed overhead per
// call and decodes at full size (bench/notes/dataload.md). Used for plain JPEGs: 8-bit, grey
// or 3-channel, any EXIF orientation. Everything else, and every image
// when the addon was built without libjpeg or CLIPFORGE_NATIVE_JPEG=0 is set, goes to sharp.
//
// The call blocks its thread for the image's decode (a few ms): the loader's workers each
// decode their own samples, one core each.
import type { NativeAddon } from '../native.js';
import { loadAddon } from '../native_load.js';
import { jpegHeader } from './image_header.js';
import type { CropBox } from './image.js';

type Decoder = { available: true; addon: NativeAddon; libjpegTurbo: string } | { available: false; reason: string };
let decoder: Decoder | null = null;

// The addon is loaded on first use, a failure to load it caught, so that a data pipeline
// without a built addon still runs (on sharp) instead of failing to load.
function nativeDecoder(): Decoder {
  if (decoder) return decoder;
  try {
    const addon = loadAddon();
    const info = addon.jpegDecoder();
    decoder = info.available ? { available: true, addon, libjpegTurbo: info.libjpegTurbo } : info;
  } catch (e) {
    decoder = { available: false, reason: e instanceof Error ? e.message : String(e) };
  }
  return decoder;
}

function forcedToSharp(): boolean {
  return process.env.CLIPFORGE_NATIVE_JPEG === '0';
}

/** Which decoder plain JPEGs get in this process, and why. */
export function jpegDecoder(): { native: true; libjpegTurbo: string } | { native: false; reason: string } {
  if (forcedToSharp()) return { native: false, reason: 'CLIPFORGE_NATIVE_JPEG=0 is set' };
  const d = nativeDecoder();
  return d.available ? { native: true, libjpegTurbo: d.libjpegTurbo } : { native: false, reason: d.reason };
}

/** A JPEG the native decoder takes: its displayed size (EXIF orientation applied) and orientation. */
export interface NativeJpeg {
  width: number;
  height: number;
  /** EXIF orientation 1-8 (1: as stored). */
  orientation: number;
}

/** The displayed size and orientation of a JPEG the native decoder takes, or null (not a plain JPEG, or no native decoder). */
export function nativeJpegSize(bytes: Uint8Array): NativeJpeg | null {
  if (forcedToSharp() || !nativeDecoder().available) return null;
  const h = jpegHeader(bytes);
  if (!h || h.orientation < 1 || h.orientation > 8 || h.precision !== 8 || (h.components !== 1 && h.components !== 3)) return null;
  const swapped = h.orientation >= 5;
  return { width: swapped ? h.height : h.width, height: swapped ? h.width : h.height, orientation: h.orientation };
}

/**
 * The stored-image box that EXIF orientation `o` shows as `box` of the displayed image (stored
 * size w × h). Orientations 2-4 mirror an axis, 5-8 also swap them (EXIF's meaning: 6 is the
 * stored image turned 90° clockwise for display, 8 counter-clockwise, 5 and 7 the transposes).
 */
function storedBox(box: CropBox, o: number, w: number, h: number): CropBox {
  const { left: l, top: t, width: bw, height: bh } = box;
  switch (o) {
    case 2: return { left: w - l - bw, top: t, width: bw, height: bh };
    case 3: return { left: w - l - bw, top: h - t - bh, width: bw, height: bh };
    case 4: return { left: l, top: h - t - bh, width: bw, height: bh };
    case 5: return { left: t, top: l, width: bh, height: bw };
    case 6: return { left: t, top: h - l - bw, width: bh, height: bw };
    case 7: return { left: w - t - bh, top: h - l - bw, width: bh, height: bw };
    case 8: return { left: w - t - bh, top: l, width: bh, height: bw };
    default: return box;
  }
}

/**
 * `box` (in displayed pixels, EXIF orientation applied) of the JPEG resized to width × height
 * (bicubic), as CHW floats (x / 255 - mean) / std written to out[offset ..]. Returns M of the
 * DCT scale M/8 it decoded at. Throws on corrupt or truncated data, naming what libjpeg found.
 * An oriented JPEG is decoded as stored, over the box that orientation shows, and the small
 * result turned: resampling is separable and its kernel symmetric, so this equals orienting
 * first (as sharp does) up to float rounding.
 */
export function decodeJpegInto(bytes: Uint8Array, box: CropBox, width: number, height: number, mean: readonly number[], std: readonly number[], out: Float32Array, offset: number): number {
  const d = nativeDecoder();
  if (!d.available) throw new Error(`decodeJpegInto: ${d.reason}`);
  const h = jpegHeader(bytes);
  const o = h ? h.orientation : 1;
  if (!h || o === 1) return d.addon.decodeJpegCrop(bytes, [box.left, box.top, box.width, box.height], width, height, mean, std, out, offset);
  const swapped = o >= 5;
  const sw = swapped ? height : width, sh = swapped ? width : height;
  const s = storedBox(box, o, h.width, h.height);
  const stored = new Float32Array(3 * sw * sh);
  const scale = d.addon.decodeJpegCrop(bytes, [s.left, s.top, s.width, s.height], sw, sh, mean, std, stored, 0);
  const plane = width * height;
  for (let c = 0; c < 3; c++) {
    const src = c * sw * sh, dst = offset + c * plane;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        // The stored output pixel that displayed output pixel (x, y) shows.
        let sx = x, sy = y;
        switch (o) {
          case 2: sx = sw - 1 - x; break;
          case 3: sx = sw - 1 - x; sy = sh - 1 - y; break;
          case 4: sy = sh - 1 - y; break;
          case 5: sx = y; sy = x; break;
          case 6: sx = y; sy = sh - 1 - x; break;
          case 7: sx = sw - 1 - y; sy = sh - 1 - x; break;
          case 8: sx = sw - 1 - y; sy = x; break;
        }
        out[dst + y * width + x] = stored[src + sy * sw + sx]!;
      }
    }
  }
  return scale;
}
