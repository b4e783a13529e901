// OpenCLIP's TextTransformer: token embedding, learned positions, a causal transformer (or a
// bidirectional one for CLIPA / SigLIP configs), pooling of one position per text (the
// end-of-text token, found as the largest id, as OpenCLIP's 'argmax'; or the first / last
// position), ln_final and the text projection. Parameter names are OpenCLIP's
// (token_embedding.weight, positional_embedding, transformer.resblocks.N..., ln_final,
// text_projection); CLIP registers this tower inline so they sit at the top of its state dict.
import { argError, checkInteger, shapeStr } from '../tensor/check.js';
import { arange, checkTensor, full, type Tensor } from '../tensor/tensor.js';
import { add } from '../tensor/ops/elementwise.js';
import { embedding } from '../tensor/ops/embedding.js';
import { matmul } from '../tensor/ops/matmul.js';
import { maxWithIndices } from '../tensor/ops/reduce.js';
import { cast, reshape } from '../tensor/ops/shape.js';
import { slice } from '../tensor/ops/slice.js';
import { resolveTextConfig, type ResolvedTextConfig, type TextConfig } from './config.js';
import { initConstant, initNormal, withoutInit } from './init.js';
import { Embedding, emptyParameter, LayerNorm, Linear, type Activation, type LayerOptions } from './layers.js';
import { Module } from './module.js';
import { Transformer } from './transformer.js';

export interface TextTowerOptions extends LayerOptions {
  activation?: Activation;
}

/**
 * Row ids (b·L + pooled position of text b) into the [B·L, W] token matrix for each text of
 * ids [B, L]. 'argmax' is the first position of the largest id: computed on the device (ids
 * below 2^24 are exact in f32), so no round trip to the host.
 */
export function pooledRows(idsIn: Tensor, poolType: 'argmax' | 'first' | 'last'): Tensor {
  const op = 'pooledRows';
  const ids = checkTensor(op, 'ids', idsIn);
  if (ids.dtype !== 'i32' || ids.rank !== 2 || ids.shape[1] === 0) throw new Error(`${op}: expected i32 ids of shape [B, L] with L >= 1, got ${ids.dtype} ${shapeStr(ids.shape)}`);
  if (poolType !== 'argmax' && poolType !== 'first' && poolType !== 'last') throw argError(op, 'poolType', "'argmax', 'first' or 'last'", poolType);
  const [B, L] = ids.shape as [number, number];
  const offsets = arange(0, B * L, L, { dtype: 'f32', device: ids.device });
  let positions: Tensor;
  if (poolType === 'argmax') {
    const asFloat = cast(ids, 'f32');
    const { values, indices } = maxWithIndices(asFloat, 1);
    values.dispose();
    asFloat.dispose();
    positions = cast(indices, 'f32');
    indices.dispose();
  } else {
    positions = full([B], poolType === 'first' ? 0 : L - 1, { device: ids.device });
  }
  const rowsF = add(offsets, positions);
  offsets.dispose();
  positions.dispose();
  const rows = cast(rowsF, 'i32');
  rowsF.dispose();
  return rows;
}

/** OpenCLIP's TextTransformer (text_cfg as in the model configs) with output_dim = embedDim. */
export class TextTransformer extends Module {
  readonly cfg: ResolvedTextConfig;
  readonly tokenEmbedding: Embedding;
  readonly transformer: Transformer;
  readonly lnFinal: LayerNorm;
  readonly projection: Linear | null = null;

  constructor(
    textCfg: TextConfig,
    readonly embedDim: number,
    opts: TextTowerOptions = {},
  ) {
    super();
    const cfg = resolveTextConfig(textCfg, 'TextTransformer');
    this.cfg = cfg;
    checkInteger('TextTransformer', 'embedDim', embedDim, 1, 1 << 20);
    const { width, layers } = cfg;
    const g = opts.generator;
    // Drawn once, below, with OpenCLIP's std rather than first with nn.Embedding's.
    this.tokenEmbedding = this.registerModule('token_embedding', withoutInit(() => new Embedding(cfg.vocabSize, width, opts)));
    this.registerParameter('positional_embedding', emptyParameter([cfg.contextLength, width], opts));
    this.transformer = this.registerModule('transformer', new Transformer(width, layers, cfg.heads, {
      ...opts, mlpRatio: cfg.mlpRatio, lsInitValue: cfg.lsInitValue, eps: cfg.eps, causal: cfg.causal,
    }));
    this.lnFinal = this.registerModule('ln_final', new LayerNorm(width, { ...opts, eps: cfg.eps }));
    if (cfg.projBias) this.projection = this.registerModule('text_projection', new Linear(width, embedDim, opts));
    else this.registerParameter('text_projection', emptyParameter([width, embedDim], opts));

    // OpenCLIP's TextTransformer.init_parameters.
    initNormal(this.tokenEmbedding.weight, 0.02, g);
    initNormal(this.param('positional_embedding'), 0.01, g);
    const projStd = width ** -0.5 * (2 * layers) ** -0.5;
    const attnStd = width ** -0.5;
    const fcStd = (2 * width) ** -0.5;
    for (const block of this.transformer.resblocks) {
      initNormal(block.attn.inProjWeight, attnStd, g);
      initNormal(block.attn.outProj.weight, projStd, g);
      initNormal(block.mlp.cFc.weight, fcStd, g);
      initNormal(block.mlp.cProj.weight, projStd, g);
    }
    if (this.projection) {
      initNormal(this.projection.weight, attnStd, g);
      initConstant(this.projection.bias!, 0);
    } else {
      initNormal(this.param('text_projection'), attnStd, g);
    }
  }

  /** ids [B, L] (i32 token ids, L <= context length) -> text features [B, embedDim]. */
  forward(idsIn: Tensor): Tensor {
    const ids = checkTensor('TextTransformer.forward', 'ids', idsIn);
    const ctx = this.cfg.contextLength;
    if (ids.dtype !== 'i32' || ids.rank !== 2 || ids.shape[1]! < 1 || ids.shape[1]! > ctx || ids.shape[0]! < 1) {
      throw new Error(`TextTransformer.forward: expected i32 token ids of shape [B, L] with 1 <= L <= ${ctx}, got ${ids.dtype} ${shapeStr(ids.shape)}`);
    }
    const [B, L] = ids.shape as [number, number];
    const tokens = this.tokenEmbedding.forward(ids);
    const positions = slice(this.param('positional_embedding'), 0, 0, L);
    const x = add(tokens, positions);
    tokens.dispose();
    positions.dispose();
    const h = this.transformer.forward(x);
    x.dispose();
    // ln_final is per token, so pooling first and normalizing the pooled rows is the same as
    // OpenCLIP's order (normalize all, then pool) and final_ln_after_pool alike.
    const flat = reshape(h, [B * L, this.cfg.width]);
    h.dispose();
    const rows = pooledRows(ids, this.cfg.poolType);
    const pooled = embedding(flat, rows);
    flat.dispose();
    rows.dispose();
    const normed = this.lnFinal.forward(pooled);
    pooled.dispose();
    const y = this.projection ? this.projection.forward(normed) : matmul(normed, this.param('text_projection'));
    normed.dispose();
    return y;
  }
}
