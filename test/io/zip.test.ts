import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { readTorchCheckpoint } from '../../lib/io/index.js';
import { ZipArchive } from '../../lib/io/zip.js';
import { FIXTURES, tempDir } from '../support/io_fixtures.js';

const test = suite('zip');

let copies = 0;

/** A new copy of a fixture with `edit` applied to its bytes. */
function corrupted(dir: string, fixture: string, edit: (b: Buffer) => Buffer): string {
  const path = join(dir, `corrupt-${copies++}-${fixture}`);
  copyFileSync(join(FIXTURES, fixture), path);
  writeFileSync(path, edit(readFileSync(path)));
  return path;
}

/** Offset of the first entry's data: after its 30-byte local header, name and extra field. */
function firstDataOffset(b: Buffer): number {
  return 30 + b.readUInt16LE(26) + b.readUInt16LE(28);
}

test('lists entries and reads stored and deflated (zip64) entries alike', () => {
  const stored = new ZipArchive(join(FIXTURES, 'views.pt'), 'test');
  const deflated = new ZipArchive(join(FIXTURES, 'views_deflated_zip64.pt'), 'test');
  try {
    assert.equal([...deflated.entries.keys()], [...stored.entries.keys()]);
    assert.ok([...deflated.entries.values()].every((e) => e.method === 8));
    assert.ok([...stored.entries.values()].every((e) => e.method === 0));
    for (const name of stored.entries.keys()) assert.ok(Buffer.from(stored.readEntry(name)).equals(deflated.readEntry(name)), name);
    assert.throws(() => stored.readEntry('views/nope'), /test: .*views\.pt: missing entry 'views\/nope'/);
  } finally {
    stored.close();
    deflated.close();
  }
  assert.throws(() => stored.readEntry('views/data.pkl'), /the archive is closed/);
});

test('corrupt archives are errors naming the file and the problem, and leak nothing', () => {
  const { dir, remove } = tempDir();
  const before = cf.liveTensorCount();
  try {
    const cases: [string, RegExp][] = [
      [corrupted(dir, 'state_dict.pt', () => Buffer.alloc(0)), /not a zip archive \(0 bytes, too short\)/],
      [corrupted(dir, 'state_dict.pt', (b) => b.subarray(0, b.length >> 1)), /not a zip archive \(no end-of-central-directory record/],
      [corrupted(dir, 'state_dict.pt', (b) => b.subarray(0, b.length - 5)), /no end-of-central-directory record/],
      // torch.save always writes zip64 end records; their directory offset is the one used.
      [corrupted(dir, 'state_dict.pt', (b) => {
        const zip64 = b.lastIndexOf(Buffer.from([0x50, 0x4b, 6, 6]));
        b.writeBigUInt64LE(BigInt(b.length), zip64 + 48);
        return b;
      }), /central directory \(\d+ bytes at \d+\) runs past its end record/],
      [corrupted(dir, 'state_dict.pt', (b) => {
        const locator = b.lastIndexOf(Buffer.from([0x50, 0x4b, 6, 7]));
        b.writeBigUInt64LE(0n, locator + 8);
        return b;
      }), /zip64 locator does not point at a zip64 end-of-central-directory record/],
      [corrupted(dir, 'state_dict.pt', (b) => {
        b[firstDataOffset(b) + 5]! ^= 0x40;
        return b;
      }), /entry 'state_dict\/data\.pkl' fails its CRC-32 check/],
      [corrupted(dir, 'views_deflated_zip64.pt', (b) => {
        b.fill(0xff, firstDataOffset(b), firstDataOffset(b) + 8);
        return b;
      }), /entry 'views\/data\.pkl' (does not inflate|inflates to|fails its CRC-32)/],
      [corrupted(dir, 'state_dict.pt', (b) => {
        const central = b.indexOf(Buffer.from([0x50, 0x4b, 1, 2]));
        b.writeUInt16LE(12, central + 10);
        return b;
      }), /entry 'state_dict\/data\.pkl' uses compression method 12/],
    ];
    for (const [path, problem] of cases) {
      assert.throws(() => readTorchCheckpoint(path), (e: Error) => e.message.includes(path) && problem.test(e.message), `${path}: ${problem}`);
    }
    assert.is(cf.liveTensorCount(), before);
  } finally {
    remove();
  }
});

test.run();
