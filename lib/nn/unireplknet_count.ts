// Analytic parameter and FLOP counts of UniRepLKNet, computed from the architecture without
// building it (the full-size variants are checked against the published figures this way).
import { argError, checkInteger } from '../tensor/check.js';
import { checkArch, DILATED_BRANCHES, type UniRepLKNetArch } from './unireplknet.js';

export interface UniRepLKNetCountOptions {
  /** Count the deploy form (merged kernels with bias, no BatchNorm or layer scale). */
  deploy: boolean;
  /** Whether blocks carry a layer scale (training form, init value > 0). Default true. */
  layerScale?: boolean;
}

/** Parameters of one block of width C with kernel size K. */
export function uniRepLKNetBlockParameters(c: number, k: number, opts: UniRepLKNetCountOptions): number {
  const op = 'uniRepLKNetBlockParameters';
  checkInteger(op, 'c', c, 1);
  if (!(k === 0 || k === 3 || k === 5 || k in DILATED_BRANCHES)) throw argError(op, 'k', 'a kernel size 0, 3, 5, 7, 9, 11, 13, 15 or 17', k);
  if (opts === null || typeof opts !== 'object') throw argError(op, 'opts', 'an object { deploy, layerScale? }', opts);
  const bn = 2 * c;
  let n = 0;
  if (k >= 7) {
    const branches = DILATED_BRANCHES[k]!.kernels;
    n += k * k * c + (opts.deploy ? c : branches.reduce((a, kb) => a + kb * kb * c, 0) + (branches.length + 1) * bn);
  } else if (k > 0) {
    n += k * k * c + (opts.deploy ? c : 0);
  }
  if (k > 0 && !opts.deploy) n += bn;
  const r = Math.floor(c / 4);
  n += 2 * c * r + r + c;
  const ffn = 4 * c;
  n += c * ffn + ffn;
  n += opts.deploy ? ffn : 2 * ffn;
  n += ffn * c + (opts.deploy ? c : bn);
  if (!opts.deploy && (opts.layerScale ?? true)) n += c;
  return n;
}

/** Parameters of the trunk: stem, downsampling layers, blocks and the final LayerNorm. */
export function uniRepLKNetTrunkParameters(arch: UniRepLKNetArch, opts: UniRepLKNetCountOptions): number {
  checkArch('uniRepLKNetTrunkParameters', arch);
  const [c0] = arch.dims;
  const conv = (i: number, o: number): number => i * o * 9 + o;
  let n = conv(3, c0 / 2) + c0 + conv(c0 / 2, c0) + 2 * c0;
  for (let i = 0; i < 3; i++) n += conv(arch.dims[i]!, arch.dims[i + 1]!) + 2 * arch.dims[i + 1]!;
  arch.kernelSizes.forEach((ks, s) => {
    for (const k of ks) n += uniRepLKNetBlockParameters(arch.dims[s]!, k, opts);
  });
  return n + 2 * arch.dims[3];
}

/**
 * Forward FLOPs per image (2 per multiply-add of the convolutions and linear layers, as
 * the published MAC counts) of the deploy form at `imageSize`, plus the head's
 * dims[3] x headOut projection.
 */
export function uniRepLKNetFlops(arch: UniRepLKNetArch, imageSize: [number, number], headOut: number): number {
  const op = 'uniRepLKNetFlops';
  checkArch(op, arch);
  if (!Array.isArray(imageSize) || imageSize.length !== 2) throw argError(op, 'imageSize', 'a pair [H, W]', imageSize);
  imageSize.forEach((v, i) => checkInteger(op, `imageSize[${i}]`, v, 1));
  checkInteger(op, 'headOut', headOut, 0);
  const half = (v: number): number => Math.ceil(v / 2);
  let [h, w] = imageSize.map(half) as [number, number];
  const c0 = arch.dims[0];
  let macs = h * w * (c0 / 2) * 3 * 9;
  [h, w] = [half(h), half(w)];
  macs += h * w * c0 * (c0 / 2) * 9;
  for (let s = 0; s < 4; s++) {
    const c = arch.dims[s]!;
    if (s > 0) {
      [h, w] = [half(h), half(w)];
      macs += h * w * c * arch.dims[s - 1]! * 9;
    }
    for (const k of arch.kernelSizes[s]!) {
      const r = Math.floor(c / 4);
      macs += h * w * (k * k * c + 8 * c * c) + 2 * c * r;
    }
  }
  return 2 * (macs + arch.dims[3] * headOut);
}
