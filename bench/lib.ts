// Shared benchmark helpers: median timing, random training batches, the machine's CPU peak FLOP rate, the PyTorch side
// of a comparison, and the JSON record each run leaves in bench/results/.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, platform } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backendInfo, Generator, noGrad, randn, scope } from '../lib/index.js';
import { native } from '../lib/native.js';
import { contextLengthOf, imageSizeOf } from '../lib/cli/common.js';
import type { Batch } from '../lib/data/loader.js';
import type { ModelConfig } from '../lib/nn/config.js';

export const benchDir = dirname(fileURLToPath(import.meta.url));

export interface BenchArgs {
  argv: string[];
  /** The value after `name`, or undefined when the flag is absent. */
  get(name: string): string | undefined;
  /** A positive integer flag, `dflt` when absent. */
  int(name: string, dflt: number): number;
  device: 'cpu' | 'cuda';
  threads: number;
  /** False with --no-torch. */
  torch: boolean;
}

/**
 * The command line every benchmark shares: --device cpu|cuda (default: cuda when a GPU is
 * present), --threads N (CPU threads of both sides, default 2) and --no-torch; `bench` names
 * the benchmark in errors.
 */
export function benchArgs(bench: string): BenchArgs {
  const argv = process.argv.slice(2);
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const int = (name: string, dflt: number): number => {
    const v = Number(get(name) ?? dflt);
    if (!Number.isInteger(v) || v < 1) throw new Error(`${bench}: expected a positive integer for ${name}, got '${get(name)}'`);
    return v;
  };
  const device = get('--device') ?? (backendInfo().devices.length > 0 ? 'cuda' : 'cpu');
  if (device !== 'cpu' && device !== 'cuda') throw new Error(`${bench}: expected 'cpu' or 'cuda' for --device, got '${device}'`);
  return { argv, get, int, device, threads: int('--threads', 2), torch: !argv.includes('--no-torch') };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median: expected at least one sample, got none');
  const a = [...xs].sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? a[m]! : (a[m - 1]! + a[m]!) / 2;
}

export interface TimingOptions {
  /** Untimed runs first (caches, pools, lazily built state). Default 2. */
  warmup?: number;
  /** At least this many timed runs. Default 10. */
  reps?: number;
  /** And at least this much timed work in total, in ms (up to 10 x reps runs). Default 300. */
  minMs?: number;
}

/** Median wall time of fn in ms, with the number of runs it came from. */
export function timeMedian(fn: () => void, opts: TimingOptions = {}): { ms: number; runs: number } {
  const { warmup = 2, reps = 10, minMs = 300 } = opts;
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  let total = 0;
  while (times.length < reps || (total < minMs && times.length < 10 * reps)) {
    const t0 = performance.now();
    fn();
    const dt = performance.now() - t0;
    times.push(dt);
    total += dt;
  }
  return { ms: median(times), runs: times.length };
}

export interface CpuPeak {
  model: string;
  cores: number;
  ghz: number;
  isa: 'avx512f' | 'avx2+fma' | 'baseline';
  /** f32 lanes per SIMD register of that ISA. */
  lanes: number;
  /** FMA pipes per core assumed (2 on every x86 server core of the last decade). */
  fmaUnits: number;
  /** cores x lanes x FMA units x 2 FLOPs x GHz. */
  gflops: number;
}

/**
 * The f32 peak of `cores` cores, from /proc/cpuinfo: the widest FMA the CPU reports and its
 * clock. The clock is the one the kernel reports (nominal in most VMs; turbo can exceed it,
 * so a fraction a little above 1 means the cores ran faster than that).
 */
export function cpuPeak(cores: number): CpuPeak {
  let model = cpus()[0]?.model ?? 'unknown';
  let mhz = cpus()[0]?.speed ?? 0;
  let flags = new Set<string>();
  if (platform() === 'linux' && existsSync('/proc/cpuinfo')) {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    model = /^model name\s*:\s*(.*)$/m.exec(info)?.[1]?.trim() ?? model;
    const m = /^cpu MHz\s*:\s*([\d.]+)$/m.exec(info);
    if (m) mhz = Number(m[1]);
    flags = new Set((/^flags\s*:\s*(.*)$/m.exec(info)?.[1] ?? '').split(/\s+/));
  }
  const isa = flags.has('avx512f') ? 'avx512f' : flags.has('avx2') && flags.has('fma') ? 'avx2+fma' : 'baseline';
  const lanes = isa === 'avx512f' ? 16 : isa === 'avx2+fma' ? 8 : 4;
  const fmaUnits = 2;
  const ghz = mhz / 1000;
  return { model, cores, ghz, isa, lanes, fmaUnits, gflops: cores * lanes * fmaUnits * 2 * ghz };
}

/**
 * Milliseconds left before scripts/bench-gpu.mjs stops this benchmark (CLIPFORGE_BENCH_TIMEOUT_S,
 * counted from the process start, with a 10% margin for writing the results); Infinity when
 * it runs on its own. A benchmark that skips what would not finish still writes its JSON.
 */
