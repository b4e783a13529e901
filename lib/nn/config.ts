// Model configs in OpenCLIP's JSON shape ({ embed_dim, vision_cfg, text_cfg, ... }, snake_case
// keys as in open_clip/model_configs/*.json), and their resolution: OpenCLIP's defaults filled
// in, every value checked, and options we do not implement refused by name rather than ignored.
import { argError } from '../tensor/check.js';

/** OpenCLIP's CLIPVisionCfg for a ViT image tower (other towers read their own keys). */
export interface VisionConfig {
  image_size?: number | [number, number];
  layers?: number;
  width?: number;
  head_width?: number;
  mlp_ratio?: number;
  patch_size?: number;
  ls_init_value?: number | null;
  patch_dropout?: number;
  no_ln_pre?: boolean;
  pos_embed_type?: 'learnable' | 'sin_cos_2d';
  final_ln_after_pool?: boolean;
  pool_type?: 'tok' | 'avg';
  norm_kwargs?: { eps?: number } | null;
  /** A timm image tower by name (OpenCLIP's TimmModel); see towers.ts for the ones we build. */
  timm_model_name?: string | null;
  [key: string]: unknown;
}

/** OpenCLIP's CLIPTextCfg. */
export interface TextConfig {
  context_length?: number;
  vocab_size?: number;
  width?: number;
  heads?: number;
  layers?: number;
  mlp_ratio?: number;
  ls_init_value?: number | null;
  no_causal_mask?: boolean;
  final_ln_after_pool?: boolean;
  pool_type?: 'argmax' | 'first' | 'last';
  proj_bias?: boolean;
  proj_type?: 'linear' | 'none';
  norm_kwargs?: { eps?: number } | null;
  hf_tokenizer_name?: string | null;
  tokenizer_kwargs?: Record<string, unknown> | null;
  [key: string]: unknown;
}

/** An OpenCLIP model config (the content of model_configs/NAME.json or open_clip_config.json's model_cfg). */
export interface ModelConfig {
  embed_dim: number;
  vision_cfg: VisionConfig;
  text_cfg: TextConfig;
  /** QuickGELU instead of GELU in both towers (OpenAI's weights). */
  quick_gelu?: boolean;
  /** Initial log logit scale (default ln(1 / 0.07)). */
  init_logit_scale?: number;
  /** Initial logit bias; a model has a `logit_bias` parameter only when this is set (SigLIP: -10). */
  init_logit_bias?: number | null;
  /** Text tower under the `text.` prefix (OpenCLIP's CustomTextCLIP) instead of at the top level. */
  custom_text?: boolean;
  [key: string]: unknown;
}

export interface ResolvedVisionConfig {
  imageSize: [number, number];
  patchSize: number;
  gridSize: [number, number];
  layers: number;
  width: number;
  heads: number;
  mlpRatio: number;
  lsInitValue: number | null;
  patchDropout: number;
  noLnPre: boolean;
  posEmbedType: 'learnable' | 'sin_cos_2d';
  finalLnAfterPool: boolean;
  poolType: 'tok' | 'avg';
  eps: number;
}

export interface ResolvedTextConfig {
  contextLength: number;
  vocabSize: number;
  width: number;
  heads: number;
  layers: number;
  mlpRatio: number;
  lsInitValue: number | null;
  causal: boolean;
  finalLnAfterPool: boolean;
  poolType: 'argmax' | 'first' | 'last';
  projBias: boolean;
  eps: number;
}

// Keys that describe the tokenizer or outputs we do not change, accepted and left to others.
const VISION_PASSIVE = new Set(['output_tokens', 'timm_model_name', 'timm_model_pretrained', 'timm_pool', 'timm_proj', 'timm_proj_bias', 'timm_drop', 'timm_drop_path', 'timm_model_kwargs', 'image_mean', 'image_std', 'interpolation', 'resize_mode', 'image_seq_len']);
const TEXT_PASSIVE = new Set(['hf_tokenizer_name', 'tokenizer_kwargs', 'output_tokens', 'pad_id', 'eos_id', 'text_mask', 'reduction_mask']);
// OpenCLIP options whose default is the only value we implement.
const VISION_DEFAULT_ONLY: Record<string, unknown> = {
  attentional_pool: false, act_kwargs: null, block_type: null, qk_norm: false, scaled_cosine_attn: false,
  scale_heads: false, scale_attn_inner: false, scale_attn: false, scale_fc: false,
};
const TEXT_DEFAULT_ONLY: Record<string, unknown> = {
  embed_cls: false, act_kwargs: null, block_type: null, qk_norm: false, scaled_cosine_attn: false, scale_heads: false,
  scale_attn_inner: false, scale_attn: false, scale_fc: false, hf_model_name: null, use_pad_mask: false, correct_cls_mask: false,
};
const VISION_KEYS = ['image_size', 'layers', 'width', 'head_width', 'mlp_ratio', 'patch_size', 'ls_init_value', 'patch_dropout', 'no_ln_pre', 'pos_embed_type', 'final_ln_after_pool', 'pool_type', 'norm_kwargs'];
const TEXT_KEYS = ['context_length', 'vocab_size', 'width', 'heads', 'layers', 'mlp_ratio', 'ls_init_value', 'no_causal_mask', 'final_ln_after_pool', 'pool_type', 'proj_bias', 'proj_type', 'norm_kwargs'];

