// `clipforge eval` on a checkpoint of a short `clipforge train` run: the run's own final
// zero-shot scores again, the same from an OpenCLIP folder or weights file of its weights,
// retrieval over a CSV, an image folder with ImageNet's names file format, and the errors.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readSafetensors, writeSafetensors } from '../../lib/io/safetensors.js';
import { zeros } from '../../lib/tensor/tensor.js';
import { readCheckpointInfo } from '../../lib/train/checkpoint.js';
import { runCli } from '../support/cli.js';

const test = suite('cli.eval');
const IMAGENET_NAMES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'shared', 'data', 'zeroshot', 'imagenet.json');

let tmp = '';
let checkpoint = '';
/** The training run's metrics of its final evaluation, from its out.jsonl. */
let trained: Record<string, number> = {};

test.before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'clipforge-eval-cli-'));
  const logs = join(tmp, 'logs');
  // The built-in default run, cut to 16 steps with a short warmup so that it learns a little.
  const r = await runCli(['train', '--train-num-samples', '1024', '--batch-size', '64', '--warmup', '4', '--workers', '0', '--logs', logs, '--name', 'tiny']);
  assert.is(r.code, 0, r.err);
  checkpoint = join(logs, 'tiny', 'checkpoints', 'epoch_1.safetensors');
  const lines = readFileSync(join(logs, 'tiny', 'out.jsonl'), 'utf8').trim().split('\n');
  trained = JSON.parse(lines.at(-1)!) as Record<string, number>;
});
test.after(() => rmSync(tmp, { recursive: true, force: true }));

function jsonOf(out: string): { metrics: Record<string, number>; [k: string]: unknown } {
  const lines = out.trim().split('\n');
  assert.is(lines.length, 1, `one JSON line on stdout, got:\n${out}`);
  return JSON.parse(lines[0]!) as { metrics: Record<string, number> };
}

async function png(path: string, rgb: [number, number, number]): Promise<void> {
  writeFileSync(path, await sharp({ create: { width: 40, height: 40, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } }).png().toBuffer());
}

test('--checkpoint: the training run\'s own final zero-shot top-1 and top-5, on the built-in val split by default', async () => {
  assert.ok(trained['zeroshot-top1']! > 1 / 25, `the run learned something (top-1 ${trained['zeroshot-top1']})`);
  const r = await runCli(['eval', '--checkpoint', checkpoint, '--workers', '0']);
  assert.is(r.code, 0, r.err);
  const pct = (x: number): string => `${(100 * x).toFixed(2)}%`;
  assert.match(r.out, `clipforge eval: checkpoint ${checkpoint}, epoch 1, step 16 on cpu`);
  assert.match(r.out, `\nzeroshot: top-1 ${pct(trained['zeroshot-top1']!)}, top-5 ${pct(trained['zeroshot-top5']!)} (2000 images)\n`);
  assert.not.match(r.out, 'retrieval');

  const output = join(tmp, 'results.json');
  const j = await runCli(['eval', '--checkpoint', 'latest', '--logs', join(tmp, 'logs'), '--name', 'tiny', '--workers', '0', '--batch-size', '100', '--json', '--output', output]);
  assert.is(j.code, 0, j.err);
  const result = jsonOf(j.out);
  assert.is(result.checkpoint, checkpoint, '--checkpoint latest finds the run\'s newest checkpoint');
  assert.equal(result.metrics, { 'zeroshot-top1': trained['zeroshot-top1'], 'zeroshot-top5': trained['zeroshot-top5'], 'zeroshot-samples': 2000 });
  assert.equal(JSON.parse(readFileSync(output, 'utf8')), result, '--output holds the same JSON');
});

test('--pretrained: an OpenCLIP folder and a weights file with --model score as the checkpoint does', async () => {
  const dir = join(tmp, 'openclip');
  mkdirSync(dir);
  const { tensors } = readSafetensors(checkpoint);
  const weights = new Map([...tensors].filter(([k]) => k.startsWith('state_dict.')).map(([k, t]) => [k.slice('state_dict.'.length), t]));
  writeSafetensors(join(dir, 'open_clip_model.safetensors'), weights);
  for (const t of tensors.values()) t.dispose();
  writeFileSync(join(dir, 'open_clip_config.json'), JSON.stringify({ model_cfg: readCheckpointInfo(checkpoint).modelConfig }));

  const folder = await runCli(['eval', '--pretrained', dir, '--workers', '0', '--json']);
  assert.is(folder.code, 0, folder.err);
  const f = jsonOf(folder.out);
  assert.is(f.pretrained, dir);
  assert.is(f.metrics['zeroshot-top1'], trained['zeroshot-top1']);
  assert.is(f.metrics['zeroshot-top5'], trained['zeroshot-top5']);

  const file = join(dir, 'open_clip_model.safetensors');
  const withModel = await runCli(['eval', '--pretrained', file, '--model', 'tiny-builtin', '--workers', '0', '--json']);
  assert.is(withModel.code, 0, withModel.err);
  assert.is(jsonOf(withModel.out).metrics['zeroshot-top1'], trained['zeroshot-top1']);

  const noModel = await runCli(['eval', '--pretrained', file]);
  assert.is(noModel.code, 2);
  assert.match(noModel.err, /^clipforge eval: --pretrained .*open_clip_model\.safetensors is a weights file; name its model config with --model/);
  const wrongModel = await runCli(['eval', '--pretrained', file, '--model', 'tiny-siglip', '--workers', '0']);
  assert.is(wrongModel.code, 1);
  assert.match(wrongModel.err, /^clipforge eval: CLIP\.loadStateDict: the state dict does not fit the model:\n  missing keys \(1\): logit_bias/);
});

