// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of
// UTF-8 JSON mapping each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets
// relative to the data region that follows the header) plus an optional "__metadata__"
// string map, then the raw little-endian tensor bytes. The data region must be covered by
// the tensors exactly: no gaps, no overlaps, nothing after the last tensor.
import { closeSync, fstatSync, openSync } from 'node:fs';
import { endianness } from 'node:os';
import { native } from '../native.js';
import { argError, describe } from '../tensor/check.js';
import { checkDevice, checkTensor, empty, type Device, type Tensor } from '../tensor/tensor.js';
import { checkPath, readExact, writeAll, writeFileAtomic } from './files.js';
import { decodeValues, ELEMENT_BYTES, READ_AS, READABLE } from './element_types.js';
import { f32ToBf16, f32ToF16 } from './half.js';

// File dtypes whose bytes are the tensor's bytes (little-endian hosts only).
const AS_STORED: Readonly<Record<string, true>> = { F32: true, BF16: true, I32: true };

/** The largest header accepted: real headers are kilobytes; more means a corrupt length. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** One tensor's header entry; begin and end are byte offsets into the data region. */
export interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** File offset of the data region (8 + header length). */
  dataStart: number;
  /** Entries in data order (ascending begin). */
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
}

function fail(file: string, problem: string): Error {
  return new Error(`safetensors: ${file}: ${problem}`);
}

/** Reads and bounds-checks the 8-byte header length at the start of `prefix`. */
function headerLength(prefix: Uint8Array, file: string, fileSize: number): number {
  if (fileSize < 8 || prefix.length < 8) throw fail(file, `file is ${fileSize} bytes, shorter than the 8-byte header length`);
  const dv = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const n = dv.getUint32(4, true) * 2 ** 32 + dv.getUint32(0, true);
  if (n > MAX_HEADER_BYTES) throw fail(file, `header length ${n} is absurd (more than ${MAX_HEADER_BYTES} bytes): not a safetensors file or corrupt`);
  if (8 + n > fileSize) throw fail(file, `header length ${n} is larger than the file (${fileSize} bytes)`);
  return n;
}

function nonNegativeInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function parseEntry(name: string, v: unknown, file: string, dataBytes: number): SafetensorsEntry {
  const where = `tensor '${name}'`;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw fail(file, `${where}: expected an object, got ${describe(v)}`);
  const o = v as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (key !== 'dtype' && key !== 'shape' && key !== 'data_offsets') throw fail(file, `${where}: unexpected field '${key}'`);
  }
  if (!('dtype' in o)) throw fail(file, `${where}: missing dtype`);
  if (!('shape' in o)) throw fail(file, `${where}: missing shape`);
  if (!('data_offsets' in o)) throw fail(file, `${where}: missing data_offsets`);
  const { dtype, shape, data_offsets: offsets } = o;
  if (typeof dtype !== 'string' || !Object.hasOwn(ELEMENT_BYTES, dtype)) throw fail(file, `${where}: unknown dtype ${describe(dtype)}`);
  if (!Array.isArray(shape) || !shape.every(nonNegativeInteger)) {
    throw fail(file, `${where}: expected a shape of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(nonNegativeInteger) || offsets[0] > offsets[1]) {
    throw fail(file, `${where}: expected data_offsets [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataBytes) throw fail(file, `${where}: data_offsets [${begin}, ${end}] out of range (data region is ${dataBytes} bytes)`);
  const numel = (shape as number[]).reduce((a, b) => a * b, 1);
  if (end - begin !== numel * ELEMENT_BYTES[dtype]!) {
    throw fail(file, `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but shape [${shape.join(', ')}] of ${dtype} needs ${numel * ELEMENT_BYTES[dtype]!}`);
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/**
 * Parses and validates a safetensors header. `buf` holds the file from its first byte, at
 * least through the header; `fileSize` is the whole file's size (default: buf.length).
 * Throws an Error naming `file` and the problem for anything malformed.
 */
export function parseSafetensorsHeader(buf: Uint8Array, file: string, fileSize: number = buf.length): SafetensorsHeader {
  if (!(buf instanceof Uint8Array)) throw argError('parseSafetensorsHeader', 'buf', 'a Uint8Array', buf);
  if (typeof file !== 'string') throw argError('parseSafetensorsHeader', 'file', 'a string', file);
  if (!Number.isSafeInteger(fileSize) || fileSize < 0) throw argError('parseSafetensorsHeader', 'fileSize', 'a non-negative integer', fileSize);
  const n = headerLength(buf, file, fileSize);
  if (buf.length < 8 + n) throw fail(file, `the buffer holds ${buf.length} bytes, not the whole ${n}-byte header`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf.subarray(8, 8 + n));
  } catch {
    throw fail(file, 'header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw fail(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw fail(file, `header is not a JSON object (got ${describe(json)})`);
  const dataStart = 8 + n;
  const dataBytes = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, v] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw fail(file, `__metadata__ must be an object of strings, got ${describe(v)}`);
      for (const [k, s] of Object.entries(v)) {
        if (typeof s !== 'string') throw fail(file, `__metadata__['${k}'] must be a string, got ${describe(s)}`);
        metadata[k] = s;
      }
    } else {
      entries.push(parseEntry(name, v, file, dataBytes));
    }
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: SafetensorsEntry | null = null;
  for (const e of entries) {
    if (e.begin < covered) throw fail(file, `tensors '${previous!.name}' and '${e.name}' overlap (bytes ${e.begin}..${covered} of the data region)`);
    if (e.begin > covered) throw fail(file, `bytes ${covered}..${e.begin} of the data region belong to no tensor (a gap before '${e.name}')`);
    covered = e.end;
    previous = e;
  }
  if (covered !== dataBytes) throw fail(file, `the data region is ${dataBytes} bytes but the tensors cover ${covered}: ${dataBytes - covered} trailing bytes belong to no tensor`);
  return { dataStart, entries, metadata };
}

export interface ReadSafetensorsOptions {
  /** Device for the tensors (default 'cpu'). */
  device?: Device;
}

function checkLittleEndian(op: string): void {
  if (endianness() !== 'LE') throw new Error(`${op}: checkpoint files are little-endian and this machine is not`);
}

function readHeader(fd: number, op: string, path: string): SafetensorsHeader {
  const fileSize = fstatSync(fd).size;
  const prefix = new Uint8Array(8);
  if (fileSize >= 8) readExact(fd, prefix, 0, op, path);
  const n = headerLength(prefix, path, fileSize);
  const head = new Uint8Array(8 + n);
  readExact(fd, head, 0, op, path);
  return parseSafetensorsHeader(head, path, fileSize);
}

/** Reads and validates only the header of a .safetensors file (entries and metadata; no tensor data). */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const op = 'readSafetensorsHeader';
  checkPath(op, 'path', path);
  const fd = openSync(path, 'r');
  try {
    return readHeader(fd, op, path);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a .safetensors file. F32, BF16 and I32 tensors keep their dtype; F16 becomes f32
 * (exactly), I64 becomes i32 (values outside the i32 range are an error) and the smaller
 * integer types (I16, I8, U8, BOOL) become i32. The tensors belong to the caller (and to
 * the enclosing scope, if any).
 */
export function readSafetensors(path: string, opts: ReadSafetensorsOptions = {}): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const op = 'readSafetensors';
  checkPath(op, 'path', path);
  const device = checkDevice(op, 'opts.device', opts.device ?? 'cpu');
  checkLittleEndian(op);
  const fd = openSync(path, 'r');
  const tensors = new Map<string, Tensor>();
  try {
    const header = readHeader(fd, op, path);
    let largest = 0;
    for (const e of header.entries) {
      if (!Object.hasOwn(READ_AS, e.dtype)) throw fail(path, `tensor '${e.name}' has dtype ${e.dtype}, which is not supported (${READABLE} are)`);
      if (e.shape.length > 8) throw fail(path, `tensor '${e.name}' has ${e.shape.length} dimensions; at most 8 are supported`);
      if (!Object.hasOwn(AS_STORED, e.dtype)) largest = Math.max(largest, e.end - e.begin);
    }
    // Tensors stored as they are kept go straight from the file into their memory; the
    // others are converted through one staging buffer sized for the largest of them.
    const staging = new Uint8Array(largest);
    for (const e of header.entries) {
      const t = empty(e.shape, { dtype: READ_AS[e.dtype]!, device });
      tensors.set(e.name, t);
      if (Object.hasOwn(AS_STORED, e.dtype)) {
        try {
          native.readFileInto(t, fd, header.dataStart + e.begin);
        } catch (err) {
          throw fail(path, `tensor '${e.name}': ${(err as Error).message}`);
        }
      } else {
        const raw = staging.subarray(0, e.end - e.begin);
        readExact(fd, raw, header.dataStart + e.begin, op, path);
        native.upload(t, decodeValues(raw, e.dtype, `safetensors: ${path}`, e.name));
      }
    }
    return { tensors, metadata: header.metadata };
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  } finally {
    closeSync(fd);
  }
}

export interface WriteSafetensorsOptions {
  /** String metadata stored under "__metadata__". */
  metadata?: Record<string, string>;
  /** File dtype for floating-point tensors (default: each tensor's own); i32 tensors stay I32. */
  dtype?: 'f32' | 'bf16' | 'f16';
}

const FILE_DTYPE = { f32: 'F32', bf16: 'BF16', f16: 'F16' } as const;

/** A tensor's values as the file bytes of `fileDtype`. */
function encode(t: Tensor, fileDtype: string): Uint8Array {
  const values = t.toArray();
  if (fileDtype === 'F32' || fileDtype === 'I32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const bits = new Uint16Array(values.length);
  if (fileDtype === 'BF16') f32ToBf16(values as Float32Array, bits);
  else f32ToF16(values as Float32Array, bits);
  return new Uint8Array(bits.buffer);
}

/** The named tensors of a Map or a plain object, validated, sorted by name. */
function namedTensors(op: string, tensors: unknown): [string, Tensor][] {
  let pairs: [unknown, unknown][];
  if (tensors instanceof Map) pairs = [...tensors.entries()];
  else if (tensors !== null && typeof tensors === 'object' && Object.getPrototypeOf(tensors) === Object.prototype) pairs = Object.entries(tensors);
  else throw argError(op, 'tensors', 'a Map or a plain object of tensors', tensors);
  const out: [string, Tensor][] = pairs.map(([k, v]) => {
    if (typeof k !== 'string') throw argError(op, 'tensors', 'string keys', k);
    return [k, checkTensor(op, `tensors['${k}']`, v)];
  });
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Writes tensors (from any device) to a .safetensors file, atomically: the file at `path`
 * is either the old one or the complete new one, never a partial write. Keys are sorted;
 * the header is padded with spaces to a multiple of 8 bytes so the data is 8-byte aligned.
 */
export function writeSafetensors(path: string, tensors: Map<string, Tensor> | Record<string, Tensor>, opts: WriteSafetensorsOptions = {}): void {
  const op = 'writeSafetensors';
  checkPath(op, 'path', path);
  checkLittleEndian(op);
  if (opts.dtype !== undefined && !Object.hasOwn(FILE_DTYPE, opts.dtype)) throw argError(op, 'opts.dtype', "'f32', 'bf16' or 'f16'", opts.dtype);
  const metadata = opts.metadata ?? {};
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) throw argError(op, 'opts.metadata', 'an object of strings', metadata);
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw argError(op, `opts.metadata['${k}']`, 'a string', v);
  }
  const named = namedTensors(op, tensors);
  const fields: string[] = [];
  if (Object.keys(metadata).length > 0) fields.push(`"__metadata__":${JSON.stringify(metadata)}`);
  const fileDtypes: string[] = [];
  let offset = 0;
  for (const [name, t] of named) {
    if (name === '__metadata__') throw new Error(`${op}: the tensor name '__metadata__' is reserved by the format`);
    const fileDtype = t.dtype === 'i32' ? 'I32' : FILE_DTYPE[opts.dtype ?? (t.dtype as 'f32' | 'bf16')];
    const nbytes = t.size * ELEMENT_BYTES[fileDtype]!;
    fields.push(`${JSON.stringify(name)}:${JSON.stringify({ dtype: fileDtype, shape: t.shape, data_offsets: [offset, offset + nbytes] })}`);
    fileDtypes.push(fileDtype);
    offset += nbytes;
  }
  const json = Buffer.from(`{${fields.join(',')}}`, 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const head = Buffer.alloc(8 + padded, 0x20);
  head.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(head, 8);
  writeFileAtomic(path, (fd) => {
    writeAll(fd, head);
    named.forEach(([, t], i) => writeAll(fd, encode(t, fileDtypes[i]!)));
  }, op);
}
