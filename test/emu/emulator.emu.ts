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

test.run();