test('--val-data CSV: retrieval R@1/5/10 and ranks both ways over every pair, the same at any batch size', async () => {
  const lines = ['filepath\ttitle'];
  const colours: [string, [number, number, number]][] = [
    ['red', [220, 20, 20]], ['green', [20, 200, 20]], ['blue', [20, 20, 220]], ['yellow', [230, 220, 20]],
    ['purple', [140, 20, 160]], ['orange', [240, 140, 20]], ['black', [10, 10, 10]], ['white', [245, 245, 245]],
  ];
  for (const [name, rgb] of colours) {
    await png(join(tmp, `${name}.png`), rgb);
    lines.push(`${name}.png\ta ${name} square`);
  }
  const csv = join(tmp, 'val.csv');
  writeFileSync(csv, lines.join('\n') + '\n');
  const whole = await runCli(['eval', '--checkpoint', checkpoint, '--val-data', csv, '--workers', '0', '--json']);
  assert.is(whole.code, 0, whole.err);
  const m = jsonOf(whole.out).metrics;
  assert.is(m.samples, 8);
  assert.not.ok('zeroshot-top1' in m, 'with --val-data the built-in zero-shot task runs only when asked');
  for (const dir of ['image_to_text', 'text_to_image']) {
    const r = (k: string): number => m[`${dir}_${k}`]!;
    assert.ok(r('R@1') <= r('R@5') && r('R@5') <= r('R@10'), `${dir}: recalls grow with k`);
    assert.is(r('R@10'), 1, `${dir}: with 8 pairs every match is within the top 10`);
    assert.ok(r('mean_rank') >= 1 && r('mean_rank') <= 8, `${dir}: mean rank ${r('mean_rank')} in [1, 8]`);
  }
  assert.ok(Number.isFinite(m.val_loss) && m.val_loss! > 0);

  const batched = await runCli(['eval', '--checkpoint', checkpoint, '--val-data', csv, '--batch-size', '3', '--builtin-val', '--workers', '0', '--json']);
  assert.is(batched.code, 0, batched.err);
  const b = jsonOf(batched.out).metrics;
  for (const k of Object.keys(m)) assert.ok(Math.abs(b[k]! - m[k]!) < 1e-5, `${k}: ${b[k]} with batches of 3, ${m[k]} in one batch`);
  assert.is(b['zeroshot-top1'], trained['zeroshot-top1'], '--builtin-val adds the built-in task');

  const summary = await runCli(['eval', '--checkpoint', checkpoint, '--val-data', csv, '--workers', '0']);
  assert.match(summary.out, /retrieval on --val-data \(8 pairs\), val_loss \d+\.\d{4}:\n  image->text: R@1 [\d.]+%, R@5 [\d.]+%, R@10 100\.00%, mean rank [\d.]+, median rank \d+\n  text->image: /);
});

test('--imagenet-val with --class-names in the form of OpenCLIP\'s ImageNet names and templates', async () => {
  const imagenet = JSON.parse(readFileSync(IMAGENET_NAMES, 'utf8')) as Record<string, string[]>;
  const names = join(tmp, 'names.json');
  // Three of ImageNet's classes with all 80 of its templates: the file's layout at a size a CPU test can encode.
  writeFileSync(names, JSON.stringify({ imagenet_classnames: imagenet.imagenet_classnames!.slice(0, 3), openai_imagenet_templates: imagenet.openai_imagenet_templates }));
  const root = join(tmp, 'folder');
  const shades: [number, number, number][] = [[200, 40, 40], [40, 200, 40], [40, 40, 200]];
  for (const [c, rgb] of shades.entries()) {
    mkdirSync(join(root, `n0${c}`), { recursive: true });
    for (let i = 0; i < 2; i++) await png(join(root, `n0${c}`, `${i}.png`), rgb);
  }
  const r = await runCli(['eval', '--checkpoint', checkpoint, '--imagenet-val', root, '--class-names', names, '--workers', '0']);
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /\nimagenet-zeroshot-val: top-1 [\d.]+%, top-5 100\.00% \(6 images\)\n/);
  assert.not.match(r.out, /\nzeroshot:/);

  writeFileSync(names, JSON.stringify({ imagenet_classnames: imagenet.imagenet_classnames!.slice(0, 4) }));
  const mismatch = await runCli(['eval', '--checkpoint', checkpoint, '--imagenet-val', root, '--class-names', names, '--workers', '0']);
  assert.is(mismatch.code, 1);
  assert.match(mismatch.err, /^clipforge eval: loadImageFolder: expected 3 class names .* in classNamesFile '.*names\.json', got 4/);
});

