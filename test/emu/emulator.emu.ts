// The CUDA emulator's own checks (native/emu), on the kernels of native/emu/selftest.cu.
// Runs only against the emulator addon: `npm run test:cuda-emu` (scripts/test-cuda-emu.mjs)
// runs this file in both thread orders; the default test run does not pick up *.emu.ts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAddon } from '../../lib/native_load.js';

interface SelfTest {
  error: string | null;
  values: Float32Array;
}
const addon = loadAddon() as unknown as { emuSelfTest?: (name: string) => SelfTest };
if (!addon.emuSelfTest) throw new Error('test/emu needs the emulator addon: run it with `npm run test:cuda-emu`');
const selfTest = addon.emuSelfTest;
const reverse = process.env.CLIPFORGE_EMU_SCHEDULE === 'reverse';
const bits = (x: Float32Array): number[] => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));

const test = suite('emu');

test('warp shuffles exchange values between lanes', () => {
  const r = selfTest('shuffle_sum');
  assert.is(r.error, null);
  assert.equal(Array.from(r.values), new Array(32).fill(528));
});

test('a __syncthreads reached at two places in one block is reported with both lines', () => {
  const r = selfTest('divergent_barrier');
  assert.match(r.error ?? '', /kernel divergent_barrier.*__syncthreads at .*selftest\.cu:(\d+) while other threads of the block wait at .*selftest\.cu:(\d+)/);
});

test('threads that can never meet are reported as a deadlock, naming where each waits', () => {
  const r = selfTest('deadlock');
  assert.match(r.error ?? '', /deadlock: no thread can go on; thread \(\d+, 0, 0\) waits in (__syncwarp|__syncthreads)/);
});

test('a shuffle that names an exited lane is reported', () => {
  const r = selfTest('shuffle_with_exited_lane');
  assert.match(r.error ?? '', /exited/);
});

test('shared memory starts as 0xff bytes, so reading it unwritten gives NaN', () => {
  const r = selfTest('read_unwritten_shared');
  assert.is(r.error, null);
  assert.equal(bits(r.values), new Array(32).fill(0xffffffff));
});

test('a missing barrier gives different results in the two thread orders', () => {
  const without = selfTest('neighbour');
  assert.is(without.error, null);
  // Threads run in order up to their next barrier, and this kernel has none: thread t reads
  // s[t + 1] before thread t + 1 has run (forward) or after (reverse).
  const poison = Number.isNaN;
  for (let t = 0; t < 63; t++) {
    if (reverse) assert.is(without.values[t], t + 1, `thread ${t}`);
    else assert.ok(poison(without.values[t]!), `thread ${t} reads before its neighbour writes`);
  }
  const withBarrier = selfTest('neighbour_with_barrier');
  assert.equal(Array.from(withBarrier.values), Array.from({ length: 64 }, (_, t) => (t + 1) % 64));
});

test('cp.async data lands only at the wait that covers its group', () => {
  const r = selfTest('async_copies');
  assert.is(r.error, null);
  const v = Array.from(r.values.subarray(256));
  for (let t = 0; t < 32; t++) {
    assert.ok(Number.isNaN(v[t]!), 'before any wait: still the poison');
    assert.is(v[32 + t], t * 4, 'wait<1> lands the first group');
    assert.ok(Number.isNaN(v[64 + t]!), 'wait<1> leaves the newest group in flight');
    assert.is(v[96 + t], 128 + t * 4, 'wait<0> lands the second group');
  }
});

test('ldmatrix (plain and .trans) and mma.sync compute a 16x8x16 product', () => {
  const r = selfTest('mma_tile');
  assert.is(r.error, null);
  const a = r.values.subarray(0, 256), b = r.values.subarray(256, 384), out = r.values.subarray(384);
  const want: number[] = [];
  for (let i = 0; i < 16; i++)
    for (let n = 0; n < 8; n++) {
      let s = 0;
      for (let k = 0; k < 16; k++) s += a[i * 16 + k]! * b[k * 8 + n]!;
      want.push(s);
    }
  assert.equal(Array.from(out.subarray(0, 128)), want, 'B n-major (ldmatrix)');
  assert.equal(Array.from(out.subarray(128)), want, 'B k-major (ldmatrix.trans)');
});

test('launches a GPU would refuse are refused with the reason', () => {
  const errors = (selfTest('launch_limits').error ?? '').split('\n');
  assert.match(errors[0]!, /invalid configuration argument: kernel big_dynamic_shared<0>: grid y or z over 65535/);
  assert.match(errors[1]!, /block of 2048 threads/);
  assert.match(errors[2]!, /a zero grid or block dimension/);
  assert.match(errors[3]!, /65536 bytes of dynamic shared memory; cudaFuncSetAttribute allowed 0/);
  assert.is(errors[4], '', 'allowed after cudaFuncSetAttribute');
  assert.match(errors[5]!, /kernel bounded, .*launched with 128 threads per block, over its __launch_bounds__ of 64/);
});

// D (64 x N) = A (64 x 32) B (N x 32)^T, the operands as the self-test stored them (row-major).
function product(values: Float32Array, n: number): number[] {
  const a = values.subarray(0, 64 * 32), b = values.subarray(64 * 32, 64 * 32 + n * 32);
  const d: number[] = [];
  for (let m = 0; m < 64; m++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < 32; k++) s += a[m * 32 + k]! * b[j * 32 + k]!;
      d.push(s);
    }
  return d;
}

