// Tensor creation, dtypes, host transfers, views, device moves and casts, and the seeded
// random numbers.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, hasCuda } from '../support/helpers.js';

const test = suite('tensor');

const arr = (t: cf.Tensor): number[] => Array.from(t.toArray());

/** The bits of a bf16 tensor's values, read back through the f32 widening of download. */
function bf16Bits(values: ArrayLike<number>): number[] {
  const f = Float32Array.from(values);
  const u = new Uint32Array(f.buffer);
  return Array.from(u, (x) => x >>> 16);
}

test('zeros, ones and full give the value on every element, for each dtype', () => {
  cf.scope(() => {
    for (const dtype of cf.DTYPES) {
      const z = cf.zeros([2, 3], { dtype });
      assert.equal(z.shape, [2, 3]);
      assert.is(z.dtype, dtype);
      assert.is(z.device, 'cpu');
      assert.is(z.size, 6);
      assert.is(z.rank, 2);
      assert.equal(arr(z), [0, 0, 0, 0, 0, 0]);
      assert.equal(arr(cf.ones([4], { dtype })), [1, 1, 1, 1]);
      assert.equal(arr(cf.full([1, 2, 1], -3, { dtype })), [-3, -3]);
      assert.ok(dtype === 'i32' ? z.toArray() instanceof Int32Array : z.toArray() instanceof Float32Array, `${dtype} download type`);
    }
    assert.equal(arr(cf.full([3], 0.1)), [Math.fround(0.1), Math.fround(0.1), Math.fround(0.1)]);
    // bf16: 0.1 rounds to the nearest bf16, 0x3DCD = 0.10009765625.
    assert.equal(arr(cf.full([1], 0.1, { dtype: 'bf16' })), [0.10009765625]);
    const e = cf.zeros([0, 5]);
    assert.is(e.size, 0);
    assert.is(e.toArray().length, 0);
    assert.equal(arr(cf.zerosLike(cf.ones([2], { dtype: 'i32' }))), [0, 0]);
    assert.is(cf.onesLike(cf.ones([2], { dtype: 'bf16' })).dtype, 'bf16');
    assert.ok(cf.zeros([2], { requiresGrad: true }).requiresGrad);
  });
});

test('full: i32 refuses non-finite values; non-number values are refused', () => {
  cf.scope(() => {
    assert.throws(() => cf.full([2], NaN, { dtype: 'i32' }), /fill: expected a finite number for an i32 tensor/);
    assert.throws(() => cf.full([2], Infinity, { dtype: 'i32' }), /finite/);
    assert.throws(() => cf.full([2], '1' as never), /full: expected a number for value, got '1' of type string/);
    assert.ok(Number.isNaN(cf.full([1], NaN).item()));
    assert.is(cf.full([1], Infinity, { dtype: 'bf16' }).item(), Infinity);
  });
});

test('arange: numpy semantics, i32 by default, any dtype', () => {
  cf.scope(() => {
    const a = cf.arange(5);
    assert.is(a.dtype, 'i32');
    assert.equal(arr(a), [0, 1, 2, 3, 4]);
    assert.equal(arr(cf.arange(2, 6)), [2, 3, 4, 5]);
    assert.equal(arr(cf.arange(5, 0, -2)), [5, 3, 1]);
    assert.equal(arr(cf.arange(1, 2, 0.25, { dtype: 'f32' })), [1, 1.25, 1.5, 1.75]);
    assert.equal(arr(cf.arange(0, 1, 0.3, { dtype: 'f32' })).length, 4);
    assert.equal(arr(cf.arange(0, 4, 1, { dtype: 'bf16' })), [0, 1, 2, 3]);
    assert.equal(cf.arange(3, 3).shape, [0]);
    assert.equal(cf.arange(3, 0).shape, [0]);
    assert.throws(() => cf.arange(0, 3, 0), /arange: expected a non-zero number for step/);
    assert.throws(() => cf.arange(NaN, 3), /arange: expected a finite number for start/);
    assert.throws(() => cf.arange(NaN), /arange: expected a finite number for end/);
    assert.throws(() => cf.arange(0, Infinity), /arange: expected a finite number for end/);
  });
});

