// Training building blocks: flags, logs, checkpoint files, evaluation metrics.
export * from './flags.js';
export * from './atomic.js';
export * from './nan_guard.js';
export * from './metrics.js';
export * from './tensorboard.js';
export { crc32, crc32c } from './crc.js';
export * from './plot.js';
export * from './logging.js';
export * from './rng_state.js';
