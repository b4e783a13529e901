import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';

const test = suite('rng_state');

const draw = (opts: cf.RandomOptions = {}): number[] => cf.scope(() => [...cf.randn([6], opts).toArray()]);

test('restoring a snapshot continues the default sequence exactly where it was taken', () => {
  const outer = cf.snapshotRng();
  cf.manualSeed(42);
  draw();
  const snap = JSON.parse(JSON.stringify(cf.snapshotRng()));
  const next = [draw(), draw()];
  draw();
  cf.restoreRng(snap);
  assert.equal([draw(), draw()], next);
  assert.not.equal(next[0], next[1]);
  cf.restoreRng(outer);
});

test('named generators, and a bad snapshot changes none of them', () => {
  const data = new cf.Generator(7);
  const aug = new cf.Generator(8);
  draw({ generator: data });
  const snap = cf.snapshotRng({ data, aug });
  const expected = [draw({ generator: data }), draw({ generator: aug })];
  cf.restoreRng(snap, { data, aug });
  assert.equal([draw({ generator: data }), draw({ generator: aug })], expected);
  const before = cf.snapshotRng({ data, aug });
  assert.throws(() => cf.restoreRng({ data: snap.data! }, { data, aug }), /restoreRng: the snapshot has no state for generator 'aug' \(it has: data\)/);
  assert.throws(() => cf.restoreRng({ data: snap.data!, aug: { seed: 1, counter: -1 } }, { data, aug }), /expected an integer .* for state.counter, got -1/);
  assert.equal(cf.snapshotRng({ data, aug }), before);
  assert.throws(() => cf.snapshotRng({ x: 3 as never }), /snapshotRng: expected an object of named Generators for generators/);
});

test.run();
