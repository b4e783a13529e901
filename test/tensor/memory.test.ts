// Training-like loops leave memory flat: after the first steps, every step frees exactly
// what it allocated (tensors, native bytes, blocks), whichever way parameters are updated.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { Rng } from '../support/helpers.js';

const test = suite('memory');

interface Snapshot {
  liveTensors: number;
  bytes: number;
  blocks: number;
}

function snapshot(): Snapshot {
  const m = cf.memoryStats();
  return { liveTensors: m.liveTensors, bytes: m.cpu.allocatedBytes, blocks: m.cpu.liveBlocks };
}

const B = 8, IN = 6, HID = 12;

interface Params {
  w1: cf.Tensor; // [IN, HID]
  b1: cf.Tensor; // [HID]
  w2: cf.Tensor; // [HID]
  scale: cf.Tensor; // []
}

function initParams(rng: Rng): Params {
  return {
    w1: cf.fromArray(rng.array(IN * HID, 0.4), [IN, HID], { requiresGrad: true }),
    b1: cf.fromArray(rng.array(HID, 0.1), [HID], { requiresGrad: true }),
    w2: cf.fromArray(rng.array(HID, 0.4), [HID], { requiresGrad: true }),
    scale: cf.fromArray([1], [], { requiresGrad: true }),
  };
}

/**
 * A tiny MLP written without matmul: x [B, IN] -> h = gelu(sum_i x[:, i, None] * w1[i, :] + b1)
 * -> y = sum(h * w2) * scale, regressing a fixed target; plus a few other ops (max, clamp,
 * div, exp, mean over axes, reshape, a checkpointed block) so that their backward passes are
 * exercised too.
 */
function loss(p: Params, x: cf.Tensor, target: cf.Tensor, step: number): cf.Tensor {
  const xw = cf.mul(cf.reshape(x, [B, IN, 1]), p.w1); // [B, IN, HID]
  const pre = cf.add(cf.sum(xw, 1), p.b1); // [B, HID]
  const h = step % 2 === 0 ? cf.gelu(pre) : cf.checkpoint((t) => cf.gelu(t, { approximate: 'tanh' }), pre);
  const y = cf.mul(cf.sum(cf.mul(h, p.w2), 1), p.scale); // [B]
  const err = cf.sub(y, target);
  const mse = cf.mean(cf.square(err));
  // Regularizers that touch more ops; small weights so the fit still improves.
  const reg1 = cf.mean(cf.max(cf.clamp(cf.abs(h), 0, 3), 1));
  const reg2 = cf.mean(cf.div(cf.exp(cf.neg(cf.square(pre))), cf.add(cf.square(p.scale), 1)));
  return cf.add(mse, cf.mul(cf.add(reg1, reg2), 1e-3));
}

function batch(rng: Rng): { x: cf.Tensor; target: cf.Tensor } {
  const x = cf.fromArray(rng.array(B * IN), [B, IN]);
  const xv = x.toArray();
  const t = new Float32Array(B);
  for (let b = 0; b < B; b++) t[b] = Math.sin(xv[b * IN]!) + 0.5 * xv[b * IN + 1]!;
  return { x, target: cf.fromArray(t) };
}

type Update = 'copy' | 'replace';

/** One SGD step; returns the loss. Parameters live outside every scope. */
function step(p: Params, rng: Rng, lr: number, update: Update, i: number): number {
  const value = cf.scope(() => {
    const { x, target } = batch(rng);
    const l = loss(p, x, target, i);
    l.backward();
    return l.item();
  });
  cf.noGrad(() => {
    for (const key of Object.keys(p) as (keyof Params)[]) {
      const param = p[key];
      const g = param.grad;
      assert.ok(g, `${key} has a gradient`);
      if (update === 'copy') {
        // In place: the new value is computed in a scope and copied into the parameter's memory.
        cf.scope(() => cf.native.copy(cf.sub(param, cf.mul(g!, lr)), param));
        g!.dispose();
        param.grad = null;
      } else {
        // Replace: a new leaf tensor is built and the old one (with its gradient) disposed.
        const next = cf.keep(cf.scope(() => cf.sub(param, cf.mul(g!, lr))));
        next.requiresGrad = true;
        param.dispose();
        assert.is(param.grad, null, 'disposing a parameter disposes its gradient');
        p[key] = next;
      }
    }
  });
  return value;
}

