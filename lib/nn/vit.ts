// OpenCLIP's VisionTransformer image tower: patch embedding (conv1, as a GEMM over unfolded
// patches), class token, position embedding (learned, or CLIPA's fixed 2-D sin-cos), optional
// patch dropout in training, ln_pre, the transformer, pooling (class token, or the average of
// the patch tokens), ln_post and the projection to the shared embedding.
import { argError, checkInteger, shapeStr } from '../tensor/check.js';
import { defaultGenerator, Generator } from '../tensor/random.js';
import { fromArray, zeros, type Tensor } from '../tensor/tensor.js';
import { add } from '../tensor/ops/elementwise.js';
import { embedding } from '../tensor/ops/embedding.js';
import { linear, matmul } from '../tensor/ops/matmul.js';
import { permute } from '../tensor/ops/permute.js';
import { mean } from '../tensor/ops/reduce.js';
import { reshape } from '../tensor/ops/shape.js';
import { concat, slice } from '../tensor/ops/slice.js';
import { floatTensor } from '../tensor/ops/util.js';
import { resolveVisionConfig, type ResolvedVisionConfig, type VisionConfig } from './config.js';
import { initFanInUniform, initNormal } from './init.js';
import { emptyParameter, LayerNorm, type Activation, type LayerOptions } from './layers.js';
import { Module } from './module.js';
import { Transformer } from './transformer.js';

/**
 * conv1 of OpenCLIP's ViT: a p×p, stride-p convolution without bias, weight [width, 3, p, p].
 * Computed as one GEMM: the image [B, 3, H, W] is unfolded into patch rows [B, gh·gw, 3·p·p]
 * (a permute of its [B, 3, gh, p, gw, p] view), times the weight seen as [width, 3·p·p].
 */
export class PatchEmbedding extends Module {
  constructor(
    readonly width: number,
    readonly patchSize: number,
    opts: LayerOptions = {},
  ) {
    super();
    checkInteger('PatchEmbedding', 'width', width, 1, 1 << 20);
    checkInteger('PatchEmbedding', 'patchSize', patchSize, 1, 1024);
    const fanIn = 3 * patchSize * patchSize;
    this.registerParameter('weight', initFanInUniform(emptyParameter([width, 3, patchSize, patchSize], opts), fanIn, opts.generator));
  }

  /** images [B, 3, H, W] (H, W multiples of the patch size) -> [B, (H/p)·(W/p), width]. */
  forward(images: Tensor): Tensor {
    const p = this.patchSize;
    const [B, C, H, W] = images.shape as [number, number, number, number];
    if (images.rank !== 4 || C !== 3 || H % p !== 0 || W % p !== 0 || H === 0 || W === 0) {
      throw new Error(`PatchEmbedding.forward: expected images of shape [B, 3, H, W] with H and W multiples of ${p}, got ${shapeStr(images.shape)}`);
    }
    const gh = H / p, gw = W / p;
    const split = reshape(images, [B, 3, gh, p, gw, p]);
    const patches = permute(split, [0, 2, 4, 1, 3, 5]);
    split.dispose();
    const rows = reshape(patches, [B, gh * gw, 3 * p * p]);
    patches.dispose();
    const w = reshape(this.param('weight'), [this.width, 3 * p * p]);
    const y = linear(rows, w);
    rows.dispose();
    w.dispose();
    return y;
  }
}

/**
 * The fixed 2-D sin-cos position table of MoCo v3 / MAE as OpenCLIP builds it for CLIPA:
 * [1 + G², width], a zero row for the class token, then for the patch at row r, column c:
 * the 1-D embedding of c in the first half and of r in the second, each [sin(pos·ω), cos(pos·ω)]
 * with ω_k = 10000^(-k / (width/4)).
 */
