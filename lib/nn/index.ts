// Modules and models: the module system, layers, initializers.
export { Module, ModuleList, type LoadStateDictOptions, type LoadStateDictResult } from './module.js';
export { Linear, LayerNorm, Embedding, LayerScale, Mlp, activate, emptyParameter, type Activation, type LayerOptions } from './layers.js';
export { initNormal, initUniform, initConstant, initXavierUniform, initFanInUniform, fans } from './init.js';
