#!/usr/bin/env node
// Runs every GPU benchmark in bench/ on the CUDA backend, one process each, and prints which
// ones wrote their JSON into bench/results/. Fails (exit 1) when no CUDA device is usable, so
// that a CPU-only machine never passes this off as a GPU run, and when any benchmark fails.
//
// Usage: node scripts/bench-gpu.mjs [name ...]     (default: all; e.g. `attention loss`)
// CLIPFORGE_BENCH_TIMEOUT_S bounds each benchmark (default 900 s); a benchmark past it is
// stopped and reported as failed.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The GPU benchmarks and the arguments that put them on the device.
const BENCHES = {
  ceilings: [],
  gemm: [],
  attention: ['--device', 'cuda'],
  dwconv: ['--device', 'cuda'],
  loss: ['--device', 'cuda'],
  adamw: ['--device', 'cuda'],
  checkpoint_io: ['--device', 'cuda'],
  train_step: ['--device', 'cuda'],
};

const wanted = process.argv.slice(2);
for (const name of wanted) {
  if (!(name in BENCHES)) {
    console.error(`bench-gpu: unknown benchmark '${name}'; expected one of ${Object.keys(BENCHES).join(', ')}`);
    process.exit(2);
  }
}
const names = wanted.length ? wanted : Object.keys(BENCHES);

const probe = spawnSync(
  process.execPath,
  ['--import', 'tsx', '-e', "import('./lib/index.js').then((cf) => { const i = cf.backendInfo(); if (!i.devices.length) { console.error(i.cudaUnavailable ?? 'no CUDA device'); process.exit(1); } console.log(i.devices[0].name); })"],
  { cwd: root, encoding: 'utf8' },
);
if (probe.status !== 0) {
  console.error(`bench-gpu: no usable CUDA device: ${(probe.stderr || '').trim()}`);
  process.exit(1);
}
console.log(`bench-gpu: on ${probe.stdout.trim()}`);

const timeoutS = Number(process.env.CLIPFORGE_BENCH_TIMEOUT_S ?? 900);
const outcome = [];
for (const name of names) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', join('bench', `${name}.bench.ts`), ...BENCHES[name]], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    timeout: timeoutS * 1000,
    killSignal: 'SIGKILL',
    maxBuffer: 1 << 26,
  });
  process.stdout.write(r.stdout ?? '');
  const seconds = ((Date.now() - t0) / 1000).toFixed(0);
  const wrote = /bench\/results\/\S+\.json/.exec(r.stdout ?? '')?.[0];
  const status = r.error?.code === 'ETIMEDOUT' || r.signal ? `stopped after ${timeoutS} s` : r.status === 0 ? 'ok' : `exit ${r.status}`;
  outcome.push({ name, status, seconds, wrote });
}
console.log('\nbench-gpu summary');
for (const o of outcome) console.log(`  ${o.name.padEnd(14)} ${o.status.padEnd(20)} ${o.seconds.padStart(4)} s  ${o.wrote ?? '(no JSON)'}`);
process.exit(outcome.every((o) => o.status === 'ok') ? 0 : 1);
