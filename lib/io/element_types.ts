// Element types of checkpoint files (named as safetensors names them) and how their raw
// little-endian bytes become the values of a clipforge tensor: F32, BF16 and I32 as they
// are; F16 widened to f32 (exact); I64 narrowed to i32 (out-of-range values are an error);
// I16, I8, U8 and BOOL widened to i32.
import type { DType } from '../tensor/tensor.js';
import { f16ToF32 } from './half.js';

/** Bytes per element of every element type the formats define. */
export const ELEMENT_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};

/** The tensor dtype each readable element type becomes. */
export const READ_AS: Readonly<Record<string, DType>> = {
  F32: 'f32', BF16: 'bf16', F16: 'f32', I32: 'i32', I64: 'i32', I16: 'i32', I8: 'i32', U8: 'i32', BOOL: 'i32',
};

export const READABLE = 'F32, BF16, F16, I32, I64, I16, I8, U8 and BOOL';

/** `raw` with a byte offset that is a multiple of `alignment` (copied only when it is not). */
export function aligned(raw: Uint8Array, alignment: number): Uint8Array {
  return raw.byteOffset % alignment === 0 ? raw : raw.slice();
}

/**
 * The values of a tensor of element type `type` from its raw bytes (a view where no
 * conversion is needed). `where` and `name` go into the error for an out-of-range I64.
 */
export function decodeValues(raw: Uint8Array, type: string, where: string, name: string): Float32Array | Int32Array | Uint16Array {
  const bytes = ELEMENT_BYTES[type]!;
  const numel = raw.length / bytes;
  const src = aligned(raw, bytes);
  const view = <A>(C: new (b: ArrayBufferLike, o: number, n: number) => A, n = numel): A => new C(src.buffer, src.byteOffset, n);
  switch (type) {
    case 'F32':
      return view(Float32Array);
    case 'BF16':
      return view(Uint16Array);
    case 'I32':
      return view(Int32Array);
    case 'F16': {
      const out = new Float32Array(numel);
      f16ToF32(view(Uint16Array), out);
      return out;
    }
    case 'I64': {
      const words = view(Int32Array, numel * 2);
      const out = new Int32Array(numel);
      for (let i = 0; i < numel; i++) {
        const lo = words[2 * i]!;
        if (words[2 * i + 1] !== lo >> 31) {
          const value = new BigInt64Array(src.buffer, src.byteOffset + 8 * i, 1)[0]!;
          throw new Error(`${where}: tensor '${name}' (I64) holds ${value} at index ${i}, outside the i32 range it is read into`);
        }
        out[i] = lo;
      }
      return out;
    }
    case 'I16':
      return Int32Array.from(view(Int16Array));
    case 'I8':
      return Int32Array.from(view(Int8Array));
    case 'U8':
    case 'BOOL':
      return Int32Array.from(src);
    default:
      throw new Error(`${where}: tensor '${name}' has element type ${type}, which is not supported (${READABLE} are)`);
  }
}
