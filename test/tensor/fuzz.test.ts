// Fuzzes every function exported by lib/index.ts (and the methods of its classes) and every
// function of the native addon with random, mostly wrong arguments, in a child process
// (test/support/fuzz.ts), and checks that the process survives, that it does not hang, that
// every failure is an Error, and that nothing leaks.
//
// Reproduce a failure with the seed it prints:
//   CLIPFORGE_FUZZ_SEED=<seed> node scripts/test.mjs test/tensor fuzz
// or run the child directly to see every call:
//   CLIPFORGE_FUZZ_CHILD=1 CLIPFORGE_FUZZ_SEED=<seed> node --import tsx --expose-gc test/support/fuzz.ts
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import type { FuzzReport } from '../support/fuzz.js';

const test = suite('fuzz');

const SEED = Number(process.env.CLIPFORGE_FUZZ_SEED ?? 20250101);
const CALLS = Number(process.env.CLIPFORGE_FUZZ_CALLS ?? 30000);
const TIMEOUT_S = 120;

let report: FuzzReport | null = null;
let failure: string | null = null;

function runChild(): void {
  const child = fileURLToPath(new URL('../support/fuzz.ts', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'clipforge-fuzz-'));
  const out = join(dir, 'calls.log');
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--expose-gc', child], {
    env: { ...process.env, CLIPFORGE_FUZZ_CHILD: '1', CLIPFORGE_FUZZ_SEED: String(SEED), CLIPFORGE_FUZZ_CALLS: String(CALLS), CLIPFORGE_FUZZ_OUT: out },
    encoding: 'utf8',
    timeout: TIMEOUT_S * 1000,
    killSignal: 'SIGKILL',
    maxBuffer: 1 << 28,
  });
  const lines = (existsSync(out) ? readFileSync(out, 'utf8') : '').split('\n');
  rmSync(dir, { recursive: true, force: true });
  const lastCall = [...lines].reverse().find((l) => l.startsWith('@@CALL ')) ?? '(none)';
  const reportLine = lines.find((l) => l.startsWith('@@REPORT '));
  const fatal = lines.find((l) => l.startsWith('@@FATAL '));
  const stderr = (r.stderr ?? '').split('\n').slice(-15).join('\n');
  const where = `seed ${SEED}; the last call started was:\n  ${lastCall.slice(7)}\nstderr:\n${stderr}`;
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT') {
    failure = `the fuzz process hung (no result within ${TIMEOUT_S} s); ${where}`;
  } else if (r.signal) {
    failure = `the fuzz process was killed by ${r.signal} (a crash); ${where}`;
  } else if (fatal) {
    failure = `the fuzz harness failed: ${fatal.slice(8)}; ${where}`;
  } else if (!reportLine || r.status !== 0) {
    failure = `the fuzz process exited with status ${r.status} without a report; ${where}`;
  } else {
    report = JSON.parse(reportLine.slice('@@REPORT '.length)) as FuzzReport;
  }
}

function get(): FuzzReport {
  if (!report && !failure) runChild();
  if (failure) assert.unreachable(failure);
  return report!;
}

const list = (xs: string[]): string => `${xs.length}:\n  ${xs.slice(0, 10).join('\n  ')} (seed ${SEED})`;

test('the process survives at least 10,000 fuzzed calls without hanging', () => {
  const r = get();
  assert.ok(r.calls >= Math.min(CALLS, 10000), `calls made: ${r.calls}`);
  assert.is(r.calls, CALLS);
  if (process.env.CLIPFORGE_FUZZ_VERBOSE === '1') {
    console.log(`fuzz: ${r.calls} calls (${r.libCalls} library, ${r.nativeCalls} native) in ${r.seconds.toFixed(1)} s; ${r.succeeded} returned normally`);
    for (const [t, u] of Object.entries(r.unshaped).sort((a, b) => b[1].count - a[1].count)) console.log(`  ${u.count}x ${t}: ${u.sample}`);
    console.log('slowest:', r.slowest);
    console.log('seed workload failures:', r.seedFailures);
    console.log('native calls returned / made (corpus):', Object.keys(r.coverage).filter((k) => k.startsWith('native.')).map((k) => `${k.slice(7)} ${r.returned[k] ?? 0}/${r.coverage[k]} (${r.corpus[k.slice(7)] ?? 0})`).join(', '));
  }
  // No single call may take long: a call that spins on a huge size is a hang in waiting.
  for (const s of r.slowest) assert.ok(s.ms < 5000, `a call took ${s.ms.toFixed(0)} ms: ${s.call}`);
});

test('every failure is an Error, thrown synchronously or as a rejection', () => {
  const r = get();
  assert.ok(r.nonErrors.length === 0, `thrown values that are not Errors: ${list(r.nonErrors)}`);
  assert.ok(r.uncaught.length === 0, `errors that escaped to the event loop: ${list(r.uncaught)}`);
});

test('every function was fuzzed, and enough calls got past the argument checks', () => {
  const r = get();
  const expected = [
    ...Object.entries(cf).filter(([k, v]) => k !== 'native' && typeof v === 'function').map(([k]) => k),
    ...Object.entries(cf.native).filter(([, v]) => typeof v === 'function').map(([k]) => `native.${k}`),
  ];
  const missing = expected.filter((name) => !(r.coverage[name]! >= 10));
  assert.equal(missing, [], `functions called fewer than 10 times: ${missing.join(', ')}`);
  // Native calls are mostly mutations of valid calls recorded from the library: most native
  // functions must have such a corpus, so that the fuzzing reaches the deep checks and the kernels.
  const natives = expected.filter((n) => n.startsWith('native.')).map((n) => n.slice(7));
  const noCorpus = natives.filter((n) => !r.corpus[n]);
  assert.ok(noCorpus.length <= natives.length / 4, `native functions without recorded valid calls: ${noCorpus.join(', ')}; seed workload failures: ${r.seedFailures.join('; ')}`);
  // A replayed valid call that never gets through means the replay itself is broken (as it was
  // for tensors inside lists): that function's kernels would only ever see rejected arguments.
  const neverReturned = natives.filter((n) => r.corpus[n] && !((r.returned[`native.${n}`] ?? 0) > 0));
  assert.equal(neverReturned, [], `native functions with recorded valid calls that never returned normally: ${neverReturned.join(', ')}`);
  // The arguments are valid often enough to reach the kernels, not just the first check.
  assert.ok(r.nativeSucceeded >= r.nativeCalls / 10, `native calls that returned normally: ${r.nativeSucceeded} of ${r.nativeCalls}`);
  assert.ok(r.succeeded >= r.calls / 10, `calls that returned normally: ${r.succeeded} of ${r.calls}`);
});

test('returned tensors are readable and the scope stack and gradient mode are left as they were', () => {
  const r = get();
  assert.ok(r.unreadable.length === 0, `returned tensors that cannot be read: ${list(r.unreadable)}`);
  assert.ok(r.stateLeaks.length === 0, `calls that left state behind: ${list(r.stateLeaks)}`);
});

test('no huge allocation was made, and nothing leaked', () => {
  const r = get();
  // Valid calls in the corpus build small models (tens of MB); a huge size that slipped
  // through validation would allocate gigabytes.
  assert.ok(r.peakAllocatedBytes < 256 * 2 ** 20, `peak host allocation ${r.peakAllocatedBytes} bytes`);
  assert.is(r.leak.liveTensorsAfter, r.leak.liveTensorsBefore, `live tensors before and after (seed ${SEED})`);
  assert.is(r.leak.bytesAfter, r.leak.bytesBefore, `allocated bytes before and after (seed ${SEED})`);
});

test.run();
