// Parity with OpenCLIP itself: test/fixtures/gen/clip_vit_fixture.py runs open_clip.model.CLIP
// (float64) on tiny configs and saves its weights, inputs, features, loss and gradients. We
// load the weights by their OpenCLIP names (strictly: the key sets must be identical), run the
// same inputs, and compare in f32.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { devices, maxRelError } from '../support/helpers.js';

const test = suite('nn.clip_parity');
const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const summary = JSON.parse(readFileSync(join(fixtures, 'clip_vit_fixture.json'), 'utf8')) as Record<string, { config: cf.ModelConfig; loss: number; num_parameters: number }>;

function prefixed(all: Map<string, cf.Tensor>, prefix: string): Map<string, cf.Tensor> {
  const out = new Map<string, cf.Tensor>();
  for (const [k, t] of all) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), t);
  return out;
}

/** Largest relative error, entries below 1% of the largest magnitude compared against that 1%. */
function gradError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  return maxRelError(actual, expected, Math.max(1e-3, 0.01 * scale));
}

for (const variant of ['clip', 'clipa_siglip']) for (const device of devices()) {
  test(`${variant} on ${device}: features, loss and gradients match OpenCLIP`, () => {
    const { config, loss: wantLoss, num_parameters } = summary[variant]!;
    const data = cf.readSafetensors(join(fixtures, `clip_vit_${variant}.safetensors`)).tensors;
    const model = cf.createModel(config, { seed: 5, device });
    assert.is(model.numParameters(), num_parameters, 'parameter count equals OpenCLIP');
    assert.is(cf.countParameters(config).total, num_parameters, 'analytic count equals OpenCLIP');
    const result = model.loadStateDict(prefixed(data, 'param.'));
    assert.equal(result, { missing: [], unexpected: [] });
    assert.is(model.device, device);
    const images = cf.to(data.get('input.images')!, device);
    const ids = cf.to(data.get('input.ids')!, device);
    const loss = cf.scope(() => {
      const img = model.encodeImage(images);
      const txt = model.encodeText(ids);
      const imgErr = maxRelError(img.toArray(), data.get('out.image_features')!.toArray());
      const txtErr = maxRelError(txt.toArray(), data.get('out.text_features')!.toArray());
      assert.ok(imgErr < 1e-4, `image features: max relative error ${imgErr}`);
      assert.ok(txtErr < 1e-4, `text features: max relative error ${txtErr}`);
      const a = cf.l2Normalize(img);
      const b = cf.l2Normalize(txt);
      return model.logitBias ? cf.siglipLoss(a, b, model.logitScale, model.logitBias) : cf.clipLoss(a, b, model.logitScale);
    });
    assert.ok(Math.abs(loss.item() - wantLoss) <= 1e-4 * Math.abs(wantLoss), `loss ${loss.item()} vs OpenCLIP ${wantLoss}`);
    loss.backward();
    loss.dispose();
    const params = new Map(model.namedParameters());
    const grads = prefixed(data, 'grad.');
    assert.ok(grads.size >= 10, 'the fixture holds gradients');
    for (const [key, want] of grads) {
      const g = params.get(key)?.grad;
      assert.ok(g, `${key} has a gradient`);
      const err = gradError(g!.toArray(), want.toArray());
      assert.ok(err < 1e-3, `gradient of ${key}: max relative error ${err}`);
    }
    for (const t of [...data.values(), images, ids]) t.dispose();
    model.dispose();
  });
}

test.run();
