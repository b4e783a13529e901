// A streaming tar reader: ustar and old-style headers, GNU long names ('L'/'K' entries) and
// pax extended headers ('x' for the next entry, 'g' for the rest of the archive), over a file
// or any byte stream (a `pipe:` command's stdout). Only regular files are yielded, each with
// its whole contents in memory: webdataset members are single images and captions.
//
// Every failure names the archive and the byte offset of the header or member it concerns,
// so a bad shard can be found and replaced: a header whose checksum does not add up, a size
// field that is not a number, an archive that ends inside a header or a member.
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { argError } from '../tensor/check.js';

export interface TarEntry {
  /** Path inside the archive (pax `path`, then GNU long name, then ustar prefix + name). */
  name: string;
  /** The member's bytes. */
  data: Buffer;
  /** Byte offset of the member's header in the archive. */
  offset: number;
}

const BLOCK = 512;

/** Pulls exact byte counts out of a chunked stream. */
class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private done = false;
  /** Bytes handed out so far: the archive offset of the next read. */
  position = 0;

  constructor(
    private readonly source: AsyncIterator<Uint8Array>,
    private readonly archive: string,
  ) {}

  /** Exactly n bytes, or fewer only when the stream ended first. */
  async read(n: number): Promise<Buffer> {
    while (this.buffered < n && !this.done) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await this.source.next();
      } catch (e) {
        throw new Error(`readTar: cannot read ${this.archive} at offset ${this.position + this.buffered}: ${(e as Error).message}`);
      }
      if (next.done) this.done = true;
      else {
        const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
        this.chunks.push(chunk);
        this.buffered += chunk.length;
      }
    }
    const take = Math.min(n, this.buffered);
    let out: Buffer;
    if (this.chunks.length > 0 && this.chunks[0]!.length >= take) {
      out = this.chunks[0]!.subarray(0, take);
      this.chunks[0] = this.chunks[0]!.subarray(take);
      if (this.chunks[0]!.length === 0) this.chunks.shift();
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, take);
      this.chunks = all.length > take ? [all.subarray(take)] : [];
    }
    this.buffered -= take;
    this.position += take;
    return out;
  }
}

function cString(block: Buffer, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? length : end).toString('utf8');
}

/** A numeric header field: octal text, or GNU base-256 when the high bit of its first byte is set. */
function numberField(block: Buffer, start: number, length: number): number {
  if (block[start]! & 0x80) {
    let value = block[start]! & 0x7f;
    for (let i = 1; i < length; i++) value = value * 256 + block[start + i]!;
    return value;
  }
  const text = block.toString('latin1', start, start + length).replace(/[\0 ]+$/, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) return NaN;
  return parseInt(text, 8);
}

function checksumMatches(block: Buffer): boolean {
  const stored = numberField(block, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

/** pax records: "<length> <key>=<value>\n", length counting the whole record. */
function parsePax(data: Buffer, archive: string, offset: number): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < data.length) {
    const space = data.indexOf(0x20, i);
    const length = space < 0 ? NaN : Number(data.toString('latin1', i, space));
    if (!Number.isSafeInteger(length) || length <= 0 || i + length > data.length) {
      throw new Error(`readTar: corrupt pax header in ${archive} at offset ${offset}: bad record length`);
    }
    const record = data.toString('utf8', space + 1, i + length - 1);
    const eq = record.indexOf('=');
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    i += length;
  }
  return out;
}

function chunksOf(input: string | Readable | AsyncIterable<Uint8Array>): AsyncIterator<Uint8Array> {
  const iterable = typeof input === 'object' && input !== null && typeof (input as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === 'function';
  if (typeof input !== 'string' && !iterable) throw argError('readTar', 'input', 'a path or a byte stream', input);
  const stream = typeof input === 'string' ? createReadStream(input, { highWaterMark: 1 << 20 }) : input;
  return (stream as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
}

/**
 * The regular files of a tar archive, in order. `input` is a path or a byte stream; `label`
 * names the archive in errors (default: the path). Stops at the end-of-archive blocks or at
 * the end of the stream when it falls on a header boundary.
 */
export async function* readTar(input: string | Readable | AsyncIterable<Uint8Array>, label?: string): AsyncGenerator<TarEntry> {
  const archive = label ?? (typeof input === 'string' ? input : 'a tar stream');
  const source = chunksOf(input);
  const reader = new ByteReader(source, archive);
  let globalPax = new Map<string, string>();
  let pax: Map<string, string> | null = null;
  let longName: string | null = null;
  try {
    for (;;) {
      const offset = reader.position;
      const header = await reader.read(BLOCK);
      if (header.length === 0) return;
      if (header.length < BLOCK) throw new Error(`readTar: truncated archive ${archive}: header at offset ${offset} has ${header.length} of ${BLOCK} bytes`);
      if (header.every((b) => b === 0)) return;
      if (!checksumMatches(header)) throw new Error(`readTar: bad header checksum in ${archive} at offset ${offset}`);
      // A pax 'size' overrides the header's field (which cannot hold sizes of 8 GiB or more).
      const paxSize = pax?.get('size');
      const size = paxSize !== undefined ? Number(paxSize) : numberField(header, 124, 12);
      if (!Number.isSafeInteger(size) || size < 0) throw new Error(`readTar: bad size field in ${archive} at offset ${offset}`);
      const type = String.fromCharCode(header[156]!);
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      const body = await reader.read(padded);
      if (body.length < padded) {
        throw new Error(`readTar: truncated archive ${archive}: member at offset ${offset} needs ${size} bytes, ${Math.min(body.length, size)} present`);
      }
      const data = body.subarray(0, size);
      switch (type) {
        case 'L':
          longName = cString(data, 0, data.length);
          continue;
        case 'K':
          continue;
        case 'x':
          pax = parsePax(data, archive, offset);
          continue;
        case 'g':
          globalPax = new Map([...globalPax, ...parsePax(data, archive, offset)]);
          continue;
      }
      if (type === '0' || type === '\0' || type === '7') {
        const isUstar = header.toString('latin1', 257, 262) === 'ustar';
        const prefix = isUstar ? cString(header, 345, 155) : '';
        const shortName = cString(header, 0, 100);
        const name = pax?.get('path') ?? globalPax.get('path') ?? longName ?? (prefix ? `${prefix}/${shortName}` : shortName);
        yield { name, data, offset };
      }
      // Long names and pax records apply to the next entry only, whatever its type.
      pax = null;
      longName = null;
    }
  } finally {
    await source.return?.();
  }
}
