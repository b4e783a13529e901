import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';

const test = suite('atomic');
const dir = mkdtempSync(join(tmpdir(), 'clipforge-atomic-'));
const atomicModule = new URL('../../lib/train/atomic.ts', import.meta.url).href;

test('writes bytes, strings and streamed chunks; replaces the old file; leaves no temporary files', async () => {
  const p = join(dir, 'ckpt.bin');
  await cf.writeFileAtomic(p, new Uint8Array([1, 2, 3]));
  assert.equal([...readFileSync(p)], [1, 2, 3]);
  await cf.writeFileAtomic(p, async (write) => {
    await write('ab');
    await write(new Uint8Array([0x63]));
  });
  assert.is(readFileSync(p, 'utf8'), 'abc');
  cf.writeFileAtomicSync(p, 'sync');
  assert.is(readFileSync(p, 'utf8'), 'sync');
  assert.equal(readdirSync(dir), ['ckpt.bin']);
});

test('a failing writer leaves the previous file and no temporary file', async () => {
  const p = join(dir, 'keep.txt');
  writeFileSync(p, 'previous');
  try {
    await cf.writeFileAtomic(p, async (write) => {
      await write('partial');
      throw new Error('disk full');
    });
    assert.unreachable('the writer error propagates');
  } catch (e) {
    assert.match((e as Error).message, /disk full/);
  }
  assert.is(readFileSync(p, 'utf8'), 'previous');
  assert.equal(readdirSync(dir).filter((f) => f.includes('keep')), ['keep.txt']);
});

test('a process killed mid-write leaves the previous checkpoint valid', () => {
  const p = join(dir, 'epoch_latest.bin');
  const previous = Buffer.alloc(1 << 20, 7);
  writeFileSync(p, previous);
  // The child streams 64 MiB and is killed (SIGKILL, no cleanup) after the first 8 MiB.
  const script = `
    const { writeFileAtomic } = await import(${JSON.stringify(atomicModule)});
    const chunk = new Uint8Array(1 << 20).fill(9);
    await writeFileAtomic(${JSON.stringify(p)}, async (write) => {
      for (let i = 0; i < 64; i++) {
        await write(chunk);
        if (i === 7) process.kill(process.pid, 'SIGKILL');
      }
    });`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.is(r.signal, 'SIGKILL', `child stderr: ${r.stderr}`);
  const after = readFileSync(p);
  assert.is(after.length, previous.length);
  assert.ok(after.equals(previous), 'the previous checkpoint is byte-identical');
  // The torn temporary file is beside it, never in its place.
  const temps = readdirSync(dir).filter((f) => f.startsWith('.epoch_latest.bin.tmp-'));
  assert.is(temps.length, 1);
  assert.ok(readFileSync(join(dir, temps[0]!)).length >= 8 << 20);
});

test('bad arguments', async () => {
  assert.throws(() => cf.writeFileAtomicSync('', 'x'), /writeFileAtomicSync: expected a non-empty file path for path/);
  try {
    await cf.writeFileAtomic(join(dir, 'x'), 42 as never);
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /writeFileAtomic: expected a Uint8Array, a string or a writer function for data, got 42 of type number/);
  }
});

test('NaN and Inf losses stop the run with the step in the message', () => {
  assert.is(cf.checkFiniteLoss(1.5, 3), 1.5);
  const t = cf.scalar(2.25);
  assert.is(cf.checkFiniteLoss(t, 4), 2.25);
  t.dispose();
  for (const bad of [NaN, Infinity, -Infinity]) {
    try {
      cf.checkFiniteLoss(bad, 1234);
      assert.unreachable();
    } catch (e) {
      assert.instance(e, cf.NonFiniteLossError);
      assert.is((e as cf.NonFiniteLossError).step, 1234);
      assert.match((e as Error).message, new RegExp(`training loss is ${bad} at step 1234`));
    }
  }
  const nan = cf.scope(() => cf.log(cf.scalar(-1)));
  assert.throws(() => cf.checkFiniteLoss(nan, 7), /loss is NaN at step 7/);
  nan.dispose();
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
