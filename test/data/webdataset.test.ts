// Webdataset sources: brace expansion, shard dealing across ranks and workers, resampling,
// grouping tar members into samples, pipe: shards, failures reported as skipped items.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isSkipped, type RawSample, type SkippedSample, type StreamPart } from '../../lib/data/source.js';
import { createWebDataset, expandShardUrls, resampledShards, shardsForWorker, splitSampleKey } from '../../lib/data/webdataset.js';
import { makeTar } from '../support/tar_writer.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipforge-wds-'));
const test = suite('webdataset');
test.after(() => rmSync(tmp, { recursive: true, force: true }));

const part = (o: Partial<StreamPart> = {}): StreamPart => ({ epoch: 0, seed: 0, rank: 0, worldSize: 1, worker: 0, numWorkers: 1, ...o });

async function collect(it: AsyncIterable<RawSample | SkippedSample>): Promise<(RawSample | SkippedSample)[]> {
  const out: (RawSample | SkippedSample)[] = [];
  for await (const s of it) out.push(s);
  return out;
}

/** Shard i holds samples s{i}_0 .. s{i}_{n-1}, each a fake jpg and a txt. */
function writeShards(count: number, perShard: number): string {
  for (let i = 0; i < count; i++) {
    const members = [];
    for (let j = 0; j < perShard; j++) {
      members.push({ name: `s${i}_${j}.jpg`, data: new Uint8Array([i, j]) }, { name: `s${i}_${j}.txt`, data: `caption ${i} ${j}` });
    }
    writeFileSync(join(tmp, `shard-${String(i).padStart(3, '0')}.tar`), makeTar(members));
  }
  return join(tmp, `shard-{000..${String(count - 1).padStart(3, '0')}}.tar`);
}

test('brace expansion: padded ranges, several groups, lists, nesting, :: parts', () => {
  assert.equal(expandShardUrls('a/{000..003}.tar'), [['a/000.tar', 'a/001.tar', 'a/002.tar', 'a/003.tar']]);
  assert.equal(expandShardUrls('{8..11}'), [['8', '9', '10', '11']]);
  assert.equal(expandShardUrls('{3..1}'), [['3', '2', '1']]);
  assert.equal(expandShardUrls('{0..1}-{00..01}'), [['0-00', '0-01', '1-00', '1-01']]);
  assert.equal(expandShardUrls('x{a,b{1..2}}y'), [['xay', 'xb1y', 'xb2y']]);
  assert.equal(expandShardUrls('p/{0..1}.tar::q/{09..10}.tar'), [['p/0.tar', 'p/1.tar'], ['q/09.tar', 'q/10.tar']]);
  assert.equal(expandShardUrls(['a.tar', 'b.tar']), [['a.tar'], ['b.tar']]);
  assert.is(expandShardUrls('s/{000000..231349}.tar')[0]!.at(-1), 's/231349.tar');
  assert.throws(() => expandShardUrls('a{0..3'), /expandShardUrls: unbalanced '\{' in shard pattern 'a\{0..3'/);
  assert.throws(() => expandShardUrls('a{x}'), /expected a range \{a..b\} or a list \{x,y\}/);
  assert.throws(() => expandShardUrls('a.tar::'), /empty shard pattern/);
  assert.throws(() => expandShardUrls([]), /expandShardUrls: expected a non-empty string or array of strings for urls/);
});

test('the sample key is the path up to the first dot of the file name', () => {
  assert.equal(splitSampleKey('dir.v2/000123.seg.JPG'), { key: 'dir.v2/000123', extension: 'seg.jpg' });
  assert.equal(splitSampleKey('a.txt'), { key: 'a', extension: 'txt' });
  assert.is(splitSampleKey('noext'), null);
  assert.is(splitSampleKey('dir/.hidden'), null);
});

test('plain epochs: ranks x workers cover every shard exactly once, reshuffled per epoch', () => {
  const shards = expandShardUrls('{000..036}')[0]!;
  for (const [worldSize, numWorkers] of [[1, 1], [2, 3], [4, 2], [3, 5]] as const) {
    for (const epoch of [0, 1]) {
      const seen: string[] = [];
      for (let rank = 0; rank < worldSize; rank++) {
        for (let worker = 0; worker < numWorkers; worker++) seen.push(...shardsForWorker(shards, part({ epoch, rank, worldSize, worker, numWorkers })));
      }
      assert.equal([...seen].sort(), shards, `${worldSize} ranks x ${numWorkers} workers, epoch ${epoch}`);
    }
  }
  const e0 = shardsForWorker(shards, part({ epoch: 0 }));
  assert.not.equal(e0, shardsForWorker(shards, part({ epoch: 1 })));
  assert.equal(e0, shardsForWorker(shards, part({ epoch: 0 })));
  assert.equal(shardsForWorker(shards, part(), false), shards);
});

