// The autograd tape: accumulation, shared subexpressions, noGrad, errors, explicit output
// gradients, detach, gradient checkpointing and the release of graphs' saved tensors.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { assertClose, Rng } from '../support/helpers.js';

const test = suite('autograd');
const rng = new Rng(31);

const cpuBytes = (): number => cf.memoryStats().cpu.allocatedBytes;
const vals = (t: cf.Tensor | null): number[] => {
  assert.ok(t, 'a gradient is present');
  return Array.from(t!.toArray());
};

test('gradients accumulate across two backward calls', () => {
  const data = [0.5, -1, 2];
  const x = cf.fromArray(data, [3], { requiresGrad: true });
  cf.scope(() => cf.sum(cf.mul(x, x)).backward());
  assertClose(vals(x.grad), data.map((v) => 2 * v));
  const first = x.grad;
  cf.scope(() => cf.sum(cf.mul(x, 3)).backward());
  assertClose(vals(x.grad), data.map((v) => 2 * v + 3));
  assert.ok(first!.isDisposed, 'the previous gradient tensor was replaced, not leaked');
  // Gradients belong to their leaves: a scope does not dispose them.
  assert.not.ok(x.grad!.isDisposed);
  x.dispose();
  assert.ok(x.grad === null, 'disposing a leaf disposes its gradient');
});

test('a leaf that already has a gradient, used twice by one op: both paths accumulate', () => {
  const data = [0.5, -1, 2];
  const x = cf.fromArray(data, [3], { requiresGrad: true });
  const w = cf.fromArray([2, 3, 4], [3]);
  cf.scope(() => cf.sum(x).backward());
  // add(x, mul(x, w)) hands the same upstream gradient to the leaf x and to mul's node.
  cf.scope(() => cf.sum(cf.add(x, cf.mul(x, w))).backward());
  assertClose(vals(x.grad), [1 + 1 + 2, 1 + 1 + 3, 1 + 1 + 4]);
  x.dispose();
  w.dispose();
});

test('shared subexpressions: a tensor used twice gets the sum of both paths', () => {
  const data = [0.3, -0.7, 1.1, 0.05];
  const x = cf.fromArray(data, [4], { requiresGrad: true });
  cf.scope(() => {
    // y = x*x + x: dy/dx = 2x + 1
    cf.sum(cf.add(cf.mul(x, x), x)).backward();
  });
  assertClose(vals(x.grad), data.map((v) => 2 * v + 1));
  x.grad!.dispose();
  x.grad = null;
  cf.scope(() => {
    // An intermediate used by two branches: a = 2x; y = sum(a + a*a) -> dy/dx = 2 + 8x
    const a = cf.mul(x, 2);
    cf.sum(cf.add(a, cf.mul(a, a))).backward();
  });
  assertClose(vals(x.grad), data.map((v) => 2 + 8 * v));
  x.grad!.dispose();
  x.grad = null;
  cf.scope(() => {
    // A diamond through exp: h = exp(x); y = sum(h * h) -> 2 e^{2x}
    const h = cf.exp(x);
    cf.sum(cf.mul(h, h)).backward();
  });
  assertClose(vals(x.grad), data.map((v) => 2 * Math.exp(2 * v)), { rtol: 1e-5 });
  x.dispose();
});

test('two leaves, broadcasting and reductions', () => {
  const a = cf.fromArray(rng.array(6), [2, 3], { requiresGrad: true });
  const b = cf.fromArray(rng.array(3), [3], { requiresGrad: true });
  const av = a.toArray(), bv = b.toArray();
  cf.scope(() => cf.mean(cf.mul(a, b)).backward());
  // d/da = b / 6 (broadcast), d/db = sum over rows of a / 6
  assertClose(vals(a.grad), Array.from(av, (_, i) => bv[i % 3]! / 6));
  assertClose(vals(b.grad), [0, 1, 2].map((j) => (av[j]! + av[j + 3]!) / 6));
  a.dispose();
  b.dispose();
});

