// Writes tar archives for the data tests: ustar headers, and on request GNU long-name ('L')
// entries or pax ('x') headers for names over 100 bytes, so the reader meets each form.

export interface TarMember {
  name: string;
  data: Uint8Array | string;
}

export type LongNameStyle = 'gnu' | 'pax';

function header(name: string, size: number, type: string): Buffer {
  const h = Buffer.alloc(512);
  h.write(name.slice(0, 100), 0, 'utf8');
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write(type, 156, 'latin1');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}

function padded(data: Buffer): Buffer[] {
  const pad = (512 - (data.length % 512)) % 512;
  return [data, Buffer.alloc(pad)];
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = body.length + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length = String(length).length + Buffer.byteLength(body);
  return `${length}${body}`;
}

/** A complete archive (with the two zero end blocks) holding `members` in order. */
export function makeTar(members: readonly TarMember[], longNames: LongNameStyle = 'gnu'): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    const data = typeof m.data === 'string' ? Buffer.from(m.data, 'utf8') : Buffer.from(m.data);
    if (Buffer.byteLength(m.name) > 100) {
      if (longNames === 'gnu') {
        const name = Buffer.from(m.name + '\0', 'utf8');
        parts.push(header('././@LongLink', name.length, 'L'), ...padded(name));
      } else {
        const pax = Buffer.from(paxRecord('path', m.name), 'utf8');
        parts.push(header('PaxHeader', pax.length, 'x'), ...padded(pax));
      }
    }
    parts.push(header(m.name, data.length, '0'), ...padded(data));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
