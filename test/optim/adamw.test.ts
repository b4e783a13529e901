import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, Rng } from '../support/helpers.js';

const test = suite('adamw');
const rng = new Rng(808);

interface RefState {
  p: number[];
  m: number[];
  v: number[];
  step: number;
}

/** torch.optim.AdamW's update of one parameter, in f64. */
function refStep(s: RefState, g: ArrayLike<number>, lr: number, wd: number, b1: number, b2: number, eps: number): void {
  s.step++;
  const bc1 = 1 - b1 ** s.step;
  const bc2 = 1 - b2 ** s.step;
  for (let i = 0; i < s.p.length; i++) {
    s.p[i] = s.p[i]! * (1 - lr * wd);
    s.m[i] = b1 * s.m[i]! + (1 - b1) * g[i]!;
    s.v[i] = b2 * s.v[i]! + (1 - b2) * g[i]! * g[i]!;
    s.p[i] = s.p[i]! - (lr / bc1) * (s.m[i]! / (Math.sqrt(s.v[i]!) / Math.sqrt(bc2) + eps));
  }
}

const roundBf16 = (a: Float32Array): Float32Array => cf.scope(() => cf.fromArray(a, [a.length], { dtype: 'bf16' }).toArray() as Float32Array);

test('several steps match the f64 reference of torch.optim.AdamW, per group, f32 and bf16 gradients', () => {
  for (const device of devices()) {
    for (const gradDtype of ['f32', 'bf16'] as const) {
      // 70000 elements spans several chunks of both native kernels (16384 on the CPU, 65536 on
      // CUDA); [] is a scalar like logit_scale.
      const shapes = [[4, 5], [70000], [], [3, 1, 7]];
      const init = shapes.map((s) => rng.array(s.reduce((a, b) => a * b, 1)));
      const params = init.map((d, i) => {
        const t = cf.fromArray(d, shapes[i]!, { device, requiresGrad: true });
        t.name = `p${i}`;
        return t;
      });
      const wds = [0.2, 0.05, 0, 0.2];
      const opt = new cf.AdamW(
        [{ params: [params[0]!, params[3]!], weightDecay: 0.2 }, { params: [params[1]!] }, { params: [params[2]!], weightDecay: 0 }],
        { lr: 1e-2, betas: [0.9, 0.98], eps: 1e-6, weightDecay: 0.05 },
      );
      const zerosOf = (n: number): number[] => Array.from({ length: n }, () => 0);
      const refs: RefState[] = init.map((d) => ({ p: [...d], m: zerosOf(d.length), v: zerosOf(d.length), step: 0 }));
      const lrs = [1e-2, 3e-2, 5e-3, 2e-2, 1e-2];
      for (let step = 0; step < lrs.length; step++) {
        params.forEach((p, i) => {
          const g = gradDtype === 'bf16' ? roundBf16(rng.array(p.size, 0.5)) : rng.array(p.size, 0.5);
          p.grad = cf.fromArray(g, p.shape, { device, dtype: gradDtype });
          refStep(refs[i]!, g, lrs[step]!, wds[i]!, 0.9, 0.98, 1e-6);
        });
        opt.step(lrs[step]);
        opt.zeroGrad();
        params.forEach((p) => assert.is(p.grad, null));
      }
      params.forEach((p, i) => {
        const what = `${p.name} ${gradDtype} grads on ${device}`;
        assertClose(p.toArray(), refs[i]!.p, { rtol: 2e-5, atol: 2e-6, what });
        const st = opt.stateOf(p)!;
        assert.is(st.step, lrs.length);
        assertClose(st.expAvg.toArray(), refs[i]!.m, { rtol: 1e-5, atol: 1e-6, what: `${what} exp_avg` });
        assertClose(st.expAvgSq.toArray(), refs[i]!.v, { rtol: 1e-5, atol: 1e-7, what: `${what} exp_avg_sq` });
      });
      opt.dispose();
      params.forEach((p) => p.dispose());
    }
  }
});

