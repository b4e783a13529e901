// The built-in image–text dataset: synthetic scenes (coloured shapes, counts, positions, sizes,
// stripes, hand-drawn digits, varied backgrounds) with captions, generated on demand from
// (seed, split, index) so that it needs no download and any worker can produce any sample.
// A sample's label is its main object's class (shape × colour); `classNames` and `templates`
// give zero-shot classification over those classes.
import { argError, checkInteger } from '../../tensor/check.js';
import { captionScene } from './caption.js';
import { renderScene } from './raster.js';
import { hashSeed, SampleRandom } from './random.js';
import { drawScene } from './scene.js';
import { classNames } from './vocabulary.js';
import { BUILTIN_TEMPLATES } from './zeroshot.js';

export type BuiltinSplit = 'train' | 'val';

export interface BuiltinDatasetOptions {
  split: BuiltinSplit;
  /** Number of samples (indices 0 .. size-1). Default 100000 for train, 2000 for val. */
  size?: number;
  /** Side of the square images in pixels. Default 32. */
  imageSize?: number;
  /** Default 0. */
  seed?: number;
}

export interface BuiltinSample {
  /** HWC RGB bytes, height × width × 3. */
  image: Uint8Array;
  width: number;
  height: number;
  caption: string;
  /** Index into `classNames` of the main object's shape × colour. */
  label: number;
}

export interface BuiltinDataset {
  readonly split: BuiltinSplit;
  readonly length: number;
  readonly imageSize: number;
  readonly seed: number;
  /** Zero-shot class names, in label order ("red circle", …). */
  readonly classNames: readonly string[];
  /** Zero-shot prompt templates, '{}' marking the class name. */
  readonly templates: readonly string[];
  get(index: number): BuiltinSample;
}

export const BUILTIN_DEFAULT_SIZES: Readonly<Record<BuiltinSplit, number>> = { train: 100_000, val: 2_000 };
export const BUILTIN_DEFAULT_IMAGE_SIZE = 32;

// Salts that make the two splits independent streams of the same seed.
const SPLIT_SALT: Readonly<Record<BuiltinSplit, number>> = { train: 0x7a11, val: 0x5eed };

export function createBuiltinDataset(options: BuiltinDatasetOptions): BuiltinDataset {
  const op = 'createBuiltinDataset';
  if (typeof options !== 'object' || options === null) throw argError(op, 'options', 'an object', options);
  const split = options.split;
  if (split !== 'train' && split !== 'val') throw argError(op, 'options.split', "'train' or 'val'", split);
  const length = checkInteger(op, 'options.size', options.size ?? BUILTIN_DEFAULT_SIZES[split], 1, 2 ** 32);
  const imageSize = checkInteger(op, 'options.imageSize', options.imageSize ?? BUILTIN_DEFAULT_IMAGE_SIZE, 8, 4096);
  const seed = checkInteger(op, 'options.seed', options.seed ?? 0, 0, 2 ** 32 - 1);
  const names = Object.freeze(classNames());
  const salt = SPLIT_SALT[split];
  return {
    split,
    length,
    imageSize,
    seed,
    classNames: names,
    templates: BUILTIN_TEMPLATES,
    get(index: number): BuiltinSample {
      if (!Number.isSafeInteger(index) || index < 0 || index >= length) {
        throw argError('BuiltinDataset.get', 'index', `an integer in [0, ${length - 1}]`, index);
      }
      // Separate generators for the picture and its words: a caption change leaves images alone.
      const scene = drawScene(new SampleRandom(hashSeed(seed, salt, index, 1)));
      const caption = captionScene(scene, new SampleRandom(hashSeed(seed, salt, index, 2)));
      return { image: renderScene(scene, imageSize), width: imageSize, height: imageSize, caption, label: scene.label };
    },
  };
}
