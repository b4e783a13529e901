// Modules and models: the module system, layers, initializers, the OpenCLIP ViT / text / CLIP
// models, their configs and the factory.
export { Module, ModuleList, type LoadStateDictOptions, type LoadStateDictResult } from './module.js';
export { Linear, LayerNorm, Embedding, LayerScale, Mlp, activate, emptyParameter, type Activation, type LayerOptions } from './layers.js';
export { initNormal, initUniform, initConstant, initXavierUniform, initFanInUniform, fans } from './init.js';
export { SelfAttention, ResidualAttentionBlock, Transformer, type BlockOptions, type TransformerOptions } from './transformer.js';
export { VisionTransformer, PatchEmbedding, sinCos2dPositionTable, samplePatchIndices } from './vit.js';
export { TextTransformer, pooledRows } from './text.js';
export { CLIP, type ClipOutput, type EncodeOptions } from './clip.js';
export {
  resolveVisionConfig, resolveTextConfig, checkModelConfig,
  type ModelConfig, type VisionConfig, type TextConfig, type ResolvedVisionConfig, type ResolvedTextConfig,
} from './config.js';
export { VISION_TOWERS, visionTowerFor, type VisionTowerBuilder, type VisionTowerModule, type VisionTowerBuildOptions } from './towers.js';
export { createModel, listModels, getModelConfig, countParameters, estimateFlops, type CreateModelOptions, type ParameterCounts, type FlopEstimate } from './factory.js';
export { loadPretrained, loadPretrainedFile, readOpenClipConfig, resizePositionEmbeddings, type LoadPretrainedOptions, type OpenClipFolderConfig } from './pretrained.js';
export { resizeVisionPositions, resizeTextPositions } from './resize.js';
export { withoutInit } from './init.js';
export {
  UniRepLKNet, UniRepLKNetTower, UniRepLKNetBlock, DilatedReparamBlock, UNIREPLKNET_VARIANTS, DILATED_BRANCHES, defaultKernelSizes, variantArch, checkArch,
  type UniRepLKNetArch, type UniRepLKNetVariant, type UniRepLKNetOptions, type UniRepLKNetTowerOptions,
} from './unireplknet.js';
export { BatchNorm2d, type BatchNorm2dForwardOptions, Conv2d, DepthwiseConv, GRN, SEBlock, Sequence } from './unireplknet_layers.js';
export { deployStateDict, BATCHNORM_EPS } from './unireplknet_reparam.js';
export { uniRepLKNetTrunkParameters, uniRepLKNetBlockParameters, uniRepLKNetFlops } from './unireplknet_count.js';
export { createUniRepLKNetTower, resolveUniRepLKNetConfig, isUniRepLKNetConfig, uniRepLKNetTowerBuilder, type ResolvedUniRepLKNetConfig } from './unireplknet_config.js';
