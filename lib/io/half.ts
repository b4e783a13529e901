// IEEE binary16 (f16) and bfloat16 bit conversions for checkpoint files. Tensors hold f16 as
// f32 (every f16 value is exactly an f32); writing rounds f32 to nearest even.

let f16Table: Float32Array | null = null;

// All 65536 f16 values as f32: decoding is then one table load per element.
function table(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) t[h] = sign * mant * 2 ** -24;
    else if (exp === 31) t[h] = mant ? NaN : sign * Infinity;
    else t[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  f16Table = t;
  return t;
}

/** Widens f16 bits to f32 values (exact). */
export function f16ToF32(src: Uint16Array, dst: Float32Array): void {
  const t = table();
  for (let i = 0; i < src.length; i++) dst[i] = t[src[i]!]!;
}

/** Rounds the f32 with bits `x` to the nearest f16 (ties to even; overflow to infinity). */
function halfBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal result: the 24-bit significand in units of 2^-24.
    const shift = 14 - e;
    if (shift > 24) return sign;
    const m = mant | 0x800000;
    let q = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && q & 1)) q++;
    return sign | q;
  }
  let q = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && q & 1)) q++;
  return sign | q;
}

/** Rounds f32 values to f16 bits. */
export function f32ToF16(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) dst[i] = halfBits(bits[i]!);
}

/** Rounds f32 values to bf16 bits (ties to even; NaN stays a quiet NaN), as the addon does. */
export function f32ToBf16(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const u = bits[i]!;
    if ((u & 0x7f800000) === 0x7f800000 && u & 0x7fffff) dst[i] = (u >>> 16) | 0x40;
    else dst[i] = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  }
}