for (const n of [128, 256])
  for (const layout of ['kk', 'km', 'mk', 'mm']) {
    const major = (c: string) => (c === 'k' ? 'K-major' : 'MN-major');
    test(`wgmma m64n${n}k16 computes A (${major(layout[0]!)}) B (${major(layout[1]!)}) over two k steps into the fragment layout`, () => {
      const r = selfTest(`wgmma_${n}_${layout}`);
      assert.is(r.error, null);
      assert.equal(Array.from(r.values.subarray(64 * 32 + n * 32)), product(r.values, n));
    });
  }

test('wgmma reads its shared-memory operands at the wait, so operands overwritten before it show', () => {
  const r = selfTest('wgmma_clobbered');
  assert.is(r.error, null);
  assert.equal(Array.from(r.values.subarray(64 * 32 + 128 * 32)), new Array(64 * 128).fill(0));
});

// The self-test's tensor: 80 x 5 x 3, element (x, y, z) = 1 + (x + 7 y + 13 z) % 97; the box:
// 64 x 4 x 2 elements at (32, -1, 2).
function box(): number[] {
  const want: number[] = [];
  for (let i2 = 0; i2 < 2; i2++)
    for (let i1 = 0; i1 < 4; i1++)
      for (let i0 = 0; i0 < 64; i0++) {
        const x = 32 + i0, y = -1 + i1, z = 2 + i2;
        want.push(x < 80 && y >= 0 && y < 5 && z < 3 ? 1 + ((x + 7 * y + 13 * z) % 97) : 0);
      }
  return want;
}

test('a TMA box lands swizzled after the mbarrier wait, zero where it leaves the tensor', () => {
  const r = selfTest('tma_box');
  assert.is(r.error, null);
  const want = box();
  assert.ok(want.filter((v) => v === 0).length > 256 && want.some((v) => v > 0), 'the box has elements inside and outside the tensor');
  assert.equal(Array.from(r.values.subarray(0, 512)), want);
});

test('TMA data read before the mbarrier wait is still unwritten shared memory (NaN)', () => {
  const r = selfTest('tma_read_before_wait');
  assert.is(r.error, null);
  assert.ok(Array.from(r.values.subarray(512)).every(Number.isNaN), 'before the wait');
  assert.equal(Array.from(r.values.subarray(0, 512)), box(), 'after the wait');
});

test('mbarrier phases: parity 1 on a fresh barrier returns at once, a wait returns only once every thread arrived', () => {
  const r = selfTest('mbarrier_phases');
  assert.is(r.error, null);
  assert.equal(Array.from(r.values), new Array(128).fill(64));
});

test('waiting on an mbarrier no thread arrives at is reported as a deadlock', () => {
  const r = selfTest('mbarrier_never_completes');
  const deadlock = /kernel mbarrier_never_completes, block \(0, 0, 0\): deadlock: no thread can go on; thread \(\d+, 0, 0\) waits in mbarrier\.try_wait\.parity/;
  assert.match(r.error ?? '', deadlock);
});

test('misused wgmma, TMA, mbarriers and tensor maps are reported with the reason', () => {
  const errors = (selfTest('hopper_errors').error ?? '').split('\n');
  const want = [
    /kernel wgmma_misuse, .*: wgmma descriptor of A with swizzle mode 0, not 1/,
    /wgmma\.mma_async before the thread's first wgmma\.fence/,
    /exits with wgmma operations it has not waited for/,
    /thread \(5, 0, 0\): threads of one warpgroup issue different wgmma operations/,
    /wgmma operand B element \(96, k 0\) at shared address 16384, past the 16384 bytes of dynamic shared memory/,
    /deadlock: no thread can go on; thread \(\d+, 0, 0\) waits in wgmma\.wait_group/,
    /wgmma in a block that is not whole warpgroups/,
    /kernel tma_misuse, .*: mbarrier\.try_wait\.parity on an address that no mbarrier\.init of this block initialized/,
    /cp\.async\.bulk\.tensor destination not 1024-byte aligned/,
    /kernel tma_misuse, block \(0, 0, 0\): a TMA copy completes on an mbarrier that no thread waited on/,
    /mbarrier\.arrive: more arrivals in one phase than the count mbarrier\.init gave/,
    /TMA copies complete more bytes on an mbarrier than mbarrier\.expect_tx announced/,
    /shared address of a pointer outside dynamic shared memory/,
    /^cuTensorMapEncodeTiled: globalStrides\[0\] = 168 bytes, not a multiple of 16/,
    /^cuTensorMapEncodeTiled: globalAddress not 16-byte aligned/,
    /^cuTensorMapEncodeTiled: globalDim\[1\] = 0 outside \[1, 2\^32\]/,
    /^cuTensorMapEncodeTiled: boxDim\[0\] of 144 bytes, over the 128-byte swizzle span/,
    /^cuTensorMapEncodeTiled: boxDim\[1\] = 0 outside \[1, 256\]/,
  ];
  assert.is(errors.length, want.length);
  want.forEach((re, i) => assert.match(errors[i]!, re));
});

test.run();
