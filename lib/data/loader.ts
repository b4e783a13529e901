// The data loader: image–caption batches from a sample source, with decoding, augmentation
// and tokenization in worker threads, as OpenCLIP's DataLoader with `--workers` does it.
//
//   for (let epoch = 0; epoch < epochs; epoch++) {
//     for await (const batch of loader.epoch(epoch)) train(batch.images, batch.texts);
//   }
//   await loader.close();
//
// - Each worker (or, with workers 0, one producer in this thread; sharp decoding still runs
//   on the libuv pool, native JPEG decoding in the producer's thread) makes the batches it owns (see batch_producer.ts) and sends them as
//   transferred ArrayBuffers: no copy between threads.
// - A worker runs at most `prefetch` batches ahead of the consumer, so memory stays bounded
//   while the training loop, if the workers keep up, always finds a batch waiting.
// - Batches are taken from the workers in turn (batch i from worker i mod W), so their order
//   is fixed for a seed and a worker count. For indexed sources (CSV, generated datasets)
//   the batches are also the same for any worker count, workers 0 included; for webdataset
//   streams they depend on it, as they do in OpenCLIP (each worker reads its own shards).
// - Bad samples are skipped and counted (`skipped`, `skipReasons`, `onSkip`), never fatal;
//   an error anywhere else (a source that cannot open, a worker that dies, too many skips in
//   a row) rejects the consumer's `for await` with an Error.
// - Workers start with the first epoch and stay between epochs (unref'd, so they never keep
//   the process alive); leaving an epoch early (break, throw) or `close()` terminates them.
//
// libuv's thread pool (UV_THREADPOOL_SIZE, default 4) is shared by every thread of the
// process and runs all sharp decoding: with more than 4 workers, raise it before start.
// Plain JPEGs decode natively (jpeg.ts), synchronously in each worker: one core per worker.
import { Worker } from 'node:worker_threads';
import { argError, checkBoolean, checkInteger } from '../tensor/check.js';
import { BatchProducer, checkTextOptions, type ProducerConfig, type SourceInfo, type TextOptions } from './batch_producer.js';
import { Credits, pumpEpoch, type FromProducer, type ToProducer } from './loader_protocol.js';
import { asSampleSource, checkSourceSpec, type SampleSource, type SourceSpec } from './source.js';
import { DEFAULT_CONTEXT_LENGTH } from './tokenizer.js';
import { createImageTransform, type ImageTransform, type ImageTransformOptions } from './transforms.js';

export interface DataLoaderOptions {
  /** Where samples come from: a spec (any workers), or a source object (workers 0 only). */
  source: SourceSpec | SampleSource;
  batchSize: number;
  /** The image transform, or its options. */
  imageTransform: ImageTransformOptions | ImageTransform;
  /** Tokenizer and context length. Default: the shipped CLIP vocabulary, 77 tokens. */
  text?: TextOptions;
  /** Worker threads; 0 does the work in this thread. Default 2. */
  workers?: number;
  /** Finished batches each worker may hold ahead of the consumer. Default 2. */
  prefetch?: number;
  /** Seeds sample order, shard order and augmentation. Default 0. */
  seed?: number;
  /** Drop an epoch's last batch when it is short (indexed sources) or a worker's (streams). Default false. */
  dropLast?: boolean;
  /** Shuffle an indexed source every epoch. Default true. */
  shuffle?: boolean;
  /** This process's rank and the number of ranks (distributed training). Default 0 of 1. */
  rank?: number;
  worldSize?: number;
  /** Samples decoded at once per worker. Default 4. */
  concurrency?: number;
  /** This many skipped samples in a row are an error, not bad luck. Default 100. */
  maxConsecutiveSkips?: number;
  /** Called with the reason of each skipped sample, when its batch is handed over. */
  onSkip?: (reason: string) => void;
}