export function msLeft(): number {
  const limitS = Number(process.env.CLIPFORGE_BENCH_TIMEOUT_S);
  if (!(limitS > 0)) return Infinity;
  return limitS * 900 - process.uptime() * 1000;
}

/**
 * The checked-out commit, with "-dirty" when the tree has changes; CLIPFORGE_COMMIT when set
 * (a copy of the tree without .git, as on the GPU machine, names its commit that way).
 */
export function gitCommit(): string {
  if (process.env.CLIPFORGE_COMMIT) return process.env.CLIPFORGE_COMMIT;
  try {
    const root = join(benchDir, '..');
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${sha}-dirty` : sha;
  } catch {
    return 'unknown';
  }
}

/**
 * Runs a bench/compare/*.py script and parses the one JSON object it prints. Returns the
 * reason instead when python3 or PyTorch is missing or the script fails, so the benchmark
 * can print one line and go on without the ratio.
 */
export function runPython(script: string, args: string[], timeoutMs = 600_000): { ok: true; value: unknown } | { ok: false; why: string } {
  const probe = spawnSync('python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.error) return { ok: false, why: `python3 is not available (${probe.error.message})` };
  if (probe.status !== 0) return { ok: false, why: 'PyTorch is not importable (python3 -m pip install torch)' };
  const r = spawnSync('python3', [join(benchDir, 'compare', script), ...args], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 24 });
  if (r.status !== 0) return { ok: false, why: `${script} failed: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}` };
  try {
    return { ok: true, value: JSON.parse(r.stdout) };
  } catch {
    return { ok: false, why: `${script} printed no JSON` };
  }
}

/** The GPU driver and CUDA runtime versions, for a result taken on a GPU (null on the CPU). */
function gpuSoftware(device: string): { driver: string; cuda: string | null } | null {
  if (device === 'cpu') return null;
  const smi = spawnSync('nvidia-smi', ['--query-gpu=driver_version', '--format=csv,noheader'], { encoding: 'utf8' });
  const driver = smi.status === 0 ? smi.stdout.trim().split('\n')[0]! : `unknown (${smi.error?.message ?? 'nvidia-smi failed'})`;
  return { driver, cuda: backendInfo().cudaVersion ?? null };
}

/**
 * Writes bench/results/<date>-<device>-<what>.json with the commit, device, date and (on a GPU)
 * driver and CUDA versions first, then `data` (shapes, medians, ratios, fractions of the
 * floor). Returns the path.
 */
export function writeResult(what: string, device: string, data: Record<string, unknown>): string {
  const now = new Date();
  const dir = join(benchDir, 'results');
  mkdirSync(dir, { recursive: true });
  const slug = device.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '').toLowerCase();
  const path = join(dir, `${now.toISOString().slice(0, 10)}-${slug}-${what}.json`);
  const gpu = gpuSoftware(device);
  const record = { bench: what, commit: gitCommit(), device, ...(gpu ?? {}), date: now.toISOString(), node: process.version, ...data };
  writeFileSync(path, JSON.stringify(record, null, 2) + '\n');
  return path;
}

/** A batch of random normalized images and token ids for `config`, shaped like the loader's. */
export function randomBatch(config: ModelConfig, batch: number, rng: Generator): Batch {
  const size = imageSizeOf(config);
  const ctx = contextLengthOf(config);
  const vocab = config.text_cfg.vocab_size ?? 49408;
  const images = noGrad(() => scope(() => randn([batch, 3, size, size], { generator: rng }).toArray() as Float32Array));
  const texts = new Int32Array(batch * ctx);
  for (let i = 0; i < batch; i++) {
    const len = 5 + (i % (ctx - 5));
    for (let j = 0; j < len; j++) texts[i * ctx + j] = 1 + ((i * 131 + j * 7919) % (vocab - 2));
    texts[i * ctx + len - 1] = vocab - 1;
  }
  return { epoch: 0, index: 0, count: batch, images, imageShape: [batch, 3, size, size], texts, textShape: [batch, ctx], labels: null, keys: [] };
}

/**
 * Wraps every function of the addon so that each call reports its name, arguments and wall
 * time (ms) to `onCall` after it returns or throws; returns an undo that puts the originals back.
 */
export function instrumentNative(onCall: (name: string, args: unknown[], ms: number) => void): () => void {
  const addon = native as unknown as Record<string, unknown>;
  const originals = new Map<string, (...a: unknown[]) => unknown>();
  for (const [key, value] of Object.entries(addon)) {
    if (typeof value !== 'function') continue;
    const fn = value as (...a: unknown[]) => unknown;
    originals.set(key, fn);
    addon[key] = (...args: unknown[]) => {
      const t0 = performance.now();
      try {
        return fn.apply(addon, args);
      } finally {
        onCall(key, args, performance.now() - t0);
      }
    };
  }
  return () => {
    for (const [key, fn] of originals) addon[key] = fn;
  };
}
