// The streaming tar reader on archives this test writes: plain ustar members, GNU long names,
// pax paths, streams cut into odd chunks, and the failures (truncation, bad checksums) that
// must name the archive and the offset.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readTar, type TarEntry } from '../../lib/data/tar.js';
import { makeTar } from '../support/tar_writer.js';
import { rejects } from '../support/helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipforge-tar-'));
const test = suite('tar');
test.after(() => rmSync(tmp, { recursive: true, force: true }));

async function collect(input: Parameters<typeof readTar>[0], label?: string): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  for await (const e of readTar(input, label)) out.push(e);
  return out;
}


const LONG = `${'deep/'.repeat(30)}sample.with.dots.jpg`;
const members = [
  { name: '000001.jpg', data: new Uint8Array(700).map((_, i) => (i * 7) & 255) },
  { name: '000001.txt', data: 'a red circle' },
  { name: '000002.txt', data: '' },
  { name: LONG, data: 'long' },
];

test('reads ustar members from a file with names, bytes and offsets', async () => {
  const path = join(tmp, 'plain.tar');
  writeFileSync(path, makeTar(members.slice(0, 3)));
  const entries = await collect(path);
  assert.equal(entries.map((e) => e.name), ['000001.jpg', '000001.txt', '000002.txt']);
  assert.equal([...entries[0]!.data], [...members[0]!.data as Uint8Array]);
  assert.is(entries[1]!.data.toString(), 'a red circle');
  assert.is(entries[2]!.data.length, 0);
  assert.equal(entries.map((e) => e.offset), [0, 512 + 1024, 512 + 1024 + 1024]);
});

test('GNU long names and pax paths give the full name', async () => {
  for (const style of ['gnu', 'pax'] as const) {
    const entries = await collect(Readable.from([makeTar(members, style)]));
    assert.is(entries.length, 4, style);
    assert.is(entries[3]!.name, LONG, style);
    assert.is(entries[3]!.data.toString(), 'long', style);
    assert.is(entries[2]!.name, '000002.txt', `${style}: a long name applies to the next entry only`);
  }
});

test('a stream in odd-sized chunks reads the same as one buffer', async () => {
  const tar = makeTar(members, 'pax');
  const chunks: Buffer[] = [];
  for (let i = 0, k = 1; i < tar.length; i += k, k = (k * 7 + 3) % 1000 + 1) chunks.push(tar.subarray(i, i + k));
  const a = await collect(Readable.from(chunks));
  const b = await collect(Readable.from([tar]));
  assert.equal(a.map((e) => [e.name, e.data.toString('hex')]), b.map((e) => [e.name, e.data.toString('hex')]));
});

test('an archive cut inside a member or a header names the shard and the offset', async () => {
  const tar = makeTar(members.slice(0, 2));
  await rejects(collect(Readable.from([tar.subarray(0, 900)]), 'shard-7.tar'), /readTar: truncated archive shard-7\.tar: member at offset 0 needs 700 bytes, 388 present/);
  await rejects(collect(Readable.from([tar.subarray(0, 1536 + 100)]), 'shard-7.tar'), /truncated archive shard-7\.tar: header at offset 1536 has 100 of 512 bytes/);
  const path = join(tmp, 'cut.tar');
  writeFileSync(path, tar.subarray(0, 1000));
  await rejects(collect(path), new RegExp(`truncated archive ${path.replace(/[.]/g, '\\.')}`));
});

test('an archive ending on a header boundary without end blocks is complete', async () => {
  const tar = makeTar(members.slice(0, 2));
  const entries = await collect(Readable.from([tar.subarray(0, tar.length - 1024)]));
  assert.is(entries.length, 2);
});

test('a corrupt header fails its checksum with the offset', async () => {
  const tar = makeTar(members.slice(0, 3));
  tar[1536 + 3] ^= 0x55;
  await rejects(collect(Readable.from([tar]), 'bad.tar'), /readTar: bad header checksum in bad\.tar at offset 1536/);
  const garbage = Buffer.alloc(2048, 0x41);
  await rejects(collect(Readable.from([garbage]), 'text.tar'), /bad header checksum in text\.tar at offset 0/);
});

test('a missing file rejects with its path', async () => {
  await rejects(collect(join(tmp, 'nope.tar')), /readTar: cannot read .*nope\.tar at offset 0: ENOENT/);
});

test.run();
