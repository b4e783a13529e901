// Image pipeline throughput: images per second per core of decode + RandomResizedCrop 224 +
// normalize (OpenCLIP's training transform, scale (0.9, 1.0), bicubic) on JPEGs this script
// writes itself (256-512 px, photo-like: smooth shading plus texture), by both of our JPEG
// paths (the native libjpeg-turbo op, and sharp as CLIPFORGE_NATIVE_JPEG=0 forces it), and
// the whole loader (with tokenization and batch assembly) at 1 and 2 workers. Where a python3
// with PIL and torchvision is found, the same transform runs there on the same files, one
// thread, and the ratios are reported. The sides alternate pass by pass so that load from
// other processes falls on all alike. Each pass is timed by the wall clock and by the process's
// CPU time (every thread: JS, libuv pool, libvips; Python's process_time likewise): on a
// shared machine images per CPU-second is the steadier per-core figure. Medians of passes.
//
// Run: node --import tsx bench/dataload.bench.ts [--images 96] [--passes 5] [--min-side 256 --max-side 512]
// Writes bench/results/<date>-cpu-dataload.json (other side ranges: ...-dataload-<min>-<max>.json).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { jpegDecoder } from '../lib/data/jpeg.js';
import { createDataLoader } from '../lib/data/loader.js';
import { SeededRandom } from '../lib/data/seeded.js';
import { createImageTransform } from '../lib/data/transforms.js';
import { benchDir, median, writeResult } from './lib.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const IMAGES = arg('images', 96);
const PASSES = arg('passes', 5);
const MIN_SIDE = arg('min-side', 256);
const MAX_SIDE = arg('max-side', 512);
const SIZE = 224;
const dir = join(tmpdir(), 'clipforge-dataload-bench');

/** Seeded photo-like JPEGs: gradients, soft blobs and fine noise, so the entropy decoder has work to do. */
async function writeImages(): Promise<{ files: string[]; megapixels: number }> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const random = new SeededRandom(1234);
  const files: string[] = [];
  let pixels = 0;
  for (let i = 0; i < IMAGES; i++) {
    const w = MIN_SIDE + random.int(MAX_SIDE - MIN_SIDE + 1);
    const h = MIN_SIDE + random.int(MAX_SIDE - MIN_SIDE + 1);
    const data = Buffer.alloc(w * h * 3);
    const cx = random.uniform(0, w);
    const cy = random.uniform(0, h);
    const tint = [random.uniform(0.3, 1), random.uniform(0.3, 1), random.uniform(0.3, 1)];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const d = Math.hypot(x - cx, y - cy) / Math.max(w, h);
        const shade = 255 * (0.5 + 0.5 * Math.cos(d * 9)) * (0.6 + 0.4 * (y / h));
        for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = Math.max(0, Math.min(255, shade * tint[c]! + (random.next() - 0.5) * 40));
      }
    }
    const path = join(dir, `${String(i).padStart(4, '0')}.jpg`);
    writeFileSync(path, await sharp(data, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toBuffer());
    files.push(path);
    pixels += w * h;
  }
  return { files, megapixels: pixels / 1e6 };
}

interface Rates {
  wall: number;
  cpu: number;
}

type Path = 'native' | 'sharp';

/** Chooses the JPEG path for transforms and loader workers created from now on. */
function usePath(path: Path): void {
  if (path === 'sharp') process.env.CLIPFORGE_NATIVE_JPEG = '0';
  else delete process.env.CLIPFORGE_NATIVE_JPEG;
}

/** One pass of the transform alone, one image at a time: one core's rate. */
async function transformPass(buffers: Buffer[], path: Path): Promise<Rates> {
  usePath(path);
  const transform = createImageTransform({ size: SIZE, train: true });
  const out = new Float32Array(transform.length);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < buffers.length; i++) await transform.apply(buffers[i]!, new SeededRandom(i), out);
  const cpu = process.cpuUsage(c0);
  return { wall: buffers.length / ((performance.now() - t0) / 1000), cpu: buffers.length / ((cpu.user + cpu.system) / 1e6) };
}

/** Images per second through the whole loader (CSV source, tokenization, batches) with `workers`. */
async function loaderRate(workers: number, path: Path): Promise<number> {
  usePath(path);
  const csv = join(dir, 'train.csv');
  writeFileSync(csv, 'filepath\ttitle\n' + readdirJpegs().map((f, i) => `${f}\ta photo number ${i} of something`).join('\n'));
  const loader = createDataLoader({ source: { type: 'csv', options: { path: csv } }, batchSize: 16, imageTransform: { size: SIZE, train: true }, workers, prefetch: 2, concurrency: 2 });
  await loader.batchesPerEpoch();
  const rates: number[] = [];
  for (let epoch = 0; epoch < 3; epoch++) {
    let n = 0;
    const t0 = performance.now();
    for await (const b of loader.epoch(epoch)) n += b.count;
    rates.push(n / ((performance.now() - t0) / 1000));
  }
  await loader.close();
  return median(rates);
}

function readdirJpegs(): string[] {
  return Array.from({ length: IMAGES }, (_, i) => join(dir, `${String(i).padStart(4, '0')}.jpg`));
}

/** A python3 that imports PIL and torchvision, or null. */
function findPython(): string | null {
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(candidate, ['-c', 'import PIL, torchvision'], { encoding: 'utf8' });
    if (!r.error && r.status === 0) return candidate;
  }
  return null;
}

