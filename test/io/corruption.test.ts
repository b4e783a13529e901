// Randomly corrupted checkpoints: every read either succeeds or throws an Error that names
// the file; none crashes, hangs, leaks a tensor or throws anything else.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { readStateDict } from '../../lib/io/index.js';
import { ZipArchive } from '../../lib/io/zip.js';
import { Rng } from '../support/helpers.js';
import { FIXTURES, tempDir } from '../support/io_fixtures.js';

const test = suite('corruption');
const rng = new Rng(2024);

/** Reads `path`; returns 'ok' or 'error', failing the test on anything but a file-naming Error. */
function readOutcome(path: string, what: string): 'ok' | 'error' {
  const before = cf.liveTensorCount();
  try {
    const tensors = readStateDict(path);
    for (const t of tensors.values()) t.dispose();
    return 'ok';
  } catch (e) {
    if (!(e instanceof Error)) assert.unreachable(`${what}: threw a non-Error ${String(e)}`);
    if (!(e as Error).message.includes(path)) assert.unreachable(`${what}: error does not name the file: ${(e as Error).stack}`);
    return 'error';
  } finally {
    assert.is(cf.liveTensorCount(), before, `${what}: tensors leaked`);
  }
}

// Replacement bytes: mostly ones that keep JSON text valid UTF-8 and parseable often enough
// to reach the checks behind the parser; any byte otherwise.
const LIKELY = Buffer.from('0123456789-.,:[]{}"eE aFIB');

function mutate(b: Buffer, from: number, to: number): string {
  const flips = rng.int(1, 3);
  const where: number[] = [];
  for (let i = 0; i < flips; i++) {
    const at = rng.int(from, to - 1);
    b[at] = rng.next() < 0.6 ? LIKELY[rng.int(0, LIKELY.length - 1)]! : rng.int(0, 255);
    where.push(at);
  }
  return `bytes ${where.join(', ')}`;
}

test('safetensors with a corrupted header or a truncated end', () => {
  const { dir, remove } = tempDir();
  try {
    const original = readFileSync(join(FIXTURES, 'mixed.safetensors'));
    const headerEnd = 8 + Number(original.readBigUInt64LE(0));
    const outcomes = { ok: 0, error: 0 };
    for (let i = 0; i < 200; i++) {
      const path = join(dir, `m${i}.safetensors`);
      let b = Buffer.from(original);
      let what: string;
      if (i % 5 === 4) {
        b = b.subarray(0, rng.int(0, b.length - 1));
        what = `truncated to ${b.length}`;
      } else {
        what = mutate(b, 0, headerEnd);
      }
      writeFileSync(path, b);
      outcomes[readOutcome(path, `mixed.safetensors ${what}`)]++;
    }
    assert.ok(outcomes.error > 130, `most corruptions are caught (${JSON.stringify(outcomes)})`);
  } finally {
    remove();
  }
});

/** Rewrites the CRC-32 of a stored zip entry (local header and central directory) after an edit. */
function fixCrc(b: Buffer, name: string, dataStart: number, size: number): void {
  const crc = crc32(b.subarray(dataStart, dataStart + size)) >>> 0;
  const nameBytes = Buffer.from(name);
  for (let at = b.indexOf(nameBytes); at >= 0; at = b.indexOf(nameBytes, at + 1)) {
    if (b.readUInt32LE(at - 30) === 0x04034b50) b.writeUInt32LE(crc, at - 30 + 14);
    if (at >= 46 && b.readUInt32LE(at - 46) === 0x02014b50) b.writeUInt32LE(crc, at - 46 + 16);
  }
}

test('torch checkpoints with a corrupted pickle (CRC fixed up, so the unpickler sees it) or any corrupted byte', () => {
  const { dir, remove } = tempDir();
  try {
    for (const fixture of ['state_dict.pt', 'wrapped_proto5.pt', 'views.pt']) {
      const original = readFileSync(join(FIXTURES, fixture));
      const name = `${fixture.slice(0, -3)}/data.pkl`;
      const dataStart = 30 + original.readUInt16LE(26) + original.readUInt16LE(28);
      // torch.save's local headers leave the sizes to a data descriptor: take the directory's.
      const archive = new ZipArchive(join(FIXTURES, fixture), 'test');
      const size = archive.entries.get(name)!.size;
      archive.close();
      const outcomes = { ok: 0, error: 0 };
      for (let i = 0; i < 120; i++) {
        const path = join(dir, `${i}-${fixture}`);
        const b = Buffer.from(original);
        let what: string;
        if (i % 4 === 3) {
          what = mutate(b, 0, b.length);
        } else {
          what = `pickle ${mutate(b, dataStart, dataStart + size)}`;
          fixCrc(b, name, dataStart, size);
        }
        writeFileSync(path, b);
        outcomes[readOutcome(path, `${fixture} ${what}`)]++;
      }
      assert.ok(outcomes.error > 60, `${fixture}: most corruptions are caught (${JSON.stringify(outcomes)})`);
    }
  } finally {
    remove();
  }
});

test.run();
