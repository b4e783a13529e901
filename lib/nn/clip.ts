// OpenCLIP's CLIP: an image tower (`visual.*`), the text tower (inline at the top level of the
// state dict, or under `text.*` for CustomTextCLIP configs), the learned log logit scale
// `logit_scale` (ln(1/0.07)) and, for SigLIP, `logit_bias`.
import { checkBoolean } from '../tensor/check.js';
import { full, type Tensor } from '../tensor/tensor.js';
import { l2Normalize } from '../tensor/ops/l2norm.js';
import { LOGIT_SCALE_INIT } from '../loss/clip.js';
import { checkModelConfig, type ModelConfig } from './config.js';
import type { LayerOptions } from './layers.js';
import { Module } from './module.js';
import { TextTransformer } from './text.js';
import { visionTowerFor, type VisionTowerModule } from './towers.js';

export interface EncodeOptions {
  /** L2-normalize the features (default false, as OpenCLIP's encode_image / encode_text). */
  normalize?: boolean;
}

export interface ClipOutput {
  /** L2-normalized image features [B, embed_dim]. */
  imageFeatures: Tensor;
  /** L2-normalized text features [B, embed_dim]. */
  textFeatures: Tensor;
  /**
   * The learned *log* logit scale (the parameter itself, shape []): clipLoss and siglipLoss
   * take it as is and apply exp, where OpenCLIP's forward returns logit_scale.exp().
   */
  logitScale: Tensor;
  /** The logit bias parameter (SigLIP), or null. */
  logitBias: Tensor | null;
}

export class CLIP extends Module {
  readonly config: ModelConfig;
  readonly visual: VisionTowerModule;
  readonly text: TextTransformer;

  constructor(configIn: ModelConfig, opts: LayerOptions = {}) {
    super();
    const config = checkModelConfig(configIn, 'CLIP');
    this.config = config;
    const activation = config.quick_gelu ? 'quickGelu' : 'gelu';
    const tower = visionTowerFor(config.vision_cfg, 'CLIP');
    this.visual = this.registerModule('visual', tower.build(config.vision_cfg, config.embed_dim, { ...opts, activation }));
    const text = new TextTransformer(config.text_cfg, config.embed_dim, { ...opts, activation });
    this.text = this.registerModule('text', text, { inline: !config.custom_text });
    const device = opts.device ?? 'cpu';
    const dtype = opts.dtype ?? 'f32';
    this.registerParameter('logit_scale', full([], config.init_logit_scale ?? LOGIT_SCALE_INIT, { device, dtype }));
    if (config.init_logit_bias !== undefined && config.init_logit_bias !== null) {
      this.registerParameter('logit_bias', full([], config.init_logit_bias, { device, dtype }));
    }
  }

  get logitScale(): Tensor {
    return this.param('logit_scale');
  }

  get logitBias(): Tensor | null {
    return this.optionalParam('logit_bias');
  }

  /** images [B, 3, H, W] -> image features [B, embed_dim]. */
  encodeImage(images: Tensor, opts: EncodeOptions = {}): Tensor {
    return this.maybeNormalize(this.visual.forward(images), opts, 'encodeImage');
  }

  /** ids [B, L] (i32 tokens) -> text features [B, embed_dim]. */
  encodeText(ids: Tensor, opts: EncodeOptions = {}): Tensor {
    return this.maybeNormalize(this.text.forward(ids), opts, 'encodeText');
  }

  /** Both towers, normalized, with the logit scale (and bias) the contrastive losses take. */
  forward(images: Tensor, ids: Tensor): ClipOutput {
    return {
      imageFeatures: this.encodeImage(images, { normalize: true }),
      textFeatures: this.encodeText(ids, { normalize: true }),
      logitScale: this.logitScale,
      logitBias: this.logitBias,
    };
  }

  /** Turns gradient checkpointing on or off in both towers' transformers. */
  setGradCheckpointing(enable = true): void {
    checkBoolean('CLIP.setGradCheckpointing', 'enable', enable);
    for (const [, m] of this.namedModules()) {
      if ('gradCheckpointing' in m) (m as { gradCheckpointing: boolean }).gradCheckpointing = enable;
    }
  }

  private maybeNormalize(features: Tensor, opts: EncodeOptions, op: string): Tensor {
    const normalize = opts.normalize === undefined ? false : checkBoolean(`CLIP.${op}`, 'normalize', opts.normalize);
    if (!normalize) return features;
    const y = l2Normalize(features);
    features.dispose();
    return y;
  }
}
