// Webdataset shards as a stream source, the way OpenCLIP reads them:
//
//   urls "a/{000000..000099}.tar::b/{00..09}.tar"  ->  brace-expanded shard list per '::' part
//   plain epochs:  every shard once, order shuffled with (seed, epoch), dealt to ranks, then
//                  to workers (shard i of the shuffled list goes to rank i % worldSize, and of
//                  a rank's shards the j-th goes to worker j % numWorkers)
//   resampled:     each (rank, worker) draws shards with replacement, weighted by the
//                  upsampling factors, from its own generator of (seed, epoch, rank, worker)
//   shard  -> tar entries -> samples: consecutive members sharing a key (the path up to the
//             first dot of the file name) -> image (jpg, jpeg, png, webp) + caption (txt, or
//             json with a "caption" or "text" field) -> a shuffle buffer -> the loader
//
// Shards are paths, http(s) URLs, or `pipe:CMD` (CMD's stdout is the tar; its stderr goes
// into the error when it exits non-zero). A shard that fails (missing, truncated, a failing
// command) is reported as one skipped item with the reason and the stream goes on with the
// next; a sample without an image or a caption is skipped the same way.
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { argError, checkFinite, checkInteger } from '../tensor/check.js';
import { hashSeed, SeededRandom } from './seeded.js';
import type { RawSample, SkippedSample, StreamPart, StreamSource } from './source.js';
import { readTar, type TarEntry } from './tar.js';

export interface WebDatasetOptions {
  /** Shard URLs: brace patterns, '::'-separated lists, or an array of them (each one expanded). */
  urls: string | readonly string[];
  /** Draw shards with replacement (`--dataset-resampled`); needs numSamples. Default false. */
  resampled?: boolean;
  /** Weight of each '::' part when resampling (`--train-data-upsampling-factors`). Default all 1. */
  upsamplingFactors?: readonly number[];
  /** Samples in an epoch over all ranks (`--train-num-samples`). Default: the shards' contents. */
  numSamples?: number;
  /** Samples held for shuffling per worker. 0 turns shuffling off. Default 1000. */
  shuffleBuffer?: number;
  /** Shuffle the shard order every epoch (plain mode). Default true. */
  shuffleShards?: boolean;
  /**
   * Seconds a `pipe:` command or an http(s) server may send nothing while its shard is being
   * read; then the shard is given up (counted and skipped like a broken one) and the command
   * stopped. Only time spent waiting on the source counts, never a slow consumer. Default 300.
   */
  stallSeconds?: number;
}

const IMAGE_EXTENSIONS = ['jpg', 'jpeg', 'png', 'webp'];
const DEFAULT_SHUFFLE_BUFFER = 1000;
const DEFAULT_STALL_SECONDS = 300;
// Resampling from shards that all fail would never end: give up after this many in a row.
const MAX_FAILED_DRAWS = 64;

function expandOne(op: string, pattern: string): string[] {
  // The first top-level {...} group; what follows it is expanded recursively.
  const open = pattern.indexOf('{');
  if (open < 0) {
    if (pattern.includes('}')) throw new Error(`${op}: unbalanced '}' in shard pattern '${pattern}'`);
    return [pattern];
  }
  let depth = 0;
  let close = -1;
  for (let i = open; i < pattern.length; i++) {
    if (pattern[i] === '{') depth++;
    else if (pattern[i] === '}' && --depth === 0) {
      close = i;
      break;
    }
  }
  if (close < 0) throw new Error(`${op}: unbalanced '{' in shard pattern '${pattern}'`);
  const head = pattern.slice(0, open);
  const body = pattern.slice(open + 1, close);
  const tails = expandOne(op, pattern.slice(close + 1));
  let choices: string[];
  const range = /^(-?\d+)\.\.(-?\d+)$/.exec(body);
  if (range) {
    const [a, b] = [range[1]!, range[2]!];
    const from = Number(a);
    const to = Number(b);
    const count = Math.abs(to - from) + 1;
    if (count > 10_000_000) throw new Error(`${op}: range {${body}} in '${pattern}' has ${count} values, more than 10000000`);
    // Zero padding is kept: '{000..099}' gives '000', '001', ..., as braceexpand does.
    const padded = (a.length > 1 && a.startsWith('0')) || (b.length > 1 && b.startsWith('0'));
    const width = padded ? Math.max(a.length, b.length) : 0;
    const step = to >= from ? 1 : -1;
    choices = [];
    for (let v = from; step > 0 ? v <= to : v >= to; v += step) choices.push(String(v).padStart(width, '0'));
  } else {
    // A comma list at this level; each choice may hold braces of its own.
    const parts: string[] = [];
    let level = 0;
    let start = 0;
    for (let i = 0; i < body.length; i++) {
      if (body[i] === '{') level++;
      else if (body[i] === '}') level--;
      else if (body[i] === ',' && level === 0) {
        parts.push(body.slice(start, i));
        start = i + 1;
      }
    }
    parts.push(body.slice(start));
    if (parts.length < 2) throw new Error(`${op}: expected a range {a..b} or a list {x,y} in shard pattern '${pattern}', got '{${body}}'`);
    choices = parts.flatMap((p) => expandOne(op, p));
  }
  const out: string[] = [];
  for (const c of choices) for (const t of tails) out.push(head + c + t);
  return out;
}