function train(update: Update, steps: number): { losses: number[]; early: Snapshot; late: Snapshot; during: Snapshot[] } {
  const rng = new Rng(update === 'copy' ? 1 : 2);
  cf.manualSeed(3);
  const p = initParams(rng);
  const losses: number[] = [];
  const during: Snapshot[] = [];
  let early!: Snapshot;
  for (let i = 0; i < steps; i++) {
    losses.push(step(p, rng, 0.05, update, i));
    if (i === 3) early = snapshot();
    if (i > 3 && i % 100 === 1) during.push(snapshot());
  }
  const late = snapshot();
  for (const t of Object.values(p)) t.dispose();
  return { losses, early, late, during };
}

function checkFlat(name: string, r: ReturnType<typeof train>, live0: number, bytes0: number): void {
  for (const s of [...r.during, r.late]) {
    assert.equal(s, r.early, `${name}: memory after step 4 ${JSON.stringify(r.early)}, later ${JSON.stringify(s)}`);
  }
  // Between steps only the four parameters are alive (no gradients: they were disposed).
  assert.is(r.early.liveTensors, live0 + 4, `${name}: live tensors between steps`);
  assert.is(r.early.bytes - bytes0, (IN * HID + HID + HID + 1) * 4, `${name}: bytes between steps are the parameters'`);
  const first = r.losses.slice(0, 20).reduce((a, b) => a + b) / 20;
  const last = r.losses.slice(-20).reduce((a, b) => a + b) / 20;
  assert.ok(r.losses.every(Number.isFinite), `${name}: finite losses`);
  assert.ok(last < 0.5 * first, `${name}: the loss went down (${first} -> ${last}), so the steps really trained`);
}

test('1000 steps, parameters updated in place with native.copy: memory stays flat', () => {
  const live0 = cf.liveTensorCount();
  const bytes0 = cf.memoryStats().cpu.allocatedBytes;
  const r = train('copy', 1000);
  checkFlat('copy', r, live0, bytes0);
  assert.is(cf.liveTensorCount(), live0);
  assert.is(cf.memoryStats().cpu.allocatedBytes, bytes0);
});

test('400 steps, parameters replaced by new tensors: memory stays flat', () => {
  const live0 = cf.liveTensorCount();
  const bytes0 = cf.memoryStats().cpu.allocatedBytes;
  const r = train('replace', 400);
  checkFlat('replace', r, live0, bytes0);
  assert.is(cf.liveTensorCount(), live0);
  assert.is(cf.memoryStats().cpu.allocatedBytes, bytes0);
});

test('gradient accumulation over micro-batches, zeroed by hand: memory stays flat', () => {
  const live0 = cf.liveTensorCount();
  const bytes0 = cf.memoryStats().cpu.allocatedBytes;
  const rng = new Rng(5);
  const p = initParams(rng);
  let early!: Snapshot;
  for (let i = 0; i < 200; i++) {
    for (let micro = 0; micro < 3; micro++) {
      cf.scope(() => {
        const { x, target } = batch(rng);
        loss(p, x, target, micro).backward();
      });
    }
    cf.noGrad(() => {
      for (const param of Object.values(p)) {
        // zero_grad by filling, keeping the gradient's memory for the next step
        cf.scope(() => cf.native.copy(cf.sub(param, cf.mul(param.grad!, 0.01)), param));
        cf.native.fill(param.grad!, 0);
      }
    });
    if (i === 3) early = snapshot();
  }
  assert.equal(snapshot(), early);
  assert.is(early.liveTensors, live0 + 8, 'parameters and their gradients');
  for (const t of Object.values(p)) t.dispose();
  assert.is(cf.liveTensorCount(), live0);
  assert.is(cf.memoryStats().cpu.allocatedBytes, bytes0);
});

test('evaluation under noGrad inside scopes leaves nothing', () => {
  const rng = new Rng(9);
  const p = initParams(rng);
  const before = snapshot();
  for (let i = 0; i < 300; i++) {
    cf.noGrad(() =>
      cf.scope(() => {
        const { x, target } = batch(rng);
        const l = loss(p, x, target, i);
        assert.not.ok(l.requiresGrad);
        return l.item();
      }),
    );
  }
  assert.equal(snapshot(), before);
  assert.ok(Object.values(p).every((t) => t.grad === null), 'evaluation made no gradients');
  for (const t of Object.values(p)) t.dispose();
});

test.run();
