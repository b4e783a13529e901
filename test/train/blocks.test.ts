// The training building blocks composed into the loop the CLI will run: OpenCLIP's parameter
// groups, AdamW, cosine warmup, grad clipping, the logit-scale clamp, the NaN guard, the
// logger and the retrieval metrics, on a two-tower linear model of paired features.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { Rng } from '../support/helpers.js';

const test = suite('training blocks');

test('a contrastive model trained with the blocks learns to retrieve its pairs', () => {
  const rng = new Rng(11);
  const [n, din, dout, steps] = [32, 12, 8, 80];
  const images = rng.array(n * din);
  const mix = rng.array(din * din, 0.5);
  const texts = new Float32Array(n * din);
  for (let i = 0; i < n; i++) for (let j = 0; j < din; j++) {
    let s = 0;
    for (let k = 0; k < din; k++) s += images[i * din + k]! * mix[k * din + j]!;
    texts[i * din + j] = s + 0.05 * rng.normal();
  }
  const param = (name: string, shape: number[], scale: number): [string, cf.Tensor] => {
    const t = cf.fromArray(rng.array(shape.reduce((a, b) => a * b, 1), scale), shape, { requiresGrad: true });
    t.name = name;
    return [name, t];
  };
  const named = [param('visual.proj', [din, dout], 0.3), param('visual.bias', [dout], 0), param('text_projection', [din, dout], 0.3), param('text.ln_final.bias', [dout], 0)];
  const logitScale = cf.initLogitScale(Math.log(1 / 0.07));
  named.push(['logit_scale', logitScale]);
  const weights = Object.fromEntries(named);
  const groups = cf.paramGroups(named, 0.1);
  assert.equal(groups[0]!.params.map((p) => p.name), ['visual.bias', 'text.ln_final.bias', 'logit_scale']);
  const opt = new cf.AdamW(groups, { lr: 0.05, betas: [0.9, 0.98], eps: 1e-6 });
  const lrAt = cf.cosineLr(0.05, 5, steps);
  const dir = mkdtempSync(join(tmpdir(), 'clipforge-blocks-'));
  const logger = new cf.TrainLogger({ logDir: join(dir, 'run'), totalSteps: steps, logEveryNSteps: 20, stream: { write: () => 0 } });
  const features = (): [cf.Tensor, cf.Tensor] => [
    cf.l2Normalize(cf.add(cf.matmul(cf.fromArray(images, [n, din]), weights['visual.proj']!), weights['visual.bias']!)),
    cf.l2Normalize(cf.add(cf.matmul(cf.fromArray(texts, [n, din]), weights['text_projection']!), weights['text.ln_final.bias']!)),
  ];
  const before = cf.scope(() => cf.noGrad(() => cf.retrievalMetrics(...features())));
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    const loss = cf.scope(() => {
      const l = cf.clipLoss(...features(), logitScale);
      l.backward();
      return cf.checkFiniteLoss(l, step);
    });
    losses.push(loss);
    cf.scope(() => cf.clipGradNorm(groups.flatMap((g) => g.params), 1.0));
    opt.step(lrAt(step));
    opt.zeroGrad();
    cf.clampLogitScale(logitScale);
    logger.step({ step: step + 1, epoch: 0, samples: n, lr: lrAt(step), loss, logitScale: Math.exp(logitScale.item()) });
  }
  const after = cf.scope(() => cf.noGrad(() => cf.retrievalMetrics(...features())));
  assert.ok(losses[steps - 1]! < 0.5 * losses[0]!, `loss ${losses[0]} -> ${losses[steps - 1]}`);
  assert.ok(after['image_to_text_R@1'] >= 0.9 && after['image_to_text_R@1'] > before['image_to_text_R@1'], `R@1 ${before['image_to_text_R@1']} -> ${after['image_to_text_R@1']}`);
  assert.ok(logitScale.item() <= Math.log(100) + 1e-6);
  assert.is(logger.close(), join(dir, 'run', 'loss.png'));
  assert.equal(readFileSync(join(dir, 'run', 'out.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step), [20, 40, 60, 80]);
  opt.dispose();
  for (const [, t] of named) t.dispose();
  rmSync(dir, { recursive: true, force: true });
});

test.run();