test('hundreds of small tensors in one update (one task table on CUDA)', () => {
  for (const device of devices()) {
    const inits = Array.from({ length: 300 }, (_, i) => rng.array(1 + (i % 5)));
    const grads = inits.map((d) => rng.array(d.length));
    const params = inits.map((d) => cf.fromArray(d, [d.length], { device, requiresGrad: true }));
    params.forEach((p, i) => (p.grad = cf.fromArray(grads[i]!, p.shape, { device })));
    const opt = new cf.AdamW(params, { lr: 0.1, weightDecay: 0.3 });
    opt.step();
    params.forEach((p, i) => {
      const ref: RefState = { p: [...inits[i]!], m: Array.from(inits[i]!, () => 0), v: Array.from(inits[i]!, () => 0), step: 0 };
      refStep(ref, grads[i]!, 0.1, 0.3, 0.9, 0.999, 1e-8);
      assertClose(p.toArray(), ref.p, { rtol: 1e-5, atol: 1e-6, what: `tensor ${i} on ${device}` });
    });
    opt.dispose();
    params.forEach((p) => p.dispose());
  }
});

test('matches torch 2.13 AdamW numbers (fixture), including a parameter skipped for a step', () => {
  const fx = JSON.parse(readFileSync(new URL('../fixtures/adamw_torch.json', import.meta.url), 'utf8')) as {
    shapes: number[][]; lrs: number[]; initial: number[][]; grads: number[][][]; final: number[][]; exp_avg: number[][]; exp_avg_sq: number[][]; steps: number[];
  };
  for (const device of devices()) {
    const ps = fx.initial.map((d, i) => cf.fromArray(d, fx.shapes[i]!, { device, requiresGrad: true }));
    const opt = new cf.AdamW([{ params: [ps[0]!, ps[2]!], weightDecay: 0.1 }, { params: [ps[1]!], weightDecay: 0 }], { lr: 0.01, betas: [0.9, 0.98], eps: 1e-6 });
    fx.grads.forEach((gs, step) => {
      opt.zeroGrad();
      ps.forEach((p, i) => {
        if (!(step === 1 && i === 2)) p.grad = cf.fromArray(gs[i]!, fx.shapes[i]!, { device });
      });
      opt.step(fx.lrs[step]);
    });
    ps.forEach((p, i) => {
      assertClose(p.toArray(), fx.final[i]!, { rtol: 1e-6, atol: 1e-7, what: `param ${i} on ${device}` });
      assertClose(opt.stateOf(p)!.expAvg.toArray(), fx.exp_avg[i]!, { rtol: 1e-6, atol: 1e-7, what: `exp_avg ${i}` });
      assertClose(opt.stateOf(p)!.expAvgSq.toArray(), fx.exp_avg_sq[i]!, { rtol: 1e-6, atol: 1e-9, what: `exp_avg_sq ${i}` });
      assert.is(opt.stateOf(p)!.step, fx.steps[i]);
    });
    opt.dispose();
    opt.zeroGrad();
    ps.forEach((p) => p.dispose());
  }
});