function checkObject(op: string, arg: string, v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw argError(op, arg, 'an object', v);
  return v as Record<string, unknown>;
}

function checkKeys(op: string, arg: string, cfg: Record<string, unknown>, known: string[], passive: Set<string>, defaultOnly: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(cfg)) {
    if (known.includes(key) || passive.has(key)) continue;
    if (key in defaultOnly) {
      const def = defaultOnly[key];
      if (value === def || (def === null && value === undefined) || (def === false && value === null)) continue;
      throw new Error(`${op}: ${arg}.${key} = ${JSON.stringify(value)} is not supported (only ${JSON.stringify(def)})`);
    }
    throw new Error(`${op}: unknown key ${arg}.${key}`);
  }
}

/** Bounds that no real model comes near, so that a wrong value fails here, not in an allocation. */
const MAX_SIZE = 1 << 20;
export const MAX_LAYERS = 1024;

class Reader {
  constructor(
    private readonly op: string,
    private readonly arg: string,
    private readonly cfg: Record<string, unknown>,
  ) {}

  int(key: string, def: number, min = 1, max = MAX_SIZE): number {
    const v = this.cfg[key] ?? def;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw argError(this.op, `${this.arg}.${key}`, `an integer in [${min}, ${max}]`, v);
    return v;
  }

  num(key: string, def: number, min: number, max = Infinity, maxOpen = false): number {
    const v = this.cfg[key] ?? def;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (maxOpen && v === max)) {
      throw argError(this.op, `${this.arg}.${key}`, `a number in [${min}, ${max}${maxOpen ? ')' : ']'}`, v);
    }
    return v;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.cfg[key] ?? def;
    if (typeof v !== 'boolean') throw argError(this.op, `${this.arg}.${key}`, 'a boolean', v);
    return v;
  }

  oneOf<T extends string>(key: string, def: T, values: readonly T[]): T {
    const v = this.cfg[key] ?? def;
    if (!values.includes(v as T)) throw argError(this.op, `${this.arg}.${key}`, values.map((s) => `'${s}'`).join(' or '), v);
    return v as T;
  }

  optionalNum(key: string): number | null {
    const v = this.cfg[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw argError(this.op, `${this.arg}.${key}`, 'a finite number or null', v);
    return v;
  }

  eps(): number {
    const kw = this.cfg.norm_kwargs;
    if (kw === undefined || kw === null) return 1e-5;
    const o = checkObject(this.op, `${this.arg}.norm_kwargs`, kw);
    for (const k of Object.keys(o)) if (k !== 'eps') throw new Error(`${this.op}: unknown key ${this.arg}.norm_kwargs.${k}`);
    return new Reader(this.op, `${this.arg}.norm_kwargs`, o).num('eps', 1e-5, 0);
  }
}

