// The registry of image towers a CLIP model can be built with. Each entry says which
// vision_cfg it serves and how to build, count and time it; the factory and CLIP look the
// tower up here, so adding a tower (e.g. UniRepLKNet in unireplknet.ts) is one entry in
// VISION_TOWERS, placed before 'vit' (the entries are tried in order and 'vit' takes every
// config without a timm_model_name).
import { argError } from '../tensor/check.js';
import type { Tensor } from '../tensor/tensor.js';
import { resolveVisionConfig, type VisionConfig } from './config.js';
import { visionTransformerFlops, visionTransformerParameters } from './count.js';
import type { Activation, LayerOptions } from './layers.js';
import type { Module } from './module.js';
import { VisionTransformer } from './vit.js';
import { uniRepLKNetTowerBuilder } from './unireplknet_config.js';

/** An image tower: images [B, 3, H, W] -> features [B, embed_dim]. */
export interface VisionTowerModule extends Module {
  forward(images: Tensor): Tensor;
}

export interface VisionTowerBuildOptions extends LayerOptions {
  /** The model's MLP activation ('quickGelu' when the config has quick_gelu). */
  activation?: Activation;
}

export interface VisionTowerBuilder {
  /** Shown in errors and `clipforge info`. */
  name: string;
  /** Whether this builder serves the vision_cfg. */
  matches(cfg: VisionConfig): boolean;
  build(cfg: VisionConfig, embedDim: number, opts: VisionTowerBuildOptions): VisionTowerModule;
  /** Parameter count of the tower (its projection to embed_dim included), without building it. */
  countParameters(cfg: VisionConfig, embedDim: number): number;
  /** Forward FLOPs per image. */
  estimateFlops(cfg: VisionConfig, embedDim: number): number;
}

const vitTower: VisionTowerBuilder = {
  name: 'vit',
  matches: (cfg) => !cfg.timm_model_name,
  build: (cfg, embedDim, opts) => new VisionTransformer(cfg, embedDim, opts),
  countParameters: (cfg, embedDim) => visionTransformerParameters(resolveVisionConfig(cfg, 'countParameters'), embedDim),
  estimateFlops: (cfg, embedDim) => visionTransformerFlops(resolveVisionConfig(cfg, 'estimateFlops'), embedDim),
};

export const VISION_TOWERS: VisionTowerBuilder[] = [uniRepLKNetTowerBuilder, vitTower];

/** The first registered tower serving `cfg`; throws naming the config when none does. */
export function visionTowerFor(cfg: VisionConfig, op: string): VisionTowerBuilder {
  if (cfg === null || typeof cfg !== 'object') throw argError(op, 'vision_cfg', 'an object', cfg);
  const tower = VISION_TOWERS.find((t) => t.matches(cfg));
  if (!tower) {
    throw new Error(`${op}: no image tower for vision_cfg with timm_model_name ${JSON.stringify(cfg.timm_model_name)} (available: ${VISION_TOWERS.map((t) => t.name).join(', ')})`);
  }
  return tower;
}
