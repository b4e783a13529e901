// JPEG decoding in our addon (native/cpu/jpeg.cpp, over libjpeg-turbo) for the image
// transforms: decode at a reduced DCT scale, crop, bicubic resize and normalize into the
// batch's floats in one synchronous call, where sharp costs about 1 ms of fixed overhead per
// call and decodes at full size (bench/notes/dataload.md). Used for plain JPEGs: 8-bit, grey
// or 3-channel, no EXIF rotation (orientation 1 or none). Everything else, and every image
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

/** The size of a JPEG the native decoder takes, or null (not a plain JPEG, or no native decoder). */
export function nativeJpegSize(bytes: Uint8Array): { width: number; height: number } | null {
  if (forcedToSharp() || !nativeDecoder().available) return null;
  const h = jpegHeader(bytes);
  if (!h || h.orientation !== 1 || h.precision !== 8 || (h.components !== 1 && h.components !== 3)) return null;
  return { width: h.width, height: h.height };
}

/**
 * `box` of the JPEG resized to width × height (bicubic), as CHW floats (x / 255 - mean) / std
 * written to out[offset ..]. Returns M of the DCT scale M/8 it decoded at. Throws on corrupt
 * or truncated data, naming what libjpeg found.
 */
export function decodeJpegInto(bytes: Uint8Array, box: CropBox, width: number, height: number, mean: readonly number[], std: readonly number[], out: Float32Array, offset: number): number {
  const d = nativeDecoder();
  if (!d.available) throw new Error(`decodeJpegInto: ${d.reason}`);
  return d.addon.decodeJpegCrop(bytes, [box.left, box.top, box.width, box.height], width, height, mean, std, out, offset);
}
