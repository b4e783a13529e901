// One worker's share of the data loader's work: the batches it owns in an epoch, each fetched,
// decoded, augmented and tokenized into flat typed arrays ready to transfer.
//
// Which batches a worker owns:
//   indexed source: the epoch's order is a shuffle of the indices seeded by (seed, epoch),
//     padded with its own start to a multiple of worldSize; a rank keeps positions i with
//     i % worldSize == rank (every rank the same count), cut into batches; worker w of W
//     owns batches w, w + W, w + 2W, ... Reading them round-robin over workers gives batch
//     0, 1, 2, ... whatever W is, and every sample is transformed with a generator seeded by
//     (seed, epoch, index), so batches do not depend on the number of workers.
//   stream source: the worker reads its own part of the stream (its shards) and cuts it into
//     batches; with numSamples an epoch is ceil(ceil(numSamples / (batch x worldSize)) / W)
//     batches per worker, as OpenCLIP counts it. Samples are seeded by (seed, epoch, key).
//
// A sample that cannot be read, decoded or transformed is skipped and its reason travels
// with the batch it would have been in; a batch is then short (`count` says how many).
// `maxConsecutiveSkips` failures in a row stop the epoch with an error: that is a broken
// dataset or transform, not a few bad files.
import { argError, checkInteger } from '../tensor/check.js';
import { hashSeed, SeededRandom } from './seeded.js';
import { checkSourceSpec, isSkipped, openSource, type RawSample, type SampleSource, type SourceSpec } from './source.js';
import { TextReducer, type TextReduction } from './text_reduction.js';
import { ClipTokenizer, DEFAULT_CONTEXT_LENGTH, defaultTokenizer } from './tokenizer.js';
import { createImageTransform, type ImageTransform, type ImageTransformOptions } from './transforms.js';

export interface TextOptions {
  /** Token row length. Default 77. */
  contextLength?: number;
  /** A vocabulary in OpenCLIP's bpe_simple_vocab_16e6.txt.gz form. Default: the shipped one. */
  bpePath?: string;
  /** A model hub folder with vocab.json + merges.txt or tokenizer.json (instead of bpePath). */
  tokenizerDir?: string;
  /** CLIPA's text-length reduction to contextLength (drawn per sample, seeded). Default none (truncate). */
  reduction?: TextReduction;
}

/** Everything a worker needs, as plain data. */
export interface ProducerConfig {
  /** null when the loader hands the producer a source object (in-process loaders). */
  source: SourceSpec | null;
  imageTransform: ImageTransformOptions;
  text: TextOptions;
  batchSize: number;
  dropLast: boolean;
  /** Shuffle an indexed source's order every epoch. */
  shuffle: boolean;
  seed: number;
  rank: number;
  worldSize: number;
  worker: number;
  numWorkers: number;
  /** Samples transformed at once in this worker (sharp decodes on the libuv pool; native JPEG decoding is synchronous). */
  concurrency: number;
  maxConsecutiveSkips: number;
}

export interface ProducedBatch {
  /** Position in the epoch's batch order (on this rank). */
  index: number;
  count: number;
  images: Float32Array;
  texts: Int32Array;
  labels: Int32Array | null;
  keys: string[];
  /** Reasons of the samples skipped while making this batch. */
  skipped: string[];
}

/** What the loader learns about a source when a producer opens it. */
export interface SourceInfo {
  kind: 'indexed' | 'stream';
  /** Batches this rank gets per epoch, when known. */
  batchesPerEpoch: number | null;
}

interface Transformed {
  ok: boolean;
  reason: string;
}