export function sinCos2dPositionTable(width: number, grid: number): Float32Array {
  checkInteger('sinCos2dPositionTable', 'width', width, 4, 1 << 16);
  if (width % 4 !== 0) throw argError('sinCos2dPositionTable', 'width', 'a multiple of 4', width);
  checkInteger('sinCos2dPositionTable', 'grid', grid, 1, 1024);
  // A table beyond any real model (ViT-g at 448 px holds 3 M values) is a caller's mistake.
  if ((1 + grid * grid) * width > 2 ** 26) {
    throw new Error(`sinCos2dPositionTable: expected at most 2^26 values, got width ${width} × (1 + ${grid}²) positions`);
  }
  const quarter = width / 4;
  const out = new Float32Array((1 + grid * grid) * width);
  for (let r = 0; r < grid; r++) {
    for (let c = 0; c < grid; c++) {
      const row = (1 + r * grid + c) * width;
      for (let k = 0; k < quarter; k++) {
        const omega = 1 / Math.pow(10000, k / quarter);
        out[row + k] = Math.sin(c * omega);
        out[row + quarter + k] = Math.cos(c * omega);
        out[row + 2 * quarter + k] = Math.sin(r * omega);
        out[row + 3 * quarter + k] = Math.cos(r * omega);
      }
    }
  }
  return out;
}

/**
 * Which patches patch dropout keeps: for each of B samples, `keep` distinct indices in
 * [0, count), ascending, drawn from `generator` on the host (no device round trip).
 */
