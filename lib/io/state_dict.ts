// Reads a state dict from any checkpoint format we know, chosen by the file's first bytes
// (.safetensors, .pt, .pth and .bin files are told apart by content, not by extension),
// or from the shards a hub-style index JSON names.
import { closeSync, openSync, readSync } from 'node:fs';
import { checkPath } from './files.js';
import { argError } from '../tensor/check.js';
import type { Device, Tensor } from '../tensor/tensor.js';
import { readSafetensors } from './safetensors.js';
import { readShardedStateDict } from './sharded.js';
import { readTorchCheckpoint } from './torch_checkpoint.js';

export type CheckpointFormat = 'safetensors' | 'torch-zip' | 'torch-legacy' | 'shard-index' | 'unknown';

/** Identifies a checkpoint format from the first 9 (or fewer) bytes of a file. */
export function detectCheckpointFormat(head: Uint8Array): CheckpointFormat {
  if (!(head instanceof Uint8Array)) throw argError('detectCheckpointFormat', 'head', 'a Uint8Array', head);
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && (head[2] === 3 || head[2] === 5) && head[3] === head[2] + 1) return 'torch-zip';
  // torch.save before 1.6: a pickle (protocol 2) opening with a LONG1 magic number.
  if (head.length >= 3 && head[0] === 0x80 && head[1] === 0x02 && head[2] === 0x8a) return 'torch-legacy';
  // safetensors: an 8-byte little-endian header length, then the JSON object's "{".
  if (head.length >= 9 && head[8] === 0x7b && head[6] === 0 && head[7] === 0) return 'safetensors';
  // An index JSON (JSON text has no zero bytes, so it is never taken for safetensors).
  if (head.length >= 1 && head[0] === 0x7b) return 'shard-index';
  return 'unknown';
}

export interface ReadStateDictOptions {
  /** Device for the tensors (default 'cpu'). */
  device?: Device;
}

function formatOf(path: string): CheckpointFormat {
  const head = new Uint8Array(9);
  const fd = openSync(path, 'r');
  try {
    return detectCheckpointFormat(head.subarray(0, readSync(fd, head, 0, head.length, 0)));
  } finally {
    closeSync(fd);
  }
}

/** One checkpoint file; an index is refused here, so an index cannot name another. */
function readFile(path: string, opts: ReadStateDictOptions, op: string, allowIndex: boolean): Map<string, Tensor> {
  const format = formatOf(path);
  switch (format) {
    case 'safetensors':
      return readSafetensors(path, opts).tensors;
    case 'torch-zip':
      return readTorchCheckpoint(path, opts);
    case 'torch-legacy':
      throw new Error(`${op}: ${path}: a torch.save checkpoint in the legacy (before torch 1.6) format, which is not supported; re-save it with a recent torch`);
    case 'shard-index':
      if (allowIndex) return readShardedStateDict(path, opts, (shard, o) => readFile(shard, o, op, false), op);
      throw new Error(`${op}: ${path}: a shard is itself an index; shards must be safetensors or torch.save files`);
    default:
      throw new Error(`${op}: ${path}: not a checkpoint format clipforge reads (expected a safetensors file, a torch.save zip or a shard index JSON)`);
  }
}

/**
 * Reads the tensors of a .safetensors file, a torch.save zip (.pt / .pth / .bin) or a
 * sharded checkpoint's index JSON (reading every shard it names).
 */
export function readStateDict(path: string, opts: ReadStateDictOptions = {}): Map<string, Tensor> {
  const op = 'readStateDict';
  checkPath(op, 'path', path);
  return readFile(path, opts, op, true);
}