/** Runs fn over items with at most `limit` in flight; results in item order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  });
  await Promise.all(lanes);
  return out;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function loadTokenizer(text: TextOptions): ClipTokenizer {
  const contextLength = text.contextLength ?? DEFAULT_CONTEXT_LENGTH;
  if (text.tokenizerDir !== undefined) return ClipTokenizer.fromDirectory(text.tokenizerDir, { contextLength });
  if (text.bpePath !== undefined) return ClipTokenizer.fromBpeFile(text.bpePath, { contextLength });
  return defaultTokenizer();
}

const REDUCTIONS: readonly TextReduction[] = ['truncate', 'random', 'shuffle', 'block', 'simple', 'syntax'];

/** Checks the text options before any thread starts (the tokenizer files are read in the workers). */
export function checkTextOptions(op: string, text: unknown): TextOptions {
  if (typeof text !== 'object' || text === null) throw argError(op, 'text', 'an object', text);
  const t = text as TextOptions;
  checkInteger(op, 'text.contextLength', t.contextLength ?? DEFAULT_CONTEXT_LENGTH, 2, 1 << 16);
  if (t.bpePath !== undefined && typeof t.bpePath !== 'string') throw argError(op, 'text.bpePath', 'a file path', t.bpePath);
  if (t.tokenizerDir !== undefined && typeof t.tokenizerDir !== 'string') throw argError(op, 'text.tokenizerDir', 'a directory path', t.tokenizerDir);
  if (t.reduction !== undefined && !REDUCTIONS.includes(t.reduction)) throw argError(op, 'text.reduction', REDUCTIONS.map((r) => `'${r}'`).join(' | '), t.reduction);
  return t;
}

export class BatchProducer {
  readonly info: SourceInfo;
  private readonly contextLength: number;

  private constructor(
    private readonly config: ProducerConfig,
    private readonly source: SampleSource,
    private readonly transform: ImageTransform,
    private readonly tokenizer: ClipTokenizer,
    private readonly reduction: TextReduction | null,
  ) {
    this.contextLength = config.text.contextLength ?? DEFAULT_CONTEXT_LENGTH;
    this.info = { kind: source.kind, batchesPerEpoch: this.batchesPerEpoch() };
  }

  /** Opens the source (or uses `source`, for in-process loaders given an object), builds the transform and tokenizer. */
  static async create(config: ProducerConfig, source?: SampleSource): Promise<BatchProducer> {
    const op = 'BatchProducer';
    const text = checkTextOptions(op, config.text);
    const transform = createImageTransform(config.imageTransform);
    const opened = source ?? (await openSource(checkSourceSpec(op, 'source', config.source)));
    const tokenizer = loadTokenizer(text);
    return new BatchProducer(config, opened, transform, tokenizer, text.reduction ?? null);
  }

  /** Samples each rank gets per epoch: the same on every rank, so that ranks take the same number of steps. */
  private rankLength(): number {
    if (this.source.kind !== 'indexed') return 0;
    return Math.ceil(this.source.length / this.config.worldSize);
  }

  private batchesPerEpoch(): number | null {
    const { batchSize, dropLast, numWorkers } = this.config;
    if (this.source.kind === 'indexed') {
      const n = this.rankLength();
      return dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
    }
    if (this.source.numSamples === null) return null;
    return this.streamBatchesPerWorker()! * numWorkers;
  }

  private streamBatchesPerWorker(): number | null {
    if (this.source.kind !== 'stream' || this.source.numSamples === null) return null;
    const { batchSize, worldSize, numWorkers } = this.config;
    return Math.ceil(Math.ceil(this.source.numSamples / (batchSize * worldSize)) / numWorkers);
  }

  /** This worker's batches of `epoch`, in order. */
  async *batches(epoch: number): AsyncGenerator<ProducedBatch> {
    if (this.source.kind === 'indexed') yield* this.indexedBatches(epoch);
    else yield* this.streamBatches(epoch);
  }

  /** Skip reasons gathered after the last batch (a stream's tail): the worker sends them with its end message. */
  takeTrailingSkips(): string[] {
    const out = this.trailing;
    this.trailing = [];
    return out;
  }

  private trailing: string[] = [];
  private consecutiveSkips = 0;

  private noteSkip(reasons: string[], reason: string): void {
    reasons.push(reason);
    if (++this.consecutiveSkips >= this.config.maxConsecutiveSkips) {
      throw new Error(`data loader: ${this.consecutiveSkips} samples in a row were skipped (maxConsecutiveSkips); the last: ${reason}`);
    }
  }

