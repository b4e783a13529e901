// Analytic sizes of the transformer towers: parameter counts (so full-size configs can be
// checked without allocating them) and forward FLOPs (2 per multiply-add, GEMMs and the two
// attention products; norms, activations and softmax are left out as they are O(S·W)).
import type { ResolvedTextConfig, ResolvedVisionConfig } from './config.js';

/** Parameters of one ResidualAttentionBlock of width W and MLP width H. */
export function blockParameters(width: number, hidden: number, layerScale: boolean): number {
  const W = width;
  const norms = 2 * 2 * W;
  const attention = 3 * W * W + 3 * W + W * W + W;
  const mlp = W * hidden + hidden + hidden * W + W;
  return norms + attention + mlp + (layerScale ? 2 * W : 0);
}

/** Forward FLOPs of one block over S tokens (full S×S attention, as OpenCLIP's profiler counts). */
export function blockFlops(tokens: number, width: number, hidden: number): number {
  const S = tokens, W = width;
  const projections = 2 * S * W * 3 * W + 2 * S * W * W;
  const attention = 2 * 2 * S * S * W;
  const mlp = 2 * 2 * S * W * hidden;
  return projections + attention + mlp;
}

function mlpHidden(width: number, ratio: number): number {
  return Math.floor(width * ratio);
}

export function visionTransformerParameters(cfg: ResolvedVisionConfig, embedDim: number): number {
  const { width: W, patchSize: p, gridSize } = cfg;
  const tokens = gridSize[0] * gridSize[1] + 1;
  const hidden = mlpHidden(W, cfg.mlpRatio);
  return (
    W * 3 * p * p +
    W +
    tokens * W +
    (cfg.noLnPre ? 0 : 2 * W) +
    cfg.layers * blockParameters(W, hidden, cfg.lsInitValue !== null) +
    2 * W +
    W * embedDim
  );
}

/** Forward FLOPs per image (patch dropout off). */
export function visionTransformerFlops(cfg: ResolvedVisionConfig, embedDim: number): number {
  const { width: W, patchSize: p, gridSize } = cfg;
  const patches = gridSize[0] * gridSize[1];
  const hidden = mlpHidden(W, cfg.mlpRatio);
  return 2 * patches * 3 * p * p * W + cfg.layers * blockFlops(patches + 1, W, hidden) + 2 * W * embedDim;
}

export function textTransformerParameters(cfg: ResolvedTextConfig, embedDim: number): number {
  const W = cfg.width;
  const hidden = mlpHidden(W, cfg.mlpRatio);
  return (
    cfg.vocabSize * W +
    cfg.contextLength * W +
    cfg.layers * blockParameters(W, hidden, cfg.lsInitValue !== null) +
    2 * W +
    W * embedDim +
    (cfg.projBias ? embedDim : 0)
  );
}

/** Forward FLOPs per text at the full context length. */
export function textTransformerFlops(cfg: ResolvedTextConfig, embedDim: number): number {
  const hidden = mlpHidden(cfg.width, cfg.mlpRatio);
  return cfg.layers * blockFlops(cfg.contextLength, cfg.width, hidden) + 2 * cfg.width * embedDim;
}