test('gradients reach nodes without copies (a reshape, a tensor used twice); a leaf gets memory of its own', () => {
  const xData = [1, -2, 3, 0.5, 4, -1];
  const x = cf.fromArray(xData, [2, 3], { requiresGrad: true });
  const copies = { n: 0 };
  const addon = native as unknown as { copy: (...a: unknown[]) => void };
  const copy = addon.copy;
  addon.copy = (...a: unknown[]) => {
    copies.n++;
    copy.apply(native, a);
  };
  try {
    // d/dx sum(c * reshape(x * x)) = 2 x c, through a reshape of a non-leaf: no copy.
    const c = [1, 2, 3, 4, 5, 6];
    cf.scope(() => cf.sum(cf.mul(cf.reshape(cf.mul(x, x), [6]), cf.fromArray(c, [6]))).backward());
    assert.is(copies.n, 0, 'no copy for the reshape gradient');
    assertClose(vals(x.grad), xData.map((v, i) => 2 * v * c[i]!), { atol: 1e-6 });
    x.grad!.dispose();
    x.grad = null;
    // The add's gradient goes to two reshapes (nodes: a view each, no copy); one reshape's
    // gradient reaches the leaf x while the other's memory is still pending: that one is copied.
    copies.n = 0;
    cf.scope(() => {
      const h = cf.mul(x, 3);
      cf.sum(cf.mul(cf.add(cf.reshape(h, [6]), cf.reshape(x, [6])), cf.fromArray(c, [6]))).backward();
    });
    assert.is(copies.n, 1, 'one copy, for the leaf');
    assertClose(vals(x.grad), c.map((v) => 4 * v), { atol: 1e-6 });
    x.grad!.dispose();
    x.grad = null;
    // A residual sum y = h + f(h) with h a node: h's two gradients are summed, never copied.
    copies.n = 0;
    cf.scope(() => {
      const h = cf.mul(x, 2);
      cf.sum(cf.mul(cf.add(h, cf.mul(h, h)), cf.fromArray(c, [2, 3]))).backward();
    });
    assert.is(copies.n, 0, 'no copy through the residual sum');
    assertClose(vals(x.grad), xData.map((v, i) => c[i]! * (2 + 8 * v)), { atol: 1e-5 });
  } finally {
    addon.copy = copy;
    x.dispose();
  }
});

/** y = h * k with a gradient function that adds into h's pending gradient when offered one. */
function scaleInPlace(h: cf.Tensor, k: number, offered: (cf.Tensor | null)[]): cf.Tensor {
  const y = cf.noGrad(() => cf.mul(h, k));
  return cf.attachGrad(y, 'scaleInPlace', [h], [], (gy, _saved, _needs, pendingGrad) => {
    const sum = pendingGrad(0);
    offered.push(sum);
    const g = cf.mul(gy, k);
    if (!sum) return [g];
    native.binary('add', sum, g, sum);
    return [sum];
  });
}

test('a gradient function may add into the gradient an input already has, when nothing else holds it', () => {
  const xData = [1, -2, 3, 0.5];
  const c = [1, 2, 3, 4];
  const x = cf.fromArray(xData, [4], { requiresGrad: true });
  const offered: (cf.Tensor | null)[] = [];
  try {
    // Three consumers of the node h: the first finds nothing pending, the next two get the
    // first one's gradient and add theirs into it (the same tensor both times).
    cf.scope(() => {
      const h = cf.mul(x, 2);
      const y = cf.add(cf.add(scaleInPlace(h, 2, offered), scaleInPlace(h, 3, offered)), scaleInPlace(h, 5, offered));
      cf.sum(cf.mul(y, cf.fromArray(c, [4]))).backward();
    });
    assert.is(offered.length, 3);
    assert.is(offered[0], null, 'the first consumer has nothing to add into');
    assert.ok(offered[1] !== null && offered[2] === offered[1], 'the later ones share one pending gradient');
    assertClose(vals(x.grad), c.map((v) => 2 * 10 * v), { atol: 1e-5 });
    x.grad!.dispose();
    x.grad = null;
    // A leaf's gradient is never offered (it belongs to the leaf, across backward calls).
    offered.length = 0;
    cf.scope(() => cf.sum(cf.add(scaleInPlace(x, 2, offered), scaleInPlace(x, 3, offered))).backward());
    assert.equal(offered, [null, null]);
    assertClose(vals(x.grad), [5, 5, 5, 5], { atol: 1e-6 });
    x.grad!.dispose();
    x.grad = null;
    // h + f(h): h's pending gradient is a view of the add's gradient, which f's gradient
    // function is still reading: not offered.
    offered.length = 0;
    cf.scope(() => {
      const h = cf.mul(x, 2);
      cf.sum(cf.mul(cf.add(h, scaleInPlace(h, 3, offered)), cf.fromArray(c, [4]))).backward();
    });
    assert.equal(offered, [null]);
    assertClose(vals(x.grad), c.map((v) => 2 * 4 * v), { atol: 1e-5 });
  } finally {
    x.dispose();
  }
});