  private async *indexedBatches(epoch: number): AsyncGenerator<ProducedBatch> {
    const source = this.source as Extract<SampleSource, { kind: 'indexed' }>;
    const { batchSize, rank, worldSize, worker, numWorkers, seed } = this.config;
    const order = Array.from({ length: source.length }, (_, i) => i);
    if (this.config.shuffle) new SeededRandom(hashSeed(seed, epoch, 0x0de)).shuffle(order);
    // As torch's DistributedSampler: the order is padded with its own start to a multiple of
    // worldSize, then rank r takes every worldSize-th sample from position r.
    const padded = order.concat(order.slice(0, this.rankLength() * worldSize - order.length));
    const mine = worldSize === 1 ? order : padded.filter((_, i) => i % worldSize === rank);
    const total = this.batchesPerEpoch()!;
    for (let b = worker; b < total; b += numWorkers) {
      const indices = mine.slice(b * batchSize, (b + 1) * batchSize);
      const skipped: string[] = [];
      const samples = await mapLimit(indices, this.config.concurrency, async (index) => {
        try {
          return await source.get(index);
        } catch (e) {
          return `sample ${index}: ${message(e)}`;
        }
      });
      const seeds = indices.map((index) => hashSeed(seed, epoch, index));
      yield await this.assemble(b, samples, seeds, skipped);
    }
  }

  private async *streamBatches(epoch: number): AsyncGenerator<ProducedBatch> {
    const source = this.source as Extract<SampleSource, { kind: 'stream' }>;
    const { batchSize, seed, rank, worldSize, worker, numWorkers, dropLast } = this.config;
    const limit = this.streamBatchesPerWorker();
    const iterator = source.samples({ epoch, seed, rank, worldSize, worker, numWorkers })[Symbol.asyncIterator]();
    let exhausted = false;
    try {
      for (let local = 0; limit === null || local < limit; local++) {
        const raw: RawSample[] = [];
        const skipped: string[] = [];
        while (raw.length < batchSize) {
          const next = await iterator.next();
          if (next.done) {
            exhausted = true;
            break;
          }
          if (isSkipped(next.value)) this.noteSkip(skipped, next.value.skipped);
          else raw.push(next.value);
        }
        if (raw.length === 0 || (exhausted && dropLast && raw.length < batchSize)) {
          this.trailing.push(...skipped);
          return;
        }
        const batch = await this.assemble(local * numWorkers + worker, raw, raw.map((s) => hashSeed(seed, epoch, s.key)), skipped);
        yield batch;
        if (exhausted) return;
      }
    } finally {
      if (!exhausted) await iterator.return?.();
    }
  }

  /** Transforms and tokenizes the samples (or reasons they failed) into one batch. */
  private async assemble(index: number, samples: ReadonlyArray<RawSample | string>, seeds: readonly number[], skipped: string[]): Promise<ProducedBatch> {
    const per = this.transform.length;
    const images = new Float32Array(samples.length * per);
    const results = await mapLimit(samples, this.config.concurrency, async (s, i): Promise<Transformed> => {
      if (typeof s === 'string') return { ok: false, reason: s };
      try {
        await this.transform.apply(s.image, new SeededRandom(seeds[i]!), images, i * per);
        return { ok: true, reason: '' };
      } catch (e) {
        return { ok: false, reason: `sample ${s.key}: ${message(e)}` };
      }
    });
    const kept: RawSample[] = [];
    const keptSeeds: number[] = [];
    for (let i = 0; i < samples.length; i++) {
      const r = results[i]!;
      if (!r.ok) {
        this.noteSkip(skipped, r.reason);
        continue;
      }
      this.consecutiveSkips = 0;
      // Close the gap left by skipped samples so the kept images are contiguous.
      if (kept.length !== i) images.copyWithin(kept.length * per, i * per, (i + 1) * per);
      kept.push(samples[i] as RawSample);
      keptSeeds.push(seeds[i]!);
    }
    const count = kept.length;
    const texts = this.tokenizeAll(kept, keptSeeds);
    const hasLabels = kept.some((s) => s.label !== undefined);
    const labels = hasLabels ? Int32Array.from(kept, (s) => s.label ?? -1) : null;
    return { index, count, images: count === samples.length ? images : images.slice(0, count * per), texts, labels, keys: kept.map((s) => s.key), skipped };
  }

  private tokenizeAll(samples: readonly RawSample[], seeds: readonly number[]): Int32Array {
    const ctx = this.contextLength;
    if (this.reduction === null) return this.tokenizer.tokenize(samples.map((s) => s.caption), ctx).ids;
    const out = new Int32Array(samples.length * ctx);
    let random = new SeededRandom(0);
    const reducer = new TextReducer(this.tokenizer, this.reduction, { contextLength: ctx, random: () => random.next() });
    samples.forEach((s, i) => {
      random = new SeededRandom(hashSeed(seeds[i]!, 0x7e7));
      out.set(reducer.tokenize(s.caption).ids, i * ctx);
    });
    return out;
  }
}