test('resampling: the same part draws the same shards, others differ, weights are honoured', () => {
  const shards = ['a', 'b', 'c', 'd'];
  const take = (p: StreamPart, weights = [1, 1, 1, 1], n = 4000): string[] => {
    const out: string[] = [];
    for (const s of resampledShards(shards, weights, p)) if (out.push(s) >= n) break;
    return out;
  };
  assert.equal(take(part({ seed: 5 }), undefined, 50), take(part({ seed: 5 }), undefined, 50));
  assert.not.equal(take(part({ seed: 5 }), undefined, 50), take(part({ seed: 5, worker: 1 }), undefined, 50));
  assert.not.equal(take(part({ seed: 5 }), undefined, 50), take(part({ seed: 5, epoch: 1 }), undefined, 50));
  const drawn = take(part(), [3, 1, 0, 0]);
  const a = drawn.filter((s) => s === 'a').length;
  assert.ok(!drawn.includes('c') && !drawn.includes('d'), 'zero weight is never drawn');
  assert.ok(a > 2800 && a < 3200, `weight 3:1 gives about 3000 of 4000, got ${a}`);
});

test('samples group by key; missing captions and images are skipped; json captions read', async () => {
  writeFileSync(
    join(tmp, 'mixed.tar'),
    makeTar([
      { name: '__meta__.json', data: '{}' },
      { name: 'k1.jpg', data: new Uint8Array([1]) },
      { name: 'k1.txt', data: 'one' },
      { name: 'k2.png', data: new Uint8Array([2]) },
      { name: 'k2.json', data: '{"caption": "two", "w": 3}' },
      { name: 'k3.jpg', data: new Uint8Array([3]) },
      { name: 'k4.txt', data: 'no image' },
      { name: 'k5.webp', data: new Uint8Array([5]) },
      { name: 'k5.json', data: 'not json' },
    ]),
  );
  const ds = createWebDataset({ urls: join(tmp, 'mixed.tar'), shuffleBuffer: 0 });
  const out = await collect(ds.samples(part()));
  const good = out.filter((s) => !isSkipped(s)) as RawSample[];
  assert.equal(good.map((s) => [s.key.split(':').pop(), s.caption, [...(s.image as Uint8Array)]]), [['k1', 'one', [1]], ['k2', 'two', [2]]]);
  const skipped = out.filter(isSkipped).map((s) => s.skipped);
  assert.is(skipped.length, 3);
  assert.match(skipped[0]!, /sample k3 in .*mixed\.tar has no caption/);
  assert.match(skipped[1]!, /sample k4 in .*mixed\.tar has no image \(jpg\/jpeg\/png\/webp\), only txt/);
  assert.match(skipped[2]!, /sample k5 .* has no caption/);
});

test('a plain epoch yields every sample once; the shuffle buffer permutes deterministically', async () => {
  const urls = writeShards(4, 6);
  const keys = async (o: { shuffleBuffer: number; epoch?: number }): Promise<string[]> =>
    (await collect(createWebDataset({ urls, shuffleBuffer: o.shuffleBuffer }).samples(part({ epoch: o.epoch ?? 0, seed: 1 })))).map((s) => (s as RawSample).caption);
  const unshuffled = await keys({ shuffleBuffer: 0 });
  assert.is(unshuffled.length, 24);
  assert.is(new Set(unshuffled).size, 24);
  const a = await keys({ shuffleBuffer: 8 });
  assert.equal([...a].sort(), [...unshuffled].sort());
  assert.not.equal(a, unshuffled);
  assert.equal(await keys({ shuffleBuffer: 8 }), a);
  assert.not.equal(await keys({ shuffleBuffer: 8, epoch: 1 }), a);
});

test('a truncated shard and a failing pipe: command are skipped with reasons; the stream goes on', async () => {
  const good = makeTar([{ name: 'g.jpg', data: new Uint8Array([9]) }, { name: 'g.txt', data: 'good' }]);
  writeFileSync(join(tmp, 'good.tar'), good);
  const cut = makeTar([{ name: 'c.jpg', data: new Uint8Array(900) }, { name: 'c.txt', data: 'cut' }]);
  writeFileSync(join(tmp, 'cut.tar'), cut.subarray(0, 700));
  const urls = [join(tmp, 'cut.tar'), `pipe:cat ${join(tmp, 'good.tar')}`, 'pipe:echo oops >&2; exit 3', join(tmp, 'absent.tar')];
  const out = await collect(createWebDataset({ urls, shuffleBuffer: 0, shuffleShards: false }).samples(part()));
  assert.is(out.length, 4);
  assert.match((out[0] as SkippedSample).skipped, /shard .*cut\.tar: readTar: truncated archive .*cut\.tar: member at offset 0 needs 900 bytes/);
  assert.is((out[1] as RawSample).caption, 'good');
  assert.match((out[2] as SkippedSample).skipped, /command 'echo oops >&2; exit 3' exited with code 3: oops/);
  assert.match((out[3] as SkippedSample).skipped, /absent\.tar.*ENOENT/);
});

