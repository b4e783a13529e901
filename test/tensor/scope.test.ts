// Memory scopes, dispose(), use-after-dispose errors and the garbage-collector backstop.
// Run with --expose-gc (scripts/test.mjs passes it).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';

const test = suite('scope');

const cpuBytes = (): number => cf.memoryStats().cpu.allocatedBytes;

/** Collects garbage and lets finalizers (FinalizationRegistry, N-API) run. */
async function collect(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('this test needs node --expose-gc (run it through scripts/test.mjs)');
  for (let i = 0; i < 6; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('a scope disposes what it created, except the returned tensor', () => {
  const live0 = cf.liveTensorCount();
  const bytes0 = cpuBytes();
  let a!: cf.Tensor, b!: cf.Tensor, c!: cf.Tensor;
  const r = cf.scope(() => {
    assert.is(cf.scopeDepth(), 1);
    a = cf.zeros([4]);
    b = cf.add(a, 1);
    c = cf.mul(b, b);
    return c;
  });
  assert.is(cf.scopeDepth(), 0);
  assert.is(r, c);
  assert.ok(a.isDisposed && b.isDisposed, 'intermediates are disposed');
  assert.not.ok(c.isDisposed, 'the result lives');
  assert.equal(Array.from(c.toArray()), [1, 1, 1, 1]);
  assert.is(cf.liveTensorCount(), live0 + 1);
  assert.is(cpuBytes(), bytes0 + 16);
  c.dispose();
  assert.is(cf.liveTensorCount(), live0);
  assert.is(cpuBytes(), bytes0);
});

test('a scope leaves tensors created outside it alone', () => {
  const outer = cf.ones([3]);
  const r = cf.scope(() => {
    const t = cf.add(outer, outer);
    return cf.sum(t).item();
  });
  assert.is(r, 6);
  assert.not.ok(outer.isDisposed);
  // Returning a tensor created outside: it stays as it was.
  const same = cf.scope(() => outer);
  assert.is(same, outer);
  assert.not.ok(outer.isDisposed);
  outer.dispose();
});

test('nested scopes: a returned tensor moves to the enclosing scope', () => {
  const live0 = cf.liveTensorCount();
  let inner!: cf.Tensor, innerTmp!: cf.Tensor, outerTmp!: cf.Tensor;
  const r = cf.scope(() => {
    outerTmp = cf.zeros([2]);
    const got = cf.scope(() => {
      assert.is(cf.scopeDepth(), 2);
      innerTmp = cf.ones([2]);
      inner = cf.add(innerTmp, 1);
      return inner;
    });
    assert.ok(innerTmp.isDisposed, 'the inner scope disposed its temporary');
    assert.not.ok(got.isDisposed, 'the inner result lives on in the outer scope');
    return cf.mul(got, 3);
  });
  assert.ok(inner.isDisposed, 'the inner result was disposed by the outer scope, which did not return it');
  assert.ok(outerTmp.isDisposed);
  assert.equal(Array.from(r.toArray()), [6, 6]);
  r.dispose();
  assert.is(cf.liveTensorCount(), live0);
});

test('arrays, objects, Maps and Sets returned from a scope keep their tensors', () => {
  const live0 = cf.liveTensorCount();
  let tmp!: cf.Tensor;
  const r = cf.scope(() => {
    tmp = cf.zeros([1]);
    return {
      list: [cf.ones([1]), [cf.full([1], 2)]],
      obj: { deep: { t: cf.full([1], 3) }, n: 5, s: 'text' },
      map: new Map([['k', cf.full([1], 4)]]),
      set: new Set([cf.full([1], 5)]),
    };
  });
  assert.ok(tmp.isDisposed);
  const all = [r.list[0] as cf.Tensor, (r.list[1] as cf.Tensor[])[0]!, r.obj.deep.t, r.map.get('k')!, [...r.set][0]!];
  assert.equal(all.map((t) => t.item()), [1, 2, 3, 4, 5]);
  assert.ok(all.every((t) => !t.isDisposed));
  assert.is(cf.liveTensorCount(), live0 + 5);
  all.forEach((t) => t.dispose());
  assert.is(cf.liveTensorCount(), live0);
});

test('keep() takes a tensor out of every scope', () => {
  const live0 = cf.liveTensorCount();
  let kept!: cf.Tensor, keptList!: cf.Tensor[], dropped!: cf.Tensor;
  cf.scope(() => {
    cf.scope(() => {
      kept = cf.keep(cf.ones([2]));
      keptList = cf.keep([cf.zeros([1]), cf.zeros([1])]);
      dropped = cf.zeros([1]);
    });
  });
  assert.not.ok(kept.isDisposed);
  assert.ok(keptList.every((t) => !t.isDisposed));
  assert.ok(dropped.isDisposed);
  assert.is(cf.liveTensorCount(), live0 + 3);
  kept.dispose();
  keptList.forEach((t) => t.dispose());
  assert.is(cf.liveTensorCount(), live0);
});

test('a scope disposes everything when its function throws, and the error passes through', () => {
  const live0 = cf.liveTensorCount();
  const bytes0 = cpuBytes();
  let made!: cf.Tensor;
  const boom = new Error('boom');
  assert.throws(
    () =>
      cf.scope(() => {
        made = cf.ones([8]);
        cf.scope(() => cf.zeros([8]));
        throw boom;
      }),
    (e: unknown) => e === boom,
  );
  assert.ok(made.isDisposed);
  assert.is(cf.scopeDepth(), 0, 'the scope stack is unwound');
  assert.is(cf.liveTensorCount(), live0);
  assert.is(cpuBytes(), bytes0);
  // An op error inside a scope does not leak either.
  assert.throws(() => cf.scope(() => cf.add(cf.zeros([2]), cf.zeros([3]))), /do not broadcast/);
  assert.is(cf.liveTensorCount(), live0);
  assert.is(cpuBytes(), bytes0);
});

test('a scope refuses an async function and disposes what it created before the first await', async () => {
  await collect(); // garbage from earlier suites would otherwise be finalized during the awaits below
  const live0 = cf.liveTensorCount();
  const rejections: unknown[] = [];
  const onRejection = (e: unknown): void => {
    rejections.push(e);
  };
  process.on('unhandledRejection', onRejection);
  try {
    let t!: cf.Tensor;
    assert.throws(
      () =>
        cf.scope(async () => {
          t = cf.zeros([2]);
          await null;
          return 1;
        }),
      /scope: expected a synchronous function, got one that returned a Promise/,
    );
    assert.ok(t.isDisposed);
    assert.is(cf.scopeDepth(), 0);
    // The refused function's own failure must not surface later as an unhandled rejection.
    assert.throws(
      () =>
        cf.scope(async () => {
          throw new Error('late failure');
        }),
      /synchronous function/,
    );
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(rejections.map(String), [], 'no unhandled rejection');
  } finally {
    process.off('unhandledRejection', onRejection);
  }
  assert.is(cf.liveTensorCount(), live0);
});

test('scope refuses a non-function with a clear error', () => {
  assert.throws(() => cf.scope(42 as never), /scope: expected a function for fn, got 42 of type number/);
  assert.is(cf.scopeDepth(), 0);
});

test('dispose() is idempotent', () => {
  const live0 = cf.liveTensorCount();
  const bytes0 = cpuBytes();
  const t = cf.zeros([16]);
  const v = t.view([4, 4]);
  t.dispose();
  t.dispose();
  t.dispose();
  assert.is(cf.liveTensorCount(), live0 + 1, 'counted once');
  assert.is(cpuBytes(), bytes0 + 64, 'the view still holds the memory: a second dispose did not release it');
  v.dispose();
  v.dispose();
  assert.is(cf.liveTensorCount(), live0);
  assert.is(cpuBytes(), bytes0);
  // A tensor disposed by hand inside a scope is not disposed again at the end.
  cf.scope(() => {
    const x = cf.ones([2]);
    x.dispose();
  });
  assert.is(cf.liveTensorCount(), live0);
});

test('using a disposed tensor throws a clear error', () => {
  const t = cf.fromArray([1, 2, 3]);
  t.dispose();
  assert.ok(t.isDisposed);
  assert.match(t.toString(), /disposed/);
  assert.throws(() => t.toArray(), /toArray: tensor has been disposed/);
  assert.throws(() => t.item(), /item: tensor has been disposed/);
  assert.throws(() => t.view([3]), /view: tensor has been disposed/);
  assert.throws(() => cf.exp(t), /exp: x has been disposed/);
  assert.throws(() => cf.add(cf.ones([3]), t), /add: b has been disposed/);
  assert.throws(() => cf.reshape(t, [3]), /reshape: x has been disposed/);
  assert.throws(() => cf.sum(t), /sum: x has been disposed/);
  assert.throws(() => t.backward(), /backward: tensor has been disposed/);
  // The addon checks too, for direct callers holding a stale handle.
  assert.throws(() => cf.native.download(t), /download: tensor has been disposed/);
  assert.throws(() => cf.native.fill(t, 0), /fill: out has been disposed/);
  const h = cf.native.alloc(8, 'cpu');
  cf.native.free(h);
  cf.native.free(h); // idempotent
  assert.throws(() => cf.native.download({ handle: h, offset: 0, shape: [2], dtype: 'f32' }), /download: tensor has been disposed/);
});

function makeGarbage(n: number, size: number): void {
  for (let i = 0; i < n; i++) {
    const t = cf.ones([size]);
    const u = cf.mul(t, 2); // dropped without dispose
    void u;
  }
}

test('tensors dropped without dispose are freed after garbage collection', async () => {
  await collect();
  const live0 = cf.liveTensorCount();
  const bytes0 = cpuBytes();
  makeGarbage(50, 1024);
  assert.is(cpuBytes(), bytes0 + 100 * 4096, 'not freed yet');
  await collect();
  assert.is(cpuBytes(), bytes0, 'the backstop released the memory');
  assert.is(cf.liveTensorCount(), live0, 'finalized tensors are not counted as live');
});

test('the backstop frees views, graphs and gradients; it leaves reachable tensors alone', async () => {
  await collect();
  const bytes0 = cpuBytes();
  const live0 = cf.liveTensorCount();
  const keepMe = cf.ones([256]);
  (() => {
    const x = cf.fromArray(new Float32Array(256).fill(0.5), [256], { requiresGrad: true });
    const y = cf.sum(cf.exp(cf.reshape(x, [16, 16])));
    y.backward();
    const z = cf.mul(x, x); // a recorded graph never run
    void z;
    void x.view([256]);
  })();
  await collect();
  assert.is(cpuBytes(), bytes0 + 1024, 'only the reachable tensor is left');
  assert.is(cf.liveTensorCount(), live0 + 1);
  assert.is(keepMe.item.call(cf.sum(keepMe)), 256);
  keepMe.dispose();
  await collect();
  assert.is(cpuBytes(), bytes0);
  assert.is(cf.liveTensorCount(), live0);
});

test('a finalizer never throws into the event loop, whatever storage a tensor was built on', async () => {
  const errors: unknown[] = [];
  const onError = (e: unknown): void => {
    errors.push(e);
  };
  process.on('uncaughtException', onError);
  try {
    (() => {
      // Hand-built storages (the constructors are public): a handle the addon refuses.
      try {
        void new cf.Tensor(new cf.Storage('not a handle', 4, 'cpu'), [1], 'f32', 0);
      } catch {
        /* refusing it up front is fine too */
      }
      try {
        void new cf.Tensor({} as never, [1], 'f32', 0);
      } catch {
        /* refusing it up front is fine too */
      }
    })();
    await collect();
  } finally {
    process.off('uncaughtException', onError);
  }
  assert.equal(errors.map(String), []);
});

test.run();