test('a cast to bf16 adds its gradient into the wider input\'s pending one: no widened copy', () => {
  const xData = [1.5, -2.25, 3.125, 0.5];
  const x = cf.fromArray(xData, [4], { requiresGrad: true });
  const addon = native as unknown as { cast: (...a: unknown[]) => void };
  const castFn = addon.cast;
  let casts = 0;
  try {
    cf.scope(() => {
      // y = h + f32(bf16(h)^2), h = 2 x (exact in bf16 here): dy/dx = 2 (1 + 2 h).
      const h = cf.mul(x, 2);
      const b = cf.cast(h, 'bf16');
      const y = cf.add(h, cf.cast(cf.mul(b, b), 'f32'));
      addon.cast = (...a: unknown[]) => {
        casts++;
        castFn.apply(native, a);
      };
      cf.sum(y).backward();
    });
    // The f32 -> bf16 narrowing of the branch's gradient only; the widening is the in-place add.
    assert.is(casts, 1);
    assertClose(vals(x.grad), xData.map((v) => 2 * (1 + 4 * v)), { atol: 1e-5 });
  } finally {
    addon.cast = castFn;
    x.dispose();
  }
});

test('noGrad records nothing and restores the mode, also after a throw', () => {
  const x = cf.ones([2], { requiresGrad: true });
  assert.ok(cf.isGradEnabled());
  cf.scope(() => {
    const y = cf.noGrad(() => {
      assert.not.ok(cf.isGradEnabled());
      return cf.mul(x, x);
    });
    assert.not.ok(y.requiresGrad);
    assert.is(y.gradFn, null);
    assert.throws(() => cf.sum(y).backward(), /backward: the tensor does not require a gradient/);
    // enableGrad inside noGrad turns recording back on, for its function only.
    cf.noGrad(() => {
      const z = cf.enableGrad(() => cf.mul(x, x));
      assert.ok(z.requiresGrad);
      assert.not.ok(cf.isGradEnabled());
    });
  });
  assert.throws(() =>
    cf.noGrad(() => {
      throw new Error('inside');
    }),
  /inside/);
  assert.ok(cf.isGradEnabled(), 'recording is back on after a throw');
  // Nested noGrad.
  cf.noGrad(() => cf.noGrad(() => undefined));
  assert.ok(cf.isGradEnabled());
  assert.throws(() => cf.noGrad(5 as never), /noGrad: expected a function for fn, got 5 of type number/);
  assert.throws(() => cf.enableGrad('f' as never), /enableGrad: expected a function for fn/);
  assert.ok(cf.isGradEnabled(), 'a refused call leaves the mode alone');
  assert.throws(() => cf.backward([1] as never), /backward: expected a Tensor for tensor, got an array of length 1/);
  x.dispose();
});

test('backward twice on the same graph throws a clear error', () => {
  const x = cf.fromArray([1, 2], [2], { requiresGrad: true });
  cf.scope(() => {
    const y = cf.sum(cf.exp(x));
    y.backward();
    assert.throws(() => y.backward(), /backward: the graph through '\w+' has already been run or released; compute the forward again/);
    // A graph that shares a consumed node is refused too.
    const h = cf.exp(x);
    const y1 = cf.sum(h);
    const y2 = cf.sum(cf.mul(h, 2));
    y1.backward();
    assert.throws(() => y2.backward(), /already been run or released/);
  });
  assertClose(vals(x.grad), [Math.exp(1) * 2, Math.exp(2) * 2], { rtol: 1e-6 });
  x.dispose();
});

