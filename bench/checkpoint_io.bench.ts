// Checkpoint I/O: reading and writing a ~200 MB safetensors file (ViT-B-sized: 50 f32
// tensors of 1M elements) and a torch.save zip of the same tensors, from the page cache.
//
// Floor: a read has to move every byte out of the page cache at least once; the floor is
// reading the file through one reused tensor-sized buffer, timed in the same run.
// readSafetensors reads f32 tensors straight into their memory (native readFileInto), so
// it can reach the floor; readTorchCheckpoint reads each storage into a buffer, checks its
// CRC-32 and uploads it (two passes more). Writing is bounded by the fsync.
//
// Run: node --import tsx bench/checkpoint_io.bench.ts [--mb 200] [--device cpu|cuda]
// Writes bench/results/<date>-<device>-checkpoint_io.json. The files live in the OS temp
// directory and are removed at the end. PyTorch's loaders (bench/compare/checkpoint_io.py)
// are timed on the same files when python3 has torch and safetensors.
import { closeSync, fstatSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as cf from '../lib/index.js';
import { readSafetensors, readTorchCheckpoint, writeSafetensors } from '../lib/io/index.js';
import { runPython, timeMedian, writeResult } from './lib.js';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
};
const mb = Number(arg('mb', '200'));
const device = arg('device', 'cpu');
const tensorsCount = 50;
const elements = Math.round((mb * 1e6) / 4 / tensorsCount);

const dir = mkdtempSync(join(tmpdir(), 'clipforge-bench-io-'));
try {
  const st = join(dir, 'model.safetensors');
  const pt = join(dir, 'model.pt');
  const tensors = new Map<string, cf.Tensor>();
  for (let i = 0; i < tensorsCount; i++) tensors.set(`blocks.${i}.weight`, cf.randn([elements], { device }));
  const bytes = tensorsCount * elements * 4;
  const mbOf = (ms: number): number => Math.round(bytes / 1e6 / (ms / 1e3));

  const write = timeMedian(() => writeSafetensors(st, tensors), { warmup: 1, reps: 3, minMs: 0 });
  const chunk = new Uint8Array(elements * 4);
  const floor = timeMedian(() => {
    const fd = openSync(st, 'r');
    const size = fstatSync(fd).size;
    for (let done = 0; done < size; ) done += readSync(fd, chunk, 0, Math.min(chunk.length, size - done), done);
    closeSync(fd);
  }, { warmup: 1, reps: 5, minMs: 0 });
  const read = timeMedian(() => cf.scope(() => {
    readSafetensors(st, { device });
    cf.synchronize(device);
  }), { warmup: 1, reps: 5, minMs: 0 });

  // The same tensors through torch.save, when PyTorch is here to write them.
  const made = runPython('checkpoint_io.py', [st, pt]);
  const py = made.ok ? (made.value as { torch: string; safetensorsLoadMs: number; torchLoadMs: number }) : null;
  const torchRead = made.ok ? timeMedian(() => cf.scope(() => {
    readTorchCheckpoint(pt, { device });
    cf.synchronize(device);
  }), { warmup: 1, reps: 5, minMs: 0 }) : null;

  const rows = [
    { name: 'read file in tensor chunks (floor)', ms: floor.ms, mbPerS: mbOf(floor.ms) },
    { name: 'readSafetensors', ms: read.ms, mbPerS: mbOf(read.ms), fractionOfFloor: +(floor.ms / read.ms).toFixed(2) },
    { name: 'writeSafetensors (atomic, fsync)', ms: write.ms, mbPerS: mbOf(write.ms) },
    ...(torchRead ? [{ name: 'readTorchCheckpoint', ms: torchRead.ms, mbPerS: mbOf(torchRead.ms), fractionOfFloor: +(floor.ms / torchRead.ms).toFixed(2) }] : []),
    ...(py ? [
      { name: `python load_file + clone (torch ${py.torch})`, ms: py.safetensorsLoadMs, mbPerS: mbOf(py.safetensorsLoadMs) },
      { name: 'python torch.load (weights_only)', ms: py.torchLoadMs, mbPerS: mbOf(py.torchLoadMs) },
    ] : []),
  ];
  console.log(`checkpoint I/O, ${(bytes / 1e6).toFixed(0)} MB, ${tensorsCount} f32 tensors, device ${device}`);
  for (const r of rows) console.log(`${r.name.padEnd(36)} ${r.ms.toFixed(1).padStart(8)} ms ${String(r.mbPerS).padStart(6)} MB/s${'fractionOfFloor' in r ? `  ${r.fractionOfFloor} of floor` : ''}`);
  if (!made.ok) console.log(`readTorchCheckpoint not timed: ${made.why}`);
  console.log('wrote', writeResult('checkpoint_io', device, { megabytes: Math.round(bytes / 1e6), tensors: tensorsCount, results: rows }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
