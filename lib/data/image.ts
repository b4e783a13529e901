// Images as the data pipeline sees them: encoded bytes (JPEG, PNG, WebP, anything sharp
// reads) or raw RGB pixels (a generated dataset), and the sharp calls that turn either into
// RGB pixels of a given size. Decoding runs in libvips on the libuv pool, off the JS thread;
// EXIF orientation is applied, alpha dropped, grey and CMYK converted to sRGB, 16-bit
// samples reduced to 8.
import sharp from 'sharp';
import { argError } from '../tensor/check.js';
import { headerSize } from './image_header.js';
import { centerSquare, JS_RESAMPLE_MAX_PIXELS, resampleRgb } from './resample.js';

/** RGB pixels, row-major height × width × 3 bytes. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** What a sample source may hand over: the encoded file, or pixels it made itself. */
export type ImageInput = Uint8Array | RgbImage;

/** A rectangle of the (oriented) source image, in pixels. */
export interface CropBox {
  left: number;
  top: number;
  width: number;
  height: number;
}

export function isRgbImage(v: unknown): v is RgbImage {
  if (typeof v !== 'object' || v === null || v instanceof Uint8Array) return false;
  const r = v as RgbImage;
  return (
    r.data instanceof Uint8Array &&
    Number.isSafeInteger(r.width) &&
    Number.isSafeInteger(r.height) &&
    r.width > 0 &&
    r.height > 0 &&
    r.data.length === r.width * r.height * 3
  );
}

function checkInput(op: string, input: unknown): ImageInput {
  if (input instanceof Uint8Array) {
    if (input.length === 0) throw new Error(`${op}: expected image bytes for input, got an empty buffer`);
    return input;
  }
  if (isRgbImage(input)) return input;
  throw argError(op, 'input', 'encoded image bytes or { data: Uint8Array (height*width*3), width, height }', input);
}

function pipeline(input: ImageInput): sharp.Sharp {
  if (input instanceof Uint8Array) return sharp(input, { autoOrient: true });
  return sharp(input.data, { raw: { width: input.width, height: input.height, channels: 3 } });
}

async function run(op: string, image: sharp.Sharp): Promise<{ data: Buffer; info: sharp.OutputInfo }> {
  try {
    return await image.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new Error(`${op}: cannot decode image: ${(e as Error).message}`);
  }
}

/**
 * Runs `build()`'s pipeline to RGB bytes. Most images are 3-band sRGB and need no conversion,
 * which costs a pass; the others (grey, alpha, CMYK) run again with alpha dropped and sRGB forced.
 */
async function toRgb(op: string, build: () => sharp.Sharp): Promise<RgbImage> {
  let out = await run(op, build());
  if (out.info.channels !== 3) out = await run(op, build().removeAlpha().toColourspace('srgb'));
  const { width, height, channels } = out.info;
  if (channels === 3) return { data: out.data, width, height };
  // A grey image that sRGB conversion left with one band: replicate it.
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, n = width * height; i < n; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = out.data[i * channels]!;
  return { data: rgb, width, height };
}

/** Width and height after EXIF orientation, read from the header only. */
export async function imageSize(input: ImageInput): Promise<{ width: number; height: number }> {
  const checked = checkInput('imageSize', input);
  if (!(checked instanceof Uint8Array)) return { width: checked.width, height: checked.height };
  const fromHeader = headerSize(checked);
  if (fromHeader) return fromHeader;
  let meta: sharp.Metadata;
  try {
    meta = await sharp(checked).metadata();
  } catch (e) {
    throw new Error(`imageSize: cannot read image header: ${(e as Error).message}`);
  }
  if (!meta.width || !meta.height) throw new Error('imageSize: cannot read image header: no dimensions');
  return meta.autoOrient ? { width: meta.autoOrient.width, height: meta.autoOrient.height } : { width: meta.width, height: meta.height };
}

/** The whole image as RGB pixels. */
export async function decodeImage(input: ImageInput): Promise<RgbImage> {
  const checked = checkInput('decodeImage', input);
  if (!(checked instanceof Uint8Array)) return checked;
  return toRgb('decodeImage', () => pipeline(checked));
}

/** Raw pixels small enough that sharp's per-call overhead would dominate (see resample.ts). */
function isSmallRaw(input: ImageInput): input is RgbImage {
  return !(input instanceof Uint8Array) && input.width * input.height <= JS_RESAMPLE_MAX_PIXELS;
}

// sharp decodes a JPEG at 1/2, 1/4 or 1/8 scale (in the DCT, far cheaper) only for a resize
// by 3x or more that comes before any extract. Crops that large are resized whole and then
// cut, which computes only the cut region; the offset moves by under half an output pixel.
const SHRINK_ON_LOAD = 3;

/** `box` of the image resized to width × height with bicubic (Catmull-Rom) filtering. */
export async function cropResize(input: ImageInput, box: CropBox, width: number, height: number): Promise<RgbImage> {
  const checked = checkInput('cropResize', input);
  if (isSmallRaw(checked)) return resampleRgb(checked, box, width, height);
  const sx = width / box.width;
  const sy = height / box.height;
  if (checked instanceof Uint8Array && 1 / sx >= SHRINK_ON_LOAD && 1 / sy >= SHRINK_ON_LOAD) {
    const { width: fullWidth, height: fullHeight } = await imageSize(checked);
    const resizedWidth = Math.max(width, Math.round(fullWidth * sx));
    const resizedHeight = Math.max(height, Math.round(fullHeight * sy));
    const left = Math.min(resizedWidth - width, Math.round(box.left * sx));
    const top = Math.min(resizedHeight - height, Math.round(box.top * sy));
    return toRgb('cropResize', () =>
      pipeline(checked).resize(resizedWidth, resizedHeight, { fit: 'fill', kernel: 'cubic' }).extract({ left, top, width, height }),
    );
  }
  return toRgb('cropResize', () => pipeline(checked).extract(box).resize(width, height, { fit: 'fill', kernel: 'cubic' }));
}

/** The image's shorter side resized to `size` (bicubic), then the centre size × size. */
export async function resizeCenterCrop(input: ImageInput, size: number): Promise<RgbImage> {
  const checked = checkInput('resizeCenterCrop', input);
  if (isSmallRaw(checked)) return resampleRgb(checked, centerSquare(checked.width, checked.height), size, size);
  return toRgb('resizeCenterCrop', () => pipeline(checked).resize(size, size, { fit: 'cover', position: 'centre', kernel: 'cubic' }));
}
