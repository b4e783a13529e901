import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { detectCheckpointFormat, readShardIndex, readStateDict, writeSafetensors } from '../../lib/io/index.js';
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

test('a sharded checkpoint: an index JSON naming safetensors and torch.save shards', () => {
  const { dir, remove } = tempDir();
  const before = cf.liveTensorCount();
  try {
    cf.scope(() => {
      writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), { 'a.w': cf.fromArray([1, 2, 3]), 'a.b': cf.fromArray([4]), unlisted: cf.ones([2]) });
      copyFileSync(join(FIXTURES, 'state_dict.pt'), join(dir, 'model-00002-of-00002.bin'));
      const index = join(dir, 'model.index.json');
      const weightMap = { 'a.b': 'model-00001-of-00002.safetensors', w_f32: 'model-00002-of-00002.bin', 'a.w': 'model-00001-of-00002.safetensors', ids_i64: 'model-00002-of-00002.bin' };
      writeFileSync(index, JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2));
      const tensors = readStateDict(index);
      assert.equal([...tensors.keys()], Object.keys(weightMap));
      assert.equal([...tensors.get('a.w')!.toArray()], [1, 2, 3]);
      assert.equal([...tensors.get('a.b')!.toArray()], [4]);
      const want = expected.files['state_dict.pt']!;
      assertTensorIs(tensors.get('w_f32'), want['w_f32']!, 'w_f32');
      assertTensorIs(tensors.get('ids_i64'), want['ids_i64']!, 'ids_i64');
    });
    assert.is(cf.liveTensorCount(), before, 'tensors the index does not list are disposed');

    const cases: [unknown, RegExp][] = [
      [{ weight_map: { x: 'model-00001-of-00002.safetensors' } }, /tensor 'x' is not in its shard model-00001-of-00002\.safetensors/],
      [{ weight_map: { 'a.w': '../model-00001-of-00002.safetensors' } }, /weight_map\['a\.w'\] must be a file name beside the index, got "\.\.\/model/],
      [{ weight_map: { 'a.w': '/etc/passwd' } }, /must be a file name beside the index/],
      [{ weight_map: { 'a.w': 3 } }, /must be a file name beside the index, got 3/],
      [{ weight_map: { 'a.w': 'bad.index.json' } }, /bad\.index\.json: a shard is itself an index/],
      [{ weight_map: { 'a.w': 'missing.safetensors' } }, /ENOENT.*missing\.safetensors/],
      [{ metadata: {} }, /expected an object with a "weight_map" object/],
      [[1, 2], /case\.index\.json: not a checkpoint format clipforge reads/],
    ];
    writeFileSync(join(dir, 'bad.index.json'), JSON.stringify({ weight_map: {} }));
    for (const [content, problem] of cases) {
      const index = join(dir, 'case.index.json');
      writeFileSync(index, JSON.stringify(content));
      assert.throws(() => readStateDict(index), problem);
    }
    const broken = join(dir, 'broken.index.json');
    writeFileSync(broken, '{"weight_map": ');
    assert.throws(() => readStateDict(broken), /readStateDict: .*broken\.index\.json: not a valid JSON index/);
    assert.is(cf.liveTensorCount(), before, 'no tensor leaks from a failed sharded read');
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
    assert.throws(() => readStateDict(''), /readStateDict: expected a non-empty file path for path/);
    assert.is(detectCheckpointFormat(new Uint8Array([0x50, 0x4b, 3, 4])), 'torch-zip');
    assert.is(detectCheckpointFormat(new Uint8Array(0)), 'unknown');
    assert.throws(() => detectCheckpointFormat([0x50, 0x4b, 3, 4] as unknown as Uint8Array), /detectCheckpointFormat: expected a Uint8Array for head/);
    assert.throws(() => readShardIndex(-0 as unknown as string), /readShardIndex: expected a non-empty file path for path, got 0 of type number/);
  } finally {
    remove();
  }
});

test.run();
