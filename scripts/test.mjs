#!/usr/bin/env node
// Runs the uvu suites under tsx and closes with one line "N passed, N failed".
// Usage: node scripts/test.mjs [dir] [pattern]
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const uvu = join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', 'uvu', 'bin.js');
const dir = process.argv[2] ?? 'test';
const pattern = process.argv[3] ?? '\\.test\\.ts$';
const r = spawnSync(process.execPath, ['--import', 'tsx', '--expose-gc', uvu, dir, pattern], {
  stdio: ['ignore', 'pipe', 'inherit'],
  encoding: 'utf8',
  maxBuffer: 1 << 28,
});
process.stdout.write(r.stdout ?? '');
const total = /Total:\s+(\d+)/.exec(r.stdout ?? '');
const passed = /Passed:\s+(\d+)/.exec(r.stdout ?? '');
if (total && passed) {
  const t = Number(total[1]);
  const p = Number(passed[1]);
  console.log(`${p} passed, ${t - p} failed`);
}
process.exit(r.status ?? 1);