test('stateDict / loadStateDict resume gives the same weights as an uninterrupted run', () => {
  const data = [rng.array(6), rng.array(3)];
  const grads = Array.from({ length: 4 }, () => [rng.array(6), rng.array(3)]);
  const run = (resumeAt: number | null): Float32Array[] => {
    let ps = data.map((d) => cf.fromArray(d, [d.length], { requiresGrad: true }));
    let opt = new cf.AdamW(ps, { lr: 0.1, weightDecay: 0.1 });
    grads.forEach((gs, step) => {
      if (step === resumeAt) {
        const sd = opt.stateDict();
        assert.equal(sd.param_groups[0]!.params, [0, 1]);
        assert.is(sd.state[0]!.step, step);
        const next = ps.map((p) => cf.fromArray(p.toArray(), p.shape, { requiresGrad: true }));
        const fresh = new cf.AdamW(next, { lr: 0.5, weightDecay: 0 });
        fresh.loadStateDict(sd);
        assert.is(fresh.paramGroups[0]!.lr, 0.1);
        assert.is(fresh.paramGroups[0]!.weightDecay, 0.1);
        opt.dispose();
        ps.forEach((p) => p.dispose());
        ps = next;
        opt = fresh;
      }
      ps.forEach((p, i) => (p.grad = cf.fromArray(gs[i]!, p.shape)));
      opt.step();
      opt.zeroGrad();
    });
    const out = ps.map((p) => p.toArray() as Float32Array);
    opt.dispose();
    ps.forEach((p) => p.dispose());
    return out;
  };
  const straight = run(null);
  const resumed = run(2);
  straight.forEach((w, i) => assert.equal([...resumed[i]!], [...w], `param ${i} bit-identical after resume`));
});

test('bad arguments throw errors naming the argument', () => {
  const p = cf.fromArray([1, 2], [2], { requiresGrad: true });
  assert.throws(() => new cf.AdamW([], {}), /AdamW: expected a non-empty array .* for groups/);
  assert.throws(() => new cf.AdamW([p], { betas: [0.9, 1] }), /AdamW: expected a number in \[0, 1\) for opts.betas\[1\], got 1/);
  assert.throws(() => new cf.AdamW([p], { lr: -1 }), /opts.lr/);
  assert.throws(() => new cf.AdamW([p, p]), /appears in more than one place/);
  const b = cf.fromArray([1, 2], [2], { dtype: 'bf16' });
  assert.throws(() => new cf.AdamW([b]), /expected an f32 parameter .* for groups\[0\].params\[0\]/);
  const opt = new cf.AdamW([p]);
  p.grad = cf.fromArray([1, 2, 3], [3]);
  assert.throws(() => opt.step(), /AdamW.step: expected an f32 or bf16 tensor of shape \[2\] on cpu for the gradient/);
  opt.zeroGrad();
  assert.throws(() => opt.loadStateDict({ state: {}, param_groups: [] }), /expected 1 parameter groups, got 0/);
  // The native op checks direct callers too.
  const m = cf.zeros([2]);
  const v = cf.zeros([2]);
  const g = cf.ones([2]);
  assert.throws(() => cf.native.adamw([p], [g], [m], [m], [0.1], [0], [1], 0.9, 0.999, 1e-8), /adamw: expAvgSqs\[0\] shares memory with expAvgs\[0\]|adamw: expAvgs\[0\] shares memory with expAvgSqs\[0\]/);
  assert.throws(() => cf.native.adamw([p], [g], [m], [v], [0.1], [0], [0], 0.9, 0.999, 1e-8), /adamw: expected an integer >= 1 for steps\[0\]/);
  assert.throws(() => cf.native.adamw([p], [g], [m], [v], [0.1], [0], [1], 0.9, 1.5, 1e-8), /adamw: expected a number in \[0, 1\) for beta2/);
  assert.throws(() => cf.native.adamw([p], [cf.zeros([3])], [m], [v], [0.1], [0], [1], 0.9, 0.999, 1e-8), /adamw: expected \[2\] for grads\[0\].shape, got \[3\]/);
  assert.throws(() => cf.native.adamw([p], [g], [m], [v], [0.1, 0.2], [0], [1], 0.9, 0.999, 1e-8), /adamw: expected an array of 1 numbers .* for lrs/);
  // A valid direct call: with m = v = 0 and g = 1 the first step moves each weight by -lr.
  cf.native.adamw([p], [g], [m], [v], [0.1], [0], [1], 0.9, 0.999, 1e-8);
  assertClose(p.toArray(), [0.9, 1.9], { rtol: 1e-6 });
  for (const t of [p, b, m, v, g]) t.dispose();
});

test.run();