/**
 * Shard URLs from OpenCLIP-style patterns: each '::'-separated part brace-expanded
 * (`{000000..000099}` keeps its zero padding; `{a,b}` lists; several groups multiply).
 * Returns one list per part, in order.
 */
export function expandShardUrls(urls: string | readonly string[]): string[][] {
  const op = 'expandShardUrls';
  const list = typeof urls === 'string' ? [urls] : urls;
  if (!Array.isArray(list) || list.length === 0 || !list.every((u) => typeof u === 'string')) throw argError(op, 'urls', 'a non-empty string or array of strings', urls);
  const out: string[][] = [];
  for (const u of list) {
    for (const part of u.split('::')) {
      const trimmed = part.trim();
      if (trimmed === '') throw new Error(`${op}: empty shard pattern in '${u}'`);
      out.push(expandOne(op, trimmed));
    }
  }
  return out;
}

/** The shards a (rank, worker) reads in a plain epoch: the shuffled list dealt to ranks, then workers. */
export function shardsForWorker(shards: readonly string[], part: StreamPart, shuffle = true): string[] {
  const order = [...shards];
  if (shuffle) new SeededRandom(hashSeed(part.seed, part.epoch, 0x5ad)).shuffle(order);
  const mine: string[] = [];
  let j = 0;
  for (let i = 0; i < order.length; i++) {
    if (i % part.worldSize !== part.rank) continue;
    if (j++ % part.numWorkers === part.worker) mine.push(order[i]!);
  }
  return mine;
}

/** An endless draw of shards with replacement, weighted, for one (epoch, rank, worker). */
export function* resampledShards(shards: readonly string[], weights: readonly number[], part: StreamPart): Generator<string> {
  const random = new SeededRandom(hashSeed(part.seed, part.epoch, part.rank, part.worker, 0x7e5));
  const cumulative: number[] = [];
  let total = 0;
  for (const w of weights) cumulative.push((total += w));
  for (;;) {
    const r = random.next() * total;
    let lo = 0;
    let hi = cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! > r) hi = mid;
      else lo = mid + 1;
    }
    yield shards[lo]!;
  }
}

/** A shard's bytes: a file, an http(s) body, or a command's stdout; `finish` reports a failed command. */
async function openShard(url: string): Promise<{ stream: Readable | string; finish: () => Promise<void>; cancel: () => void }> {
  if (url.startsWith('pipe:')) {
    const command = url.slice(5);
    // Its own process group, so that stopping it stops what the shell started too (a `sleep`
    // or `curl` left running would hold the pipe open, and the shard's end, for its whole life).
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-2000);
    });
    const exited = new Promise<string | null>((resolve) => {
      child.on('error', (e) => {
        stderr += e.message;
        resolve('could not start');
      });
      child.on('close', (code, signal) => resolve(code === 0 ? null : code !== null ? `exited with code ${code}` : `was stopped (${signal})`));
    });
    return {
      stream: child.stdout,
      finish: async () => {
        const failure = await exited;
        if (failure !== null) throw new Error(`command '${command}' ${failure}${stderr.trim() ? `: ${stderr.trim()}` : ''}`);
      },
      cancel: () => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
        } catch {
          // The group is gone already: nothing to stop.
        }
      },
    };
  }
  if (/^https?:\/\//.test(url)) {
    const res = await fetch(url);
    if (!res.ok || !res.body) throw new Error(`GET ${url} answered ${res.status} ${res.statusText}`);
    return { stream: Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), finish: async () => {}, cancel: () => void res.body?.cancel() };
  }
  return { stream: url.startsWith('file:') ? new URL(url).pathname : url, finish: async () => {}, cancel: () => {} };
}

