#!/usr/bin/env node
// Runs the CUDA backend's tests on the CPU emulator (native/emu): builds the addon with the
// CUDA kernels compiled for the emulator into build-emu/ (incrementally), then runs the suites
// that compare CUDA with the CPU, with CUDA required, once with the block's threads scheduled
// first to last and once last to first (a result that depends on the order shows a missing
// barrier). No GPU or nvcc is needed.
// Usage: node scripts/test-cuda-emu.mjs [--asan] [--order forward|reverse|both] [dir ...]
//   --asan: the AddressSanitizer build (build-emu-asan/), which also reports any read or write
//   past a tensor or a shared-memory array; slower to build and run.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The emulator's own tests (test/emu/*.emu.ts) first, then every suite that runs its kernels
// on CUDA, and the training loop on CUDA (test/train/cuda.test.ts).
const patternOf = (dir) => (dir.replace(/\/+$/, '') === 'test/emu' ? '\\.emu\\.ts$' : '\\.test\\.ts$');
const defaultSuites = [
  ...['test/emu', 'test/ops', 'test/loss', 'test/optim', 'test/tensor', 'test/io', 'test/nn'].map((d) => [d, patternOf(d)]),
  ['test/train', '^cuda\\.test\\.ts$'],
];

const args = process.argv.slice(2);
let asan = false;
let orders = ['forward', 'reverse'];
const dirs = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--asan') asan = true;
  else if (a === '--order') {
    const o = args[++i];
    if (o !== 'forward' && o !== 'reverse' && o !== 'both') {
      console.error(`test-cuda-emu: --order takes forward, reverse or both, got ${o ?? 'nothing'}`);
      process.exit(2);
    }
    orders = o === 'both' ? ['forward', 'reverse'] : [o];
  } else if (a.startsWith('-')) {
    console.error(`test-cuda-emu: unknown flag ${a}`);
    process.exit(2);
  } else dirs.push(a);
}

if (spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status !== 0) {
  console.log('CUDA emulator tests did not run: cmake not found (the emulator addon is built with cmake-js)');
  process.exit(0);
}

const outDir = asan ? 'build-emu-asan' : 'build-emu';
const build = [join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js'), 'build', '--out', outDir, '--CDCLIPFORGE_CUDA_EMULATION=ON'];
if (asan) build.push('--CDCLIPFORGE_CUDA_EMULATION_ASAN=ON');
console.log(`test-cuda-emu: building ${outDir}/`);
const b = spawnSync(process.execPath, build, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
if (b.status !== 0) {
  console.error('test-cuda-emu: the emulator build failed');
  process.exit(1);
}

const env = { ...process.env, CLIPFORGE_ADDON: join(root, outDir, 'Release', 'clipforge.node'), CLIPFORGE_REQUIRE_CUDA: '1' };
if (asan) {
  const lib = spawnSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout.trim();
  env.LD_PRELOAD = lib;
  env.ASAN_OPTIONS = 'detect_leaks=0:abort_on_error=1';
}
let passed = 0;
let failed = 0;
for (const order of orders) {
  for (const [dir, pattern] of dirs.length ? dirs.map((d) => [d, patternOf(d)]) : defaultSuites) {
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'test.mjs'), dir, pattern], {
      cwd: root,
      env: { ...env, CLIPFORGE_EMU_SCHEDULE: order },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 1 << 28,
    });
    const summary = /(\d+) passed, (\d+) failed/.exec(r.stdout ?? '');
    if (r.status !== 0 || !summary) process.stdout.write(r.stdout ?? '');
    const p = summary ? Number(summary[1]) : 0;
    const f = summary ? Number(summary[2]) : 1;
    console.log(`test-cuda-emu: ${dir} (${order}): ${p} passed, ${f} failed${r.status !== 0 && !f ? `, exit ${r.status ?? r.signal}` : ''}`);
    passed += p;
    failed += r.status !== 0 && !f ? 1 : f;
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
