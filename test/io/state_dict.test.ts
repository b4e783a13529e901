import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { detectCheckpointFormat, readStateDict, writeSafetensors } from '../../lib/io/index.js';
import { assertTensorIs, expected, FIXTURES, tempDir } from '../support/io_fixtures.js';

const test = suite('state_dict');

test('dispatches on content: safetensors and torch zip, whatever the extension', () => {
  const { dir, remove } = tempDir();
  try {
    cf.scope(() => {
      for (const file of ['mixed.safetensors', 'state_dict.pt']) {
        const tensors = readStateDict(join(FIXTURES, file));
        const want = expected.files[file]!;
        assert.equal([...tensors.keys()].sort(), Object.keys(want).sort(), file);
        for (const [name, e] of Object.entries(want)) assertTensorIs(tensors.get(name), e, `${file} ${name}`);
      }
      const path = join(dir, 'model.bin');
      writeSafetensors(path, { w: cf.fromArray([1, 2]) });
      assert.equal([...readStateDict(path).get('w')!.toArray()], [1, 2]);
    });
  } finally {
    remove();
  }
});

test('unknown and legacy formats are errors naming the file', () => {
  const { dir, remove } = tempDir();
  try {
    const junk = join(dir, 'junk.pt');
    writeFileSync(junk, 'hello world, not a checkpoint');
    assert.throws(() => readStateDict(junk), /readStateDict: .*junk\.pt: not a checkpoint format clipforge reads/);
    const tiny = join(dir, 'tiny.pt');
    writeFileSync(tiny, 'PK');
    assert.throws(() => readStateDict(tiny), /tiny\.pt: not a checkpoint format/);
    assert.throws(() => readStateDict(join(FIXTURES, 'legacy.pt')), /legacy\.pt: a torch\.save checkpoint in the legacy \(before torch 1\.6\) format/);
    assert.throws(() => readStateDict(''), /readStateDict: expected a non-empty string for path/);
    assert.is(detectCheckpointFormat(new Uint8Array([0x50, 0x4b, 3, 4])), 'torch-zip');
    assert.is(detectCheckpointFormat(new Uint8Array(0)), 'unknown');
  } finally {
    remove();
  }
});

test.run();