test('fromArray: f32 values are stored exactly as Math.fround; shape checks', () => {
  cf.scope(() => {
    const vals = [0, -0, 1.5, -2.25, 1e-40, 3.4e38, 1 / 3, Infinity, -Infinity];
    const t = cf.fromArray(vals, [3, 3]);
    assert.equal(t.shape, [3, 3]);
    assert.is(t.dtype, 'f32');
    const back = t.toArray();
    vals.forEach((v, i) => assert.ok(Object.is(back[i], Math.fround(v)), `element ${i}: ${back[i]} vs ${Math.fround(v)}`));
    assert.ok(Number.isNaN(cf.fromArray([NaN]).item()));
    assert.equal(cf.fromArray(new Float32Array(4)).shape, [4]);
    assert.is(cf.fromArray(new Int32Array([1, 2])).dtype, 'i32', 'an Int32Array gives i32 by default');
    assert.throws(() => cf.fromArray([1, 2, 3], [2, 2]), /fromArray: expected 4 values for shape \[2, 2\], got 3/);
    assert.throws(() => cf.fromArray('abc' as never), /fromArray: expected an array or typed array of numbers for data/);
    assert.throws(() => cf.fromArray(null as never), /fromArray: expected an array/);
    assert.throws(() => cf.fromArray([1], [1], { dtype: 'f64' as never }), /fromArray: expected 'f32', 'bf16' or 'i32' for dtype, got 'f64'/);
    assert.throws(() => cf.fromArray([1], [1], { device: 'gpu' as never }), /expected 'cpu', 'cuda' or 'cuda:N' for device/);
  });
});

test('bf16 rounds to nearest, ties to even, on known values', () => {
  cf.scope(() => {
    const cases: [number, number][] = [
      [1, 0x3f80],
      [-2, 0xc000],
      [1 + 2 ** -8, 0x3f80], // exactly halfway between 1 and 1 + 2^-7: ties to the even mantissa (1)
      [1 + 3 * 2 ** -8, 0x3f82], // halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up
      [1 + 2 ** -8 + 2 ** -20, 0x3f81], // just above halfway: rounds up
      [1 + 2 ** -8 - 2 ** -20, 0x3f80], // just below halfway: rounds down
      [Math.fround(Math.PI), 0x4049], // 0x40490FDB -> 0x4049 = 3.140625
      [0.1, 0x3dcd], // 0x3DCCCCCD -> 0x3DCD
      [-0, 0x8000],
      [3.4028234663852886e38, 0x7f80], // f32 max rounds up to +inf
      [Infinity, 0x7f80],
      [-Infinity, 0xff80],
      [2 ** -133, 0x0001], // f32 subnormal 0x00010000 is exact
      [2 ** -149, 0x0000], // the smallest f32 subnormal rounds to +0
      [2 ** -126, 0x0080], // smallest normal is exact
    ];
    const t = cf.fromArray(cases.map((c) => c[0]), [cases.length], { dtype: 'bf16' });
    assert.is(t.dtype, 'bf16');
    const bits = bf16Bits(t.toArray());
    cases.forEach(([v, want], i) => assert.is(bits[i], want, `bf16(${v}): got 0x${bits[i]!.toString(16)}, want 0x${want.toString(16)}`));
    // NaN stays NaN (quiet).
    assert.ok(Number.isNaN(cf.fromArray([NaN], [1], { dtype: 'bf16' }).item()));
    // Raw bits in a Uint16Array are stored as they are.
    const raw = cf.fromArray(new Uint16Array([0x3f80, 0xc000, 0x4049, 0x7fc0]), [4], { dtype: 'bf16' });
    const rv = raw.toArray();
    assert.equal(Array.from(rv.subarray(0, 3)), [1, -2, 3.140625]);
    assert.ok(Number.isNaN(rv[3]));
    // Casting f32 -> bf16 rounds the same way as the upload.
    const f = cf.fromArray(cases.map((c) => c[0]));
    assert.equal(bf16Bits(cf.cast(f, 'bf16').toArray()), cases.map((c) => c[1]));
  });
});