test('a source that stalls is given up after stallSeconds and stopped; a slow consumer is not a stall', async () => {
  // Half a shard, then silence: the command never ends by itself.
  const good = readFileSync(join(tmp, 'good.tar'));
  writeFileSync(join(tmp, 'half.tar'), good.subarray(0, 512));
  const urls = [`pipe:cat ${join(tmp, 'half.tar')}; sleep 60`, `pipe:cat ${join(tmp, 'good.tar')}`];
  const t0 = Date.now();
  const out = await collect(createWebDataset({ urls, shuffleBuffer: 0, shuffleShards: false, stallSeconds: 0.3 }).samples(part()));
  assert.ok(Date.now() - t0 < 10_000, `gave up in ${Date.now() - t0} ms, not after the command's 60 s`);
  assert.match((out[0] as SkippedSample).skipped, /shard pipe:cat .*half\.tar; sleep 60: readTar: cannot read .* at offset 512: no data for 0\.3 s \(command 'cat .*half\.tar; sleep 60' was stopped \(SIGTERM\)\)/);
  assert.is((out[1] as RawSample).caption, 'good');

  // The consumer waits 0.5 s per sample, longer than the stall limit, while the source is quick.
  const many = makeTar(Array.from({ length: 3 }, (_, i) => [{ name: `m${i}.jpg`, data: new Uint8Array([i]) }, { name: `m${i}.txt`, data: `m${i}` }]).flat());
  writeFileSync(join(tmp, 'many.tar'), many);
  const slow: (RawSample | SkippedSample)[] = [];
  for await (const sample of createWebDataset({ urls: [`pipe:cat ${join(tmp, 'many.tar')}`], shuffleBuffer: 0, stallSeconds: 0.3 }).samples(part())) {
    slow.push(sample);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  assert.equal(slow.map((x) => (x as RawSample).caption), ['m0', 'm1', 'm2']);
  assert.throws(() => createWebDataset({ urls: [join(tmp, 'good.tar')], stallSeconds: 0 }), /createWebDataset: expected a number of seconds > 0 for options.stallSeconds, got 0/);
});

test('http shards stream from a server; an error status is a skipped shard', async () => {
  const server = createServer((req, res) => {
    if (req.url === '/good.tar') res.end(readFileSync(join(tmp, 'good.tar')));
    else {
      res.statusCode = 404;
      res.end('no');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const out = await collect(createWebDataset({ urls: [`${base}/good.tar`, `${base}/missing.tar`], shuffleBuffer: 0, shuffleShards: false }).samples(part()));
    assert.is((out[0] as RawSample).caption, 'good');
    assert.match((out[1] as SkippedSample).skipped, /missing\.tar: GET .* answered 404/);
  } finally {
    server.close();
  }
});

test('resampled streams need numSamples, give up on shards that never work, and keep draws apart', async () => {
  assert.throws(() => createWebDataset({ urls: 'a.tar', resampled: true }), /createWebDataset: expected options.numSamples with options.resampled/);
  assert.throws(() => createWebDataset({ urls: 'a.tar::b.tar', upsamplingFactors: [1, 2] }), /expected options.resampled with options.upsamplingFactors/);
  assert.throws(() => createWebDataset({ urls: 'a.tar::b.tar', resampled: true, numSamples: 5, upsamplingFactors: [1] }), /options.upsamplingFactors/);
  let message = '';
  try {
    await collect(createWebDataset({ urls: join(tmp, 'nothing-{0..3}.tar'), resampled: true, numSamples: 10 }).samples(part()));
  } catch (e) {
    message = (e as Error).message;
  }
  assert.match(message, /createWebDataset: 64 shards in a row gave no sample/);
  const ds = createWebDataset({ urls: join(tmp, 'good.tar'), resampled: true, numSamples: 10, shuffleBuffer: 0 });
  const first: string[] = [];
  for await (const s of ds.samples(part())) if (first.push((s as RawSample).key) >= 3) break;
  assert.is(new Set(first).size, 3, 'each draw of the same shard has its own key');
  let few = '';
  try {
    await collect(createWebDataset({ urls: join(tmp, 'good.tar') }).samples(part({ numWorkers: 2, worker: 1 })));
  } catch (e) {
    few = (e as Error).message;
  }
  assert.match(few, /1 shards cannot feed 1 ranks x 2 workers: worker 1 of rank 0 has none/);
});

test.run();
