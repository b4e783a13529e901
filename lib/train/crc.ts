// Table-driven CRCs for the file formats the training logs write: CRC-32 (PNG chunks,
// polynomial 0xEDB88320 reflected) and CRC-32C (TFRecord framing, Castagnoli 0x82F63B78).

function makeTable(poly: number): Uint32Array {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? poly ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}

const CRC32_TABLE = makeTable(0xedb88320);
const CRC32C_TABLE = makeTable(0x82f63b78);

function crcWith(table: Uint32Array, data: Uint8Array, seed: number): number {
  let c = ~seed >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** CRC-32 as zlib and PNG compute it; `seed` continues a previous CRC. */
export function crc32(data: Uint8Array, seed = 0): number {
  return crcWith(CRC32_TABLE, data, seed);
}

/** CRC-32C (Castagnoli). */
export function crc32c(data: Uint8Array, seed = 0): number {
  return crcWith(CRC32C_TABLE, data, seed);
}