test('backward on a non-scalar without a gradient throws; explicit grad works', () => {
  const data = [1, -2, 3, 0.5, 4, -1];
  const x = cf.fromArray(data, [2, 3], { requiresGrad: true });
  cf.scope(() => {
    const y = cf.mul(x, x);
    assert.throws(() => y.backward(), /backward: expected a one-element tensor or an explicit grad, got shape \[2, 3\]/);
    assert.throws(() => y.backward(cf.ones([5])), /backward: expected grad like Tensor\(\[2, 3\], f32, cpu\), got Tensor\(\[5\], f32, cpu\)/);
    assert.throws(() => y.backward(cf.ones([2, 3], { dtype: 'bf16' })), /expected grad like/);
    assert.throws(() => y.backward('g' as never), /backward: expected a Tensor for grad/);
    const g = cf.fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    y.backward(g);
    assertClose(vals(x.grad), data.map((v, i) => 2 * v * (i + 1)));
    assert.not.ok(g.isDisposed, 'the caller keeps the grad it passed');
    assert.equal(Array.from(g.toArray()), [1, 2, 3, 4, 5, 6], 'and it is not modified');
  });
  // A one-element non-scalar output works without grad; an explicit scalar grad scales it.
  cf.scope(() => {
    x.grad!.dispose();
    x.grad = null;
    cf.reshape(cf.sum(x), [1, 1]).backward();
    assertClose(vals(x.grad), new Array(6).fill(1));
    x.grad!.dispose();
    x.grad = null;
    cf.sum(x).backward(cf.scalar(0.5));
    assertClose(vals(x.grad), new Array(6).fill(0.5));
  });
  // A leaf that requires a gradient is its own graph.
  const leaf = cf.fromArray([1, 2], [2], { requiresGrad: true });
  leaf.backward(cf.fromArray([3, 4]));
  assertClose(vals(leaf.grad), [3, 4]);
  assert.throws(() => cf.ones([1]).backward(), /does not require a gradient/);
  x.dispose();
  leaf.dispose();
});

test('detach stops gradients', () => {
  const data = [0.5, 1.5, -2];
  const x = cf.fromArray(data, [3], { requiresGrad: true });
  cf.scope(() => {
    const d = cf.detach(x);
    assert.not.ok(d.requiresGrad);
    cf.sum(cf.mul(d, x)).backward();
  });
  assertClose(vals(x.grad), data, { what: 'd(sum(stop(x) * x))/dx = x' });
  x.dispose();
});

test('no gradient flows to inputs that do not require one; i32 casts cut the graph', () => {
  const w = cf.fromArray([1, 2], [2], { requiresGrad: true });
  const c = cf.fromArray([3, 4]);
  cf.scope(() => {
    cf.sum(cf.mul(w, c)).backward();
    const r = cf.cast(cf.cast(w, 'i32'), 'f32');
    assert.not.ok(r.requiresGrad);
  });
  assert.is(c.grad, null);
  assertClose(vals(w.grad), [3, 4]);
  w.dispose();
  c.dispose();
});

// --- checkpoint -------------------------------------------------------------------------

/** A block with several intermediates, a captured parameter and a random draw inside. */
function makeBlock(w: cf.Tensor): (x: cf.Tensor) => cf.Tensor {
  return (x) => {
    const h = cf.gelu(cf.mul(x, w));
    const noise = cf.rand(x.shape);
    return cf.add(cf.mul(cf.tanh(h), noise), cf.square(h));
  };
}

function runBlock(useCheckpoint: boolean, xRequiresGrad: boolean): { x: number[] | null; w: number[]; loss: number } {
  const xData = Float32Array.from([0.3, -1.2, 0.8, 2.0, -0.1, 0.6]);
  const wData = Float32Array.from([1.5, -0.5, 0.25, 1, 2, -1]);
  const x = cf.fromArray(xData, [2, 3], { requiresGrad: xRequiresGrad });
  const w = cf.fromArray(wData, [2, 3], { requiresGrad: true });
  cf.manualSeed(77);
  const block = makeBlock(w);
  const loss = cf.scope(() => {
    const y = useCheckpoint ? cf.checkpoint(block, x) : block(x);
    cf.rand([5]); // a draw between forward and backward must not change the recomputation
    const l = cf.sum(cf.mul(y, y));
    l.backward();
    return l.item();
  });
  const r = { x: x.grad ? Array.from(x.grad.toArray()) : null, w: vals(w.grad), loss };
  x.dispose();
  w.dispose();
  return r;
}

