// `clipforge info --model NAME`: parameter counts and FLOPs of a model config, and its errors.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { modelInfoText } from '../../lib/cli/info.js';
import { runCli as capture } from '../support/cli.js';

const test = suite('cli.info --model');

test('prints total, visual and text parameters and FLOPs per image and text', async () => {
  const text = modelInfoText('ViT-L-14');
  assert.match(text, /parameters: 427\.62 M total, 303\.97 M visual, 123\.65 M text/);
  assert.match(text, /forward: 162\.03 GFLOPs per image, 13\.30 GFLOPs per text, 175\.33 GFLOPs per pair/);
  const r = await capture(['info', '--model', 'ViT-B-16']);
  assert.is(r.code, 0);
  assert.match(r.out, /model ViT-B-16: embed_dim 512, image 224, text context 77\nparameters: 149\.62 M total/);
});

test('unknown models and missing names are errors with exit code 2', async () => {
  const unknown = await capture(['info', '--model', 'ViT-Q-1']);
  assert.is(unknown.code, 2);
  assert.match(unknown.err, /clipforge info: getModelConfig: unknown model 'ViT-Q-1' \(available: .*tiny/);
  const missing = await capture(['info', '--model']);
  assert.is(missing.code, 2);
  assert.match(missing.err, /expected --model NAME, got no name/);
  assert.is((await capture(['info', '--model', 'tiny', 'x'])).code, 2);
});

test.run();
