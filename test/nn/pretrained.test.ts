// loadPretrained on an OpenCLIP-style folder made from the OpenCLIP parity fixture: the same
// features as OpenCLIP, building at another image size / context length with resized
// positions, and clear errors for incomplete folders and mismatched weights.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';

import { assertClose, maxRelError } from '../support/helpers.js';

const test = suite('nn.pretrained');
const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const summary = JSON.parse(readFileSync(join(fixtures, 'clip_vit_fixture.json'), 'utf8')) as Record<string, { config: cf.ModelConfig }>;
const data = cf.readSafetensors(join(fixtures, 'clip_vit_clip.safetensors')).tensors;
const weights = new Map([...data].filter(([k]) => k.startsWith('param.')).map(([k, t]) => [k.slice(6), t]));
const dir = mkdtempSync(join(tmpdir(), 'clipforge-pretrained-'));
const preprocess = { size: [8, 8], mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711] };
writeFileSync(join(dir, 'open_clip_config.json'), JSON.stringify({ model_cfg: summary.clip!.config, preprocess_cfg: preprocess }));
cf.writeSafetensors(join(dir, 'open_clip_model.safetensors'), weights);

test('loads an OpenCLIP folder: same features as OpenCLIP, eval mode, config and preprocessing read', () => {
  const model = cf.loadPretrained(dir);
  assert.not.ok(model.training);
  assert.equal(model.config, summary.clip!.config);
  assert.equal(cf.readOpenClipConfig(dir).preprocessCfg, preprocess);
  cf.scope(() => {
    const img = model.encodeImage(data.get('input.images')!);
    const txt = model.encodeText(data.get('input.ids')!);
    assert.ok(maxRelError(img.toArray(), data.get('out.image_features')!.toArray()) < 1e-4);
    assert.ok(maxRelError(txt.toArray(), data.get('out.text_features')!.toArray()) < 1e-4);
  });
  model.dispose();
});

test('falls back to open_clip_pytorch_model.bin, read by content', () => {
  const other = mkdtempSync(join(tmpdir(), 'clipforge-bin-'));
  writeFileSync(join(other, 'open_clip_config.json'), JSON.stringify({ model_cfg: summary.clip!.config }));
  writeFileSync(join(other, 'open_clip_pytorch_model.bin'), readFileSync(join(dir, 'open_clip_model.safetensors')));
  const model = cf.loadPretrained(other);
  assertClose(model.stateDict().get('visual.proj')!.toArray(), weights.get('visual.proj')!.toArray(), { rtol: 0, atol: 0 });
  model.dispose();
  rmSync(other, { recursive: true });
});

test('loadPretrainedFile: a config and a weights file give the folder model; a missing file is named', () => {
  const fromFolder = cf.loadPretrained(dir);
  const fromFile = cf.loadPretrainedFile(summary.clip!.config, join(dir, 'open_clip_model.safetensors'));
  assert.not.ok(fromFile.training);
  for (const [k, t] of fromFolder.stateDict()) assertClose(fromFile.stateDict().get(k)!.toArray(), t.toArray(), { rtol: 0, atol: 0 });
  fromFolder.dispose();
  fromFile.dispose();
  assert.throws(() => cf.loadPretrainedFile(summary.clip!.config, join(dir, 'nothing.safetensors')), /loadPretrainedFile: expected a weights file, but .*nothing\.safetensors does not exist/);
});

test('builds at another image size and context length with resized position embeddings', () => {
  const model = cf.loadPretrained(dir, { imageSize: 12, contextLength: 6 });
  const sd = model.stateDict();
  const vis = sd.get('visual.positional_embedding')!;
  assert.equal([...vis.shape], [1 + 3 * 3, 16]);
  assertClose(vis.toArray(), cf.resizeVisionPositions(weights.get('visual.positional_embedding')!.toArray() as Float32Array, 16, [3, 3]), { rtol: 1e-6, atol: 1e-7 });
  const txt = sd.get('positional_embedding')!;
  assert.equal([...txt.shape], [6, 16]);
  assertClose(txt.toArray(), cf.resizeTextPositions(weights.get('positional_embedding')!.toArray() as Float32Array, 16, 6), { rtol: 1e-6, atol: 1e-7 });
  cf.scope(() => assert.equal([...model.encodeImage(cf.zeros([1, 3, 12, 12])).shape], [1, 8]));
  model.dispose();
});

test('incomplete folders and mismatched weights give clear errors', () => {
  const empty = mkdtempSync(join(tmpdir(), 'clipforge-empty-'));
  assert.throws(() => cf.loadPretrained(empty), /readOpenClipConfig: expected .*open_clip_config.json \(an OpenCLIP model folder\), but it does not exist/);
  writeFileSync(join(empty, 'open_clip_config.json'), '{"model_cfg": ');
  assert.throws(() => cf.loadPretrained(empty), /readOpenClipConfig: .*open_clip_config.json is not valid JSON/);
  writeFileSync(join(empty, 'open_clip_config.json'), JSON.stringify({ model_cfg: summary.clip!.config }));
  assert.throws(() => cf.loadPretrained(empty), /loadPretrained: expected the weights in .*open_clip_model.safetensors or .*open_clip_pytorch_model.bin, but neither exists/);
  writeFileSync(join(empty, 'open_clip_pytorch_model.bin'), 'not a checkpoint');
  assert.throws(() => cf.loadPretrained(empty), /readStateDict: .*open_clip_pytorch_model.bin: not a checkpoint format/);
  const partial = new Map(weights);
  partial.delete('visual.proj');
  cf.writeSafetensors(join(empty, 'open_clip_model.safetensors'), partial);
  assert.throws(() => cf.loadPretrained(empty), /CLIP.loadStateDict: the state dict does not fit the model:\n  missing keys \(1\): visual.proj/);
  const lenient = cf.loadPretrained(empty, { strict: false });
  assert.ok(lenient.stateDict().get('visual.proj')!.toArray().every(Number.isFinite), 'a non-strict load keeps initialized values');
  lenient.dispose();
  assert.throws(() => cf.loadPretrained(dir, { imageSize: 0 }), /loadPretrained: expected an integer in \[1, Infinity\] for imageSize, got 0/);
  rmSync(empty, { recursive: true });
});

test.after(() => {
  rmSync(dir, { recursive: true });
  for (const t of data.values()) t.dispose();
});

test.run();
