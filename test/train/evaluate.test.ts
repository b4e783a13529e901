// Evaluation wiring: zero-shot on an image folder (--imagenet-val) and retrieval over a
// validation loader, with a tiny model; the metric arithmetic itself is tested in metrics.test.ts.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createDataLoader } from '../../lib/data/loader.js';
import { createModel } from '../../lib/nn/factory.js';
import { imageFolderZeroShot } from '../../lib/train/data.js';
import { retrievalEval, zeroShotEval } from '../../lib/train/evaluate.js';
import { parseTrainArgs } from '../../lib/train/flags.js';

const test = suite('evaluate');
let tmp = '';
test.before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'clipforge-eval-'));
});
test.after(() => rmSync(tmp, { recursive: true, force: true }));

test('--imagenet-val: an image folder with a names file is scored over every image, in eval mode', async () => {
  const dir = join(tmp, 'val');
  const colours: Record<string, [number, number, number]> = { red_things: [220, 20, 20], blue_things: [20, 20, 220] };
  for (const [name, rgb] of Object.entries(colours)) {
    mkdirSync(join(dir, name), { recursive: true });
    for (let i = 0; i < 3; i++) {
      const png = await sharp({ create: { width: 40, height: 40, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } }).png().toBuffer();
      writeFileSync(join(dir, name, `${i}.png`), png);
    }
  }
  writeFileSync(join(dir, 'classnames.txt'), 'blue thing\nred thing\n');
  const args = parseTrainArgs(['--workers', '0']);
  const task = imageFolderZeroShot(args, dir, 32, 20);
  assert.equal(task.classNames, ['blue thing', 'red thing']);
  const model = createModel('tiny-builtin', { seed: 1 });
  try {
    const scores = await zeroShotEval(model, task, 20);
    assert.is(scores.samples, 6);
    assert.ok(scores.top1 >= 0 && scores.top1 <= 1);
    assert.is(scores.top5, 1, 'with two classes the true one is always among the top 5');
    assert.ok(model.training, 'the model is back in training mode');
  } finally {
    await task.loader.close();
    model.dispose();
  }
});

test('retrieval over a validation loader: every sample counted, recalls ordered, a finite loss', async () => {
  const loader = createDataLoader({
    source: { type: 'module', module: new URL('../../lib/data/builtin/index.ts', import.meta.url).href, export: 'createBuiltinDataset', options: { split: 'val', size: 50, imageSize: 32 } },
    batchSize: 16,
    workers: 0,
    shuffle: false,
    imageTransform: { size: 32 },
    text: { contextLength: 20 },
  });
  const model = createModel('tiny-builtin', { seed: 2 });
  try {
    const r = await retrievalEval(model, loader);
    assert.is(r.samples, 50);
    assert.ok(r['image_to_text_R@1'] <= r['image_to_text_R@5'] && r['image_to_text_R@5'] <= r['image_to_text_R@10']);
    assert.ok(Number.isFinite(r.val_loss) && r.val_loss > 0);
  } finally {
    await loader.close();
    model.dispose();
  }
});

test.run();
