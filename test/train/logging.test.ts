import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import sharp from 'sharp';
import * as cf from '../../lib/index.js';

const test = suite('logging');
const dir = mkdtempSync(join(tmpdir(), 'clipforge-log-'));

function run(isTTY: boolean, logDir: string): { written: string[]; logger: cf.TrainLogger } {
  const written: string[] = [];
  let clock = 0;
  const logger = new cf.TrainLogger({
    logDir, totalSteps: 10, logEveryNSteps: 5, tensorboard: true,
    stream: { isTTY, write: (s: string) => written.push(s) }, now: () => clock,
  });
  for (let step = 1; step <= 10; step++) {
    clock += 250; // 4 steps per second, 32 samples each: 128 samples/s
    logger.step({ step, epoch: 0, samples: 32, lr: 1e-3 * step, ...(step % 5 === 0 ? { loss: 4 - step * 0.1, logitScale: 14.3 } : {}) });
  }
  return { written, logger };
}

test('the last step is logged even when the log interval does not divide the run', () => {
  const logDir = join(dir, 'run-last');
  const logger = new cf.TrainLogger({ logDir, totalSteps: 7, logEveryNSteps: 5, stream: { write: () => 0 } });
  for (let step = 1; step <= 7; step++) logger.step({ step, epoch: 0, samples: 8, lr: 1e-3, loss: 5 - step * 0.1, logitScale: 14 });
  logger.close();
  const lines = readFileSync(join(logDir, 'out.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.map((l) => l.step), [5, 7]);
  assert.is(lines[1].loss, 5 - 0.7);
});

test('one JSON line per log step with loss, lr, logit scale and samples/s; TensorBoard scalars; loss.png on close', async () => {
  const logDir = join(dir, 'run-a');
  const { written, logger } = run(true, logDir);
  logger.record(10, { 'image_to_text_R@1': 0.5, zeroshot_top1: 0.8 });
  const png = logger.close();
  const lines = readFileSync(join(logDir, 'out.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.is(lines.length, 3);
  assert.equal(lines.map((l) => l.step), [5, 10, 10]);
  assert.is(lines[0].loss, 3.5);
  assert.is(lines[1].loss, 3);
  assert.is(lines[0].lr, 5e-3);
  assert.is(lines[0].logit_scale, 14.3);
  assert.is(lines[0].samples_per_second, 128);
  assert.is(lines[1].samples_per_second, 128);
  assert.is(lines[1].elapsed_s, 2.5);
  assert.is(lines[2].zeroshot_top1, 0.8);
  // The progress line: redrawn in place, every 100 ms of the clock, ends with a newline on close.
  assert.is(written.length, 11);
  assert.ok(written.slice(0, 10).every((s) => s.startsWith('\r\x1b[2K')));
  assert.match(written[4]!, /step 5\/10 \| epoch 0 \| 128\.0 samples\/s \| loss 3\.5000 \| lr 5\.00e-3 \| logit scale 14\.30 \| ETA 1s/);
  assert.is(written[10], '\n');
  const tbDir = join(logDir, 'tensorboard');
  const events = cf.readEventFile(join(tbDir, readdirSync(tbDir)[0]!));
  const tags = events.flatMap((e) => e.values.map((v) => `${e.step}:${v.tag}=${v.value.toPrecision(3)}`));
  assert.ok(tags.includes('5:train/loss=3.50') && tags.includes('10:train/samples_per_second=128') && tags.includes('10:val/zeroshot_top1=0.800'), tags.join(' '));
  assert.is(png, join(logDir, 'loss.png'));
  const meta = await sharp(readFileSync(png!)).metadata();
  assert.is(meta.format, 'png');
});

test('no progress output when the stream is not a terminal; the JSON log is still written', () => {
  const logDir = join(dir, 'run-b');
  const { written, logger } = run(false, logDir);
  logger.close();
  assert.is(written.length, 0);
  assert.is(readFileSync(join(logDir, 'out.jsonl'), 'utf8').trim().split('\n').length, 2);
});

test('durations and bad arguments', () => {
  assert.equal([cf.formatDuration(5), cf.formatDuration(65), cf.formatDuration(3 * 3600 + 120), cf.formatDuration(NaN)], ['5s', '1m05s', '3h02m', '?']);
  assert.throws(() => new cf.TrainLogger({ logDir: '', totalSteps: 1, logEveryNSteps: 1 }), /TrainLogger: expected a folder path for opts.logDir/);
  assert.throws(() => new cf.TrainLogger({ logDir: join(dir, 'c'), totalSteps: 1, logEveryNSteps: 0 }), /expected an integer >= 1 for opts.logEveryNSteps, got 0/);
  const logger = new cf.TrainLogger({ logDir: join(dir, 'd'), totalSteps: 1, logEveryNSteps: 1, stream: { write: () => 0 } });
  assert.throws(() => logger.step({ step: -1, epoch: 0, samples: 1, lr: 0 }), /TrainLogger.step: expected an integer >= 0 for info.step/);
  assert.is(logger.close(), null);
  assert.not.ok(existsSync(join(dir, 'd', 'loss.png')));
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
