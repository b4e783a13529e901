// The data loader end to end on small files this test writes: batch layout, determinism for a
// seed, the same batches with and without worker threads, skipped samples counted, errors
// surfacing in the consumer, and no thread left behind after close() or leaving an epoch.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import sharp from 'sharp';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createDataLoader, type Batch, type DataLoader, type DataLoaderOptions } from '../../lib/data/loader.js';
import { reads } from '../support/pixel_source.js';
import { makeTar } from '../support/tar_writer.js';
import { rejects } from '../support/helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipforge-loader-'));
const pixelModule = new URL('../support/pixel_source.ts', import.meta.url).href;
const test = suite('loader');
test.after(() => rmSync(tmp, { recursive: true, force: true }));

async function jpeg(i: number): Promise<Buffer> {
  const w = 32 + (i % 3) * 8;
  const h = 40 - (i % 2) * 8;
  const data = Buffer.alloc(w * h * 3);
  for (let p = 0; p < w * h; p++) {
    data[3 * p] = ((p % w) * 255) / w;
    data[3 * p + 1] = (i * 25) & 255;
    data[3 * p + 2] = (Math.floor(p / w) * 255) / h;
  }
  return sharp(data, { raw: { width: w, height: h, channels: 3 } }).jpeg().toBuffer();
}

interface Seen {
  batches: Batch[];
  keys: string[];
}

async function collect(loader: DataLoader, epoch: number): Promise<Seen> {
  const batches: Batch[] = [];
  for await (const b of loader.epoch(epoch)) batches.push(b);
  return { batches, keys: batches.flatMap((b) => b.keys) };
}

function sameBatches(a: Seen, b: Seen, what: string): void {
  assert.is(a.batches.length, b.batches.length, what);
  a.batches.forEach((x, i) => {
    const y = b.batches[i]!;
    assert.equal(x.keys, y.keys, `${what}: keys of batch ${i}`);
    assert.ok(Buffer.from(x.images.buffer, x.images.byteOffset, x.images.byteLength).equals(Buffer.from(y.images.buffer, y.images.byteOffset, y.images.byteLength)), `${what}: images of batch ${i}`);
    assert.equal([...x.texts], [...y.texts], `${what}: texts of batch ${i}`);
  });
}

function exits(workers: Worker[]): Promise<number[]> {
  return Promise.all(workers.map((w) => new Promise<number>((resolve) => w.once('exit', resolve))));
}


let csvPath = '';
test.before(async () => {
  const rows = ['filepath,title'];
  for (let i = 0; i < 10; i++) {
    const name = i === 6 ? 'bad.jpg' : `img${i}.jpg`;
    writeFileSync(join(tmp, name), i === 6 ? (await jpeg(i)).subarray(0, 100) : await jpeg(i));
    rows.push(`${name},"photo ${i}, small"`);
  }
  csvPath = join(tmp, 'train.csv');
  writeFileSync(csvPath, rows.join('\n'));
});

test('CSV source: layout, skipped corrupt JPEG, same seed same batches, workers 0 and 2 agree, epochs differ', async () => {
  const options: DataLoaderOptions = {
    source: { type: 'csv', options: { path: csvPath, csvSeparator: ',' } },
    batchSize: 4,
    imageTransform: { size: 16, train: true, scale: [0.5, 1], colorJitter: [0.3, 0.3, 0.3, 0.05], colorJitterProb: 0.5, grayScaleProb: 0.3 },
    text: { contextLength: 12 },
    seed: 7,
    workers: 0,
  };
  const skips: string[] = [];
  const inProcess = createDataLoader({ ...options, onSkip: (r) => skips.push(r) });
  assert.is(await inProcess.batchesPerEpoch(), 3);
  const a = await collect(inProcess, 0);
  assert.equal(a.batches.map((b) => b.count).reduce((x, y) => x + y), 9);
  assert.equal(new Set(a.keys).size, 9);
  assert.ok(!a.keys.some((k) => k.endsWith('bad.jpg')));
  assert.is(inProcess.skipped, 1);
  assert.equal(skips, inProcess.skipReasons);
  assert.match(skips[0]!, /bad\.jpg: .*cannot read image header/);
  const first = a.batches[0]!;
  assert.equal(first.imageShape, [first.count, 3, 16, 16]);
  assert.is(first.images.length, first.count * 3 * 16 * 16);
  assert.equal(first.textShape, [first.count, 12]);
  assert.is(first.texts.length, first.count * 12);
  assert.is(first.texts[0], 49406, 'rows start with <start_of_text>');
  assert.ok(first.images.every(Number.isFinite));
  assert.is(first.labels, null);
  const e1 = await collect(inProcess, 1);
  assert.not.equal(e1.keys, a.keys, 'another epoch, another order');
  await inProcess.close();

  sameBatches(a, await collect(createDataLoader(options), 0), 'a second in-process run');
  const threaded = createDataLoader({ ...options, workers: 2, prefetch: 1 });
  sameBatches(a, await collect(threaded, 0), 'workers 2 vs 0, epoch 0');
  const threads = threaded.workerThreads();
  assert.is(threads.length, 2, 'workers stay between epochs');
  sameBatches(e1, await collect(threaded, 1), 'workers 2 vs 0, epoch 1');
  assert.is(threaded.skipped, 2);
  const exited = exits(threads);
  await threaded.close();
  assert.is((await exited).length, 2);
  assert.equal(threaded.workerThreads(), []);
  await rejects(collect(threaded, 2), /DataLoader.epoch: the loader is closed/);
});

