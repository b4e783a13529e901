// Training checkpoints: one .safetensors file holding the model's state dict (under
// `state_dict.`), the AdamW moments (under `optimizer.<index>.`) and, in the metadata, what
// resuming needs besides tensors: epoch, step, the optimizer's scalars, the random
// generator's position, the data position and the model config. The file is written
// atomically by writeSafetensors, so a crash mid-write leaves the previous file intact.
//
// `loadPretrained`-style readers see a plain safetensors file whose `state_dict.` keys are
// OpenCLIP's, so `clipforge eval` and `clipforge convert` can read these checkpoints too.
import { readdirSync, existsSync } from 'node:fs';
import { checkPath } from '../io/files.js';
import { join } from 'node:path';
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from '../io/safetensors.js';
import type { CLIP } from '../nn/clip.js';
import type { ModelConfig } from '../nn/config.js';
import type { AdamW, AdamWStateDict } from '../optim/adamw.js';
import type { Tensor } from '../tensor/tensor.js';
import type { RngSnapshot } from './rng_state.js';

const MODEL_PREFIX = 'state_dict.';
const OPTIMIZER_PREFIX = 'optimizer.';
const METADATA_KEY = 'clipforge_training';
const FORMAT_VERSION = 1;

/** Where training stands: everything besides tensors that resuming restores. */
export interface TrainingPosition {
  /** Epochs completed. */
  epoch: number;
  /** Optimizer steps completed. */
  step: number;
  /** Batches of the current epoch already consumed (0 at an epoch boundary). */
  batchInEpoch: number;
  /** The random generators' states (patch dropout, drop path). */
  rng: RngSnapshot;
  /** The run's name, so `--resume latest` can check it resumes the same run. */
  name: string;
}

export interface CheckpointContents extends TrainingPosition {
  modelConfig: ModelConfig;
}

interface StoredMetadata extends CheckpointContents {
  format: number;
  optimizer: { param_groups: AdamWStateDict['param_groups']; steps: Record<string, number> };
}

/** Writes model, optimizer and position into `path` (atomically). */
export function saveTrainingCheckpoint(path: string, model: CLIP, optimizer: AdamW, position: TrainingPosition): void {
  const tensors = new Map<string, Tensor>();
  for (const [k, t] of model.stateDict()) tensors.set(MODEL_PREFIX + k, t);
  const opt = optimizer.stateDict();
  const steps: Record<string, number> = {};
  for (const [index, s] of Object.entries(opt.state)) {
    tensors.set(`${OPTIMIZER_PREFIX}${index}.exp_avg`, s.exp_avg);
    tensors.set(`${OPTIMIZER_PREFIX}${index}.exp_avg_sq`, s.exp_avg_sq);
    steps[index] = s.step;
  }
  const meta: StoredMetadata = {
    format: FORMAT_VERSION,
    ...position,
    modelConfig: model.config,
    optimizer: { param_groups: opt.param_groups, steps },
  };
  writeSafetensors(path, tensors, { metadata: { [METADATA_KEY]: JSON.stringify(meta) } });
}

function parseMetadata(path: string, metadata: Record<string, string>): StoredMetadata {
  const text = metadata[METADATA_KEY];
  if (text === undefined) throw new Error(`loadTrainingCheckpoint: ${path} is not a clipforge training checkpoint (no '${METADATA_KEY}' metadata)`);
  let meta: StoredMetadata;
  try {
    meta = JSON.parse(text) as StoredMetadata;
  } catch (e) {
    throw new Error(`loadTrainingCheckpoint: ${path} has unreadable training metadata: ${(e as Error).message}`);
  }
  if (meta.format !== FORMAT_VERSION) throw new Error(`loadTrainingCheckpoint: ${path} has checkpoint format ${String(meta.format)}; this version reads format ${FORMAT_VERSION}`);
  for (const key of ['epoch', 'step', 'batchInEpoch'] as const) {
    if (!Number.isSafeInteger(meta[key]) || meta[key] < 0) throw new Error(`loadTrainingCheckpoint: ${path} has a bad '${key}' in its metadata: ${String(meta[key])}`);
  }
  return meta;
}

function contentsOf(meta: StoredMetadata): CheckpointContents {
  return { epoch: meta.epoch, step: meta.step, batchInEpoch: meta.batchInEpoch, rng: meta.rng, name: meta.name, modelConfig: meta.modelConfig };
}

/**
 * Restores model weights, optimizer state and returns the training position stored in
 * `path`. The model must have the checkpoint's architecture (a clear error lists the
 * mismatches otherwise).
 */
export function loadTrainingCheckpoint(path: string, model: CLIP, optimizer: AdamW | null): CheckpointContents {
  const { tensors, metadata } = readSafetensors(path, { device: model.logitScale.device });
  try {
    const meta = parseMetadata(path, metadata);
    const modelState = new Map<string, Tensor>();
    for (const [k, t] of tensors) if (k.startsWith(MODEL_PREFIX)) modelState.set(k.slice(MODEL_PREFIX.length), t);
    model.loadStateDict(modelState);
    if (optimizer) {
      const state: AdamWStateDict['state'] = {};
      for (const [index, step] of Object.entries(meta.optimizer.steps)) {
        const expAvg = tensors.get(`${OPTIMIZER_PREFIX}${index}.exp_avg`);
        const expAvgSq = tensors.get(`${OPTIMIZER_PREFIX}${index}.exp_avg_sq`);
        if (!expAvg || !expAvgSq) throw new Error(`loadTrainingCheckpoint: ${path} lacks the optimizer moments of parameter ${index}`);
        state[Number(index)] = { step, exp_avg: expAvg, exp_avg_sq: expAvgSq };
      }
      optimizer.loadStateDict({ state, param_groups: meta.optimizer.param_groups });
    }
    return contentsOf(meta);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

/** Reads only the model config and position of a checkpoint (to build the model before loading it). */
export function readCheckpointInfo(path: string): CheckpointContents {
  return contentsOf(parseMetadata(path, readSafetensorsHeader(path).metadata));
}

/** Whether `path` is a safetensors file with clipforge's training metadata (false for any other file). */
export function isTrainingCheckpoint(path: string): boolean {
  try {
    return readSafetensorsHeader(checkPath('isTrainingCheckpoint', 'path', path)).metadata[METADATA_KEY] !== undefined;
  } catch {
    return false;
  }
}

/** The checkpoint file name for the end of `epoch`, as OpenCLIP names them (epoch_N). */
export function epochCheckpointName(epoch: number): string {
  return `epoch_${epoch}.safetensors`;
}

export const LATEST_CHECKPOINT_NAME = 'epoch_latest.safetensors';

/**
 * The newest checkpoint in `dir`: epoch_latest if present, else the highest epoch_N, else null
 * (OpenCLIP's `--resume latest`).
 */
export function latestCheckpoint(dir: string): string | null {
  if (!existsSync(checkPath('latestCheckpoint', 'dir', dir))) return null;
  const names = readdirSync(dir);
  if (names.includes(LATEST_CHECKPOINT_NAME)) return join(dir, LATEST_CHECKPOINT_NAME);
  let best = -1;
  for (const n of names) {
    const m = /^epoch_(\d+)\.safetensors$/.exec(n);
    if (m && Number(m[1]) > best) best = Number(m[1]);
  }
  return best >= 0 ? join(dir, epochCheckpointName(best)) : null;
}