test('bad inputs: clear messages, exit 1 for what fails at run time and 2 for usage mistakes', async () => {
  const cases: [string[], number, RegExp][] = [
    [['--checkpoint', join(tmp, 'missing.safetensors')], 1, /^clipforge eval: --checkpoint .*missing\.safetensors does not exist\n$/],
    [['--checkpoint', 'latest', '--logs', join(tmp, 'logs'), '--name', 'other'], 1, /^clipforge eval: --checkpoint latest found no checkpoint in .*other\/checkpoints\n$/],
    [['--pretrained', join(tmp, 'no-such-folder')], 1, /^clipforge eval: --pretrained .*no-such-folder does not exist\n$/],
    [['--checkpoint', checkpoint, '--val-data', join(tmp, 'missing.csv')], 1, /^clipforge eval: --val-data .*missing\.csv does not exist\n$/],
    [[], 2, /^clipforge eval: no model given: pass --checkpoint PATH .* or --pretrained DIR/],
    [['--checkpoint', checkpoint, '--pretrained', tmp], 2, /--checkpoint and --pretrained both name a model; give one/],
    [['--checkpoint', checkpoint, '--model', 'tiny'], 2, /--model is for a --pretrained weights file/],
    [['--checkpoint', 'latest'], 2, /--checkpoint latest needs --name/],
    [['--checkpoint', checkpoint, '--chekpoint', 'x'], 2, /^clipforge eval: unknown flag --chekpoint \(did you mean --checkpoint\?\)\n/],
    [['--checkpoint', checkpoint, '--batch-size', '0'], 2, /^clipforge eval: --batch-size: expected an integer >= 1, got 0/],
    [['--checkpoint', checkpoint, '--dataset-type', 'synthetic', '--val-data', 'x'], 2, /--dataset-type: expected one of 'webdataset', 'csv', 'auto', got 'synthetic'/],
    [['--checkpoint', checkpoint, '--class-names', 'names.json'], 2, /--class-names needs --imagenet-val/],
    [[checkpoint], 2, /unexpected argument/],
  ];
  const corrupt = join(tmp, 'corrupt.safetensors');
  writeFileSync(corrupt, 'this is not a checkpoint at all');
  cases.push([['--checkpoint', corrupt], 1, /^clipforge eval: safetensors: .*corrupt\.safetensors: .*corrupt/]);
  const truncated = join(tmp, 'truncated.safetensors');
  writeFileSync(truncated, readFileSync(checkpoint).subarray(0, 4096));
  cases.push([['--checkpoint', truncated], 1, /^clipforge eval: .*truncated\.safetensors/]);
  const plain = join(tmp, 'plain.safetensors');
  const weight = zeros([2, 2]);
  writeSafetensors(plain, new Map([['visual.proj', weight]]));
  weight.dispose();
  cases.push([['--checkpoint', plain], 1, /^clipforge eval: loadTrainingCheckpoint: .*plain\.safetensors is not a clipforge training checkpoint/]);
  for (const [argv, code, re] of cases) {
    const r = await runCli(['eval', ...argv, '--workers', '0']);
    assert.is(r.code, code, `${argv.join(' ')}: exit ${r.code}, stderr ${r.err}`);
    assert.match(r.err, re, argv.join(' '));
    assert.is(r.out, '', `${argv.join(' ')}: nothing on stdout`);
  }
});

test('--help lists the flags; the command list names eval', async () => {
  const help = await runCli(['eval', '--help']);
  assert.is(help.code, 0);
  for (const f of ['--checkpoint', '--pretrained', '--model', '--logs', '--name', '--builtin-val', '--imagenet-val', '--class-names', '--val-data', '--dataset-type', '--csv-separator', '--csv-img-key', '--csv-caption-key', '--batch-size', '--workers', '--precision', '--output', '--json']) {
    assert.ok(new RegExp(`^  ${f}[ \\n]`, 'm').test(help.out), `${f} is in the help`);
  }
  assert.match((await runCli(['help'])).out, /\n  eval +zero-shot top-1\/top-5 and retrieval/);
});

test.run();
