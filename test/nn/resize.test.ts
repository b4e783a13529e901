// Position-embedding resizing against OpenCLIP's resize_pos_embed (antialiased bicubic over the
// patch grid, class row kept) and resize_text_pos_embed (linear), from fixtures made by
// test/fixtures/gen/clip_vit_fixture.py.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';

import { assertClose } from '../support/helpers.js';

const test = suite('nn.resize');
const data = cf.readSafetensors(join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'clip_vit_resize.safetensors')).tensors;
const values = (k: string): Float32Array => data.get(k)!.toArray() as Float32Array;

test('vision grid 4x4 -> larger, smaller and non-square grids equals OpenCLIP', () => {
  for (const [gh, gw] of [[6, 6], [2, 2], [3, 5], [7, 3]] as const) {
    const got = cf.resizeVisionPositions(values('vision.src'), 6, [gh, gw]);
    assertClose(got, values(`vision.${gh}x${gw}`), { rtol: 1e-5, atol: 1e-5, what: `${gh}x${gw}` });
  }
  assert.throws(() => cf.resizeVisionPositions(new Float32Array(6 * 6), 6, [2, 2]), /resizeVisionPositions: expected a table of 1 \+ g\*g rows of width 6, got 6 rows/);
});

test('text positions 8 -> 12, 5 and 3 equal OpenCLIP', () => {
  for (const n of [12, 5, 3]) assertClose(cf.resizeTextPositions(values('text.src'), 6, n), values(`text.${n}`), { rtol: 1e-5, atol: 1e-6, what: `${n}` });
});

test.run();