/** webdataset's key rule: the path up to the first dot of the file name, and the rest. */
export function splitSampleKey(name: string): { key: string; extension: string } | null {
  const slash = name.lastIndexOf('/');
  const dot = name.indexOf('.', slash + 1);
  if (dot <= slash + 1) return null;
  return { key: name.slice(0, dot), extension: name.slice(dot + 1).toLowerCase() };
}

function captionFromJson(data: Buffer): string | null {
  try {
    const v = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
    if (typeof v?.caption === 'string') return v.caption;
    if (typeof v?.text === 'string') return v.text;
  } catch {
    return null;
  }
  return null;
}

function toSample(shard: string, key: string, members: Map<string, Buffer>): RawSample | SkippedSample {
  const name = `${shard}:${key}`;
  const imageExt = IMAGE_EXTENSIONS.find((e) => members.has(e));
  if (!imageExt) return { key: name, skipped: `sample ${key} in ${shard} has no image (${IMAGE_EXTENSIONS.join('/')}), only ${[...members.keys()].join(', ')}` };
  const txt = members.get('txt');
  const json = members.get('json');
  const caption = txt !== undefined ? txt.toString('utf8') : json !== undefined ? captionFromJson(json) : null;
  if (caption === null) return { key: name, skipped: `sample ${key} in ${shard} has no caption (txt, or json with "caption")` };
  return { key: name, image: members.get(imageExt)!, caption };
}

/**
 * The chunks of `stream`, failing when `stallMs` pass while the next chunk is awaited: a hung
 * command or server would otherwise hang its worker for ever. `onStall` stops the source.
 */
async function* stallGuarded(stream: AsyncIterable<Uint8Array>, stallMs: number, onStall: () => void): AsyncGenerator<Uint8Array> {
  const chunks = stream[Symbol.asyncIterator]();
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        onStall();
        reject(new Error(`no data for ${stallMs / 1000} s`));
      }, stallMs);
    });
    let next: IteratorResult<Uint8Array>;
    try {
      next = await Promise.race([chunks.next(), stalled]);
    } finally {
      clearTimeout(timer);
    }
    if (next.done) return;
    yield next.value;
  }
}

/** The samples of one shard, then a skipped item if it failed partway. */
async function* shardSamples(url: string, stallMs: number): AsyncGenerator<RawSample | SkippedSample> {
  let opened: Awaited<ReturnType<typeof openShard>>;
  try {
    opened = await openShard(url);
  } catch (e) {
    yield { key: url, skipped: `shard ${url}: ${(e as Error).message}` };
    return;
  }
  let key: string | null = null;
  let members = new Map<string, Buffer>();
  let finished = false;
  try {
    const source = typeof opened.stream === 'string' ? opened.stream : stallGuarded(opened.stream, stallMs, opened.cancel);
    for await (const entry of readTar(source, url) as AsyncIterable<TarEntry>) {
      const parts = splitSampleKey(entry.name);
      if (!parts || parts.key.split('/').pop()!.startsWith('__')) continue;
      if (parts.key !== key) {
        if (key !== null && members.size > 0) yield toSample(url, key, members);
        key = parts.key;
        members = new Map();
      }
      members.set(parts.extension, entry.data);
    }
    if (key !== null && members.size > 0) yield toSample(url, key, members);
    await opened.finish();
    finished = true;
  } catch (e) {
    let reason = (e as Error).message;
    // Stop the source first: a command whose data we gave up on may never end by itself.
    opened.cancel();
    try {
      await opened.finish();
    } catch (failure) {
      reason += ` (${(failure as Error).message})`;
    }
    finished = true;
    yield { key: url, skipped: `shard ${url}: ${reason}` };
  } finally {
    if (!finished) opened.cancel();
  }
}