export interface Batch {
  epoch: number;
  /** Position of the batch in its epoch. */
  index: number;
  /** Samples in the batch (fewer than batchSize when samples were skipped or at an epoch's end). */
  count: number;
  /** [count, 3, size, size], normalized. */
  images: Float32Array;
  imageShape: [number, number, number, number];
  /** [count, contextLength] token ids. */
  texts: Int32Array;
  textShape: [number, number];
  /** Class labels where the source has them (-1 for a sample without one). */
  labels: Int32Array | null;
  /** The samples' keys (CSV image paths, shard:key, dataset indices). */
  keys: string[];
}

const MAX_REASONS = 100;

/** Messages from one producer, waited for one at a time. */
class Mailbox {
  private queue: FromProducer[] = [];
  private waiter: ((m: FromProducer) => void) | null = null;

  push(m: FromProducer): void {
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w(m);
    } else this.queue.push(m);
  }

  next(): Promise<FromProducer> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    return new Promise((resolve) => (this.waiter = resolve));
  }
}

/** One producer, in a worker thread or in this thread. */
interface Lane {
  readonly mailbox: Mailbox;
  /** The worker thread, or null for the in-process producer. */
  readonly thread: Worker | null;
  start(epoch: number, credits: number): void;
  grant(): void;
  /** Whether the lane keeps the process alive. */
  hold(on: boolean): void;
  terminate(): Promise<void>;
}

/**
 * The worker thread for a producer. From compiled JS the worker is loader_worker.js. From the
 * TypeScript sources (tests, tsx), a worker does not inherit tsx's loader hooks, so a small
 * bootstrap registers them in the thread before importing loader_worker.ts.
 */
function spawnWorker(config: ProducerConfig): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./loader_worker.js', here), { workerData: config });
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./loader_worker.ts', here).href;
  const bootstrap = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(bootstrap, { eval: true, workerData: config });
}

function workerLane(config: ProducerConfig): Lane {
  const mailbox = new Mailbox();
  const worker = spawnWorker(config);
  let terminating = false;
  const exited = new Promise<void>((resolve) => {
    worker.on('exit', (code) => {
      if (!terminating) mailbox.push({ type: 'error', message: `data loader: worker ${config.worker} exited with code ${code}` });
      resolve();
    });
  });
  worker.on('error', (e) => mailbox.push({ type: 'error', message: `data loader: worker ${config.worker} failed: ${e.message}` }));
  worker.on('message', (m: FromProducer) => mailbox.push(m));
  const send = (m: ToProducer): void => worker.postMessage(m);
  return {
    mailbox,
    thread: worker,
    start: (epoch, credits) => send({ type: 'epoch', epoch, credits }),
    grant: () => send({ type: 'credit' }),
    hold: (on) => (on ? worker.ref() : worker.unref()),
    async terminate() {
      terminating = true;
      await worker.terminate();
      await exited;
    },
  };
}

function localLane(config: ProducerConfig, source: SampleSource | undefined): Lane {
  const mailbox = new Mailbox();
  let producer: BatchProducer | null = null;
  let credits = new Credits();
  const ready = BatchProducer.create(config, source).then(
    (p) => {
      producer = p;
      mailbox.push({ type: 'ready', info: p.info });
    },
    (e: unknown) => mailbox.push({ type: 'error', message: e instanceof Error ? e.message : String(e) }),
  );
  return {
    mailbox,
    thread: null,
    start(epoch, n) {
      credits = new Credits();
      credits.add(n);
      const mine = credits;
      void ready.then(() => {
        if (producer) void pumpEpoch(producer, epoch, mine, (m) => mailbox.push(m));
      });
    },
    grant: () => credits.add(1),
    hold: () => undefined,
    terminate: async () => credits.close(),
  };
}

export class DataLoader implements AsyncIterable<Batch> {
  /** Samples skipped so far (corrupt images, missing captions, unreadable shards). */
  skipped = 0;
  /** The most recent skip reasons (up to 100). */
  readonly skipReasons: string[] = [];
  readonly batchSize: number;
  readonly workers: number;
  readonly imageSize: number;
  readonly contextLength: number;

