// Loading pretrained OpenCLIP models from a local folder laid out as the model hubs lay it
// out: open_clip_config.json ({ model_cfg, preprocess_cfg }) and the weights with OpenCLIP's
// state-dict keys, open_clip_model.safetensors or else open_clip_pytorch_model.bin; or from a
// model config and a weights file (OpenCLIP's `--model NAME --pretrained FILE`). The model can
// be built at another image size or context length than it was trained at; the position
// embeddings are then resized as OpenCLIP does.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readStateDict } from '../io/state_dict.js';
import { argError, checkBoolean, checkInteger, sameShape } from '../tensor/check.js';
import { fromArray, type DType, type Device, type Tensor } from '../tensor/tensor.js';
import { CLIP } from './clip.js';
import { checkModelConfig, type ModelConfig } from './config.js';
import { withoutInit } from './init.js';
import { resizeTextPositions, resizeVisionPositions } from './resize.js';

export interface OpenClipFolderConfig {
  /** The model config (OpenCLIP's model_cfg). */
  modelCfg: ModelConfig;
  /** Image preprocessing (size, mean, std, interpolation, resize_mode), when the file has it. */
  preprocessCfg: Record<string, unknown> | null;
}

/** Reads and checks `dir`/open_clip_config.json. */
export function readOpenClipConfig(dir: string): OpenClipFolderConfig {
  const op = 'readOpenClipConfig';
  if (typeof dir !== 'string') throw argError(op, 'dir', 'a folder path', dir);
  const path = join(dir, 'open_clip_config.json');
  if (!existsSync(path)) throw new Error(`${op}: expected ${path} (an OpenCLIP model folder), but it does not exist`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`${op}: ${path} is not valid JSON (${(e as Error).message})`);
  }
  const o = parsed as { model_cfg?: unknown; preprocess_cfg?: unknown };
  if (o === null || typeof o !== 'object' || o.model_cfg === undefined) throw new Error(`${op}: expected a 'model_cfg' object in ${path}`);
  const modelCfg = checkModelConfig(o.model_cfg, op);
  const pre = o.preprocess_cfg;
  return { modelCfg, preprocessCfg: pre !== null && typeof pre === 'object' ? (pre as Record<string, unknown>) : null };
}

export interface LoadPretrainedOptions {
  device?: Device;
  /** Parameter dtype (default 'f32'); the file's values are converted. */
  dtype?: DType;
  /** Build for this image size (OpenCLIP's force_image_size); the patch-position grid is resized. */
  imageSize?: number | [number, number];
  /** Build for this text context length; the text positions are resized. */
  contextLength?: number;
  /** Require the file's keys to match the model's exactly (default true). */
  strict?: boolean;
}

/** The model config with the requested image size and context length. */
function adjustedConfig(cfg: ModelConfig, opts: LoadPretrainedOptions): ModelConfig {
  const op = 'loadPretrained';
  const out: ModelConfig = { ...cfg, vision_cfg: { ...cfg.vision_cfg }, text_cfg: { ...cfg.text_cfg } };
  if (opts.imageSize !== undefined) {
    const s = opts.imageSize;
    if (Array.isArray(s)) {
      if (s.length !== 2) throw argError(op, 'imageSize', 'a size or [height, width]', s);
      out.vision_cfg.image_size = [checkInteger(op, 'imageSize[0]', s[0], 1), checkInteger(op, 'imageSize[1]', s[1], 1)];
    } else {
      out.vision_cfg.image_size = checkInteger(op, 'imageSize', s, 1);
    }
  }
  if (opts.contextLength !== undefined) out.text_cfg.context_length = checkInteger(op, 'contextLength', opts.contextLength, 1);
  return out;
}

/**
 * Replaces the position tables of `state` whose length differs from the model's by resized
 * ones (the vision grid bicubically, the text positions linearly, as OpenCLIP's
 * resize_pos_embed and resize_text_pos_embed; a fixed sin-cos grid by the model's own table for
 * its grid). Returns the keys it replaced.
 */
