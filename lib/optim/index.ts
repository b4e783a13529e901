// Optimization: AdamW, weight-decay parameter groups, learning-rate schedules, gradient clipping.
export * from './adamw.js';
export * from './param_groups.js';
export * from './schedule.js';
export * from './clip_grad.js';
