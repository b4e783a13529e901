// The OpenCLIP models: sizes against OpenCLIP's published figures, key names, configs and
// their errors, pooling, patch dropout, sin-cos positions and gradient checkpointing.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, maxRelError, Rng } from '../support/helpers.js';

const test = suite('nn.models');
const rng = new Rng(11);
const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');

/** A small config for behaviour tests (image 16, patch 4: 16 patches; text context 8). */
function smallConfig(over: { vision?: Record<string, unknown>; text?: Record<string, unknown>; top?: Record<string, unknown> } = {}): cf.ModelConfig {
  return {
    embed_dim: 8,
    vision_cfg: { image_size: 16, layers: 2, width: 16, head_width: 8, patch_size: 4, ...over.vision },
    text_cfg: { context_length: 8, vocab_size: 50, width: 16, heads: 2, layers: 2, ...over.text },
    ...over.top,
  };
}

function textIds(rows: number[][]): cf.Tensor {
  return cf.fromArray(new Int32Array(rows.flat()), [rows.length, rows[0]!.length], { dtype: 'i32' });
}

test('parameter counts and FLOPs of full-size configs equal OpenCLIP\'s published figures', () => {
  // open_clip docs/model_profile.csv: mparams, image_mparams, text_mparams, gflops, image_gflops, text_gflops.
  const published: Record<string, number[]> = {
    'ViT-B-32': [151.28, 87.85, 63.43, 14.78, 8.82, 5.96],
    'ViT-B-32-256': [151.29, 87.86, 63.43, 17.46, 11.5, 5.96],
    'ViT-B-16': [149.62, 86.19, 63.43, 41.09, 35.13, 5.96],
    'ViT-L-14': [427.62, 303.97, 123.65, 175.33, 162.03, 13.3],
    'ViT-H-14': [986.11, 632.08, 354.03, 381.68, 334.59, 47.09],
    'ViT-g-14': [1366.68, 1012.65, 354.03, 581.15, 534.06, 47.09],
  };
  for (const [name, [total, visual, text, gflops, imageGflops, textGflops]] of Object.entries(published)) {
    const c = cf.countParameters(name);
    const f = cf.estimateFlops(name);
    const round2 = (v: number): number => Math.round(v * 100) / 100;
    assert.equal([round2(c.total / 1e6), round2(c.visual / 1e6), round2(c.text / 1e6)], [total, visual, text], `${name} parameters`);
    assert.equal([round2(f.total / 1e9), round2(f.image / 1e9), round2(f.text / 1e9)], [gflops, imageGflops, textGflops], `${name} GFLOPs`);
  }
  assert.is(cf.countParameters('ViT-B-32').total, 151277313, 'ViT-B-32 exact count');
});

test('countParameters equals numParameters() of constructed models', () => {
  const clipa = { no_ln_pre: true, pool_type: 'avg', final_ln_after_pool: true, pos_embed_type: 'sin_cos_2d' };
  const configs: [string, string | cf.ModelConfig][] = [
    ['tiny', 'tiny'],
    ['layer scale, mlp ratio, non-square, proj bias, logit bias', smallConfig({ vision: { ls_init_value: 0.1, mlp_ratio: 2.5, image_size: [16, 8] }, text: { proj_bias: true }, top: { init_logit_bias: -10 } })],
    ['CLIPA tower', smallConfig({ vision: clipa, text: { no_causal_mask: true, pool_type: 'last' } })],
  ];
  for (const [what, cfg] of configs) {
    const m = cf.createModel(cfg);
    const counts = cf.countParameters(cfg);
    assert.is(counts.total, m.numParameters(), what);
    const visual = m.namedParameters().filter(([k]) => k.startsWith('visual.')).reduce((s, [, t]) => s + t.size, 0);
    assert.is(counts.visual, visual, `${what}: visual`);
    m.dispose();
  }
});

