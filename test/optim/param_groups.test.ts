import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';

const test = suite('param_groups');

test("OpenCLIP's exclude rule splits a CLIP model's parameters", () => {
  const named: [string, cf.Tensor][] = [
    ['logit_scale', [] as number[]],
    ['positional_embedding', [77, 8]],
    ['token_embedding.weight', [100, 8]],
    ['text_projection', [8, 8]],
    ['ln_final.weight', [8]],
    ['ln_final.bias', [8]],
    ['transformer.resblocks.0.attn.in_proj_weight', [24, 8]],
    ['transformer.resblocks.0.attn.in_proj_bias', [24]],
    ['transformer.resblocks.0.ln_1.weight', [8]],
    ['visual.class_embedding', [8]],
    ['visual.conv1.weight', [8, 3, 2, 2]],
    ['visual.stages.0.bn.weight', [4, 4]],
    ['visual.proj', [8, 8]],
  ].map(([name, shape]) => {
    const t = cf.zeros(shape as number[], { requiresGrad: true });
    t.name = name as string;
    return [name as string, t];
  });
  const frozen = cf.zeros([4, 4]);
  named.push(['visual.frozen.weight', frozen]);
  const [noDecay, decay] = cf.paramGroups(named, 0.2);
  assert.is(noDecay!.weightDecay, 0);
  assert.is(decay!.weightDecay, 0.2);
  assert.equal(noDecay!.params.map((p) => p.name), [
    'logit_scale', 'ln_final.weight', 'ln_final.bias', 'transformer.resblocks.0.attn.in_proj_bias',
    'transformer.resblocks.0.ln_1.weight', 'visual.class_embedding', 'visual.stages.0.bn.weight',
  ]);
  assert.equal(decay!.params.map((p) => p.name), [
    'positional_embedding', 'token_embedding.weight', 'text_projection', 'transformer.resblocks.0.attn.in_proj_weight',
    'visual.conv1.weight', 'visual.proj',
  ]);
  // A 2-D "bn" weight is excluded by its name alone; a frozen parameter joins no group.
  assert.ok(cf.excludedFromWeightDecay('x.bn.weight', cf.zeros([2, 2])));
  assert.not.ok(cf.excludedFromWeightDecay('x.proj', cf.zeros([2, 2])));
  // The groups feed AdamW directly.
  const opt = new cf.AdamW(cf.paramGroups(named, 0.1), { lr: 1e-3 });
  assert.equal(opt.paramGroups.map((g) => g.weightDecay), [0, 0.1]);
  for (const [, t] of named) t.dispose();
});

test('bad arguments', () => {
  assert.throws(() => cf.paramGroups([], -1), /paramGroups: expected a finite number >= 0 for weightDecay, got -1/);
  assert.throws(() => cf.paramGroups(null as never, 0.1), /paramGroups: expected an iterable/);
  assert.throws(() => cf.paramGroups([['a', 3 as never]], 0.1), /paramGroups: expected a Tensor for the parameter a/);
});

test.run();
