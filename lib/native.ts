// Loads the native addon (node-gyp-build finds build/Release/clipforge.node or a prebuild).
// CLIPFORGE_ADDON names an addon file to load instead (for side-by-side builds).
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A tensor as the addon reads it: storage handle, element offset, shape and dtype. */
export interface NativeTensor {
  readonly handle: unknown;
  readonly offset: number;
  readonly shape: readonly number[];
  readonly dtype: string;
}

export interface NativeMemoryStats {
  allocatedBytes: number;
  peakAllocatedBytes: number;
  reservedBytes: number;
  liveBlocks: number;
  allocCalls: number;
  systemAllocs: number;
  cacheHits: number;
}

export interface NativeDeviceInfo {
  index: number;
  name: string;
  totalMemory: number;
  computeCapability: string;
  multiprocessors: number;
}

export interface NativeInfo {
  backends: string[];
  devices: NativeDeviceInfo[];
  threads: number;
  cudaVersion?: string;
  cudaUnavailable?: string;
}

type T = NativeTensor;

/** The addon's exports. Every function validates its arguments and throws an Error. */
export interface NativeAddon {
  alloc(nbytes: number, device: string): unknown;
  free(handle: unknown): void;
  storageBytes(handle: unknown): number;
  upload(t: T, data: Float32Array | Int32Array | Uint16Array): void;
  download(t: T): Float32Array | Int32Array;
  copy(src: T, dst: T): void;
  memoryStats(): { cpu: NativeMemoryStats; cuda: NativeMemoryStats[] };
  emptyCache(): void;
  synchronize(device: string): void;
  info(): NativeInfo;
  setNumThreads(n: number): void;
  fill(out: T, value: number): void;
  arange(out: T, start: number, step: number): void;
  random(out: T, kind: 'uniform' | 'normal', seed: number, offset: number, a: number, b: number): void;
  cast(x: T, out: T): void;
  unary(op: string, x: T, out: T, p0: number, p1: number): void;
  unaryBackward(op: string, x: T, dy: T, dx: T, p0: number, p1: number): void;
  binary(op: string, a: T, b: T, out: T): void;
  binaryBackward(op: string, side: number, a: T, b: T, dy: T, out: T): void;
  // reduce
  reduce(op: 'sum' | 'mean' | 'max', x: T, out: T, axis: number, indices?: T): void;
  reduceMaxBackward(dy: T, indices: T, dx: T, axis: number): void;
}

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

export const native: NativeAddon = load();