test('checkpoint gives the gradients of the plain computation (inputs and captured parameters)', () => {
  const plain = runBlock(false, true);
  const ck = runBlock(true, true);
  assert.is(ck.loss, plain.loss);
  assertClose(ck.x!, plain.x!, { rtol: 1e-6, what: 'dx' });
  assertClose(ck.w, plain.w, { rtol: 1e-6, what: 'dw' });
  assert.ok(plain.w.some((v) => Math.abs(v) > 1e-3), 'a non-trivial gradient');
});

test('checkpoint reaches a captured parameter when no input requires a gradient', () => {
  const plain = runBlock(false, false);
  const ck = runBlock(true, false);
  assert.is(ck.x, null);
  assert.is(plain.x, null);
  assertClose(ck.w, plain.w, { rtol: 1e-6, what: 'dw' });
});

test('checkpoint of nested checkpoints and of an identity function', () => {
  const x = cf.fromArray([0.5, -1, 2], [3], { requiresGrad: true });
  cf.scope(() => {
    const inner = (t: cf.Tensor): cf.Tensor => cf.exp(t);
    const y = cf.checkpoint((t) => cf.mul(cf.checkpoint(inner, t), t), x);
    cf.sum(y).backward();
  });
  // d/dx (x e^x) = e^x (1 + x)
  assertClose(vals(x.grad), [0.5, -1, 2].map((v) => Math.exp(v) * (1 + v)), { rtol: 1e-5 });
  x.grad!.dispose();
  x.grad = null;
  cf.scope(() => {
    const y = cf.checkpoint((t) => t, x);
    cf.sum(cf.mul(y, 3)).backward();
  });
  assertClose(vals(x.grad), [3, 3, 3]);
  assert.not.ok(x.isDisposed);
  x.dispose();
});

test('checkpoint frees its activations right after the forward, and everything after backward', () => {
  const n = 4096; // 16 KiB per f32 tensor
  const x = cf.fromArray(rng.array(n), [n], { requiresGrad: true });
  const bytes0 = cpuBytes();
  const live0 = cf.liveTensorCount();
  // Six intermediates of n elements each inside the block.
  const block = (t: cf.Tensor): cf.Tensor => cf.sum(cf.square(cf.tanh(cf.exp(cf.mul(cf.add(cf.gelu(t), 1), 0.5)))));
  cf.scope(() => {
    const y = cf.checkpoint(block, x);
    assert.is(cpuBytes() - bytes0, 4, 'only the one-element output is held after the forward');
    // Without checkpointing the same block holds its activations.
    cf.scope(() => {
      block(x);
      assert.ok(cpuBytes() - bytes0 >= 4 + 4 * n * 4, `the plain forward holds activations (${cpuBytes() - bytes0} bytes)`);
    });
    assert.is(cpuBytes() - bytes0, 4);
    y.backward();
    assert.is(cpuBytes() - bytes0, 4 + 4 * n, 'after backward: the output and the gradient of x');
  });
  assert.is(cpuBytes() - bytes0, 4 * n, 'the scope leaves only x.grad');
  assert.is(cf.liveTensorCount(), live0 + 1);
  x.dispose();
  assert.is(cf.liveTensorCount(), live0 - 1);
});

test('checkpoint under noGrad runs the function plainly; bad arguments are refused', () => {
  const x = cf.ones([2], { requiresGrad: true });
  cf.scope(() => {
    const y = cf.noGrad(() => cf.checkpoint((t) => cf.mul(t, 2), x));
    assert.not.ok(y.requiresGrad);
    assert.equal(Array.from(y.toArray()), [2, 2]);
    assert.throws(() => cf.checkpoint(42 as never, x), /checkpoint: expected a function for fn/);
    assert.throws(() => cf.checkpoint((t) => t, 'x' as never), /checkpoint: expected a Tensor for inputs\[0\]/);
    assert.throws(() => cf.checkpoint(() => 3 as never, x), /checkpoint: expected a Tensor for the result of fn, got 3/);
  });
  x.dispose();
});

// --- release of graphs ------------------------------------------------------------------

