// Finds and loads the native addon (node-gyp-build finds build/Release/clipforge.node or a
// prebuild); CLIPFORGE_ADDON names an addon file to load instead (for side-by-side builds).
// Importing this module loads nothing.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeAddon } from './native.js';

/** The package root: the nearest folder above this file whose package.json names clipforge. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).name === 'clipforge') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('clipforge: cannot find the package root from ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

/**
 * The addon, loaded on the first call and kept; throws, saying how to build it, when it is not
 * built. lib/native.ts loads it when imported; modules that must work without it (the JPEG
 * path of the data pipeline falls back to sharp) call this lazily instead of importing that.
 */
export function loadAddon(): NativeAddon {
  loaded ??= load();
  return loaded;
}

let loaded: NativeAddon | null = null;

function load(): NativeAddon {
  const require = createRequire(import.meta.url);
  const override = process.env.CLIPFORGE_ADDON;
  if (override) return require(override) as NativeAddon;
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => NativeAddon;
  try {
    return nodeGypBuild(packageRoot());
  } catch (e) {
    throw new Error(
      `clipforge: the native addon is not built (${(e as Error).message.split('\n')[0]}); run \`npm install\` or \`npm run build\``,
    );
  }
}

