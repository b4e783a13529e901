// Sample sources: where image–caption pairs come from before decoding and augmentation.
//
// Two shapes, because datasets come in two shapes:
//   - indexed (CSV rows, a generated dataset): any sample by index, in any order, from any
//     worker. The loader shuffles indices itself, so batches are the same whatever the
//     number of workers.
//   - stream (webdataset shards): each worker reads its own share of the shards front to
//     back. Batches depend on the number of workers, as in OpenCLIP.
//
// A sample's image is either the encoded file or raw RGB pixels, whichever the source has.
// Worker threads cannot receive functions, so the loader passes sources to them as a
// `SourceSpec` (plain data) and each worker opens its own copy with `openSource`.
import { argError } from '../tensor/check.js';
import { createCsvSource, type CsvOptions } from './csv.js';
import { isRgbImage, type ImageInput } from './image.js';
import { createWebDataset, type WebDatasetOptions } from './webdataset.js';

export interface RawSample {
  /** Names the sample in errors and, for streams, seeds its augmentation. */
  key: string;
  image: ImageInput;
  caption: string;
  /** A class index, when the dataset has one (zero-shot evaluation sets). */
  label?: number;
}

/** A sample a source could not use, with why: the loader counts it and goes on. */
export interface SkippedSample {
  key: string;
  skipped: string;
}

export interface IndexedSource {
  readonly kind: 'indexed';
  readonly length: number;
  get(index: number): RawSample | Promise<RawSample>;
}

/** One worker's place in the job: which part of each epoch it reads. */
export interface StreamPart {
  epoch: number;
  seed: number;
  rank: number;
  worldSize: number;
  worker: number;
  numWorkers: number;
}

export interface StreamSource {
  readonly kind: 'stream';
  /** Samples in one epoch over all ranks and workers, when set (required for endless streams). */
  readonly numSamples: number | null;
  samples(part: StreamPart): AsyncIterable<RawSample | SkippedSample>;
}

export type SampleSource = IndexedSource | StreamSource;

/**
 * A source as plain data. 'module' names an ES module (file URL or package specifier) and an
 * export in it: a function of `options` returning an indexed source, a stream source, or any
 * `{ length, get(i) }` whose samples are `{ image, caption, label? }` with `image` either
 * encoded bytes or RGB pixels given with `width` and `height` (as the built-in dataset's are).
 */
export type SourceSpec =
  | { type: 'webdataset'; options: WebDatasetOptions }
  | { type: 'csv'; options: CsvOptions }
  | { type: 'module'; module: string; export: string; options?: unknown };

export function isSkipped(s: RawSample | SkippedSample): s is SkippedSample {
  return typeof (s as SkippedSample).skipped === 'string';
}

/** Checks that `spec` is a SourceSpec in shape (the source's own options are checked on open). */
export function checkSourceSpec(op: string, arg: string, spec: unknown): SourceSpec {
  const s = spec as SourceSpec;
  if (typeof spec !== 'object' || spec === null) throw argError(op, arg, "a source spec ({ type: 'webdataset' | 'csv' | 'module', ... })", spec);
  if (s.type === 'webdataset' || s.type === 'csv') {
    if (typeof s.options !== 'object' || s.options === null) throw argError(op, `${arg}.options`, 'an object', s.options);
    return s;
  }
  if (s.type === 'module') {
    if (typeof s.module !== 'string' || s.module === '') throw argError(op, `${arg}.module`, 'a module URL or specifier', s.module);
    if (typeof s.export !== 'string' || s.export === '') throw argError(op, `${arg}.export`, 'an export name', s.export);
    return s;
  }
  throw argError(op, `${arg}.type`, "'webdataset', 'csv' or 'module'", (spec as { type?: unknown }).type);
}

/** A sample of the `{ image, width?, height?, caption, label? }` form as a RawSample. */
function adaptSample(op: string, index: number, v: unknown): RawSample {
  const s = v as { key?: unknown; image?: unknown; width?: unknown; height?: unknown; caption?: unknown; label?: unknown };
  if (typeof v !== 'object' || v === null) throw argError(op, `sample ${index}`, 'an object', v);
  if (typeof s.caption !== 'string') throw argError(op, `sample ${index}.caption`, 'a string', s.caption);
  const key = typeof s.key === 'string' ? s.key : String(index);
  let image: ImageInput;
  if (typeof s.width === 'number' && typeof s.height === 'number' && s.image instanceof Uint8Array) {
    const pixels = { data: s.image, width: s.width, height: s.height };
    if (!isRgbImage(pixels)) throw argError(op, `sample ${index}.image`, `${s.width}*${s.height}*3 RGB bytes`, s.image);
    image = pixels;
  } else if (s.image instanceof Uint8Array || isRgbImage(s.image)) image = s.image;
  else throw argError(op, `sample ${index}.image`, 'encoded bytes or RGB pixels', s.image);
  if (s.label !== undefined && (typeof s.label !== 'number' || !Number.isSafeInteger(s.label))) throw argError(op, `sample ${index}.label`, 'an integer', s.label);
  return s.label === undefined ? { key, image, caption: s.caption } : { key, image, caption: s.caption, label: s.label };
}

/** Wraps what a module factory returned as a SampleSource. */
export function asSampleSource(op: string, value: unknown): SampleSource {
  const v = value as { kind?: unknown; samples?: unknown; get?: unknown; length?: unknown };
  if (typeof value === 'object' && value !== null) {
    if (v.kind === 'stream' && typeof v.samples === 'function') return value as StreamSource;
    if (typeof v.get === 'function' && Number.isSafeInteger(v.length) && (v.length as number) >= 0) {
      if (v.kind === 'indexed') return value as IndexedSource;
      const get = (v.get as (i: number) => unknown).bind(value);
      return {
        kind: 'indexed',
        length: v.length as number,
        async get(index: number): Promise<RawSample> {
          return adaptSample(op, index, await get(index));
        },
      };
    }
  }
  throw argError(op, 'source', 'an indexed source ({ length, get(i) }) or a stream source ({ kind: "stream", samples })', value);
}

/** Opens the source a spec describes, in the calling thread. */
export async function openSource(spec: SourceSpec): Promise<SampleSource> {
  const op = 'openSource';
  checkSourceSpec(op, 'spec', spec);
  switch (spec.type) {
    case 'webdataset':
      return createWebDataset(spec.options);
    case 'csv':
      return createCsvSource(spec.options);
    case 'module': {
      let mod: Record<string, unknown>;
      try {
        mod = (await import(spec.module)) as Record<string, unknown>;
      } catch (e) {
        throw new Error(`${op}: cannot import ${spec.module}: ${(e as Error).message}`);
      }
      const factory = mod[spec.export];
      if (typeof factory !== 'function') throw argError(op, `export '${spec.export}' of ${spec.module}`, 'a function', factory);
      return asSampleSource(op, await (factory as (o: unknown) => unknown)(spec.options));
    }
  }
}