/** A ViT vision_cfg with OpenCLIP's defaults, checked. */
export function resolveVisionConfig(cfgIn: unknown, op = 'resolveVisionConfig'): ResolvedVisionConfig {
  const cfg = checkObject(op, 'vision_cfg', cfgIn);
  checkKeys(op, 'vision_cfg', cfg, VISION_KEYS, VISION_PASSIVE, VISION_DEFAULT_ONLY);
  if (Array.isArray(cfg.layers)) throw new Error(`${op}: vision_cfg.layers is a list (a ModifiedResNet tower), which is not supported`);
  const r = new Reader(op, 'vision_cfg', cfg);
  const sizeIn = cfg.image_size ?? 224;
  let imageSize: [number, number];
  if (Array.isArray(sizeIn) && sizeIn.length === 2) {
    imageSize = [new Reader(op, 'vision_cfg', { h: sizeIn[0] }).int('h', 0), new Reader(op, 'vision_cfg', { w: sizeIn[1] }).int('w', 0)];
  } else {
    const s = r.int('image_size', 224);
    imageSize = [s, s];
  }
  const patchSize = r.int('patch_size', 16);
  if (imageSize[0] % patchSize !== 0 || imageSize[1] % patchSize !== 0) {
    throw new Error(`${op}: expected vision_cfg.patch_size to divide image_size [${imageSize.join(', ')}], got ${patchSize}`);
  }
  const width = r.int('width', 768);
  const headWidth = r.int('head_width', 64);
  if (width % headWidth !== 0) throw new Error(`${op}: expected vision_cfg.head_width to divide width ${width}, got ${headWidth}`);
  const gridSize: [number, number] = [imageSize[0] / patchSize, imageSize[1] / patchSize];
  const posEmbedType = r.oneOf('pos_embed_type', 'learnable', ['learnable', 'sin_cos_2d'] as const);
  if (posEmbedType === 'sin_cos_2d' && (gridSize[0] !== gridSize[1] || width % 4 !== 0)) {
    throw new Error(`${op}: vision_cfg.pos_embed_type 'sin_cos_2d' needs a square grid and a width divisible by 4, got grid [${gridSize.join(', ')}] and width ${width}`);
  }
  return {
    imageSize,
    patchSize,
    gridSize,
    layers: r.int('layers', 12, 0, MAX_LAYERS),
    width,
    heads: width / headWidth,
    mlpRatio: r.num('mlp_ratio', 4, 0, 64),
    lsInitValue: r.optionalNum('ls_init_value'),
    patchDropout: r.num('patch_dropout', 0, 0, 1, true),
    noLnPre: r.bool('no_ln_pre', false),
    posEmbedType,
    finalLnAfterPool: r.bool('final_ln_after_pool', false),
    poolType: r.oneOf('pool_type', 'tok', ['tok', 'avg'] as const),
    eps: r.eps(),
  };
}

/** A text_cfg with OpenCLIP's defaults, checked. */
export function resolveTextConfig(cfgIn: unknown, op = 'resolveTextConfig'): ResolvedTextConfig {
  const cfg = checkObject(op, 'text_cfg', cfgIn);
  checkKeys(op, 'text_cfg', cfg, TEXT_KEYS, TEXT_PASSIVE, TEXT_DEFAULT_ONLY);
  const r = new Reader(op, 'text_cfg', cfg);
  const width = r.int('width', 512);
  const heads = r.int('heads', 8);
  if (width % heads !== 0) throw new Error(`${op}: expected text_cfg.heads to divide width ${width}, got ${heads}`);
  if (r.oneOf('proj_type', 'linear', ['linear', 'none'] as const) === 'none') {
    throw new Error(`${op}: text_cfg.proj_type 'none' is not supported (CLIP needs a text projection)`);
  }
  return {
    contextLength: r.int('context_length', 77),
    vocabSize: r.int('vocab_size', 49408),
    width,
    heads,
    layers: r.int('layers', 12, 0, MAX_LAYERS),
    mlpRatio: r.num('mlp_ratio', 4, 0, 64),
    lsInitValue: r.optionalNum('ls_init_value'),
    causal: !r.bool('no_causal_mask', false),
    finalLnAfterPool: r.bool('final_ln_after_pool', false),
    poolType: r.oneOf('pool_type', 'argmax', ['argmax', 'first', 'last'] as const),
    projBias: r.bool('proj_bias', false),
    eps: r.eps(),
  };
}

/** Checks the top level of a model config; returns it typed. */
export function checkModelConfig(cfgIn: unknown, op = 'checkModelConfig'): ModelConfig {
  const cfg = checkObject(op, 'config', cfgIn);
  const r = new Reader(op, 'config', cfg);
  r.int('embed_dim', 0);
  checkObject(op, 'config.vision_cfg', cfg.vision_cfg);
  checkObject(op, 'config.text_cfg', cfg.text_cfg);
  r.bool('quick_gelu', false);
  r.bool('custom_text', false);
  r.num('init_logit_scale', 0, -Infinity);
  r.optionalNum('init_logit_bias');
  return cfg as ModelConfig;
}
