import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { readTorchCheckpoint } from '../../lib/io/index.js';
import { devices } from '../support/helpers.js';
import { assertTensorIs, expected, FIXTURES } from '../support/io_fixtures.js';

const test = suite('torch_checkpoint');

function readsAsExpected(file: string): void {
  const want = expected.files[file]!;
  for (const device of devices()) {
    cf.scope(() => {
      const tensors = readTorchCheckpoint(join(FIXTURES, file), { device });
      assert.equal([...tensors.keys()], Object.keys(want), `${file}: keys in file order`);
      for (const [name, e] of Object.entries(want)) {
        assert.is(tensors.get(name)!.device, device);
        assertTensorIs(tensors.get(name), e, `${file} ${name}`);
      }
    });
  }
}

test('a state dict of every dtype, a Parameter, a scalar and an empty tensor (protocol 2)', () => {
  readsAsExpected('state_dict.pt');
});

test('views: transposed, strided, offset, expanded and permuted tensors over shared storages become contiguous', () => {
  readsAsExpected('views.pt');
  cf.scope(() => {
    const t = readTorchCheckpoint(join(FIXTURES, 'views.pt'));
    // Tensors that shared a storage in the file are independent here.
    const base = t.get('base')!;
    const reshaped = t.get('reshaped')!;
    assert.is.not(base.storage, reshaped.storage);
  });
});

test('deflated entries and zip64 records', () => {
  readsAsExpected('views_deflated_zip64.pt');
});

test('a {"state_dict": ...} wrapper with "module." prefixes and non-tensor values (protocol 5)', () => {
  readsAsExpected('wrapped_proto5.pt');
});

test('a training checkpoint: {"model": module.state_dict(), "optimizer": ..., "epoch": ...}', () => {
  readsAsExpected('training.pt');
});

test('malicious pickles are refused by name and run nothing', () => {
  rmSync(expected.marker, { force: true });
  const before = cf.liveTensorCount();
  const cases: [string, RegExp][] = [
    ['malicious_system.pt', /malicious_system\.pt: malicious_system\/data\.pkl: refusing to load global 'posix\.system'/],
    ['malicious_eval.pt', /refusing to load global '__builtin__\.eval'/],
  ];
  for (const [file, message] of cases) assert.throws(() => readTorchCheckpoint(join(FIXTURES, file)), message);
  assert.not.ok(existsSync(expected.marker), 'the payload did not run');
  assert.is(cf.liveTensorCount(), before);
});

test('a view reaching past its storage is an error naming the file', () => {
  assert.throws(() => readTorchCheckpoint(join(FIXTURES, 'bad_view.pt')), /bad_view\.pt: bad_view\/data\.pkl: _rebuild_tensor_v2: a view of size \[5\], stride \[1\] at offset 0 reaches past storage '0' \(4 elements\)/);
});

test('files that are not torch zip checkpoints', () => {
  assert.throws(() => readTorchCheckpoint(join(FIXTURES, 'legacy.pt')), /legacy\.pt: not a zip archive/);
  assert.throws(() => readTorchCheckpoint(join(FIXTURES, 'mixed.safetensors')), /mixed\.safetensors: not a zip archive/);
  assert.throws(() => readTorchCheckpoint(''), /readTorchCheckpoint: expected a non-empty string for path/);
  assert.throws(() => readTorchCheckpoint(join(FIXTURES, 'views.pt'), { device: 'tpu' }), /readTorchCheckpoint: expected 'cpu', 'cuda' or 'cuda:N' for opts.device/);
});

test.run();