export function resizePositionEmbeddings(state: Map<string, Tensor>, model: CLIP): string[] {
  if (!(state instanceof Map)) throw argError('resizePositionEmbeddings', 'state', 'a Map of tensors', state);
  if (!(model instanceof CLIP)) throw argError('resizePositionEmbeddings', 'model', 'a CLIP model', model);
  const own = model.stateDict();
  const resized: string[] = [];
  const textKey = own.has('positional_embedding') ? 'positional_embedding' : 'text.positional_embedding';
  for (const key of ['visual.positional_embedding', textKey]) {
    const src = state.get(key);
    const dst = own.get(key);
    if (!src || !dst || sameShape(src.shape, dst.shape)) continue;
    const [n, width] = dst.shape as [number, number];
    if (src.rank !== 2 || src.shape[1] !== width) {
      throw new Error(`resizePositionEmbeddings: expected ${key} of width ${width}, got shape [${src.shape.join(', ')}]`);
    }
    const values = src.toArray() as Float32Array;
    let table: Float32Array;
    if (key === 'visual.positional_embedding' && model.config.vision_cfg.pos_embed_type === 'sin_cos_2d') {
      // A fixed sin-cos table is a function of the grid: the model's own, built for its grid, is
      // the right one (resizing the old grid's table would bend its frequencies).
      table = dst.toArray() as Float32Array;
    } else if (key === 'visual.positional_embedding') {
      const cfg = model.config.vision_cfg;
      const size = cfg.image_size ?? 224;
      const [h, w] = Array.isArray(size) ? size : [size, size];
      const p = cfg.patch_size ?? 16;
      table = resizeVisionPositions(values, width, [h / p, w / p]);
    } else {
      table = resizeTextPositions(values, width, n);
    }
    state.set(key, fromArray(table, [table.length / width, width], { device: src.device }));
    src.dispose();
    resized.push(key);
  }
  return resized;
}

/** The weight files of an OpenCLIP folder, in order of preference. */
const WEIGHT_FILES = ['open_clip_model.safetensors', 'open_clip_pytorch_model.bin'];

/**
 * The model's weights among a file's tensors: a clipforge training checkpoint keeps them under
 * `state_dict.` beside the optimizer's moments (which are dropped), and a model saved from
 * DistributedDataParallel prefixes every key with `module.`.
 */
function modelWeights(tensors: Map<string, Tensor>): Map<string, Tensor> {
  const prefixes = ['state_dict.', 'module.'];
  let out = tensors;
  for (const prefix of prefixes) {
    const keys = [...out.keys()];
    const wrapped = prefix === 'state_dict.' ? keys.some((k) => k.startsWith(prefix)) : keys.length > 0 && keys.every((k) => k.startsWith(prefix));
    if (!wrapped) continue;
    const next = new Map<string, Tensor>();
    for (const [k, t] of out) {
      if (k.startsWith(prefix)) next.set(k.slice(prefix.length), t);
      else t.dispose();
    }
    out = next;
  }
  return out;
}

/**
 * A CLIP model of `config` (built at the options' image size and context length) with the
 * weights of `file`, any format readStateDict reads, in evaluation mode.
 */
export function loadPretrainedFile(config: ModelConfig, file: string, opts: LoadPretrainedOptions = {}): CLIP {
  const op = 'loadPretrainedFile';
  if (opts === null || typeof opts !== 'object') throw argError(op, 'opts', 'an options object', opts);
  if (typeof file !== 'string' || file === '') throw argError(op, 'file', 'a weights file path', file);
  if (!existsSync(file)) throw new Error(`${op}: expected a weights file, but ${file} does not exist`);
  const built = adjustedConfig(checkModelConfig(config, op), opts);
  const strict = opts.strict === undefined ? true : checkBoolean(op, 'strict', opts.strict);
  // Loaded strictly, every weight is overwritten, so drawing initial values would be wasted
  // work; a non-strict load keeps the initial values of what the file lacks.
  const build = (): CLIP => new CLIP(built, { device: opts.device, dtype: opts.dtype });
  const model = strict ? withoutInit(build) : build();
  try {
    const tensors = modelWeights(readStateDict(file));
    try {
      resizePositionEmbeddings(tensors, model);
      model.loadStateDict(tensors, { strict });
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model.eval();
}

/** The weights file of the OpenCLIP folder `dir` (an error naming both candidates when missing). */
export function pretrainedWeightsFile(dir: string): string {
  const candidates = WEIGHT_FILES.map((f) => join(dir, f));
  const weights = candidates.find((p) => existsSync(p));
  if (!weights) throw new Error(`loadPretrained: expected the weights in ${candidates.join(' or ')}, but neither exists`);
  return weights;
}

/** A CLIP model with the weights of the OpenCLIP folder `dir`, in evaluation mode. */
export function loadPretrained(dir: string, opts: LoadPretrainedOptions = {}): CLIP {
  const op = 'loadPretrained';
  if (opts === null || typeof opts !== 'object') throw argError(op, 'opts', 'an options object', opts);
  const { modelCfg } = readOpenClipConfig(dir);
  return loadPretrainedFile(modelCfg, pretrainedWeightsFile(dir), opts);
}