  private lanes: Lane[] | null = null;
  private info: SourceInfo | null = null;
  private starting: Promise<Lane[]> | null = null;
  private running = false;
  private closed = false;
  private nextEpoch = 0;
  private readonly prefetch: number;
  private readonly onSkip: ((reason: string) => void) | undefined;

  constructor(
    private readonly config: Omit<ProducerConfig, 'worker' | 'numWorkers'>,
    workers: number,
    prefetch: number,
    private readonly sourceObject: SampleSource | undefined,
    onSkip: ((reason: string) => void) | undefined,
  ) {
    this.batchSize = config.batchSize;
    this.workers = workers;
    this.prefetch = prefetch;
    this.onSkip = onSkip;
    this.imageSize = config.imageTransform.size;
    this.contextLength = config.text.contextLength ?? DEFAULT_CONTEXT_LENGTH;
  }

  private startLanes(): Promise<Lane[]> {
    this.starting ??= (async () => {
      const numWorkers = Math.max(1, this.workers);
      const lanes = Array.from({ length: numWorkers }, (_, worker) => {
        const config: ProducerConfig = { ...this.config, worker, numWorkers };
        return this.workers === 0 ? localLane(config, this.sourceObject) : workerLane(config);
      });
      this.lanes = lanes;
      for (const lane of lanes) {
        const m = await lane.mailbox.next();
        if (m.type !== 'ready') {
          await this.stopLanes();
          throw new Error(m.type === 'error' ? m.message : `data loader: expected a ready message, got '${m.type}'`);
        }
        this.info = m.info;
      }
      return lanes;
    })();
    return this.starting;
  }

  private async stopLanes(): Promise<void> {
    const lanes = this.lanes;
    this.lanes = null;
    this.starting = null;
    if (lanes) await Promise.all(lanes.map((l) => l.terminate()));
  }

  /** Batches per epoch on this rank, when the source tells (indexed sources; streams with numSamples). Starts the workers. */
  async batchesPerEpoch(): Promise<number | null> {
    if (this.closed) throw new Error('DataLoader.batchesPerEpoch: the loader is closed');
    await this.startLanes();
    return this.info!.batchesPerEpoch;
  }

  /** The worker threads now running (none before the first epoch, after close, or with workers 0). */
  workerThreads(): Worker[] {
    return (this.lanes ?? []).flatMap((l) => (l.thread ? [l.thread] : []));
  }

  /** Iterates the next epoch (0, 1, ... in turn). */
  [Symbol.asyncIterator](): AsyncIterator<Batch> {
    return this.epoch(this.nextEpoch)[Symbol.asyncIterator]();
  }

  /** The batches of `epoch`. One epoch runs at a time. */
  epoch(epoch: number): AsyncIterable<Batch> {
    checkInteger('DataLoader.epoch', 'epoch', epoch, 0);
    return { [Symbol.asyncIterator]: () => this.run(epoch) };
  }

  private record(reasons: readonly string[]): void {
    for (const r of reasons) {
      this.skipped++;
      this.skipReasons.push(r);
      if (this.skipReasons.length > MAX_REASONS) this.skipReasons.shift();
      this.onSkip?.(r);
    }
  }

