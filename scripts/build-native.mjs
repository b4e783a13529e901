#!/usr/bin/env node
// Builds the native addon. cmake-js first (CPU backend always, CUDA when nvcc is found);
// node-gyp with binding.gyp (CPU only) where CMake is missing or the CMake build fails.
// CLIPFORGE_NO_CUDA=1 forces a CPU-only build; CLIPFORGE_BUILD_DIR chooses the output folder.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const noCuda = process.env.CLIPFORGE_NO_CUDA === '1';
const outDir = process.env.CLIPFORGE_BUILD_DIR ?? 'build';

function run(cmd, args) {
  console.log(`> ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env });
  return r.status === 0;
}

function haveCmake() {
  const r = spawnSync('cmake', ['--version'], { stdio: 'ignore' });
  return r.status === 0;
}

function cmakeJsBin() {
  try {
    return require.resolve('cmake-js/bin/cmake-js');
  } catch {
    return null;
  }
}

const cmakeJs = cmakeJsBin();
if (haveCmake() && cmakeJs) {
  const args = [cmakeJs, 'build', '--out', outDir];
  if (noCuda) args.push('--CDCLIPFORGE_NO_CUDA=ON');
  if (run(process.execPath, args)) process.exit(0);
  console.warn('clipforge: the CMake build failed; trying node-gyp (CPU only)');
} else {
  console.warn(`clipforge: ${cmakeJs ? 'cmake' : 'cmake-js'} not found; building the CPU-only addon with node-gyp`);
}
if (outDir !== 'build') {
  console.error('clipforge: node-gyp always builds into build/; unset CLIPFORGE_BUILD_DIR');
  process.exit(1);
}
const nodeGyp = process.env.npm_config_node_gyp;
const ok = nodeGyp ? run(process.execPath, [nodeGyp, 'rebuild']) : run('npx', ['--yes', 'node-gyp', 'rebuild']);
process.exit(ok ? 0 : 1);
