// `clipforge info`: version, backends compiled in, GPUs found (or why none), CPU threads, JPEG decoder.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { jpegDecoder } from '../data/jpeg.js';
import { native, packageRoot } from '../native.js';
import { countParameters, estimateFlops, getModelConfig } from '../nn/factory.js';

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
  const jpeg = jpegDecoder();
  lines.push(jpeg.native ? `JPEG decoding: native, libjpeg-turbo ${jpeg.libjpegTurbo} (CLIPFORGE_NATIVE_JPEG=0 for sharp)` : `JPEG decoding: sharp (${jpeg.reason})`);
  return lines.join('\n');
}

/** `clipforge info --model NAME`: the parameter counts and forward FLOPs of a built-in model config. */
export function modelInfoText(name: string): string {
  const config = getModelConfig(name);
  const params = countParameters(config);
  const flops = estimateFlops(config);
  const m = (n: number): string => `${(n / 1e6).toFixed(2)} M`;
  const g = (n: number): string => `${(n / 1e9).toFixed(2)} GFLOPs`;
  const v = config.vision_cfg;
  const t = config.text_cfg;
  return [
    `model ${name}: embed_dim ${config.embed_dim}, image ${JSON.stringify(v.image_size ?? 224)}, text context ${t.context_length ?? 77}`,
    `parameters: ${m(params.total)} total, ${m(params.visual)} visual, ${m(params.text)} text`,
    `forward: ${g(flops.image)} per image, ${g(flops.text)} per text, ${g(flops.total)} per pair`,
  ].join('\n');
}
