import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { devices, Rng } from '../support/helpers.js';

const test = suite('drop_path');
const rng = new Rng(61);

test('each sample is either zeroed or scaled by 1 / (1 - p), as the seeded uniform draws say', () => {
  for (const device of devices()) {
    const n = 64, inner = 6, p = 0.3;
    cf.scope(() => {
      const xs = rng.array(n * inner);
      const x = cf.fromArray(xs, [n, 2, 3], { device });
      const y = cf.dropPath(x, p, { generator: new cf.Generator(7) }).toArray();
      const u = cf.rand([n], { generator: new cf.Generator(7) }).toArray();
      let dropped = 0;
      for (let s = 0; s < n; s++) {
        const keep = u[s]! >= p;
        if (!keep) dropped++;
        for (let i = 0; i < inner; i++) {
          const want = keep ? xs[s * inner + i]! / (1 - p) : 0;
          assert.ok(Math.abs(y[s * inner + i]! - want) <= 1e-5 * Math.abs(want), `sample ${s} element ${i} on ${device}`);
        }
      }
      assert.ok(dropped > 5 && dropped < 35, `dropped ${dropped} of ${n} at p ${p}`);
    });
  }
});

test('the gradient is the same mask and scale', () => {
  cf.scope(() => {
    const x = cf.fromArray(rng.array(16 * 3), [16, 3], { requiresGrad: true });
    const y = cf.dropPath(x, 0.5, { generator: new cf.Generator(3) });
    cf.sum(y).backward();
    const yv = y.toArray(), xv = x.toArray(), g = x.grad!.toArray();
    for (let i = 0; i < yv.length; i++) assert.ok(Math.abs(g[i]! * xv[i]! - yv[i]!) < 1e-5, `element ${i}`);
  });
});

test('identity in eval mode and at p = 0; the draws are reproducible from the seed', () => {
  cf.scope(() => {
    const x = cf.fromArray(rng.array(8), [8, 1]);
    assert.is(cf.dropPath(x, 0.5, { training: false }), x);
    assert.is(cf.dropPath(x, 0), x);
    const a = cf.dropPath(x, 0.5, { generator: new cf.Generator(11) }).toArray();
    const b = cf.dropPath(x, 0.5, { generator: new cf.Generator(11) }).toArray();
    assert.equal([...a], [...b]);
  });
});

test('bad arguments throw errors naming the op, the argument and the value', () => {
  cf.scope(() => {
    const x = cf.zeros([2, 2]);
    assert.throws(() => cf.dropPath(x, 1), /dropPath: expected a probability in \[0, 1\) for p, got 1/);
    assert.throws(() => cf.dropPath(x, Number.NaN), /dropPath: expected a finite number for p/);
    assert.throws(() => cf.dropPath(x, 0.1, { training: 'yes' as unknown as boolean }), /dropPath: expected a boolean for training/);
  });
});

test.run();
