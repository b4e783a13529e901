// A read-only zip archive reader over a file descriptor: finds the central directory
// (zip64 too), lists the entries, and reads one entry at a time (stored or deflated),
// checking its CRC-32. Only the bytes asked for are read, so multi-gigabyte archives are
// never loaded whole.
import { closeSync, fstatSync, openSync } from 'node:fs';
import { crc32, inflateRawSync } from 'node:zlib';
import { readExact } from './files.js';

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
const EOCD_BYTES = 22;
const MAX_COMMENT = 0xffff;

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflated. */
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

function u64(dv: DataView, at: number): number {
  return dv.getUint32(at + 4, true) * 2 ** 32 + dv.getUint32(at, true);
}

export class ZipArchive {
  readonly entries = new Map<string, ZipEntry>();
  private fd: number | null;
  private readonly fileSize: number;

  /** Opens `path` and reads its central directory; `op` prefixes every error. */
  constructor(
    readonly path: string,
    private readonly op: string,
  ) {
    this.fd = openSync(path, 'r');
    try {
      this.fileSize = fstatSync(this.fd).size;
      this.readDirectory();
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private fail(problem: string): Error {
    return new Error(`${this.op}: ${this.path}: ${problem}`);
  }

  private read(position: number, length: number): DataView {
    if (position < 0 || position + length > this.fileSize) throw this.fail(`zip structure points at bytes ${position}..${position + length}, beyond the end of the file (${this.fileSize} bytes; truncated?)`);
    const buf = new Uint8Array(length);
    readExact(this.fd!, buf, position, this.op, this.path);
    return new DataView(buf.buffer);
  }

  private readDirectory(): void {
    if (this.fileSize < EOCD_BYTES) throw this.fail(`not a zip archive (${this.fileSize} bytes, too short)`);
    const tailLength = Math.min(this.fileSize, EOCD_BYTES + MAX_COMMENT);
    const tailStart = this.fileSize - tailLength;
    const tail = this.read(tailStart, tailLength);
    let eocd = -1;
    for (let i = tailLength - EOCD_BYTES; i >= 0; i--) {
      if (tail.getUint32(i, true) === EOCD_SIGNATURE && i + EOCD_BYTES + tail.getUint16(i + 20, true) <= tailLength) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw this.fail('not a zip archive (no end-of-central-directory record; truncated or another format)');
    let count = tail.getUint16(eocd + 10, true);
    let dirSize = tail.getUint32(eocd + 12, true);
    let dirOffset = tail.getUint32(eocd + 16, true);
    if (tail.getUint16(eocd + 4, true) !== 0 || tail.getUint16(eocd + 6, true) !== 0) throw this.fail('multi-disk zip archives are not supported');
    if (eocd >= 20 && tail.getUint32(eocd - 20, true) === ZIP64_LOCATOR_SIGNATURE) {
      const z = this.read(u64(tail, eocd - 20 + 8), 56);
      if (z.getUint32(0, true) !== ZIP64_EOCD_SIGNATURE) throw this.fail('zip64 locator does not point at a zip64 end-of-central-directory record');
      count = u64(z, 32);
      dirSize = u64(z, 40);
      dirOffset = u64(z, 48);
    }
    if (dirOffset + dirSize > tailStart + eocd) throw this.fail(`central directory (${dirSize} bytes at ${dirOffset}) runs past its end record`);
    const dir = this.read(dirOffset, dirSize);
    const decoder = new TextDecoder('utf-8', { fatal: false });
    let at = 0;
    for (let k = 0; k < count; k++) {
      if (at + 46 > dirSize || dir.getUint32(at, true) !== CENTRAL_SIGNATURE) throw this.fail(`central directory entry ${k} is corrupt`);
      const flags = dir.getUint16(at + 8, true);
      const method = dir.getUint16(at + 10, true);
      const nameLength = dir.getUint16(at + 28, true);
      const extraLength = dir.getUint16(at + 30, true);
      const commentLength = dir.getUint16(at + 32, true);
      if (at + 46 + nameLength + extraLength + commentLength > dirSize) throw this.fail(`central directory entry ${k} runs past the directory`);
      const name = decoder.decode(new Uint8Array(dir.buffer, at + 46, nameLength));
      const entry: ZipEntry = {
        name,
        method,
        crc: dir.getUint32(at + 16, true),
        compressedSize: dir.getUint32(at + 20, true),
        size: dir.getUint32(at + 24, true),
        localHeaderOffset: dir.getUint32(at + 42, true),
      };
      this.applyZip64Extra(entry, dir, at + 46 + nameLength, extraLength);
      if (flags & 1) throw this.fail(`entry '${name}' is encrypted`);
      if (method !== 0 && method !== 8) throw this.fail(`entry '${name}' uses compression method ${method} (only stored and deflated are supported)`);
      if (method === 0 && entry.compressedSize !== entry.size) throw this.fail(`stored entry '${name}' has compressed size ${entry.compressedSize} but size ${entry.size}`);
      if (this.entries.has(name)) throw this.fail(`entry '${name}' appears twice`);
      this.entries.set(name, entry);
      at += 46 + nameLength + extraLength + commentLength;
    }
  }

  // The zip64 extra field (id 1) holds, in this order, the 64-bit values of exactly those of
  // size, compressed size and local header offset whose 32-bit fields are all ones.
  private applyZip64Extra(entry: ZipEntry, dir: DataView, start: number, length: number): void {
    let at = start;
    while (at + 4 <= start + length) {
      const id = dir.getUint16(at, true);
      const size = dir.getUint16(at + 2, true);
      if (at + 4 + size > start + length) throw this.fail(`entry '${entry.name}' has a corrupt extra field`);
      if (id === 1) {
        let p = at + 4;
        const take = (): number => {
          if (p + 8 > at + 4 + size) throw this.fail(`entry '${entry.name}' has a short zip64 extra field`);
          const v = u64(dir, p);
          p += 8;
          return v;
        };
        if (entry.size === 0xffffffff) entry.size = take();
        if (entry.compressedSize === 0xffffffff) entry.compressedSize = take();
        if (entry.localHeaderOffset === 0xffffffff) entry.localHeaderOffset = take();
      }
      at += 4 + size;
    }
  }

  /** The file offset where an entry's (possibly compressed) bytes begin. */
  private dataOffset(entry: ZipEntry): number {
    const local = this.read(entry.localHeaderOffset, 30);
    if (local.getUint32(0, true) !== LOCAL_SIGNATURE) throw this.fail(`entry '${entry.name}': no local header at byte ${entry.localHeaderOffset}`);
    const start = entry.localHeaderOffset + 30 + local.getUint16(26, true) + local.getUint16(28, true);
    if (start + entry.compressedSize > this.fileSize) throw this.fail(`entry '${entry.name}' runs past the end of the file (truncated?)`);
    return start;
  }

  /**
   * An entry's uncompressed bytes, CRC-checked. A stored entry is read into `scratch` when
   * it is large enough (the result is then a view of it, valid until scratch is reused).
   */
  readEntry(name: string, scratch?: Uint8Array): Uint8Array {
    if (this.fd === null) throw new Error(`${this.op}: ${this.path}: the archive is closed`);
    const entry = this.entries.get(name);
    if (!entry) throw this.fail(`missing entry '${name}'`);
    const start = this.dataOffset(entry);
    const raw = entry.method === 0 && scratch && scratch.length >= entry.size ? scratch.subarray(0, entry.size) : new Uint8Array(entry.compressedSize);
    readExact(this.fd, raw, start, this.op, this.path);
    let data = raw;
    if (entry.method === 8) {
      try {
        data = inflateRawSync(raw, { maxOutputLength: Math.max(entry.size, 1) });
      } catch (e) {
        throw this.fail(`entry '${name}' does not inflate (${(e as Error).message})`);
      }
      if (data.length !== entry.size) throw this.fail(`entry '${name}' inflates to ${data.length} bytes, not ${entry.size}`);
    }
    if (crc32(data) >>> 0 !== entry.crc) throw this.fail(`entry '${name}' fails its CRC-32 check (corrupt)`);
    return data;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
