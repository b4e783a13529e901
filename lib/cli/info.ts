// `clipforge info`: version, backends compiled in, GPUs found (or why none), CPU threads.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { native, packageRoot } from '../native.js';

export function infoText(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
  const info = native.info();
  const lines = [
    `clipforge ${pkg.version} (node ${process.version}, ${process.platform}-${process.arch})`,
    `backends compiled in: ${info.backends.join(', ')}${info.cudaVersion ? ` (CUDA ${info.cudaVersion})` : ''}`,
  ];
  if (info.devices.length === 0) {
    lines.push(`GPU: none (${info.cudaUnavailable ?? 'no CUDA device found'})`);
  } else {
    for (const d of info.devices) {
      const gib = (d.totalMemory / 2 ** 30).toFixed(1);
      lines.push(`GPU cuda:${d.index}: ${d.name}, ${gib} GiB, compute capability ${d.computeCapability}, ${d.multiprocessors} SMs`);
    }
  }
  lines.push(`CPU threads: ${info.threads} (set CLIPFORGE_NUM_THREADS to change)`);
  return lines.join('\n');
}
