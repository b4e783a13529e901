// The training run's data: which source the flags name (webdataset shards, a CSV file, or the
// built-in dataset when no --train-data is given), the image transforms for the model's input
// size, and the loaders that run them in worker threads.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BUILTIN_DEFAULT_SIZES, createBuiltinDataset } from '../data/builtin/dataset.js';
import { loadImageFolder } from '../data/image_folder.js';
import { createDataLoader, type DataLoader } from '../data/loader.js';
import type { SourceSpec } from '../data/source.js';
import { parseAugConfig, type AugmentOptions } from '../data/transforms.js';
import type { ZeroShotTask } from './evaluate.js';
import type { AugValue, TrainArgs } from './flags.js';

// The modules the loader's workers import to build the built-in dataset and image folders.
const SOURCE_EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const BUILTIN_MODULE = new URL(`../data/builtin/index${SOURCE_EXT}`, import.meta.url).href;
const IMAGE_FOLDER_MODULE = new URL(`../data/image_folder${SOURCE_EXT}`, import.meta.url).href;

export type DataKind = 'builtin' | 'webdataset' | 'csv';

/** The flags the data sources and evaluation loaders read (`clipforge eval` has these too). */
export type EvalDataArgs = Pick<
  TrainArgs,
  'valData' | 'datasetType' | 'csvSeparator' | 'csvImgKey' | 'csvCaptionKey' | 'imagenetVal' | 'batchSize' | 'workers' | 'trainNumSamples' | 'trainDataUpsamplingFactors' | 'datasetResampled'
>;

/**
 * What --dataset-type auto means for a path: .csv/.tsv files are CSV, anything else shards.
 * `command` ('clipforge train', 'clipforge eval') opens the error messages.
 */
export function dataKind(path: string | null, datasetType: TrainArgs['datasetType'], flag: string, command = 'clipforge train'): DataKind {
  if (path === null) {
    if (datasetType === 'webdataset' || datasetType === 'csv') throw new Error(`${command}: --dataset-type ${datasetType} needs ${flag}`);
    return 'builtin';
  }
  if (datasetType === 'synthetic') throw new Error(`${command}: --dataset-type synthetic uses the built-in dataset and takes no ${flag} (got ${path})`);
  if (datasetType === 'csv' || (datasetType === 'auto' && /\.(csv|tsv)$/i.test(path))) {
    if (!existsSync(path)) throw new Error(`${command}: ${flag} ${path} does not exist`);
    return 'csv';
  }
  return 'webdataset';
}

function sourceFor(kind: DataKind, path: string | null, args: EvalDataArgs, split: 'train' | 'val', imageSize: number): { spec: SourceSpec; samples: number | null } {
  if (kind === 'builtin') {
    const size = split === 'train' ? (args.trainNumSamples ?? BUILTIN_DEFAULT_SIZES.train) : BUILTIN_DEFAULT_SIZES.val;
    return { spec: { type: 'module', module: BUILTIN_MODULE, export: 'createBuiltinDataset', options: { split, size, imageSize, seed: 0 } }, samples: size };
  }
  if (kind === 'csv') {
    return { spec: { type: 'csv', options: { path: path!, csvImgKey: args.csvImgKey, csvCaptionKey: args.csvCaptionKey, csvSeparator: args.csvSeparator } }, samples: null };
  }
  const urls = path!.split('::');
  const factors = args.trainDataUpsamplingFactors?.split('::').map(Number);
  if (factors && (factors.length !== urls.length || factors.some((f) => !(f > 0)))) {
    throw new Error(`clipforge train: --train-data-upsampling-factors needs one positive number per --train-data source (${urls.length}), got ${args.trainDataUpsamplingFactors}`);
  }
  const numSamples = split === 'train' ? args.trainNumSamples : null;
  if (split === 'train' && numSamples === null) throw new Error('clipforge train: webdataset training data needs --train-num-samples (the number of samples per epoch)');
  return {
    spec: {
      type: 'webdataset',
      options: { urls, resampled: split === 'train' && args.datasetResampled, ...(factors ? { upsamplingFactors: factors } : {}), ...(numSamples ? { numSamples } : {}) },
    },
    samples: numSamples,
  };
}

/** OpenCLIP's --aug-cfg pairs in the transform's terms. */
export function augmentOptions(augCfg: Record<string, AugValue>): AugmentOptions {
  const pairs = Object.entries(augCfg).map(([k, v]) => `${k}=${JSON.stringify(v).replaceAll('[', '(').replaceAll(']', ')')}`);
  return pairs.length ? parseAugConfig(pairs) : {};
}

export interface RunData {
  kind: DataKind;
  train: DataLoader;
  /** Samples per epoch, when known. */
  samplesPerEpoch: number | null;
  val: DataLoader | null;
}