test('leaving an epoch early terminates the workers; labels come through from a module source', async () => {
  const loader = createDataLoader({
    source: { type: 'module', module: pixelModule, export: 'createPixelSource', options: { count: 40, size: 20 } },
    batchSize: 3,
    imageTransform: { size: 12 },
    workers: 2,
    prefetch: 1,
  });
  let threads: Worker[] = [];
  let exited: Promise<number[]> | null = null;
  for await (const b of loader) {
    assert.ok(b.labels instanceof Int32Array && b.labels.length === b.count);
    assert.equal([...b.labels!], b.keys.map((k) => Number(k) % 5));
    threads = loader.workerThreads();
    exited = exits(threads);
    break;
  }
  assert.is(threads.length, 2);
  assert.is((await exited!).length, 2, 'both workers exited');
  assert.equal(loader.workerThreads(), []);
  await loader.close();
});

test('errors surface in the consumer: a failing source, a broken stream, a transform failing every sample', async () => {
  const base = { batchSize: 2, imageTransform: { size: 8 } };
  const failing = createDataLoader({ ...base, source: { type: 'module', module: pixelModule, export: 'createFailingFactory' }, workers: 1 });
  await rejects(collect(failing, 0), /this source cannot open/);
  assert.equal(failing.workerThreads(), []);
  const dying = createDataLoader({ ...base, source: { type: 'module', module: pixelModule, export: 'createExitingSource' }, workers: 1 });
  await rejects(collect(dying, 0), /data loader: worker 0 exited with code 7/);
  assert.equal(dying.workerThreads(), []);
  const broken = createDataLoader({ ...base, source: { type: 'module', module: pixelModule, export: 'createBrokenStream', options: { size: 8 } }, workers: 0 });
  await rejects(collect(broken, 0), /the stream broke/);
  const allBad = join(tmp, 'all-bad.csv');
  writeFileSync(allBad, 'filepath,title\n' + Array.from({ length: 6 }, (_, i) => `bad.jpg,x${i}`).join('\n'));
  const transformFails = createDataLoader({ ...base, source: { type: 'csv', options: { path: allBad, csvSeparator: ',' } }, workers: 1, maxConsecutiveSkips: 3 });
  // bad.jpg is a JPEG cut after 100 bytes: sharp names the problem when the cut falls in the
  // header (no size to crop by), the native decoder (libjpeg's words) when the header is whole.
  await rejects(collect(transformFails, 0), /3 samples in a row were skipped \(maxConsecutiveSkips\); the last: sample .*bad\.jpg: (decodeJpegCrop: cannot decode JPEG: Premature end of JPEG file|resizeCenterCrop: cannot decode image: .*premature end)/);
  await transformFails.close();
});

test('webdataset shards through two workers: every sample once per epoch; resampled epochs have numSamples', async () => {
  for (let s = 0; s < 3; s++) {
    const members = [];
    for (let j = 0; j < 5; j++) members.push({ name: `s${s}/${j}.jpg`, data: await jpeg(s * 5 + j) }, { name: `s${s}/${j}.txt`, data: `shard ${s} sample ${j}` });
    writeFileSync(join(tmp, `wds-${s}.tar`), makeTar(members));
  }
  const urls = join(tmp, 'wds-{0..2}.tar');
  const loader = createDataLoader({ source: { type: 'webdataset', options: { urls, shuffleBuffer: 4 } }, batchSize: 4, imageTransform: { size: 8, train: true }, workers: 2 });
  const seen = await collect(loader, 0);
  assert.is(seen.keys.length, 15);
  assert.is(new Set(seen.keys).size, 15);
  await loader.close();
  const resampled = createDataLoader({ source: { type: 'webdataset', options: { urls, resampled: true, numSamples: 10 } }, batchSize: 4, imageTransform: { size: 8 }, workers: 0, dropLast: true });
  assert.is(await resampled.batchesPerEpoch(), 3);
  const r = await collect(resampled, 0);
  assert.equal(r.batches.map((b) => b.count), [4, 4, 4]);
  await resampled.close();
});

