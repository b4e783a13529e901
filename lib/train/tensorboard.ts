// TensorBoard event files for scalar logs, written without TensorFlow: a TFRecord stream
// (per record: u64 length, masked CRC-32C of the length, the bytes, masked CRC-32C of the
// bytes; little-endian) of tensorflow.Event protocol buffers. The first event carries the
// file version; each scalar is Event{wall_time, step, summary{value{tag, simple_value}}}.
// The file is events.out.tfevents.<unix seconds>.<host>, as TensorBoard expects to find it.
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { checkPath } from '../io/files.js';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { argError } from '../tensor/check.js';
import { crc32c } from './crc.js';

/** TFRecord's masked CRC: rotated right by 15 and offset, so CRCs of CRCs stay well spread. */
export function maskedCrc32c(data: Uint8Array): number {
  const c = crc32c(data);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

// --- protocol buffer encoding (just the wire types an Event needs) ---

function varint(out: number[], v: number | bigint): void {
  let x = BigInt.asUintN(64, BigInt(v));
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
}

function key(out: number[], field: number, wireType: number): void {
  varint(out, (field << 3) | wireType);
}

function bytesField(out: number[], field: number, bytes: Uint8Array | number[]): void {
  key(out, field, 2);
  varint(out, bytes.length);
  for (const b of bytes) out.push(b);
}

function encodeEvent(wallTime: number, step: number, body: (out: number[]) => void): Uint8Array {
  const out: number[] = [];
  key(out, 1, 1);
  const f64 = new DataView(new ArrayBuffer(8));
  f64.setFloat64(0, wallTime, true);
  for (let i = 0; i < 8; i++) out.push(f64.getUint8(i));
  key(out, 2, 0);
  varint(out, step);
  body(out);
  return Uint8Array.from(out);
}

function scalarSummary(tag: string, value: number): number[] {
  const v: number[] = [];
  bytesField(v, 1, new TextEncoder().encode(tag));
  key(v, 2, 5);
  const f32 = new DataView(new ArrayBuffer(4));
  f32.setFloat32(0, value, true);
  for (let i = 0; i < 4; i++) v.push(f32.getUint8(i));
  const summary: number[] = [];
  bytesField(summary, 1, v);
  return summary;
}

function frame(data: Uint8Array): Uint8Array {
  const rec = new Uint8Array(16 + data.length);
  const dv = new DataView(rec.buffer);
  dv.setBigUint64(0, BigInt(data.length), true);
  dv.setUint32(8, maskedCrc32c(rec.subarray(0, 8)), true);
  rec.set(data, 12);
  dv.setUint32(12 + data.length, maskedCrc32c(data), true);
  return rec;
}

/** Appends scalar events to a new event file in `logdir` (created if missing). */
export class TensorBoardWriter {
  readonly path: string;
  private fd: number | null;

  constructor(logdir: string, opts: { wallTime?: number } = {}) {
    if (typeof logdir !== 'string' || logdir === '') throw argError('TensorBoardWriter', 'logdir', 'a folder path', logdir);
    const now = opts.wallTime ?? Date.now() / 1000;
    mkdirSync(logdir, { recursive: true });
    this.path = join(logdir, `events.out.tfevents.${Math.floor(now)}.${hostname()}`);
    this.fd = openSync(this.path, 'a');
    this.append(encodeEvent(now, 0, (out) => bytesField(out, 3, new TextEncoder().encode('brain.Event:2'))));
  }

  /** Logs `value` under `tag` at `step` (wall time: now, in seconds, unless given). */
  addScalar(tag: string, value: number, step: number, wallTime = Date.now() / 1000): void {
    const op = 'TensorBoardWriter.addScalar';
    if (typeof tag !== 'string' || tag === '') throw argError(op, 'tag', 'a non-empty string', tag);
    if (typeof value !== 'number') throw argError(op, 'value', 'a number', value);
    if (!Number.isSafeInteger(step) || step < 0) throw argError(op, 'step', 'an integer >= 0', step);
    if (typeof wallTime !== 'number' || !Number.isFinite(wallTime)) throw argError(op, 'wallTime', 'a finite number', wallTime);
    this.append(encodeEvent(wallTime, step, (out) => bytesField(out, 5, scalarSummary(tag, value))));
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private append(event: Uint8Array): void {
    if (this.fd === null) throw new Error(`TensorBoardWriter: ${this.path} has been closed`);
    const rec = frame(event);
    for (let off = 0; off < rec.length; ) off += writeSync(this.fd, rec, off, rec.length - off);
  }
}

// --- reading back (tests, tools) ---

export interface ScalarEvent {
  wallTime: number;
  step: number;
  /** Set on the first event of a file. */
  fileVersion?: string;
  /** The scalars of a summary event. */
  values: { tag: string; value: number }[];
}

class ProtoReader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  varint(): bigint {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (this.pos >= this.buf.length) throw new Error('readEventFile: truncated varint');
      const b = this.buf[this.pos++]!;
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  }
  take(n: number): Uint8Array {
    if (this.pos + n > this.buf.length) throw new Error('readEventFile: truncated field');
    const s = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  /** The next field: its number, wire type and payload (a number for varints, bytes otherwise). */
  field(): { field: number; wire: number; bytes: Uint8Array; int: bigint } {
    const k = Number(this.varint());
    const wire = k & 7;
    const empty = new Uint8Array(0);
    if (wire === 0) return { field: k >> 3, wire, bytes: empty, int: this.varint() };
    if (wire === 1) return { field: k >> 3, wire, bytes: this.take(8), int: 0n };
    if (wire === 5) return { field: k >> 3, wire, bytes: this.take(4), int: 0n };
    if (wire === 2) return { field: k >> 3, wire, bytes: this.take(Number(this.varint())), int: 0n };
    throw new Error(`readEventFile: unsupported wire type ${wire}`);
  }
}

const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

function decodeEvent(data: Uint8Array): ScalarEvent {
  const ev: ScalarEvent = { wallTime: 0, step: 0, values: [] };
  const r = new ProtoReader(data);
  while (!r.done) {
    const f = r.field();
    if (f.field === 1 && f.wire === 1) ev.wallTime = view(f.bytes).getFloat64(0, true);
    else if (f.field === 2 && f.wire === 0) ev.step = Number(BigInt.asIntN(64, f.int));
    else if (f.field === 3 && f.wire === 2) ev.fileVersion = new TextDecoder().decode(f.bytes);
    else if (f.field === 5 && f.wire === 2) {
      const s = new ProtoReader(f.bytes);
      while (!s.done) {
        const sv = s.field();
        if (sv.field !== 1 || sv.wire !== 2) continue;
        const v = new ProtoReader(sv.bytes);
        let tag = '';
        let value = NaN;
        while (!v.done) {
          const vf = v.field();
          if (vf.field === 1 && vf.wire === 2) tag = new TextDecoder().decode(vf.bytes);
          else if (vf.field === 2 && vf.wire === 5) value = view(vf.bytes).getFloat32(0, true);
        }
        ev.values.push({ tag, value });
      }
    }
  }
  return ev;
}

/** Reads an event file, checking both CRCs of every record. */
export function readEventFile(path: string): ScalarEvent[] {
  const buf = new Uint8Array(readFileSync(checkPath('readEventFile', 'path', path)));
  const dv = view(buf);
  const events: ScalarEvent[] = [];
  for (let off = 0; off < buf.length; ) {
    if (off + 12 > buf.length) throw new Error(`readEventFile: ${path}: truncated record header at byte ${off}`);
    const len = Number(dv.getBigUint64(off, true));
    if (dv.getUint32(off + 8, true) !== maskedCrc32c(buf.subarray(off, off + 8))) throw new Error(`readEventFile: ${path}: bad length CRC at byte ${off}`);
    if (off + 16 + len > buf.length) throw new Error(`readEventFile: ${path}: truncated record at byte ${off}`);
    const data = buf.subarray(off + 12, off + 12 + len);
    if (dv.getUint32(off + 12 + len, true) !== maskedCrc32c(data)) throw new Error(`readEventFile: ${path}: bad data CRC in the record at byte ${off}`);
    events.push(decodeEvent(data));
    off += 16 + len;
  }
  return events;
}