function pythonPass(python: string): { rates: Rates; pil: string; torchvision: string } | string {
  const r = spawnSync(python, [join(benchDir, 'compare', 'dataload.py'), dir, '1'], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) return `dataload.py failed: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`;
  const v = JSON.parse(r.stdout) as { imagesPerSecond: number[]; imagesPerCpuSecond: number[]; pil: string; torchvision: string };
  return { rates: { wall: v.imagesPerSecond[0]!, cpu: v.imagesPerCpuSecond[0]! }, pil: v.pil, torchvision: v.torchvision };
}

function rateRow(r: Rates[]): { wall: number; cpu: number; passes: { wall: number; cpu: number }[] } {
  return { wall: median(r.map((x) => x.wall)), cpu: median(r.map((x) => x.cpu)), passes: r.map((x) => ({ wall: Math.round(x.wall), cpu: Math.round(x.cpu) })) };
}

async function main(): Promise<void> {
  // One libvips thread per image: the per-core figure, and the right setting with many workers.
  sharp.concurrency(1);
  const decoder = jpegDecoder();
  if (!decoder.native) throw new Error(`dataload.bench: the native JPEG path is not available (${decoder.reason}); rebuild the addon with libjpeg-turbo or unset CLIPFORGE_NATIVE_JPEG`);
  const { files, megapixels } = await writeImages();
  const buffers = files.map((f) => readFileSync(f));
  const paths: Path[] = ['native', 'sharp'];
  for (const path of paths) await transformPass(buffers.slice(0, 8), path);
  const python = findPython();
  const ours: Record<Path, Rates[]> = { native: [], sharp: [] };
  const theirs: Rates[] = [];
  let versions: { pil: string; torchvision: string } | null = null;
  let pythonNote = python ? '' : 'no python3 with PIL and torchvision';
  for (let p = 0; p < PASSES; p++) {
    for (const path of paths) ours[path].push(await transformPass(buffers, path));
    if (python && !pythonNote) {
      const r = pythonPass(python);
      if (typeof r === 'string') pythonNote = r;
      else {
        theirs.push(r.rates);
        versions = { pil: r.pil, torchvision: r.torchvision };
      }
    }
  }
  const native = rateRow(ours.native);
  const viaSharp = rateRow(ours.sharp);
  const pil = theirs.length > 0 ? rateRow(theirs) : null;
  const loader: Record<string, number> = {};
  for (const path of paths) for (const workers of [1, 2]) loader[`${path}Workers${workers}`] = Math.round(await loaderRate(workers, path));
  usePath('native');

  const round = (r: { wall: number; cpu: number }) => ({ 'images/s (wall)': Math.round(r.wall), 'images / CPU-s': Math.round(r.cpu) });
  console.log(`decode + RandomResizedCrop ${SIZE} + normalize, ${IMAGES} JPEGs ${MIN_SIDE}-${MAX_SIDE} px (${megapixels.toFixed(1)} MP), ${PASSES} passes, ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  console.table({
    [`clipforge native JPEG (libjpeg-turbo ${decoder.libjpegTurbo}), one image at a time`]: round(native),
    'clipforge sharp path (CLIPFORGE_NATIVE_JPEG=0)': round(viaSharp),
    ...(pil ? { 'PIL + torchvision, 1 thread': round(pil) } : {}),
    'clipforge loader, native, 1 worker (+ tokenize, batch)': { 'images/s (wall)': loader.nativeWorkers1 },
    'clipforge loader, native, 2 workers': { 'images/s (wall)': loader.nativeWorkers2 },
    'clipforge loader, sharp, 1 worker': { 'images/s (wall)': loader.sharpWorkers1 },
    'clipforge loader, sharp, 2 workers': { 'images/s (wall)': loader.sharpWorkers2 },
  });
  if (pil) {
    for (const [name, r] of [['native', native], ['sharp', viaSharp]] as const) {
      console.log(`${name}: ${(r.cpu / pil.cpu).toFixed(2)}x per CPU-second, ${(r.wall / pil.wall).toFixed(2)}x wall clock, over PIL + torchvision (target >= 2x per core)`);
    }
  } else console.log(`PIL + torchvision comparison did not run: ${pythonNote}`);

  const summary = (r: ReturnType<typeof rateRow>) => ({
    imagesPerSecond: Math.round(r.wall),
    imagesPerCpuSecond: Math.round(r.cpu),
    passes: r.passes,
    ...(pil ? { ratioPerCpuSecond: +(r.cpu / pil.cpu).toFixed(2), ratioWall: +(r.wall / pil.wall).toFixed(2) } : {}),
  });
  const what = MIN_SIDE === 256 && MAX_SIDE === 512 ? 'dataload' : `dataload-${MIN_SIDE}-${MAX_SIDE}`;
  const path = writeResult(what, 'cpu', {
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, loadAverage: loadavg().map((x) => +x.toFixed(1)), sharp: sharp.versions.sharp, vips: sharp.versions.vips, libjpegTurbo: decoder.libjpegTurbo },
    images: IMAGES,
    sides: [MIN_SIDE, MAX_SIDE],
    megapixels: +megapixels.toFixed(2),
    outputSize: SIZE,
    passes: PASSES,
    transform: { native: summary(native), sharp: summary(viaSharp) },
    loaderImagesPerSecond: loader,
    pilTorchvision: pil ? { imagesPerSecond: Math.round(pil.wall), imagesPerCpuSecond: Math.round(pil.cpu), passes: pil.passes, ...versions } : { skipped: pythonNote },
  });
  console.log(`wrote ${path}`);
  rmSync(dir, { recursive: true, force: true });
}

await main();