/** webdataset's shuffle buffer: hold up to `size`, emit a random held sample per arrival, drain at the end. */
async function* shuffled<T>(items: AsyncIterable<T>, size: number, random: SeededRandom): AsyncGenerator<T> {
  const buffer: T[] = [];
  for await (const item of items) {
    if (size <= 1) {
      yield item;
      continue;
    }
    if (buffer.length < size) {
      buffer.push(item);
      continue;
    }
    const i = random.int(buffer.length);
    const out = buffer[i]!;
    buffer[i] = item;
    yield out;
  }
  while (buffer.length > 0) {
    const i = random.int(buffer.length);
    const out = buffer[i]!;
    buffer[i] = buffer[buffer.length - 1]!;
    buffer.pop();
    yield out;
  }
}

export function createWebDataset(options: WebDatasetOptions): StreamSource {
  const op = 'createWebDataset';
  if (typeof options !== 'object' || options === null) throw argError(op, 'options', 'an object', options);
  const parts = expandShardUrls(options.urls);
  const resampled = options.resampled ?? false;
  if (typeof resampled !== 'boolean') throw argError(op, 'options.resampled', 'a boolean', resampled);
  const numSamples = options.numSamples === undefined ? null : checkInteger(op, 'options.numSamples', options.numSamples, 1);
  if (resampled && numSamples === null) throw new Error(`${op}: expected options.numSamples with options.resampled (an endless stream needs an epoch length), got none`);
  const shuffleBuffer = checkInteger(op, 'options.shuffleBuffer', options.shuffleBuffer ?? DEFAULT_SHUFFLE_BUFFER, 0, 1 << 24);
  const stallMs = 1000 * checkFinite(op, 'options.stallSeconds', options.stallSeconds ?? DEFAULT_STALL_SECONDS);
  if (!(stallMs > 0)) throw argError(op, 'options.stallSeconds', 'a number of seconds > 0', options.stallSeconds);
  const shuffleShards = options.shuffleShards ?? true;
  if (typeof shuffleShards !== 'boolean') throw argError(op, 'options.shuffleShards', 'a boolean', shuffleShards);
  const factors = options.upsamplingFactors;
  if (factors !== undefined) {
    if (!resampled) throw new Error(`${op}: expected options.resampled with options.upsamplingFactors (weights only apply when drawing shards), got resampled false`);
    if (!Array.isArray(factors) || factors.length !== parts.length || !factors.every((f) => typeof f === 'number' && f >= 0 && Number.isFinite(f)) || !factors.some((f) => f > 0)) {
      throw argError(op, 'options.upsamplingFactors', `${parts.length} non-negative weights (one per '::' part), not all zero`, factors);
    }
  }
  const shards = parts.flat();
  const weights = parts.flatMap((list, i) => list.map(() => factors?.[i] ?? 1));

  return {
    kind: 'stream',
    numSamples,
    samples(part: StreamPart): AsyncIterable<RawSample | SkippedSample> {
      const random = new SeededRandom(hashSeed(part.seed, part.epoch, part.rank, part.worker, 0xb0f));
      async function* raw(): AsyncGenerator<RawSample | SkippedSample> {
        if (!resampled) {
          const mine = shardsForWorker(shards, part, shuffleShards);
          if (mine.length === 0) {
            throw new Error(`${op}: ${shards.length} shards cannot feed ${part.worldSize} ranks x ${part.numWorkers} workers: worker ${part.worker} of rank ${part.rank} has none`);
          }
          for (const url of mine) yield* shardSamples(url, stallMs);
          return;
        }
        let failedInARow = 0;
        let draw = 0;
        for (const url of resampledShards(shards, weights, part)) {
          let good = false;
          const occurrence = draw++;
          for await (const s of shardSamples(url, stallMs)) {
            if ('skipped' in s) {
              yield s;
              continue;
            }
            good = true;
            // The same shard drawn twice in an epoch gives differently augmented copies.
            yield { ...s, key: `${s.key}#${occurrence}` };
          }
          failedInARow = good ? 0 : failedInARow + 1;
          if (failedInARow >= MAX_FAILED_DRAWS) throw new Error(`${op}: ${MAX_FAILED_DRAWS} shards in a row gave no sample (last: ${url})`);
        }
      }
      return shuffled(raw(), shuffleBuffer, random);
    },
  };
}