  private async *run(epoch: number): AsyncGenerator<Batch> {
    if (this.closed) throw new Error('DataLoader.epoch: the loader is closed');
    if (this.running) throw new Error('DataLoader.epoch: an epoch is already being iterated; finish or leave it first');
    this.running = true;
    this.nextEpoch = epoch + 1;
    let finished = false;
    try {
      const lanes = await this.startLanes();
      for (const lane of lanes) {
        lane.hold(true);
        lane.start(epoch, this.prefetch);
      }
      const rotation = lanes.map((_, i) => i);
      let turn = 0;
      let index = 0;
      const skippedBefore = this.skipped;
      while (rotation.length > 0) {
        const laneIndex = rotation[turn]!;
        const lane = lanes[laneIndex]!;
        const m = await lane.mailbox.next();
        if (m.type === 'error') throw new Error(m.message);
        if (m.type === 'end') {
          this.record(m.skipped);
          rotation.splice(turn, 1);
          if (turn >= rotation.length) turn = 0;
          continue;
        }
        if (m.type !== 'batch' || m.epoch !== epoch) throw new Error(`data loader: expected a batch of epoch ${epoch} from worker ${laneIndex}, got '${m.type}'`);
        const b = m.batch;
        this.record(b.skipped);
        turn = (turn + 1) % rotation.length;
        lane.grant();
        if (b.count === 0) continue;
        yield {
          epoch,
          index: index++,
          count: b.count,
          images: b.images,
          imageShape: [b.count, 3, this.imageSize, this.imageSize],
          texts: b.texts,
          textShape: [b.count, this.contextLength],
          labels: b.labels,
          keys: b.keys,
        };
      }
      if (index === 0 && this.skipped > skippedBefore) {
        throw new Error(`data loader: epoch ${epoch} gave no batch; ${this.skipped - skippedBefore} samples skipped, the last: ${this.skipReasons.at(-1)}`);
      }
      for (const lane of lanes) lane.hold(false);
      finished = true;
    } finally {
      this.running = false;
      if (!finished) await this.stopLanes();
    }
  }

  /** Stops the workers. The loader cannot be used afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.starting) await this.starting.catch(() => undefined);
    await this.stopLanes();
  }
}

function isSourceObject(v: unknown): v is SampleSource {
  return typeof v === 'object' && v !== null && ((v as SampleSource).kind === 'indexed' || (v as SampleSource).kind === 'stream');
}

/** A data loader; checks every option here, before any thread starts. */
export function createDataLoader(options: DataLoaderOptions): DataLoader {
  const op = 'createDataLoader';
  if (typeof options !== 'object' || options === null) throw argError(op, 'options', 'an object', options);
  const workers = checkInteger(op, 'options.workers', options.workers ?? 2, 0, 256);
  let sourceSpec: SourceSpec | null;
  let sourceObject: SampleSource | undefined;
  if (isSourceObject(options.source)) {
    if (workers > 0) throw argError(op, 'options.source', 'a source spec (plain data) when workers > 0 (a source object cannot move to a thread)', options.source);
    sourceObject = asSampleSource(op, options.source);
    sourceSpec = null;
  } else sourceSpec = checkSourceSpec(op, 'options.source', options.source);
  const batchSize = checkInteger(op, 'options.batchSize', options.batchSize, 1, 1 << 20);
  const t = options.imageTransform as ImageTransform | ImageTransformOptions;
  const imageTransform = typeof t === 'object' && t !== null && 'apply' in t ? (t as ImageTransform).options : (t as ImageTransformOptions);
  const transformOptions: ImageTransformOptions = { ...createImageTransform(imageTransform).options };
  const text = checkTextOptions(op, options.text ?? {});
  const prefetch = checkInteger(op, 'options.prefetch', options.prefetch ?? 2, 1, 1024);
  const seed = checkInteger(op, 'options.seed', options.seed ?? 0, 0, Number.MAX_SAFE_INTEGER);
  const dropLast = checkBoolean(op, 'options.dropLast', options.dropLast ?? false);
  const shuffle = checkBoolean(op, 'options.shuffle', options.shuffle ?? true);
  const worldSize = checkInteger(op, 'options.worldSize', options.worldSize ?? 1, 1, 1 << 20);
  const rank = checkInteger(op, 'options.rank', options.rank ?? 0, 0, worldSize - 1);
  const concurrency = checkInteger(op, 'options.concurrency', options.concurrency ?? 4, 1, 1024);
  const maxConsecutiveSkips = checkInteger(op, 'options.maxConsecutiveSkips', options.maxConsecutiveSkips ?? 100, 1);
  if (options.onSkip !== undefined && typeof options.onSkip !== 'function') throw argError(op, 'options.onSkip', 'a function', options.onSkip);
  const config = { source: sourceSpec, imageTransform: transformOptions, text: { ...text }, batchSize, dropLast, shuffle, seed, rank, worldSize, concurrency, maxConsecutiveSkips };
  return new DataLoader(config, workers, prefetch, sourceObject, options.onSkip);
}
