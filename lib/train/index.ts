// Training building blocks: flags, logs, checkpoint files, evaluation metrics.
export * from './flags.js';
