// Building CLIP models by name (lib/nn/configs/NAME.json, OpenCLIP's model-config shape) or
// from a config object, and sizing them without building: parameter counts and FLOPs.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argError, checkInteger } from '../tensor/check.js';
import { Generator } from '../tensor/random.js';
import type { DType, Device } from '../tensor/tensor.js';
import { CLIP } from './clip.js';
import { checkModelConfig, resolveTextConfig, type ModelConfig } from './config.js';
import { textTransformerFlops, textTransformerParameters } from './count.js';
import { visionTowerFor } from './towers.js';

/** Where the shipped configs live: next to this file under tsx, lib/nn/configs from dist/lib/nn. */
function configDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'configs'), join(here, '..', '..', '..', 'lib', 'nn', 'configs')];
  const dir = candidates.find((d) => existsSync(d));
  if (!dir) throw new Error(`clipforge: model configs not found (looked in ${candidates.join(', ')})`);
  return dir;
}

/** Names of the built-in model configs, sorted. */
export function listModels(): string[] {
  return readdirSync(configDir())
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -5))
    .sort();
}

/** A copy of the built-in config `name` (e.g. 'ViT-B-32'). */
export function getModelConfig(name: string): ModelConfig {
  if (typeof name !== 'string') throw argError('getModelConfig', 'name', 'a model name', name);
  const models = listModels();
  if (!models.includes(name)) throw new Error(`getModelConfig: unknown model '${name}' (available: ${models.join(', ')})`);
  return checkModelConfig(JSON.parse(readFileSync(join(configDir(), `${name}.json`), 'utf8')), 'getModelConfig');
}

function configOf(op: string, nameOrConfig: string | ModelConfig): ModelConfig {
  if (typeof nameOrConfig === 'string') return getModelConfig(nameOrConfig);
  return checkModelConfig(nameOrConfig, op);
}

export interface CreateModelOptions {
  device?: Device;
  dtype?: DType;
  /** Seed of the initial weights (default 0): the same seed gives the same model on any device. */
  seed?: number;
}

/** A freshly initialized CLIP model (OpenCLIP's initialization), in training mode. */
export function createModel(nameOrConfig: string | ModelConfig, opts: CreateModelOptions = {}): CLIP {
  if (opts === null || typeof opts !== 'object') throw argError('createModel', 'opts', 'an options object', opts);
  const config = configOf('createModel', nameOrConfig);
  const seed = checkInteger('createModel', 'seed', opts.seed ?? 0, 0, Number.MAX_SAFE_INTEGER);
  return new CLIP(config, { device: opts.device, dtype: opts.dtype, generator: new Generator(seed) });
}

export interface ParameterCounts {
  total: number;
  /** The image tower (`visual.*`). */
  visual: number;
  /** The text tower. */
  text: number;
}

/** Parameter counts computed from the config alone (logit scale and bias are in `total` only). */
export function countParameters(nameOrConfig: string | ModelConfig): ParameterCounts {
  const config = configOf('countParameters', nameOrConfig);
  const visual = visionTowerFor(config.vision_cfg, 'countParameters').countParameters(config.vision_cfg, config.embed_dim);
  const text = textTransformerParameters(resolveTextConfig(config.text_cfg, 'countParameters'), config.embed_dim);
  const scalars = 1 + (config.init_logit_bias !== undefined && config.init_logit_bias !== null ? 1 : 0);
  return { total: visual + text + scalars, visual, text };
}

export interface FlopEstimate {
  /** Forward FLOPs per image. */
  image: number;
  /** Forward FLOPs per text at the full context length. */
  text: number;
  /** image + text: one image-text pair. */
  total: number;
}

/** Forward FLOPs (2 per multiply-add) from the config alone, as OpenCLIP's profiler reports GFLOPs. */
export function estimateFlops(nameOrConfig: string | ModelConfig): FlopEstimate {
  const config = configOf('estimateFlops', nameOrConfig);
  const image = visionTowerFor(config.vision_cfg, 'estimateFlops').estimateFlops(config.vision_cfg, config.embed_dim);
  const text = textTransformerFlops(resolveTextConfig(config.text_cfg, 'estimateFlops'), config.embed_dim);
  return { image, text, total: image + text };
}
