// UniRepLKNet as a CLIP image tower from an OpenCLIP vision_cfg, the way OpenCLIP's TimmModel
// reads it: timm_model_name picks the variant ('unireplknet_a' ... 'unireplknet_xl'),
// timm_model_kwargs override the constructor's arguments (depths, dims, kernel_sizes,
// deploy, drop_path_rate, layer_scale_init_value: the official names), timm_drop_path sets
// the stochastic depth, and the head is pool 'avg' + proj 'linear' (timm_proj_bias optional).
import { argError } from '../tensor/check.js';
import type { VisionConfig } from './config.js';
import type { VisionTowerBuilder } from './towers.js';
import { checkArch, defaultKernelSizes, UNIREPLKNET_VARIANTS, UniRepLKNetTower, type UniRepLKNetArch, type UniRepLKNetVariant } from './unireplknet.js';
import { uniRepLKNetFlops, uniRepLKNetTrunkParameters } from './unireplknet_count.js';

const NAME_PATTERN = /^unireplknet_(a|f|p|n|t|s|b|l|xl)$/;
const KWARGS = ['depths', 'dims', 'kernel_sizes', 'deploy', 'drop_path_rate', 'layer_scale_init_value'];

export interface ResolvedUniRepLKNetConfig {
  arch: UniRepLKNetArch;
  deploy: boolean;
  dropPathRate: number;
  layerScaleInitValue: number | null;
  projBias: boolean;
  imageSize: [number, number];
}

/** Whether vision_cfg names a UniRepLKNet trunk. */
export function isUniRepLKNetConfig(cfg: VisionConfig): boolean {
  return cfg !== null && typeof cfg === 'object' && typeof cfg.timm_model_name === 'string' && NAME_PATTERN.test(cfg.timm_model_name);
}

/** Reads and checks a UniRepLKNet vision_cfg. */
export function resolveUniRepLKNetConfig(cfg: VisionConfig, op: string): ResolvedUniRepLKNetConfig {
  if (cfg === null || typeof cfg !== 'object') throw argError(op, 'vision_cfg', 'an object', cfg);
  const name = cfg.timm_model_name;
  const m = typeof name === 'string' ? NAME_PATTERN.exec(name) : null;
  if (!m) throw argError(op, 'vision_cfg.timm_model_name', "'unireplknet_' and one of a, f, p, n, t, s, b, l, xl", name);
  const variant = UNIREPLKNET_VARIANTS[m[1] as UniRepLKNetVariant];
  const kwargs = (cfg.timm_model_kwargs ?? {}) as Record<string, unknown>;
  if (kwargs === null || typeof kwargs !== 'object' || Array.isArray(kwargs)) throw argError(op, 'vision_cfg.timm_model_kwargs', 'an object', kwargs);
  for (const key of Object.keys(kwargs)) {
    if (!KWARGS.includes(key)) throw new Error(`${op}: unknown key vision_cfg.timm_model_kwargs.${key} (UniRepLKNet takes ${KWARGS.join(', ')})`);
  }
  const depths = (kwargs.depths ?? [...variant.depths]) as UniRepLKNetArch['depths'];
  const dims = (kwargs.dims ?? [...variant.dims]) as UniRepLKNetArch['dims'];
  const kernelSizes = (kwargs.kernel_sizes ?? (Array.isArray(depths) ? defaultKernelSizes(depths) : null)) as number[][] | null;
  if (!kernelSizes) throw new Error(`${op}: no default kernel sizes for depths ${JSON.stringify(depths)}; give vision_cfg.timm_model_kwargs.kernel_sizes`);
  const arch = checkArch(op, { depths, dims, kernelSizes });
  const flag = (key: string, v: unknown, def: boolean): boolean => {
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') throw argError(op, key, 'a boolean', v);
    return v;
  };
  const rate = (key: string, v: unknown): number | undefined => {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw argError(op, key, 'a number in [0, 1)', v);
    return v;
  };
  if (cfg.timm_pool !== undefined && cfg.timm_pool !== 'avg') throw argError(op, 'vision_cfg.timm_pool', "'avg' (UniRepLKNet pools by the spatial mean)", cfg.timm_pool);
  if (cfg.timm_proj !== undefined && cfg.timm_proj !== 'linear') throw argError(op, 'vision_cfg.timm_proj', "'linear'", cfg.timm_proj);
  if (cfg.timm_drop !== undefined && cfg.timm_drop !== 0) throw argError(op, 'vision_cfg.timm_drop', '0 (head dropout is not implemented)', cfg.timm_drop);
  const ls = kwargs.layer_scale_init_value;
  if (ls !== undefined && ls !== null && (typeof ls !== 'number' || !Number.isFinite(ls) || ls < 0)) {
    throw argError(op, 'vision_cfg.timm_model_kwargs.layer_scale_init_value', 'a finite number >= 0 or null', ls);
  }
  const size = cfg.image_size ?? 224;
  const imageSize = (Array.isArray(size) ? size : [size, size]) as [number, number];
  if (imageSize.length !== 2 || imageSize.some((s) => typeof s !== 'number' || !Number.isSafeInteger(s) || s < 1)) {
    throw argError(op, 'vision_cfg.image_size', 'a positive integer or a pair of them', size);
  }
  return {
    arch,
    deploy: flag('vision_cfg.timm_model_kwargs.deploy', kwargs.deploy, false),
    dropPathRate: rate('vision_cfg.timm_drop_path', cfg.timm_drop_path) ?? rate('vision_cfg.timm_model_kwargs.drop_path_rate', kwargs.drop_path_rate) ?? 0,
    layerScaleInitValue: ls === undefined ? 1e-6 : (ls as number | null),
    projBias: flag('vision_cfg.timm_proj_bias', cfg.timm_proj_bias, false),
    imageSize,
  };
}

/** Builds the tower a UniRepLKNet vision_cfg describes. */
export function createUniRepLKNetTower(cfg: VisionConfig, embedDim: number, opts: Parameters<VisionTowerBuilder['build']>[2] = {}): UniRepLKNetTower {
  const r = resolveUniRepLKNetConfig(cfg, 'createUniRepLKNetTower');
  return new UniRepLKNetTower(r.arch, embedDim, {
    device: opts.device, dtype: opts.dtype, generator: opts.generator,
    deploy: r.deploy, dropPathRate: r.dropPathRate, layerScaleInitValue: r.layerScaleInitValue, projBias: r.projBias,
  });
}

/** The tower registry's entry (lib/nn/towers.ts). */
export const uniRepLKNetTowerBuilder: VisionTowerBuilder = {
  name: 'unireplknet',
  matches: isUniRepLKNetConfig,
  build: createUniRepLKNetTower,
  countParameters: (cfg, embedDim) => {
    const r = resolveUniRepLKNetConfig(cfg, 'countParameters');
    const layerScale = r.layerScaleInitValue !== null && r.layerScaleInitValue > 0;
    return uniRepLKNetTrunkParameters(r.arch, { deploy: r.deploy, layerScale }) + r.arch.dims[3] * embedDim + (r.projBias ? embedDim : 0);
  },
  estimateFlops: (cfg, embedDim) => {
    const r = resolveUniRepLKNetConfig(cfg, 'estimateFlops');
    return uniRepLKNetFlops(r.arch, r.imageSize, embedDim);
  },
};