test('listModels and getModelConfig', () => {
  const names = cf.listModels();
  for (const n of ['ViT-B-32', 'ViT-B-32-256', 'ViT-B-16', 'ViT-L-14', 'ViT-H-14', 'ViT-g-14', 'tiny']) assert.ok(names.includes(n), n);
  const cfg = cf.getModelConfig('ViT-H-14');
  assert.is(cfg.embed_dim, 1024);
  assert.is(cfg.vision_cfg.head_width, 80);
  cfg.embed_dim = 1;
  assert.is(cf.getModelConfig('ViT-H-14').embed_dim, 1024, 'a copy each time');
  assert.throws(() => cf.getModelConfig('ViT-Z-99'), /getModelConfig: unknown model 'ViT-Z-99' \(available: .*ViT-B-32/);
});

test('state-dict keys are OpenCLIP\'s', () => {
  const m = cf.createModel(smallConfig({ vision: { ls_init_value: 0.1 }, top: { init_logit_bias: -10 } }));
  const keys = [...m.stateDict().keys()];
  for (const k of [
    'logit_scale', 'logit_bias', 'visual.conv1.weight', 'visual.class_embedding', 'visual.positional_embedding', 'visual.ln_pre.weight',
    'visual.transformer.resblocks.0.ln_1.weight', 'visual.transformer.resblocks.0.attn.in_proj_weight', 'visual.transformer.resblocks.0.attn.in_proj_bias',
    'visual.transformer.resblocks.0.attn.out_proj.weight', 'visual.transformer.resblocks.1.mlp.c_fc.weight', 'visual.transformer.resblocks.1.mlp.c_proj.bias',
    'visual.transformer.resblocks.1.ls_1.gamma', 'visual.transformer.resblocks.1.ls_2.gamma', 'visual.ln_post.bias', 'visual.proj',
    'token_embedding.weight', 'positional_embedding', 'transformer.resblocks.1.attn.in_proj_weight', 'ln_final.weight', 'text_projection',
  ]) assert.ok(keys.includes(k), k);
  assert.not.ok(keys.some((k) => k.startsWith('text.')), 'the text tower is inline');
  assert.equal([...m.visual.stateDict().get('conv1.weight')!.shape], [16, 3, 4, 4]);
  m.dispose();
  const custom = cf.createModel(smallConfig({ text: { proj_bias: true }, top: { custom_text: true } }));
  const ck = [...custom.stateDict().keys()];
  assert.ok(ck.includes('text.token_embedding.weight') && ck.includes('text.text_projection.weight') && ck.includes('text.text_projection.bias'));
  custom.dispose();
});

test('config errors name the key and the problem', () => {
  assert.throws(() => cf.createModel(smallConfig({ vision: { patch_size: 5 } })), /VisionTransformer: expected vision_cfg.patch_size to divide image_size \[16, 16\], got 5/);
  assert.throws(() => cf.createModel(smallConfig({ vision: { pool_type: 'max' } })), /vision_cfg.pool_type, got 'max'/);
  assert.throws(() => cf.createModel(smallConfig({ vision: { attentional_pool: true } })), /vision_cfg.attentional_pool = true is not supported/);
  assert.throws(() => cf.createModel(smallConfig({ vision: { widht: 3 } })), /unknown key vision_cfg.widht/);
  assert.throws(() => cf.createModel(smallConfig({ vision: { layers: [3, 4, 6, 3] } })), /ModifiedResNet tower/);
  assert.throws(() => cf.createModel(smallConfig({ vision: { timm_model_name: 'convnext_base' } })), /no image tower for vision_cfg with timm_model_name "convnext_base"/);
  assert.throws(() => cf.createModel(smallConfig({ text: { heads: 3 } })), /expected text_cfg.heads to divide width 16, got 3/);
  assert.throws(() => cf.createModel({ embed_dim: 8 } as cf.ModelConfig), /createModel: expected an object for config.vision_cfg, got undefined/);
  assert.throws(() => cf.createModel('tiny', { seed: -1 }), /createModel: expected an integer in \[0, \d+\] for seed/);
  assert.throws(() => cf.countParameters(smallConfig({ text: { vocab_size: 0 } })), /countParameters: expected an integer in \[1, 1048576\] for text_cfg.vocab_size, got 0/);
});

test('forward errors name the argument and the expected shape', () => {
  const m = cf.createModel(smallConfig());
  cf.scope(() => {
    assert.throws(() => m.encodeImage(cf.zeros([2, 3, 8, 8])), /VisionTransformer.forward: expected images of shape \[B, 3, 16, 16\], got \[2, 3, 8, 8\]/);
    assert.throws(() => m.encodeImage(cf.zeros([2, 1, 16, 16])), /PatchEmbedding.forward: expected images of shape \[B, 3, H, W\]/);
    assert.throws(() => m.encodeImage(cf.zeros([2, 3, 16, 16], { dtype: 'i32' })), /expected dtype 'f32' or 'bf16' for images/);
    assert.throws(() => m.encodeText(cf.zeros([2, 9], { dtype: 'i32' })), /TextTransformer.forward: expected i32 token ids of shape \[B, L\] with 1 <= L <= 8, got i32 \[2, 9\]/);
    assert.throws(() => m.encodeText(cf.zeros([2, 4])), /expected i32 token ids/);
    assert.throws(() => m.encodeText(textIds([[1, 2, 99, 0]])), /embedding/);
    assert.throws(() => m.encodeText(textIds([[1, 2, 3, 0]]), { normalize: 'yes' as unknown as boolean }), /CLIP.encodeText: expected a boolean for normalize/);
  });
  m.dispose();
});

test('text pooling picks the end-of-text (largest id) position, or the first / last', () => {
  const ids = textIds([[49, 3, 7, 0, 0], [4, 5, 6, 49, 0], [49, 49, 1, 2, 3]]);
  const rowsOf = (pool: 'argmax' | 'first' | 'last'): number[] => cf.scope(() => Array.from(cf.pooledRows(ids, pool).toArray()));
  assert.equal(rowsOf('argmax'), [0, 5 + 3, 10 + 0], 'first position of the largest id, offset by b * L');
  assert.equal(rowsOf('first'), [0, 5, 10]);
  assert.equal(rowsOf('last'), [4, 9, 14]);
  ids.dispose();
  // In the causal tower the features depend only on the tokens up to the end-of-text token.
  const m = cf.createModel(smallConfig(), { seed: 2 });
  cf.scope(() => {
    const a = m.encodeText(textIds([[48, 5, 49, 0, 0, 0, 0, 0]]));
    const b = m.encodeText(textIds([[48, 5, 49, 7, 8, 9, 1, 2]]));
    const c = m.encodeText(textIds([[48, 6, 49, 0, 0, 0, 0, 0]]));
    assertClose(b.toArray(), a.toArray(), { rtol: 1e-6, atol: 1e-6, what: 'tokens after EOT do not matter' });
    assert.ok(maxRelError(c.toArray(), a.toArray()) > 1e-3, 'tokens before EOT do');
  });
  m.dispose();
});

test('patch dropout keeps the class token and max(1, floor(N (1 - p))) patches, in training only', () => {
  const m = cf.createModel(smallConfig({ vision: { patch_dropout: 0.5 } }), { seed: 3 });
  const visual = m.visual as cf.VisionTransformer;
  cf.scope(() => {
    const images = cf.fromArray(rng.array(2 * 3 * 16 * 16), [2, 3, 16, 16]);
    const tokens = visual.embed(images);
    const kept = visual.dropPatches(tokens);
    assert.equal([...kept.shape], [2, 1 + 8, 16], '16 patches at p = 0.5 keep 8, plus the class token');
    const t = tokens.toArray(), k = kept.toArray();
    for (let b = 0; b < 2; b++) {
      assertClose(k.subarray(b * 9 * 16, b * 9 * 16 + 16), t.subarray(b * 17 * 16, b * 17 * 16 + 16), { rtol: 0, atol: 0, what: 'class token first' });
      const seen = new Set<number>();
      for (let i = 1; i < 9; i++) {
        const row = Array.from(k.subarray((b * 9 + i) * 16, (b * 9 + i + 1) * 16));
        const match = [...Array(16).keys()].find((j) => row.every((v, d) => v === t[(b * 17 + 1 + j) * 16 + d]));
        assert.ok(match !== undefined && !seen.has(match), 'each kept token is a distinct patch of its own sample');
        seen.add(match!);
      }
    }
    const f = visual.forward(images);
    assert.equal([...f.shape], [2, 8]);
    m.eval();
    assert.is(visual.dropPatches(tokens), tokens, 'identity in eval mode');
    m.train();
  });
  const idx = cf.samplePatchIndices(3, 10, 1, new cf.Generator(1));
  assert.equal(idx.length, 3);
  assert.ok(Array.from(idx).every((i) => i >= 0 && i < 10));
  const again = cf.samplePatchIndices(3, 10, 1, new cf.Generator(1));
  assert.equal(Array.from(again), Array.from(idx), 'the same generator state gives the same patches');
  const counts = new Array<number>(10).fill(0);
  for (const i of cf.samplePatchIndices(2000, 10, 3, new cf.Generator(2))) counts[i]!++;
  // Each patch is kept with probability 3/10: 600 of 2000 times, standard deviation about 20.
  assert.ok(counts.every((c) => Math.abs(c - 600) < 100), `kept counts per patch ${counts}`);
  // The gradient reaches the kept tokens only.
  const x = cf.fromArray(rng.array(1 * 17 * 16), [1, 17, 16], { requiresGrad: true });
  const y = cf.scope(() => cf.sum(visual.dropPatches(x)));
  y.backward();
  const g = x.grad!.toArray();
  let rowsWithGrad = 0;
  for (let r = 0; r < 17; r++) if (g.subarray(r * 16, r * 16 + 16).every((v) => v === 1)) rowsWithGrad++;
  assert.is(rowsWithGrad, 9);
  assert.ok(g.subarray(0, 16).every((v) => v === 1), 'class token gets its gradient');
  y.dispose();
  x.dispose();
  m.dispose();
});

test('sin-cos 2-D positions equal OpenCLIP\'s and stay frozen', () => {
  const data = cf.readSafetensors(join(fixtures, 'clip_vit_clipa_siglip.safetensors')).tensors;
  const summary = JSON.parse(readFileSync(join(fixtures, 'clip_vit_fixture.json'), 'utf8')) as Record<string, { config: cf.ModelConfig }>;
  const m = cf.createModel(summary.clipa_siglip!.config);
  const pos = m.stateDict().get('visual.positional_embedding')!;
  assertClose(pos.toArray(), data.get('param.visual.positional_embedding')!.toArray(), { rtol: 1e-6, atol: 1e-6 });
  assert.not.ok(pos.requiresGrad);
  for (const t of data.values()) t.dispose();
  m.dispose();
});

test('gradient checkpointing gives the same loss and gradients', () => {
  const cfg = smallConfig({ vision: { ls_init_value: 0.5 } });
  const run = (checkpointing: boolean): { loss: number; grads: Map<string, Float32Array> } => {
    const m = cf.createModel(cfg, { seed: 4 });
    m.setGradCheckpointing(checkpointing);
    assert.is((m.visual as cf.VisionTransformer).transformer.gradCheckpointing, checkpointing);
    const loss = cf.scope(() => {
      const local = new Rng(5);
      const images = cf.fromArray(local.array(3 * 3 * 16 * 16), [3, 3, 16, 16]);
      const ids = textIds([[48, 1, 49, 0, 0, 0, 0, 0], [48, 2, 3, 49, 0, 0, 0, 0], [48, 4, 5, 6, 7, 49, 0, 0]]);
      const out = m.forward(images, ids);
      return cf.clipLoss(out.imageFeatures, out.textFeatures, out.logitScale);
    });
    loss.backward();
    const grads = new Map(m.namedParameters().map(([k, t]) => [k, t.grad!.toArray() as Float32Array]));
    const value = loss.item();
    loss.dispose();
    m.dispose();
    return { loss: value, grads };
  };
  const live0 = cf.liveTensorCount();
  const plain = run(false);
  const recomputed = run(true);
  assert.is(cf.liveTensorCount(), live0, 'no tensor leaks');
  assert.is(recomputed.loss, plain.loss);
  assert.is(recomputed.grads.size, plain.grads.size);
  for (const [k, g] of plain.grads) assertClose(recomputed.grads.get(k)!, g, { rtol: 1e-5, atol: 1e-7, what: k });
});

test('createModel is deterministic per seed and follows OpenCLIP\'s init', () => {
  const cfg = cf.getModelConfig('tiny');
  cfg.text_cfg.vocab_size = 2000;
  const a = cf.createModel(cfg, { seed: 9 });
  const b = cf.createModel(cfg, { seed: 9 });
  const c = cf.createModel(cfg, { seed: 10 });
  const w = (m: cf.CLIP, k: string): Float32Array => m.stateDict().get(k)!.toArray() as Float32Array;
  const key = 'transformer.resblocks.0.attn.in_proj_weight';
  assert.equal(Array.from(w(a, key)), Array.from(w(b, key)));
  assert.ok(maxRelError(w(a, key), w(c, key)) > 0.1);
  const std = (v: Float32Array): number => Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
  const near = (v: number, want: number, what: string): void => assert.ok(Math.abs(v - want) < 0.1 * want, `${what}: std ${v}, expected ${want}`);
  near(std(w(a, 'token_embedding.weight')), 0.02, 'token_embedding');
  near(std(w(a, 'positional_embedding')), 0.01, 'text positions');
  near(std(w(a, key)), 64 ** -0.5, 'text attn in_proj (attn_std)');
  near(std(w(a, 'transformer.resblocks.1.mlp.c_proj.weight')), 64 ** -0.5 * 4 ** -0.5, 'text c_proj (proj_std)');
  near(std(w(a, 'transformer.resblocks.0.mlp.c_fc.weight')), 128 ** -0.5, 'text c_fc (fc_std)');
  near(std(w(a, 'text_projection')), 64 ** -0.5, 'text_projection');
  near(std(w(a, 'visual.positional_embedding')), 64 ** -0.5, 'visual positions (width^-0.5)');
  near(std(w(a, 'visual.transformer.resblocks.0.attn.in_proj_weight')), Math.sqrt(2 / (64 + 192)), 'visual in_proj (xavier)');
  assert.ok(w(a, 'visual.transformer.resblocks.0.attn.in_proj_bias').every((v) => v === 0));
  assert.ok(Math.abs(w(a, 'logit_scale')[0]! - Math.log(1 / 0.07)) < 1e-6);
  const s = cf.createModel(smallConfig({ top: { init_logit_scale: Math.log(10), init_logit_bias: -10 } }));
  assert.ok(Math.abs(s.logitScale.item() - Math.log(10)) < 1e-6 && s.logitBias!.item() === -10);
  for (const m of [a, b, c, s]) m.dispose();
});

test('inference frees every intermediate as it goes: outside any scope only the features remain', () => {
  const m = cf.createModel(smallConfig({ vision: { pool_type: 'avg' } }), { seed: 6 }).eval();
  const images = cf.fromArray(rng.array(2 * 3 * 16 * 16), [2, 3, 16, 16]);
  const ids = textIds([[48, 1, 49, 0, 0, 0, 0, 0], [48, 2, 3, 49, 0, 0, 0, 0]]);
  const live = cf.liveTensorCount();
  const bytes = cf.memoryStats().cpu.allocatedBytes;
  const img = cf.noGrad(() => m.encodeImage(images, { normalize: true }));
  const txt = cf.noGrad(() => m.encodeText(ids));
  assert.is(cf.liveTensorCount(), live + 2, 'only the two results are alive');
  assert.is(cf.memoryStats().cpu.allocatedBytes, bytes + 2 * 2 * 8 * 4, 'and only their memory is held');
  for (const t of [img, txt, images, ids]) t.dispose();
  m.dispose();
});

test('a bf16 model gives the f32 model\'s features to bf16 precision and trains', () => {
  const cfg = smallConfig();
  const f32 = cf.createModel(cfg, { seed: 7 });
  const bf16 = cf.createModel(cfg, { seed: 7, dtype: 'bf16' });
  assert.ok(bf16.parameters().every((p) => p.dtype === 'bf16'));
  bf16.loadStateDict(f32.stateDict());
  const ids = textIds([[48, 1, 49, 0, 0, 0, 0, 0], [48, 2, 3, 49, 0, 0, 0, 0]]);
  const loss = cf.scope(() => {
    const x = cf.fromArray(rng.array(2 * 3 * 16 * 16), [2, 3, 16, 16]);
    const a = f32.encodeImage(x, { normalize: true });
    const b = bf16.encodeImage(cf.cast(x, 'bf16'), { normalize: true });
    assertClose(b.toArray(), a.toArray(), { rtol: 5e-2, atol: 3e-2, what: 'bf16 image features' });
    const out = bf16.forward(cf.cast(x, 'bf16'), ids);
    return cf.clipLoss(out.imageFeatures, out.textFeatures, out.logitScale);
  });
  loss.backward();
  assert.ok(bf16.parameters().every((p) => p.grad !== null && p.grad.dtype === 'bf16'));
  for (const t of [loss, ids]) t.dispose();
  f32.dispose();
  bf16.dispose();
});

test.run();