test('i32: exact round trip and range checks', () => {
  cf.scope(() => {
    const vals = [0, -1, 2 ** 31 - 1, -(2 ** 31), 123456789];
    const t = cf.fromArray(vals, [5], { dtype: 'i32' });
    assert.ok(t.toArray() instanceof Int32Array);
    assert.equal(arr(t), vals);
    assert.throws(() => cf.fromArray([2 ** 31], [1], { dtype: 'i32' }), /fromArray: expected a 32-bit integer for data\[0\], got 2147483648/);
    assert.throws(() => cf.fromArray([0, -(2 ** 31) - 1], [2], { dtype: 'i32' }), /data\[1\]/);
    assert.throws(() => cf.fromArray([1.5], [1], { dtype: 'i32' }), /32-bit integer for data\[0\], got 1.5/);
    assert.throws(() => cf.fromArray([NaN], [1], { dtype: 'i32' }), /32-bit integer/);
    assert.throws(() => cf.fromArray(new Float32Array([0.5]), [1], { dtype: 'i32' }), /32-bit integer/);
    assert.equal(arr(cf.fromArray(new Float32Array([7, -8]), [2], { dtype: 'i32' })), [7, -8]);
    // Upload refuses a typed array that does not match the dtype.
    const f = cf.empty([2]);
    assert.throws(() => cf.native.upload(f, new Int32Array(2)), /upload: data of this typed array type cannot fill a f32 tensor/);
    assert.throws(() => cf.native.upload(f, new Float32Array(3)), /upload: expected 2 values/);
  });
});

test('scalar and item', () => {
  cf.scope(() => {
    const s = cf.scalar(2.5);
    assert.equal(s.shape, []);
    assert.is(s.size, 1);
    assert.is(s.rank, 0);
    assert.is(s.item(), 2.5);
    assert.is(cf.scalar(-7, { dtype: 'i32' }).item(), -7);
    assert.is(cf.scalar(1.00390625, { dtype: 'bf16' }).item(), 1);
    assert.is(cf.fromArray([4], [1, 1, 1]).item(), 4);
    assert.throws(() => cf.zeros([2]).item(), /item: expected a tensor with one element, got shape \[2\]/);
    assert.throws(() => cf.zeros([0]).item(), /item: expected a tensor with one element, got shape \[0\]/);
    assert.throws(() => cf.scalar('1' as never), /scalar: expected a number for value/);
  });
});

test('shape checks: negative, fractional, non-finite sizes and too many dims', () => {
  assert.throws(() => cf.zeros([2, -1]), /empty: expected non-negative integer sizes for shape, got \[2, -1\]/);
  assert.throws(() => cf.zeros([1.5]), /non-negative integer sizes/);
  assert.throws(() => cf.zeros([NaN]), /non-negative integer sizes/);
  assert.throws(() => cf.zeros([Infinity]), /non-negative integer sizes/);
  assert.throws(() => cf.zeros(['2'] as never), /non-negative integer sizes/);
  assert.throws(() => cf.zeros([1, 1, 1, 1, 1, 1, 1, 1, 1]), /at most 8 dimensions/);
  assert.throws(() => cf.zeros(5 as never), /expected an array of non-negative integers for shape, got 5 of type number/);
  assert.throws(() => cf.zeros([2 ** 30, 2 ** 30]), /too many elements/);
  assert.throws(() => cf.zeros([2], { dtype: 'f16' as never }), /expected 'f32', 'bf16' or 'i32' for dtype/);
  assert.throws(() => cf.zeros([2], { device: 'cuda:x' }), /expected 'cpu', 'cuda' or 'cuda:N' for device, got 'cuda:x'/);
  assert.is(cf.liveTensorCount(), cf.liveTensorCount(), 'no tensor was left behind by a refused call');
});

