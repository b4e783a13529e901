// Optimization: AdamW, weight-decay parameter groups, learning-rate schedules, gradient clipping.
export * from './adamw.js';
