// What the commands that build a model share: where it runs, its input sizes, and the notice
// about the precision flag.
import type { ModelConfig } from '../nn/config.js';
import { native } from '../native.js';
import type { Precision } from '../train/flags.js';

/** The first GPU when one is present, else the CPU. */
export function pickDevice(): string {
  return native.info().devices.length > 0 ? 'cuda' : 'cpu';
}

/** The side of the model's square input images (the height of a rectangular one). */
export function imageSizeOf(config: ModelConfig): number {
  const s = config.vision_cfg.image_size ?? 224;
  return Array.isArray(s) ? s[0]! : s;
}

/** The text tower's context length. */
export function contextLengthOf(config: ModelConfig): number {
  return config.text_cfg.context_length ?? 77;
}

/** Tells the user on stderr that `precision` still computes in f32 (nothing for fp32). */
export function noticePrecision(command: string, precision: Precision): void {
  if (precision !== 'fp32') {
    process.stderr.write(`${command}: --precision ${precision} computes in f32 in this version (bf16 compute is not wired into the models yet)\n`);
  }
}
