import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { latestCheckpoint } from '../../lib/train/checkpoint.js';

const test = suite('tensorboard');
const dir = mkdtempSync(join(tmpdir(), 'clipforge-tb-'));
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

test('CRC-32C and CRC-32 match the standard check values', () => {
  assert.is(cf.crc32c(bytes('123456789')), 0xe3069283);
  assert.is(cf.crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.is(cf.crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.is(cf.crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.is(cf.crc32(bytes('123456789')), 0xcbf43926);
  assert.is(cf.crc32(bytes('456789'), cf.crc32(bytes('123'))), 0xcbf43926, 'a seed continues a CRC');
  // TFRecord's mask: rotate right by 15, add 0xa282ead8.
  const c = cf.crc32c(bytes('123456789'));
  assert.is(cf.maskedCrc32c(bytes('123456789')), ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0);
});

test('scalars written are read back with valid CRCs, in order, with file version, steps and wall times', () => {
  const w = new cf.TensorBoardWriter(join(dir, 'run'), { wallTime: 1700000000.25 });
  assert.is(basename(w.path), `events.out.tfevents.1700000000.${hostname()}`);
  w.addScalar('train/loss', 2.5, 1, 1700000001.5);
  w.addScalar('train/lr', 1e-4, 2, 1700000002);
  w.addScalar('val/image_to_text_R@1', 0.75, 300, 1700000003);
  w.close();
  const events = cf.readEventFile(w.path);
  assert.is(events.length, 4);
  assert.is(events[0]!.fileVersion, 'brain.Event:2');
  assert.is(events[0]!.wallTime, 1700000000.25);
  assert.equal(events.slice(1).map((e) => [e.step, e.wallTime, e.values]), [
    [1, 1700000001.5, [{ tag: 'train/loss', value: 2.5 }]],
    [2, 1700000002, [{ tag: 'train/lr', value: Math.fround(1e-4) }]],
    [300, 1700000003, [{ tag: 'val/image_to_text_R@1', value: 0.75 }]],
  ]);
  assert.throws(() => w.addScalar('x', 1, 1), /has been closed/);
});

test('the record layout is TFRecord: u64 length, masked CRC of it, data, masked CRC of the data', () => {
  const w = new cf.TensorBoardWriter(join(dir, 'layout'), { wallTime: 5 });
  w.close();
  const buf = new Uint8Array(readFileSync(w.path));
  const dv = new DataView(buf.buffer, buf.byteOffset);
  const len = Number(dv.getBigUint64(0, true));
  assert.is(buf.length, 16 + len);
  assert.is(dv.getUint32(8, true), cf.maskedCrc32c(buf.subarray(0, 8)));
  assert.is(dv.getUint32(12 + len, true), cf.maskedCrc32c(buf.subarray(12, 12 + len)));
  // Event{wall_time: 5 (field 1, fixed64), step: 0 (field 2, varint), file_version (field 3)}.
  assert.equal([...buf.subarray(12, 12 + 9)], [0x09, 0, 0, 0, 0, 0, 0, 0x14, 0x40]);
  assert.equal([...buf.subarray(21, 25)], [0x10, 0x00, 0x1a, 13]);
  // A flipped bit anywhere is caught.
  buf[20] = buf[20]! ^ 1;
  const bad = join(dir, 'corrupt');
  writeFileSync(bad, buf);
  assert.throws(() => cf.readEventFile(bad), /bad data CRC/);
});

test('bad arguments', () => {
  const w = new cf.TensorBoardWriter(join(dir, 'bad'));
  assert.throws(() => w.addScalar('', 1, 0), /addScalar: expected a non-empty string for tag/);
  assert.throws(() => w.addScalar('a', 1, -1), /addScalar: expected an integer >= 0 for step, got -1/);
  w.close();
});

test('a number is not taken as a path: readEventFile and latestCheckpoint refuse file descriptors', () => {
  // fs would read descriptor 0 (stdin) and block; the check must come first.
  assert.throws(() => cf.readEventFile(0 as unknown as string), /readEventFile: expected a non-empty file path for path, got 0 of type number/);
  assert.throws(() => latestCheckpoint(4 as unknown as string), /latestCheckpoint: expected a non-empty file path for dir/);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
