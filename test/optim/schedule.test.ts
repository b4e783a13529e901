import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose } from '../support/helpers.js';

const test = suite('schedule');

interface Case {
  kind: 'cosine' | 'const' | 'const-cooldown';
  args: number[];
  lrs: number[];
}

test("every step of each schedule equals OpenCLIP's scheduler.py (fixture)", () => {
  const cases = JSON.parse(readFileSync(new URL('../fixtures/schedule_openclip.json', import.meta.url), 'utf8')) as Case[];
  for (const c of cases) {
    const [base, warmup, steps, ...rest] = c.args as [number, number, number, ...number[]];
    const lr =
      c.kind === 'cosine' ? cf.cosineLr(base, warmup, steps)
      : c.kind === 'const' ? cf.constLr(base, warmup, steps)
      : cf.constCooldownLr(base, warmup, steps, rest[0]!, rest[1], rest[2]);
    assertClose(c.lrs.map((_, step) => lr(step)), c.lrs, { rtol: 1e-12, atol: 0, what: `${c.kind} ${JSON.stringify(c.args)}` });
  }
});

test('values at known steps', () => {
  const cos = cf.cosineLr(1, 10, 110);
  assert.is(cos(0), 0.1);
  assert.is(cos(9), 1);
  assert.is(cos(10), 1);
  assertClose([cos(60)], [0.5], { atol: 1e-15 });
  assertClose([cos(110)], [0], { atol: 1e-15 });
  const cool = cf.constCooldownLr(1, 0, 10, 4, 1, 0.2);
  assertClose([cool(5), cool(6), cool(8), cool(9)], [1, 1, 0.6, 0.4], { rtol: 1e-12 });
  assert.is(cf.constLr(2, 4, 10)(1), 1);
});

test('bad arguments', () => {
  assert.throws(() => cf.cosineLr(-1, 0, 10), /cosineLr: expected a finite number >= 0 for baseLr, got -1/);
  assert.throws(() => cf.constLr(1, 1.5, 10), /constLr: expected an integer >= 0 for warmupLength, got 1.5/);
  assert.throws(() => cf.cosineLr(1, 0, 10)(-1), /cosineLr: expected an integer >= 0 for step, got -1/);
  assert.throws(() => cf.cosineLr(1, 10, 10)(10), /cosineLr: step 10 is past a warmup \(10\) that covers all 10 steps/);
  assert.throws(() => cf.constCooldownLr(1, 0, 10, 0)(10), /constCooldownLr: step 10 is in a cooldown of 0 steps/);
});

test.run();