export interface RunDataOptions {
  imageSize: number;
  contextLength: number;
  /** The training loader's seed (order and augmentation). */
  seed: number;
}

/** The loaders of a run; close them with closeRunData. */
export function createRunData(args: TrainArgs, opts: RunDataOptions): RunData {
  const kind = dataKind(args.trainData, args.datasetType, '--train-data');
  const train = sourceFor(kind, args.trainData, args, 'train', opts.imageSize);
  // 'truncate' is the tokenizer's own behaviour; the others are CLIPA's reductions.
  const text = { contextLength: opts.contextLength, ...(args.textReduction !== 'truncate' ? { reduction: args.textReduction } : {}) };
  const trainLoader = createDataLoader({
    source: train.spec,
    batchSize: args.batchSize,
    workers: args.workers,
    seed: opts.seed,
    dropLast: true,
    imageTransform: { size: opts.imageSize, train: true, ...augmentOptions(args.augCfg) },
    text,
  });
  return { kind, train: trainLoader, samplesPerEpoch: train.samples, val: valLoader(args, opts.imageSize, opts.contextLength) };
}

/**
 * The --val-data loader (webdataset shards or CSV, as --dataset-type says), or null without
 * --val-data; `command` opens the error messages.
 */
export function valLoader(args: EvalDataArgs, imageSize: number, contextLength: number, command = 'clipforge train'): DataLoader | null {
  if (args.valData === null) return null;
  const kind = dataKind(args.valData, args.datasetType, '--val-data', command);
  return evalLoader(sourceFor(kind, args.valData, args, 'val', imageSize).spec, args.batchSize, args, imageSize, contextLength);
}

/** An evaluation loader: samples in order, the eval transform (resize + centre crop). */
function evalLoader(source: SourceSpec, batchSize: number, args: EvalDataArgs, imageSize: number, contextLength: number): DataLoader {
  return createDataLoader({ source, batchSize, workers: args.workers, seed: 0, shuffle: false, imageTransform: { size: imageSize }, text: { contextLength } });
}

/** The built-in dataset's validation split as a loader (zero-shot evaluation of the default run). */
export function builtinValLoader(args: EvalDataArgs, imageSize: number, contextLength: number, batchSize = 256): DataLoader {
  const v = sourceFor('builtin', null, args, 'val', imageSize);
  return evalLoader(v.spec, batchSize, args, imageSize, contextLength);
}

/**
 * Zero-shot evaluation on an image folder (--imagenet-val DIR): class names and templates
 * from `namesFile` when given, else DIR/classnames.json or DIR/classnames.txt when present
 * (the forms loadImageFolder reads), else the class directories' names with CLIP's basic prompt.
 */
export function imageFolderZeroShot(args: EvalDataArgs, dir: string, imageSize: number, contextLength: number, namesFile?: string, batchSize = 128): ZeroShotTask {
  if (namesFile === undefined) namesFile = ['classnames.json', 'classnames.txt'].map((f) => join(dir, f)).find((f) => existsSync(f));
  const options = namesFile ? { root: dir, classNamesFile: namesFile } : { root: dir };
  const folder = loadImageFolder(dir, namesFile ? { classNamesFile: namesFile } : {});
  const loader = evalLoader({ type: 'module', module: IMAGE_FOLDER_MODULE, export: 'createImageFolderSource', options }, batchSize, args, imageSize, contextLength);
  return { classNames: folder.classNames, templates: folder.templates, loader };
}

export interface ZeroShotTaskOptions {
  /** Whether to score the built-in dataset's validation split (as prefix `zeroshot`). */
  builtin: boolean;
  imageSize: number;
  contextLength: number;
  /** The --imagenet-val folder's class names and templates, instead of the folder's own file. */
  namesFile?: string;
  /** Batch size of both tasks (default 256 for the built-in split, 128 for the folder). */
  batchSize?: number;
}

/** The zero-shot tasks: the built-in validation split when asked, and the --imagenet-val folder when given. */
export function zeroShotTasks(args: EvalDataArgs, opts: ZeroShotTaskOptions): { prefix: string; task: ZeroShotTask }[] {
  const tasks: { prefix: string; task: ZeroShotTask }[] = [];
  if (opts.builtin) {
    const names = createBuiltinDataset({ split: 'val', size: 1 });
    tasks.push({ prefix: 'zeroshot', task: { classNames: names.classNames, templates: names.templates, loader: builtinValLoader(args, opts.imageSize, opts.contextLength, opts.batchSize) } });
  }
  if (args.imagenetVal !== null) {
    tasks.push({ prefix: 'imagenet-zeroshot-val', task: imageFolderZeroShot(args, args.imagenetVal, opts.imageSize, opts.contextLength, opts.namesFile, opts.batchSize) });
  }
  return tasks;
}

export async function closeRunData(data: RunData): Promise<void> {
  await data.train.close();
  await data.val?.close();
}