export function samplePatchIndices(batch: number, count: number, keep: number, generator: Generator): Int32Array {
  const op = 'samplePatchIndices';
  checkInteger(op, 'batch', batch, 0, 1 << 24);
  checkInteger(op, 'count', count, 1, 1 << 24);
  checkInteger(op, 'keep', keep, 1, count);
  if (batch * count > 1 << 24) throw new Error(`${op}: batch * count = ${batch * count} is more than the ${1 << 24} draws allowed`);
  if (!(generator instanceof Generator)) throw argError(op, 'generator', 'a Generator', generator);
  const state = generator.getState();
  const first = generator.take(batch * count);
  const out = new Int32Array(batch * keep);
  const order = new Int32Array(count);
  for (let b = 0; b < batch; b++) {
    // A partial Fisher-Yates shuffle: the first `keep` slots end up a uniform random subset.
    for (let i = 0; i < count; i++) order[i] = i;
    for (let i = 0; i < keep; i++) {
      const j = i + Math.floor((hashUnit(state.seed, first + b * count + i) / 2 ** 32) * (count - i));
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    out.set(order.subarray(0, keep).sort(), b * keep);
  }
  return out;
}

/** Wellons' lowbias32 integer mixer: a well-distributed 32-bit hash of a 32-bit value. */
function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit random key for (seed, counter), both integers below 2^53. */
function hashUnit(seed: number, counter: number): number {
  const s = mix32(mix32(seed >>> 0) ^ Math.floor(seed / 2 ** 32));
  return mix32(mix32(s ^ (counter >>> 0)) ^ Math.floor(counter / 2 ** 32));
}

export interface VisionTowerOptions extends LayerOptions {
  activation?: Activation;
}

/** OpenCLIP's VisionTransformer (vision_cfg as in the model configs) with output_dim = embedDim. */
export class VisionTransformer extends Module {
  readonly cfg: ResolvedVisionConfig;
  readonly conv1: PatchEmbedding;
  readonly lnPre: LayerNorm | null = null;
  readonly transformer: Transformer;
  readonly lnPost: LayerNorm;
  /** Generator for patch dropout (default: the global one). */
  generator: Generator;

  constructor(
    visionCfg: VisionConfig,
    readonly embedDim: number,
    opts: VisionTowerOptions = {},
  ) {
    super();
    const cfg = resolveVisionConfig(visionCfg, 'VisionTransformer');
    this.cfg = cfg;
    checkInteger('VisionTransformer', 'embedDim', embedDim, 1, 1 << 20);
    const { width, gridSize } = cfg;
    const tokens = gridSize[0] * gridSize[1] + 1;
    const scale = width ** -0.5;
    this.generator = opts.generator ?? defaultGenerator;
    this.conv1 = this.registerModule('conv1', new PatchEmbedding(width, cfg.patchSize, opts));
    this.registerParameter('class_embedding', initNormal(emptyParameter([width], opts), scale, opts.generator));
    if (cfg.posEmbedType === 'learnable') {
      this.registerParameter('positional_embedding', initNormal(emptyParameter([tokens, width], opts), scale, opts.generator));
    } else {
      const table = fromArray(sinCos2dPositionTable(width, gridSize[0]), [tokens, width], { device: opts.device, dtype: opts.dtype });
      this.registerParameter('positional_embedding', table, { requiresGrad: false });
    }
    if (!cfg.noLnPre) this.lnPre = this.registerModule('ln_pre', new LayerNorm(width, { ...opts, eps: cfg.eps }));
    this.transformer = this.registerModule('transformer', new Transformer(width, cfg.layers, cfg.heads, {
      ...opts, mlpRatio: cfg.mlpRatio, lsInitValue: cfg.lsInitValue, eps: cfg.eps,
    }));
    this.lnPost = this.registerModule('ln_post', new LayerNorm(width, { ...opts, eps: cfg.eps }));
    this.registerParameter('proj', initNormal(emptyParameter([width, embedDim], opts), scale, opts.generator));
  }

  /** Tokens entering the transformer: class token, then patches, with positions added: [B, 1 + G, width]. */
  embed(images: Tensor): Tensor {
    const [gh, gw] = this.cfg.gridSize;
    const p = this.cfg.patchSize;
    if (images.rank !== 4 || images.shape[2] !== gh * p || images.shape[3] !== gw * p) {
      throw new Error(`VisionTransformer.forward: expected images of shape [B, 3, ${gh * p}, ${gw * p}], got ${shapeStr(images.shape)}`);
    }
    const B = images.shape[0]!;
    const patches = this.conv1.forward(images);
    const blank = zeros([B, 1, this.cfg.width], { dtype: patches.dtype, device: patches.device });
    const cls = add(blank, this.param('class_embedding'));
    blank.dispose();
    const tokens = concat([cls, patches], 1);
    cls.dispose();
    patches.dispose();
    const x = add(tokens, this.param('positional_embedding'));
    tokens.dispose();
    return x;
  }

  /**
   * OpenCLIP's PatchDropout: in training with patch_dropout p > 0, each sample keeps its class
   * token and a random max(1, floor(N·(1 − p))) of its N patch tokens. x [B, 1 + N, W].
   */
  dropPatches(x: Tensor): Tensor {
    const prob = this.cfg.patchDropout;
    if (!this.training || prob === 0) return x;
    const [B, S, W] = x.shape as [number, number, number];
    const count = S - 1;
    const keep = Math.max(1, Math.floor(count * (1 - prob)));
    const kept = samplePatchIndices(B, count, keep, this.generator);
    const rows = new Int32Array(B * (keep + 1));
    for (let b = 0; b < B; b++) {
      rows[b * (keep + 1)] = b * S;
      for (let i = 0; i < keep; i++) rows[b * (keep + 1) + 1 + i] = b * S + 1 + kept[b * keep + i]!;
    }
    const ids = fromArray(rows, [B, keep + 1], { device: x.device });
    const flat = reshape(x, [B * S, W]);
    const y = embedding(flat, ids);
    flat.dispose();
    ids.dispose();
    return y;
  }

  /** The transformer's output tokens [B, S, W] pooled to [B, W], ln_post included. */
  pool(x: Tensor): Tensor {
    const [B, S, W] = x.shape as [number, number, number];
    if (this.cfg.poolType === 'tok') {
      // LayerNorm is per token, so normalizing the class token alone equals normalizing all first.
      const cls = slice(x, 1, 0, 1);
      const flat = reshape(cls, [B, W]);
      cls.dispose();
      const y = this.lnPost.forward(flat);
      flat.dispose();
      return y;
    }
    const normed = this.cfg.finalLnAfterPool ? x : this.lnPost.forward(x);
    const patches = slice(normed, 1, 1, S);
    if (normed !== x) normed.dispose();
    const avg = mean(patches, 1);
    patches.dispose();
    if (!this.cfg.finalLnAfterPool) return avg;
    const y = this.lnPost.forward(avg);
    avg.dispose();
    return y;
  }

  /** images [B, 3, H, W] (f32 or bf16, normalized pixels) -> image features [B, embedDim]. */
  forward(imagesIn: Tensor): Tensor {
    const images = floatTensor('VisionTransformer.forward', 'images', imagesIn);
    let x = this.embed(images);
    const dropped = this.dropPatches(x);
    if (dropped !== x) {
      x.dispose();
      x = dropped;
    }
    if (this.lnPre) {
      const n = this.lnPre.forward(x);
      x.dispose();
      x = n;
    }
    const h = this.transformer.forward(x);
    x.dispose();
    const pooled = this.pool(h);
    h.dispose();
    const y = matmul(pooled, this.param('proj'));
    pooled.dispose();
    return y;
  }
}

