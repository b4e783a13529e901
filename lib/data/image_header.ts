// Image dimensions read straight from the file header, for JPEG, PNG and WebP, so that the
// random crop can be drawn without a decoder round trip (a sharp metadata() call costs a
// thread-pool hop and a libvips header parse: a tenth of the whole transform). Dimensions are
// the displayed ones: a JPEG's EXIF orientation 5-8 swaps them, as decoding with
// auto-orientation does. Returns null whenever the header is anything but plain (other
// formats, PNG/WebP with EXIF, truncated or odd files): the caller then asks the decoder.

function u16be(b: Uint8Array, i: number): number {
  return (b[i]! << 8) | b[i + 1]!;
}

function u32be(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

/** The orientation tag (1-8) of an EXIF block (starting at "Exif\0\0"), or 1. */
function exifOrientation(b: Uint8Array, start: number, end: number): number {
  const tiff = start + 6;
  if (tiff + 8 > end) return 1;
  const little = b[tiff] === 0x49 && b[tiff + 1] === 0x49;
  const u16 = (i: number): number => (little ? b[i]! | (b[i + 1]! << 8) : u16be(b, i));
  const u32 = (i: number): number => (little ? (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0 : u32be(b, i));
  const ifd = tiff + u32(tiff + 4);
  if (ifd + 2 > end) return 1;
  const count = u16(ifd);
  for (let k = 0; k < count; k++) {
    const entry = ifd + 2 + 12 * k;
    if (entry + 12 > end) return 1;
    if (u16(entry) === 0x0112) {
      const v = u16(entry + 8);
      return v >= 1 && v <= 8 ? v : 1;
    }
  }
  return 1;
}

/** What a JPEG's header says: stored size, EXIF orientation, sample precision, components. */
export interface JpegHeader {
  width: number;
  height: number;
  orientation: number;
  precision: number;
  components: number;
}

/** The frame header (and the orientation of an EXIF block before it), or null. */
export function jpegHeader(b: Uint8Array): JpegHeader | null {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return null;
  let i = 2;
  let orientation = 1;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) return null;
    const marker = b[i + 1]!;
    if (marker === 0xff) {
      i++;
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    }
    const length = u16be(b, i + 2);
    if (length < 2 || i + 2 + length > b.length) return null;
    if (marker === 0xe1 && b[i + 4] === 0x45 && b[i + 5] === 0x78 && b[i + 6] === 0x69 && b[i + 7] === 0x66) {
      orientation = exifOrientation(b, i + 4, i + 2 + length);
    }
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isFrame) {
      if (length < 8) return null;
      const height = u16be(b, i + 5);
      const width = u16be(b, i + 7);
      if (width === 0 || height === 0) return null;
      return { width, height, orientation, precision: b[i + 4]!, components: b[i + 9]! };
    }
    if (marker === 0xda || marker === 0xd9) return null;
    i += 2 + length;
  }
  return null;
}

function jpegSize(b: Uint8Array): { width: number; height: number } | null {
  const h = jpegHeader(b);
  if (!h) return null;
  return h.orientation >= 5 ? { width: h.height, height: h.width } : { width: h.width, height: h.height };
}

function pngSize(b: Uint8Array): { width: number; height: number } | null {
  if (b.length < 33 || u32be(b, 12) !== 0x49484452) return null;
  const width = u32be(b, 16);
  const height = u32be(b, 20);
  // An eXIf chunk may rotate the image: leave those to the decoder.
  for (let i = 8; i + 8 <= b.length; ) {
    const type = u32be(b, i + 4);
    if (type === 0x65584966) return null;
    if (type === 0x49444154) break;
    i += 12 + u32be(b, i);
  }
  return width > 0 && height > 0 ? { width, height } : null;
}

function webpSize(b: Uint8Array): { width: number; height: number } | null {
  if (b.length < 30) return null;
  const chunk = String.fromCharCode(b[12]!, b[13]!, b[14]!, b[15]!);
  if (chunk === 'VP8 ') {
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return null;
    return { width: (b[26]! | (b[27]! << 8)) & 0x3fff, height: (b[28]! | (b[29]! << 8)) & 0x3fff };
  }
  if (chunk === 'VP8L') {
    if (b[20] !== 0x2f) return null;
    const bits = (b[21]! | (b[22]! << 8) | (b[23]! << 16) | (b[24]! << 24)) >>> 0;
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (chunk === 'VP8X') {
    // Bit 3 of the flags: EXIF present (may rotate).
    if (b[20]! & 0x08) return null;
    return { width: (b[24]! | (b[25]! << 8) | (b[26]! << 16)) + 1, height: (b[27]! | (b[28]! << 8) | (b[29]! << 16)) + 1 };
  }
  return null;
}

/** Displayed width and height from a JPEG, PNG or WebP header, or null to ask the decoder. */
export function headerSize(bytes: Uint8Array): { width: number; height: number } | null {
  if (bytes.length >= 4 && bytes[0] === 0xff && bytes[1] === 0xd8) return jpegSize(bytes);
  if (bytes.length >= 8 && u32be(bytes, 0) === 0x89504e47 && u32be(bytes, 4) === 0x0d0a1a0a) return pngSize(bytes);
  if (bytes.length >= 16 && u32be(bytes, 0) === 0x52494646 && u32be(bytes, 8) === 0x57454250) return webpSize(bytes);
  return null;
}
