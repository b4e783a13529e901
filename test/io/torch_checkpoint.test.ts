import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { readTorchCheckpoint, readTorchCheckpointFull } from '../../lib/io/index.js';
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

test('readTorchCheckpointFull: the whole tree, plain values, optimizer state and all', () => {
  cf.scope(() => {
    const full = readTorchCheckpointFull(join(FIXTURES, 'training.pt')) as {
      epoch: number;
      model: Record<string, cf.Tensor>;
      optimizer: { state: Map<number, { step: cf.Tensor; exp_avg: cf.Tensor; exp_avg_sq: cf.Tensor }>; param_groups: { lr: number; betas: number[]; params: number[] }[] };
    };
    assert.is(full.epoch, 3);
    const want = expected.files['training.pt']!;
    assert.equal(Object.keys(full.model), Object.keys(want));
    for (const [name, e] of Object.entries(want)) assertTensorIs(full.model[name], e, `model.${name}`);
    const group = full.optimizer.param_groups[0]!;
    assert.is(group.lr, 0.1);
    assert.equal(group.betas, [0.9, 0.999]);
    assert.equal(group.params, [0, 1, 2, 3, 4, 5]);
    // AdamW state for the six parameters after one step, keyed by integer.
    assert.equal([...full.optimizer.state.keys()], [0, 1, 2, 3, 4, 5]);
    const trainable = ['0.weight', '0.bias', '1.weight', '1.bias', '2.weight', '2.bias'];
    trainable.forEach((name, i) => {
      const st = full.optimizer.state.get(i)!;
      assert.is(st.step.item(), 1);
      assert.equal([...st.exp_avg.shape], [...full.model[name]!.shape]);
      assert.equal([...st.exp_avg_sq.shape], [...full.model[name]!.shape]);
    });

    const wrapped = readTorchCheckpointFull(join(FIXTURES, 'wrapped_proto5.pt')) as Record<string, unknown>;
    assert.equal([wrapped.epoch, wrapped.name, wrapped.lr, wrapped.steps], [7, 'run-1', 1e-3, [1, 2, 3]]);
    assert.equal(Object.keys(wrapped.state_dict as object), ['module.visual.proj', 'module.logit_scale']);
  });
  const before = cf.liveTensorCount();
  assert.throws(() => readTorchCheckpointFull(join(FIXTURES, 'malicious_system.pt')), /readTorchCheckpointFull: .*refusing to load global 'posix\.system'/);
  assert.is(cf.liveTensorCount(), before);
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
  assert.throws(() => readTorchCheckpoint(''), /readTorchCheckpoint: expected a non-empty file path for path/);
  assert.throws(() => readTorchCheckpoint(join(FIXTURES, 'views.pt'), { device: 'tpu' }), /readTorchCheckpoint: expected 'cpu', 'cuda' or 'cuda:N' for opts.device/);
});

test.run();