test('a graph whose output is disposed without backward releases its saved tensors', () => {
  const bytes0 = cpuBytes();
  const live0 = cf.liveTensorCount();
  const n = 1000;
  const x = cf.fromArray(rng.array(n), [n], { requiresGrad: true });
  const h = cf.exp(x); // saves x
  const y = cf.mul(h, h); // saves h
  const z = cf.sigmoid(y); // saves y
  const s = cf.sum(z);
  // Disposing the intermediates does not free them: the graph still holds their memory.
  h.dispose();
  y.dispose();
  z.dispose();
  assert.is(cpuBytes() - bytes0, 4 * n * 3 + 4, 'x, and h and y held by the graph, and s');
  s.dispose();
  assert.is(cpuBytes() - bytes0, 4 * n, 'only x is left');
  assert.is(cf.liveTensorCount(), live0 + 1);
  x.dispose();
  assert.is(cpuBytes(), bytes0);
  assert.is(cf.liveTensorCount(), live0);
});

test('backward outside any scope leaves nothing behind but the gradients', () => {
  const bytes0 = cpuBytes();
  const live0 = cf.liveTensorCount();
  const x = cf.fromArray(rng.array(12), [3, 4], { requiresGrad: true });
  const b = cf.fromArray(rng.array(4), [4], { requiresGrad: true });
  const made: cf.Tensor[] = [];
  const t = <T extends cf.Tensor>(v: T): T => {
    made.push(v);
    return v;
  };
  // Every op family of the core with a backward, chained.
  const h = t(cf.add(t(cf.mul(x, b)), b));
  const r = t(cf.reshape(t(cf.gelu(h)), [4, 3]));
  const m = t(cf.max(r, 1));
  const s1 = t(cf.sum(t(cf.sub(t(cf.div(t(cf.mean(r, 0, { keepDims: true })), 2)), t(cf.maximum(r, t(cf.zeros([4, 3]))))))));
  const s2 = t(cf.mean(t(cf.mul(m, m))));
  const s3 = t(cf.sum(t(cf.clone(t(cf.cast(t(cf.cast(x, 'bf16')), 'f32'))))));
  const loss = t(cf.add(t(cf.add(s1, s2)), t(cf.max(t(cf.flatten(t(cf.exp(s3))))))));
  loss.backward();
  assert.ok(x.grad && b.grad);
  for (const v of made) v.dispose();
  assert.is(cf.liveTensorCount(), live0 + 4, 'x, b and their two gradients');
  assert.is(cpuBytes() - bytes0, 2 * (12 + 4) * 4);
  x.dispose();
  b.dispose();
  assert.is(cf.liveTensorCount(), live0);
  assert.is(cpuBytes(), bytes0);
});

test('backward with an explicit grad, outside any scope, leaves nothing behind', () => {
  const bytes0 = cpuBytes();
  const live0 = cf.liveTensorCount();
  const x = cf.fromArray([1, 2, 3, 4], [2, 2], { requiresGrad: true });
  const y = cf.mul(x, 2);
  const g = cf.fromArray([1, 1, 1, 1], [4]); // any shape with the same size
  y.backward(g);
  assertClose(vals(x.grad), [2, 2, 2, 2]);
  // A leaf root with an explicit grad.
  const leaf = cf.ones([3], { requiresGrad: true });
  const g2 = cf.full([3], 5);
  leaf.backward(g2);
  assertClose(vals(leaf.grad), [5, 5, 5]);
  for (const t of [x, y, g, g2, leaf]) t.dispose();
  assert.is(cf.liveTensorCount(), live0);
  assert.is(cpuBytes(), bytes0);
});

test('a failing gradient function leaves the graph released and nothing allocated', () => {
  const bytes0 = cpuBytes();
  const live0 = cf.liveTensorCount();
  const x = cf.ones([3], { requiresGrad: true });
  const y = cf.exp(x);
  const bad = cf.attachGrad(cf.mul(y, 1), 'bad', [y], [y], () => {
    throw new Error('bad gradient');
  });
  const s = cf.sum(bad);
  assert.throws(() => s.backward(), /bad gradient/);
  assert.throws(() => s.backward(), /already been run or released/);
  for (const v of [s, bad, y, x]) v.dispose();
  assert.is(cf.liveTensorCount(), live0);
  assert.is(cpuBytes(), bytes0);
});

test.run();