test('a huge size is refused before any memory is allocated', () => {
  const before = cf.memoryStats();
  // 2^44 f32 elements = 64 TiB: more than any machine has.
  assert.throws(() => cf.zeros([2 ** 22, 2 ** 22]), /alloc: \d+ bytes is more than this machine's memory/);
  assert.throws(() => cf.native.alloc(2 ** 52, 'cpu'), /more than this machine's memory/);
  assert.throws(() => cf.native.alloc(-1, 'cpu'), /alloc: expected a non-negative integer for nbytes, got -1/);
  assert.throws(() => cf.native.alloc(1.5, 'cpu'), /non-negative integer/);
  const after = cf.memoryStats();
  assert.is(after.cpu.allocatedBytes, before.cpu.allocatedBytes);
  assert.is(after.cpu.allocCalls, before.cpu.allocCalls, 'the allocator was never called');
  assert.is(after.liveTensors, before.liveTensors, 'the refused tensors were not left alive');
});

test('reshape resolves one -1; views share memory; flatten', () => {
  cf.scope(() => {
    const x = cf.arange(0, 24, 1, { dtype: 'f32' });
    const a = cf.reshape(x, [2, -1, 4]);
    assert.equal(a.shape, [2, 3, 4]);
    assert.equal(cf.reshape(x, [-1]).shape, [24]);
    assert.equal(cf.reshape(x, [4, -1]).shape, [4, 6]);
    assert.equal(cf.reshape(x, [-1, 1, 2]).shape, [12, 1, 2]);
    assert.equal(cf.reshape(cf.zeros([0, 3]), [-1]).shape, [0]);
    assert.throws(() => cf.reshape(x, [-1, -1]), /reshape: at most one -1/);
    assert.throws(() => cf.reshape(x, [5, -1]), /reshape: cannot reshape \[24\] to \[5, -1\]/);
    assert.throws(() => cf.reshape(x, [5, 5]), /reshape: cannot reshape \[24\] \(24 elements\) to \[5, 5\]/);
    assert.throws(() => cf.reshape(x, [-2, -12]), /non-negative integer sizes/);
    assert.throws(() => cf.reshape(x, 24 as never), /reshape: expected an array for shape/);
    assert.equal(cf.flatten(a).shape, [24]);
    assert.equal(cf.flatten(a, 1).shape, [2, 12]);
    assert.equal(cf.flatten(a, 0, 1).shape, [6, 4]);
    assert.equal(cf.flatten(cf.scalar(1)).shape, [1]);
    assert.throws(() => cf.flatten(a, 2, 1), /flatten: invalid dims/);

    // The reshaped tensor and the original are the same memory.
    assert.is(a.storage, x.storage);
    cf.native.fill(a, 7);
    assert.equal(arr(x), new Array(24).fill(7));
    // A leading-dim window (view with an element offset) reads and writes the middle rows.
    const m = cf.fromArray([0, 1, 2, 3, 4, 5], [3, 2]);
    const row1 = m.view([1, 2], 2);
    assert.equal(arr(row1), [2, 3]);
    cf.native.fill(row1, -1);
    assert.equal(arr(m), [0, 1, -1, -1, 4, 5]);
    // detach is a view too.
    const d = cf.detach(m);
    assert.is(d.storage, m.storage);
    assert.not.ok(d.requiresGrad);
  });
});

test('view() checks its shape and that it fits the storage', () => {
  cf.scope(() => {
    const x = cf.zeros([2, 3]);
    assert.equal(x.view([3, 2]).shape, [3, 2]);
    assert.equal(x.view([3], 3).shape, [3]);
    assert.equal(x.view([0], 6).shape, [0]);
    assert.throws(() => x.view([7]), /view: shape \[7\] at element offset 0 does not fit Tensor\(\[2, 3\], f32, cpu\) \(storage of 24 bytes\)/);
    assert.throws(() => x.view([3], 4), /does not fit/);
    assert.throws(() => x.view([NaN]), /view: expected non-negative integer sizes for shape/);
    assert.throws(() => x.view('cuda' as never), /view: expected an array of non-negative integers for shape/);
    assert.throws(() => x.view([1], -1), /view: expected an integer in \[0, Infinity\] for elementOffset, got -1/);
    assert.throws(() => x.view([1], 0.5), /elementOffset/);
    // A view of a view is checked against the shared storage.
    const tail = x.view([2], 4);
    assert.throws(() => tail.view([3]), /does not fit/);
    assert.equal(tail.view([1, 2]).shape, [1, 2]);
  });
});

test('objects that only borrow the Tensor prototype are refused and never counted', () => {
  const live0 = cf.liveTensorCount();
  const fake = Object.create(cf.Tensor.prototype) as cf.Tensor;
  fake.dispose();
  cf.Tensor.prototype.dispose.call({} as cf.Tensor);
  assert.is(cf.liveTensorCount(), live0, 'disposing a fake does not count a live tensor off');
  assert.throws(() => cf.exp(fake), /exp: expected a Tensor for x, got an object that no Tensor constructor made/);
  assert.throws(() => fake.toArray(), /toArray: expected a Tensor for tensor/);
  assert.throws(() => new cf.Tensor({} as never, [1], 'f32', 0), /Tensor: expected a Storage for storage, got an instance of Object/);
  assert.is(cf.liveTensorCount(), live0);
  assert.throws(() => cf.emptyLike(undefined as never), /emptyLike: expected a Tensor for t, got undefined/);
  assert.throws(() => cf.zerosLike(3 as never), /zerosLike: expected a Tensor for t/);
  assert.throws(() => cf.onesLike(null as never), /onesLike: expected a Tensor for t, got null/);
});

test('a view keeps the memory alive after its base is disposed', () => {
  const base = cf.memoryStats().cpu.allocatedBytes;
  const x = cf.fromArray([1, 2, 3, 4]);
  const v = cf.reshape(x, [2, 2]);
  x.dispose();
  assert.ok(x.isDisposed);
  assert.not.ok(v.isDisposed);
  assert.equal(arr(v), [1, 2, 3, 4]);
  assert.is(cf.memoryStats().cpu.allocatedBytes, base + 16, 'the storage is still held by the view');
  v.dispose();
  assert.is(cf.memoryStats().cpu.allocatedBytes, base, 'the last reference frees the storage');
});

test('to(device) and cast round trips', () => {
  cf.scope(() => {
    const vals = [1.5, -2.25, 0, 1000.125, 3e-5];
    for (const device of devices()) {
      const x = cf.fromArray(vals);
      const y = cf.to(x, device);
      assert.is(y.device, device);
      if (device === 'cpu') assert.is(y, x, 'to(the same device) is the tensor itself');
      const back = cf.to(y, 'cpu');
      assert.equal(arr(back), vals.map(Math.fround));
      for (const dtype of ['bf16', 'i32'] as const) {
        const c = cf.cast(y, dtype);
        assert.is(c.dtype, dtype);
        assert.is(c.device, device);
        const cb = cf.to(cf.cast(c, 'f32'), 'cpu');
        const expect = dtype === 'i32' ? vals.map(Math.trunc) : Array.from(cf.fromArray(vals, [5], { dtype: 'bf16' }).toArray());
        assert.equal(arr(cb), expect.map((v) => v + 0), `${dtype} on ${device}`);
      }
      // i32 -> f32 -> i32 is exact for values up to 2^24.
      const ints = [0, -5, 16777216, -16777216, 12345];
      const xi = cf.fromArray(ints, [5], { dtype: 'i32', device });
      assert.equal(arr(cf.cast(cf.cast(xi, 'f32'), 'i32')), ints);
      // f32 -> i32 truncates toward zero and saturates; NaN becomes 0.
      const xf = cf.fromArray([1.7, -1.7, 3e9, -3e9, NaN], [5], { device });
      assert.equal(arr(cf.cast(xf, 'i32')), [1, -1, 2 ** 31 - 1, -(2 ** 31), 0]);
      assert.is(cf.cast(xf, 'f32'), xf, 'cast to the same dtype is the tensor itself');
    }
    assert.throws(() => cf.cast(cf.zeros([1]), 'f64' as never), /cast: expected 'f32', 'bf16' or 'i32' for dtype/);
    assert.throws(() => cf.to(cf.zeros([1]), 'tpu' as never), /to: expected 'cpu', 'cuda' or 'cuda:N' for device/);
    if (!hasCuda()) assert.throws(() => cf.to(cf.zeros([1]), 'cuda:0'), /alloc: (this clipforge build has no CUDA backend|no device cuda:0)/);
    assert.throws(() => cf.zeros([1], { device: 'cuda:7' }), /alloc: (this clipforge build has no CUDA backend|no device cuda:7)/);
  });
});

test('rand and randn: the same seed gives the same numbers; the counter advances', () => {
  cf.scope(() => {
    cf.manualSeed(42);
    const a = cf.randn([1000]).toArray();
    const a2 = cf.randn([1000]).toArray();
    cf.manualSeed(42);
    const b = cf.randn([1000]).toArray();
    assert.equal(Array.from(a), Array.from(b), 'same seed, same numbers');
    let same = 0;
    for (let i = 0; i < a.length; i++) if (a[i] === a2[i]) same++;
    assert.ok(same < 5, `the second call continues the sequence (equal elements: ${same})`);
    cf.manualSeed(43);
    const c = cf.randn([1000]).toArray();
    same = 0;
    for (let i = 0; i < a.length; i++) if (a[i] === c[i]) same++;
    assert.ok(same < 5, `another seed gives other numbers (equal elements: ${same})`);
    // Counter-based: one call of 2n numbers is two calls of n, concatenated.
    cf.manualSeed(7);
    const whole = cf.rand([2, 300]).toArray();
    cf.manualSeed(7);
    const first = cf.rand([300]).toArray();
    const second = cf.rand([300]).toArray();
    assert.equal(Array.from(whole), [...first, ...second]);
    // Explicit generators are independent of the default one.
    const g1 = new cf.Generator(5);
    const g2 = new cf.Generator(5);
    const x1 = cf.rand([50], { generator: g1 }).toArray();
    cf.rand([10]);
    const x2 = cf.rand([50], { generator: g2 }).toArray();
    assert.equal(Array.from(x1), Array.from(x2));
    assert.equal(g1.getState(), { seed: 5, counter: 50 });
  });
});

test('Generator state save and restore', () => {
  cf.scope(() => {
    const g = new cf.Generator(99);
    cf.rand([17], { generator: g });
    const state = g.getState();
    assert.equal(state, { seed: 99, counter: 17 });
    const a = cf.randn([64], { generator: g }).toArray();
    const b = cf.rand([8], { generator: g }).toArray();
    g.setState(state);
    assert.equal(Array.from(cf.randn([64], { generator: g }).toArray()), Array.from(a));
    assert.equal(Array.from(cf.rand([8], { generator: g }).toArray()), Array.from(b));
    // A state moves between generators.
    const h = new cf.Generator(1);
    h.setState(state);
    assert.equal(Array.from(cf.randn([64], { generator: h }).toArray()), Array.from(a));
    // manualSeed restarts the counter.
    g.manualSeed(99);
    assert.equal(g.getState(), { seed: 99, counter: 0 });
    // The default generator too.
    const saved = cf.defaultGenerator.getState();
    const d1 = cf.rand([5]).toArray();
    cf.defaultGenerator.setState(saved);
    assert.equal(Array.from(cf.rand([5]).toArray()), Array.from(d1));
    assert.throws(() => g.setState({ seed: -1, counter: 0 }), /setState: expected an integer in \[0, 9007199254740991\] for state.seed, got -1/);
    assert.throws(() => g.setState({ seed: 1, counter: 0.5 }), /state.counter/);
    assert.throws(() => g.setState(null as never), /state.seed, got undefined/);
    assert.throws(() => new cf.Generator(NaN), /Generator: expected an integer/);
    assert.throws(() => cf.manualSeed(1.5), /manualSeed: expected an integer/);
  });
});

test('rand and randn statistics over 1e5 samples', () => {
  cf.scope(() => {
    const n = 100000;
    cf.manualSeed(2024);
    const stats = (v: Float32Array | Int32Array) => {
      let s = 0, s2 = 0, mn = Infinity, mx = -Infinity;
      for (const x of v) {
        s += x;
        s2 += x * x;
        mn = Math.min(mn, x);
        mx = Math.max(mx, x);
      }
      const mean = s / v.length;
      return { mean, std: Math.sqrt(s2 / v.length - mean * mean), min: mn, max: mx };
    };
    // randn: mean has standard error 1/sqrt(n) = 0.0032 and std about 1/sqrt(2n) = 0.0022;
    // the tolerances are 5 standard errors.
    const z = cf.randn([n]).toArray();
    const sz = stats(z);
    assert.ok(Math.abs(sz.mean) < 0.016, `randn mean ${sz.mean}`);
    assert.ok(Math.abs(sz.std - 1) < 0.011, `randn std ${sz.std}`);
    let within1 = 0, within2 = 0;
    for (const x of z) {
      if (Math.abs(x) < 1) within1++;
      if (Math.abs(x) < 2) within2++;
    }
    // P(|z| < 1) = 0.6827, P(|z| < 2) = 0.9545; binomial standard errors 0.0015 and 0.0007.
    assert.ok(Math.abs(within1 / n - 0.6827) < 0.0075, `P(|z|<1) = ${within1 / n}`);
    assert.ok(Math.abs(within2 / n - 0.9545) < 0.0035, `P(|z|<2) = ${within2 / n}`);
    assert.ok(sz.min > -6 && sz.max < 6, 'no absurd tails');
    // rand: uniform [0, 1): mean 0.5 +- 5 * 0.2887 / sqrt(n), std 0.2887 +- 0.002.
    const u = cf.rand([n]).toArray();
    const su = stats(u);
    assert.ok(Math.abs(su.mean - 0.5) < 0.0046, `rand mean ${su.mean}`);
    assert.ok(Math.abs(su.std - Math.sqrt(1 / 12)) < 0.002, `rand std ${su.std}`);
    assert.ok(su.min >= 0 && su.max < 1, `rand range [${su.min}, ${su.max}]`);
    const buckets = new Array(10).fill(0);
    for (const x of u) buckets[Math.floor(x * 10)]++;
    for (const b of buckets) assert.ok(Math.abs(b / n - 0.1) < 0.005, `decile frequency ${b / n}`);
    // Parameters.
    const s2 = stats(cf.randn([n], { mean: 3, std: 0.5 }).toArray());
    assert.ok(Math.abs(s2.mean - 3) < 0.008 && Math.abs(s2.std - 0.5) < 0.006, `randn(3, 0.5): ${s2.mean} ${s2.std}`);
    const s3 = stats(cf.rand([n], { low: -2, high: 6 }).toArray());
    assert.ok(s3.min >= -2 && s3.max < 6 && Math.abs(s3.mean - 2) < 0.04, `rand(-2, 6): ${JSON.stringify(s3)}`);
  });
});

test('random bf16 is the f32 draw rounded; i32 is refused', () => {
  cf.scope(() => {
    const g = new cf.Generator(11);
    const f = cf.randn([257], { generator: g });
    g.manualSeed(11);
    const b = cf.randn([257], { generator: g, dtype: 'bf16' });
    assert.is(b.dtype, 'bf16');
    assert.equal(arr(b), arr(cf.cast(f, 'bf16')));
    const before = cf.liveTensorCount();
    assert.throws(() => cf.rand([2], { dtype: 'i32' }), /rand: expected dtype 'f32' or 'bf16', got 'i32'/);
    assert.throws(() => cf.randn([2], { dtype: 'i32' }), /randn: expected dtype/);
    assert.throws(() => cf.randn([2], { std: NaN }), /random: expected a finite number for b, got nan/i);
    assert.is(cf.liveTensorCount(), before, 'a refused random call leaves no tensor behind');
    const state = g.getState();
    assert.throws(() => cf.rand([4], { generator: g, low: -Infinity }), /finite/);
    assert.equal(g.getState(), state, 'a refused random call does not move the generator');
  });
});

test('full and arange give the same values on every backend, for each dtype', () => {
  cf.scope(() => {
    for (const device of devices()) {
      for (const dtype of cf.DTYPES) {
        assert.equal(arr(cf.full([3, 2], -7, { dtype, device })), new Array(6).fill(-7), `full ${dtype} ${device}`);
        assert.equal(arr(cf.arange(-2, 9, 3, { dtype, device })), [-2, 1, 4, 7], `arange ${dtype} ${device}`);
      }
      // i32 clamps to its range like the CPU.
      assert.equal(arr(cf.arange(2147483645, 2147483648, 1, { dtype: 'i32', device })), [2147483645, 2147483646, 2147483647]);
    }
  });
});

test('CPU and CUDA give the same random numbers', () => {
  const devs = devices();
  if (devs.length < 2) return; // devices() has printed that the CUDA half did not run
  cf.scope(() => {
    for (const dtype of ['f32', 'bf16'] as const) {
      for (const [kind, fn] of [['rand', cf.rand], ['randn', cf.randn]] as const) {
        const n = 100003;
        const c = fn([n], { generator: new cf.Generator(123), dtype }).toArray();
        const g = fn([n], { generator: new cf.Generator(123), dtype, device: 'cuda:0' }).toArray();
        // The same Philox counters; the transcendental functions may differ in the last ulp.
        assertClose(g, c, { rtol: 1e-6, atol: 1e-6, what: `${kind} ${dtype} cuda vs cpu` });
      }
    }
  });
});

test('errors name the op and the argument', () => {
  cf.scope(() => {
    assert.throws(() => cf.reshape('x' as never, [1]), /reshape: expected a Tensor for x, got 'x' of type string/);
    assert.throws(() => cf.clone(null as never), /clone: expected a Tensor for x, got null/);
    assert.throws(() => cf.to(undefined as never, 'cpu'), /to: expected a Tensor for x, got undefined/);
    assert.match(cf.zeros([2, 3], { dtype: 'bf16' }).toString(), /Tensor\(\[2, 3\], bf16, cpu\)/);
  });
});

test.run();
