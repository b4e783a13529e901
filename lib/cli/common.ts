// What the commands that build a model share: where it runs, its input sizes, and the notice
// about the precision flag.
import type { ModelConfig } from '../nn/config.js';
import { native } from '../native.js';
import { FlagError, type Precision } from '../train/flags.js';

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

/**
 * The precision a training run uses: the flag when given, else OpenCLIP's default (amp_bf16) on
 * a GPU and fp32 on the CPU, where bf16 products only cost time. Says on stderr what a choice
 * other than fp32 means here.
 */
export function trainingPrecision(command: string, precision: Precision, given: boolean): Precision {
  const device = pickDevice();
  const chosen = given || device === 'cuda' ? precision : 'fp32';
  if (chosen === 'bf16') {
    process.stderr.write(`${command}: --precision bf16 keeps f32 master weights here, so it runs as amp_bf16 (bf16 matrix products, f32 elsewhere)\n`);
  }
  if (chosen !== 'fp32' && device === 'cpu') {
    process.stderr.write(`${command}: --precision ${chosen} on the CPU rounds the matrix products' inputs to bf16 but computes in f32, so it is slower than fp32 there\n`);
  }
  return chosen;
}

/** Evaluation computes in f32 whatever --precision says; tells the user so when it says otherwise. */
export function noticeEvalPrecision(command: string, precision: Precision): void {
  if (precision !== 'fp32') process.stderr.write(`${command}: --precision ${precision}: evaluation computes in f32\n`);
}

/**
 * Runs a command and turns what it throws into its exit code: the message on stderr (prefixed
 * with the command unless it already names it), 2 for a usage mistake, 1 for anything else.
 */
export async function withExitCode(command: string, run: () => Promise<number>): Promise<number> {
  try {
    return await run();
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(`${message.startsWith(command) ? message : `${command}: ${message}`}\n`);
    return e instanceof FlagError ? 2 : 1;
  }
}
