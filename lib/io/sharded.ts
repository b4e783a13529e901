// Sharded checkpoints as the model hubs lay them out: an index JSON
// (`model.safetensors.index.json`, `pytorch_model.bin.index.json`) whose "weight_map" names,
// for every tensor, the shard file beside the index that holds it.
import { readFileSync } from 'node:fs';
import { checkPath } from './files.js';
import { basename, dirname, join } from 'node:path';
import { argError } from '../tensor/check.js';
import type { Device, Tensor } from '../tensor/tensor.js';

export type ShardReader = (path: string, opts: { device?: Device }) => Map<string, Tensor>;

/** The tensor → shard map of an index file, validated; shards are plain file names. */
export function readShardIndex(path: string, op = 'readShardIndex'): Map<string, string> {
  if (typeof op !== 'string') throw argError('readShardIndex', 'op', 'a string', op);
  checkPath(op, 'path', path);
  const fail = (problem: string): Error => new Error(`${op}: ${path}: ${problem}`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw fail(`not a valid JSON index (${(e as Error).message})`);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) throw fail('expected an object with a "weight_map" object of tensor name to shard file');
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(map)) {
    // Shards sit beside the index: a path could reach any file on the machine.
    if (typeof shard !== 'string' || shard.length === 0 || basename(shard) !== shard || shard === '..' || shard === '.') {
      throw fail(`weight_map['${name}'] must be a file name beside the index, got ${JSON.stringify(shard)}`);
    }
    out.set(name, shard);
  }
  return out;
}

/**
 * Reads every shard named by the index at `path` with `readShard` and returns the tensors
 * the index lists, in its order. A listed tensor missing from its shard is an error;
 * tensors a shard holds beyond the index are dropped.
 */
export function readShardedStateDict(path: string, opts: { device?: Device }, readShard: ShardReader, op: string): Map<string, Tensor> {
  const index = readShardIndex(path, op);
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of index) byShard.set(shard, [...(byShard.get(shard) ?? []), name]);
  const found = new Map<string, Tensor>();
  try {
    for (const [shard, names] of byShard) {
      const tensors = readShard(join(dirname(path), shard), opts);
      for (const name of names) {
        const t = tensors.get(name);
        if (!t) {
          for (const u of tensors.values()) u.dispose();
          throw new Error(`${op}: ${path}: tensor '${name}' is not in its shard ${shard}`);
        }
        tensors.delete(name);
        found.set(name, t);
      }
      for (const extra of tensors.values()) extra.dispose();
    }
    return new Map([...index.keys()].map((name) => [name, found.get(name)!]));
  } catch (err) {
    for (const t of found.values()) t.dispose();
    throw err;
  }
}