test('prefetch bounds how far the producer runs ahead of a slow consumer', async () => {
  const loader = createDataLoader({
    source: { type: 'module', module: pixelModule, export: 'createPixelSource', options: { count: 40, size: 8 } },
    batchSize: 2,
    imageTransform: { size: 8 },
    workers: 0,
    prefetch: 2,
  });
  const before = reads.count;
  let batches = 0;
  for await (const b of loader) {
    assert.is(b.count, 2);
    if (++batches === 1) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      // The batch in hand, two prefetched, and none begun beyond them: 3 batches of 2 samples.
      assert.is(reads.count - before, 6);
    }
  }
  assert.is(batches, 20);
  assert.is(reads.count - before, 40);
});

test('ranks split an indexed source into equal parts that together hold every sample (one repeated to pad)', async () => {
  const keys: string[][] = [];
  for (let rank = 0; rank < 2; rank++) {
    const loader = createDataLoader({
      source: { type: 'module', module: pixelModule, export: 'createPixelSource', options: { count: 11, size: 8 } },
      batchSize: 4,
      imageTransform: { size: 8 },
      workers: 0,
      rank,
      worldSize: 2,
    });
    assert.is(await loader.batchesPerEpoch(), 2);
    keys.push((await collect(loader, 0)).keys);
  }
  assert.equal([keys[0]!.length, keys[1]!.length], [6, 6]);
  const all = [...keys[0]!, ...keys[1]!].map(Number);
  assert.equal([...new Set(all)].sort((a, b) => a - b), Array.from({ length: 11 }, (_, i) => i));
  assert.is(new Set(keys[0]).size + new Set(keys[1]).size, 12, 'no repeat within a rank');
});

test('CLIPA text reduction is drawn per sample and repeats for the seed', async () => {
  const make = (): DataLoader =>
    createDataLoader({
      source: { type: 'module', module: pixelModule, export: 'createPixelSource', options: { count: 12, size: 8 } },
      batchSize: 6,
      imageTransform: { size: 8 },
      text: { contextLength: 4, reduction: 'random' },
      workers: 0,
      seed: 3,
    });
  const a = await collect(make(), 0);
  const b = await collect(make(), 0);
  const rows = a.batches.flatMap((x) => Array.from({ length: x.count }, (_, r) => [...x.texts.subarray(r * 4, r * 4 + 4)]));
  assert.equal(rows, b.batches.flatMap((x) => Array.from({ length: x.count }, (_, r) => [...x.texts.subarray(r * 4, r * 4 + 4)])));
  assert.ok(rows.every((r) => r[0] === 49406 && r[3] === 49407), 'start, two kept tokens, end');
  assert.ok(new Set(rows.map((r) => `${r[1]},${r[2]}`)).size > 3, 'different tokens kept for different samples');
});

test('options are checked before any thread starts', () => {
  const source = { type: 'csv', options: { path: csvPath } } as const;
  assert.throws(() => createDataLoader({ source, batchSize: 0, imageTransform: { size: 8 } }), /createDataLoader: expected an integer in \[1, 1048576\] for options.batchSize, got 0/);
  assert.throws(() => createDataLoader({ source: { type: 'ftp' } as never, batchSize: 2, imageTransform: { size: 8 } }), /createDataLoader: expected 'webdataset', 'csv' or 'module' for options.source.type/);
  assert.throws(() => createDataLoader({ source, batchSize: 2, imageTransform: { size: -1 } }), /createImageTransform: expected an integer/);
  assert.throws(() => createDataLoader({ source, batchSize: 2, imageTransform: { size: 8 }, rank: 2, worldSize: 2 }), /options.rank/);
  assert.throws(() => createDataLoader({ source, batchSize: 2, imageTransform: { size: 8 }, text: { reduction: 'crop' as never } }), /createDataLoader: expected 'truncate' \| 'random' .* for text.reduction, got 'crop'/);
  const object = { kind: 'indexed' as const, length: 1, get: () => ({ key: 'a', image: new Uint8Array(3), caption: '' }) };
  assert.throws(() => createDataLoader({ source: object, batchSize: 2, imageTransform: { size: 8 }, workers: 2 }), /a source spec \(plain data\) when workers > 0/);
});

test.run();
