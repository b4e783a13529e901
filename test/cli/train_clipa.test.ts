// `clipforge train --pretrained` and CLIPA's two phases: pre-training at a low resolution on
// short, syntax-reduced texts, then fine-tuning from that checkpoint at the full resolution and
// context, with the position embeddings resized and every other weight kept; an OpenCLIP
// folder and a plain weights file as the starting point; the errors.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readSafetensors, writeSafetensors } from '../../lib/io/safetensors.js';
import { getModelConfig } from '../../lib/nn/factory.js';
import { sinCos2dPositionTable } from '../../lib/nn/vit.js';
import { fromArray, type Tensor } from '../../lib/tensor/tensor.js';
import { readCheckpointInfo } from '../../lib/train/checkpoint.js';
import { runCli } from '../support/cli.js';

const test = suite('cli.train.clipa');
let tmp = '';
test.before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'clipforge-clipa-'));
});
test.after(() => rmSync(tmp, { recursive: true, force: true }));

const common = ['--batch-size', '32', '--train-num-samples', '256', '--workers', '0', '--zeroshot-frequency', '0', '--warmup', '2'];
const checkpointOf = (name: string): string => join(tmp, name, 'checkpoints', 'epoch_1.safetensors');

/** The model weights of a training checkpoint, as flat arrays by OpenCLIP name. */
function weightsOf(path: string): Map<string, { shape: number[]; values: Float32Array }> {
  const { tensors } = readSafetensors(path);
  const out = new Map<string, { shape: number[]; values: Float32Array }>();
  for (const [k, t] of tensors as Map<string, Tensor>) {
    if (k.startsWith('state_dict.')) out.set(k.slice('state_dict.'.length), { shape: [...t.shape], values: t.toArray() as Float32Array });
    t.dispose();
  }
  return out;
}

test('low-resolution pre-training, then a fine-tune from its checkpoint at full size keeps every weight but the resized positions', async () => {
  const pre = await runCli(['train', '--model', 'tiny-clipa', '--force-image-size', '16', '--force-context-length', '8', '--text-reduction', 'syntax', ...common, '--logs', tmp, '--name', 'pre']);
  assert.is(pre.code, 0, pre.err);
  const preInfo = readCheckpointInfo(checkpointOf('pre'));
  assert.is(preInfo.modelConfig.vision_cfg.image_size, 16);
  assert.is(preInfo.modelConfig.text_cfg.context_length, 8);

  // lr 0: the fine-tune's checkpoint holds the weights it started from.
  const ft = await runCli(['train', '--pretrained', checkpointOf('pre'), '--force-image-size', '32', '--force-context-length', '16', '--lr', '0', ...common, '--logs', tmp, '--name', 'ft']);
  assert.is(ft.code, 0, ft.err);
  assert.match(ft.out + ft.err, `model from ${checkpointOf('pre')}`);
  const ftInfo = readCheckpointInfo(checkpointOf('ft'));
  assert.is(ftInfo.modelConfig.vision_cfg.image_size, 32);
  assert.is(ftInfo.modelConfig.text_cfg.context_length, 16);
  assert.is(ftInfo.modelConfig.vision_cfg.pos_embed_type, 'sin_cos_2d', 'the config of the pre-training checkpoint is kept');

  const before = weightsOf(checkpointOf('pre'));
  const after = weightsOf(checkpointOf('ft'));
  assert.equal([...after.keys()].sort(), [...before.keys()].sort());
  const textPositions = after.get('positional_embedding')!;
  assert.equal(textPositions.shape, [16, 64], 'text positions resized from 8 to 16');
  assert.equal(before.get('positional_embedding')!.shape, [8, 64]);
  // The fixed sin-cos grid is the one built for 4 x 4 patches, not the 2 x 2 table resized.
  const grid = after.get('visual.positional_embedding')!;
  assert.equal(grid.shape, [17, 64]);
  const table = sinCos2dPositionTable(64, 4);
  assert.ok(grid.values.every((x, i) => Math.abs(x - table[i]!) < 1e-6), 'the sin-cos table of the new grid');
  for (const [k, w] of after) {
    if (k.endsWith('positional_embedding')) continue;
    assert.equal(w.shape, before.get(k)!.shape, `${k}: shape`);
    assert.ok(w.values.every((x, i) => x === before.get(k)!.values[i]), `${k}: the pre-trained values`);
  }
});

test('--pretrained takes an OpenCLIP folder and a plain weights file with --model; a model that does not fit is named', async () => {
  const base = await runCli(['train', '--model', 'tiny-clipa', ...common, '--logs', tmp, '--name', 'base']);
  assert.is(base.code, 0, base.err);
  const weights = weightsOf(checkpointOf('base'));
  const folder = join(tmp, 'openclip');
  mkdirSync(folder);
  const file = join(folder, 'open_clip_model.safetensors');
  writeSafetensors(file, new Map([...weights].map(([k, w]) => [k, fromArray(w.values, w.shape)])));
  writeFileSync(join(folder, 'open_clip_config.json'), JSON.stringify({ model_cfg: getModelConfig('tiny-clipa') }));
  for (const [name, source] of [['from-folder', [folder]], ['from-file', [file, '--model', 'tiny-clipa']]] as const) {
    const r = await runCli(['train', '--pretrained', ...source, '--lr', '0', ...common, '--logs', tmp, '--name', name]);
    assert.is(r.code, 0, r.err);
    for (const [k, w] of weightsOf(checkpointOf(name))) assert.ok(w.values.every((x, i) => x === weights.get(k)!.values[i]), `${name}: ${k} as loaded`);
  }
  const wrong = await runCli(['train', '--pretrained', file, '--model', 'tiny-builtin', ...common, '--logs', tmp, '--name', 'wrong']);
  assert.is(wrong.code, 1);
  assert.match(wrong.err, /clipforge train: CLIP\.loadStateDict: the state dict does not fit the model/);
});

test('--pretrained and --text-reduction: bad values are clear errors', async () => {
  const missing = await runCli(['train', '--pretrained', join(tmp, 'nope.safetensors'), ...common, '--logs', tmp, '--name', 'x']);
  assert.is(missing.code, 1);
  assert.match(missing.err, `--pretrained ${join(tmp, 'nope.safetensors')} does not exist`);
  const reduction = await runCli(['train', '--text-reduction', 'nouns', ...common, '--logs', tmp, '--name', 'y']);
  assert.is.not(reduction.code, 0);
  assert.match(reduction.err, /--text-reduction: expected one of 'truncate', 'random', 'shuffle', 'block', 'simple', 'syntax', got 'nouns'/);
  const context = await runCli(['train', '--force-context-length', '1', ...common, '--logs', tmp, '--name', 'z']);
  assert.is.not(context.code, 0);
  assert.match(context.err, /--force-context-length/);
});

test.run();
