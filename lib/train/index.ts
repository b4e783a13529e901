// Training building blocks: flags, logs, checkpoint files, evaluation metrics.
export * from './flags.js';
export * from './atomic.js';
export * from './nan_guard.js';
export * from './metrics.js';
