// `clipforge train` flags: OpenCLIP's names, types, defaults and meanings (open_clip_train
// params.py), parsed as argparse does: `--flag value` or `--flag=value`, booleans as
// store_true, a repeated flag's last value wins. Unknown flags, missing or malformed values
// and positional arguments are errors that name the flag and suggest the nearest known one.

import type { TextReduction } from '../data/text_reduction.js';

export type Precision = 'fp32' | 'amp_bf16' | 'bf16';
export type DatasetType = 'webdataset' | 'csv' | 'synthetic' | 'auto';
export type LrSchedulerName = 'cosine' | 'const' | 'const-cooldown';
export type AugValue = number | string | boolean | null | AugValue[];

export interface TrainArgs {
  trainData: string | null;
  trainDataUpsamplingFactors: string | null;
  trainNumSamples: number | null;
  datasetType: DatasetType;
  datasetResampled: boolean;
  valData: string | null;
  csvSeparator: string;
  csvImgKey: string;
  csvCaptionKey: string;
  imagenetVal: string | null;
  logs: string;
  name: string | null;
  workers: number;
  batchSize: number;
  epochs: number;
  epochsCooldown: number | null;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  wd: number;
  warmup: number;
  lrScheduler: LrSchedulerName;
  lrCooldownEnd: number;
  lrCooldownPower: number;
  saveFrequency: number;
  saveMostRecent: boolean;
  zeroshotFrequency: number;
  valFrequency: number;
  resume: string | null;
  precision: Precision;
  model: string;
  pretrained: string;
  lockImage: boolean;
  lockImageUnlockedGroups: number;
  lockText: boolean;
  augCfg: Record<string, AugValue>;
  gradCheckpointing: boolean;
  localLoss: boolean;
  gatherWithGrad: boolean;
  forceImageSize: number[] | null;
  forcePatchDropout: number | null;
  /** clipforge's: the text context length to train at (CLIPA trains on short texts). */
  forceContextLength: number | null;
  /** clipforge's: how a caption longer than the context is cut (CLIPA's strategies). */
  textReduction: TextReduction;
  accumFreq: number;
  reportTo: string;
  ddpStaticGraph: boolean;
  seed: number;
  gradClipNorm: number | null;
  logEveryNSteps: number;
  deletePreviousCheckpoint: boolean;
  siglip: boolean;
  help: boolean;
  /** The flags given on the command line (by their option names, e.g. '--lr'). */
  given: Set<string>;
}

export type FlagKind = 'string' | 'int' | 'float' | 'bool' | 'ints' | 'kwargs';
type Key = Exclude<keyof TrainArgs, 'given'>;

/** One command-line flag: the property it sets, how its value is read, its help line. */
export interface Flag<K extends string = Key> {
  key: K;
  kind: FlagKind;
  help: string;
  choices?: readonly string[];
  /** Smallest accepted value for numbers. */
  min?: number;
}

// Defaults are OpenCLIP's; lr, beta1, beta2 and eps depend on the model (modelDefaults).
export const TRAIN_DEFAULTS: Omit<TrainArgs, 'given' | 'lr' | 'beta1' | 'beta2' | 'eps'> = {
  trainData: null, trainDataUpsamplingFactors: null, trainNumSamples: null, datasetType: 'auto', datasetResampled: false,
  valData: null, csvSeparator: '\t', csvImgKey: 'filepath', csvCaptionKey: 'title', imagenetVal: null, logs: './logs/',
  name: null, workers: 4, batchSize: 64, epochs: 32, epochsCooldown: null, wd: 0.2, warmup: 10000, lrScheduler: 'cosine',
  lrCooldownEnd: 0, lrCooldownPower: 1, saveFrequency: 1, saveMostRecent: false, zeroshotFrequency: 2, valFrequency: 1,
  resume: null, precision: 'amp_bf16', model: 'RN50', pretrained: '', lockImage: false, lockImageUnlockedGroups: 0,
  lockText: false, augCfg: {}, gradCheckpointing: false, localLoss: false, gatherWithGrad: false, forceImageSize: null,
  forcePatchDropout: null, forceContextLength: null, textReduction: 'truncate', accumFreq: 1, reportTo: '', ddpStaticGraph: false, seed: 0, gradClipNorm: null,
  logEveryNSteps: 100, deletePreviousCheckpoint: false, siglip: false, help: false,
};

/** `clipforge train`'s flags; other commands that share a flag take its entry from here. */
export const TRAIN_FLAGS: Record<string, Flag> = {
  '--train-data': { key: 'trainData', kind: 'string', help: 'training data: webdataset shards ({000000..000099}.tar, several sources joined by ::) or a CSV file' },
  '--train-data-upsampling-factors': { key: 'trainDataUpsamplingFactors', kind: 'string', help: 'with several --train-data sources and --dataset-resampled: one sampling weight per source, joined by :: (e.g. 1::2::0.5); default: uniform' },
  '--train-num-samples': { key: 'trainNumSamples', kind: 'int', min: 1, help: 'number of training samples per epoch (needed for webdataset without a size file)' },
  '--dataset-type': { key: 'datasetType', kind: 'string', choices: ['webdataset', 'csv', 'synthetic', 'auto'], help: 'kind of the training/validation data; auto guesses from the file name' },
  '--dataset-resampled': { key: 'datasetResampled', kind: 'bool', help: 'draw webdataset shards with replacement' },
  '--val-data': { key: 'valData', kind: 'string', help: 'validation data (retrieval metrics and validation loss)' },
  '--csv-separator': { key: 'csvSeparator', kind: 'string', help: 'field separator of CSV data' },
  '--csv-img-key': { key: 'csvImgKey', kind: 'string', help: 'CSV column holding the image paths' },
  '--csv-caption-key': { key: 'csvCaptionKey', kind: 'string', help: 'CSV column holding the captions' },
  '--imagenet-val': { key: 'imagenetVal', kind: 'string', help: 'image-folder validation set for zero-shot classification' },
  '--logs': { key: 'logs', kind: 'string', help: 'folder for logs and checkpoints (<logs>/<name>/)' },
  '--name': { key: 'name', kind: 'string', help: 'name of the run (its folder under --logs); default: date, time and settings' },
  '--workers': { key: 'workers', kind: 'int', min: 0, help: 'data-loading workers' },
  '--batch-size': { key: 'batchSize', kind: 'int', min: 1, help: 'batch size per device' },
  '--epochs': { key: 'epochs', kind: 'int', min: 0, help: 'number of epochs to train for' },
  '--epochs-cooldown': { key: 'epochsCooldown', kind: 'int', min: 0, help: 'with --lr-scheduler const-cooldown: the cooldown covers this many last epochs' },
  '--lr': { key: 'lr', kind: 'float', min: 0, help: 'learning rate (default 5e-4)' },
  '--beta1': { key: 'beta1', kind: 'float', min: 0, help: 'Adam beta 1 (default 0.9)' },
  '--beta2': { key: 'beta2', kind: 'float', min: 0, help: 'Adam beta 2 (default 0.98 for ViT models, 0.999 otherwise)' },
  '--eps': { key: 'eps', kind: 'float', min: 0, help: 'Adam epsilon (default 1e-6 for ViT models, 1e-8 otherwise)' },
  '--wd': { key: 'wd', kind: 'float', min: 0, help: 'weight decay (not applied to gains, biases, norms and the logit scale)' },
  '--warmup': { key: 'warmup', kind: 'int', min: 0, help: 'number of linear warmup steps' },
  '--lr-scheduler': { key: 'lrScheduler', kind: 'string', choices: ['cosine', 'const', 'const-cooldown'], help: 'learning-rate schedule after warmup' },
  '--lr-cooldown-end': { key: 'lrCooldownEnd', kind: 'float', min: 0, help: 'learning rate at the end of the cooldown' },
  '--lr-cooldown-power': { key: 'lrCooldownPower', kind: 'float', help: 'power of the polynomial cooldown (1: linear)' },
  '--save-frequency': { key: 'saveFrequency', kind: 'int', min: 0, help: 'save a checkpoint every this many epochs (0: never)' },
  '--save-most-recent': { key: 'saveMostRecent', kind: 'bool', help: 'also keep the latest checkpoint as epoch_latest' },
  '--zeroshot-frequency': { key: 'zeroshotFrequency', kind: 'int', min: 0, help: 'run zero-shot evaluation every this many epochs (0: never)' },
  '--val-frequency': { key: 'valFrequency', kind: 'int', min: 0, help: 'run validation every this many epochs (0: never)' },
  '--resume': { key: 'resume', kind: 'string', help: "checkpoint to resume from, or 'latest' for the newest one of this run" },
  '--precision': { key: 'precision', kind: 'string', choices: ['fp32', 'amp_bf16', 'bf16'], help: 'amp_bf16 (default on a GPU): bf16 matrix products, f32 elsewhere; bf16: the same here (master weights stay f32); fp32 (default on the CPU)' },
  '--model': { key: 'model', kind: 'string', help: 'model configuration name (e.g. ViT-B-32)' },
  '--pretrained': { key: 'pretrained', kind: 'string', help: 'pretrained weights: a tag or a path' },
  '--lock-image': { key: 'lockImage', kind: 'bool', help: 'freeze the image tower (LiT)' },
  '--lock-image-unlocked-groups': { key: 'lockImageUnlockedGroups', kind: 'int', min: 0, help: 'with --lock-image: leave the last N layer groups of the image tower trainable' },
  '--lock-text': { key: 'lockText', kind: 'bool', help: 'freeze the text tower' },
  '--aug-cfg': { key: 'augCfg', kind: 'kwargs', help: 'image augmentation settings as key=value pairs (e.g. scale=(0.9,1.0))' },
  '--grad-checkpointing': { key: 'gradCheckpointing', kind: 'bool', help: 'recompute activations in the backward pass to save memory' },
  '--local-loss': { key: 'localLoss', kind: 'bool', help: 'distributed: compute the loss from local features against gathered ones' },
  '--gather-with-grad': { key: 'gatherWithGrad', kind: 'bool', help: 'distributed: propagate gradients through the feature gather' },
  '--force-image-size': { key: 'forceImageSize', kind: 'ints', min: 1, help: 'override the model image size: one value, or height width' },
  '--force-patch-dropout': { key: 'forcePatchDropout', kind: 'float', min: 0, help: 'override the patch dropout rate (e.g. 0 for a final fine-tune)' },
  '--force-context-length': { key: 'forceContextLength', kind: 'int', min: 2, help: 'clipforge: override the text context length (CLIPA pre-trains on 8-32 tokens); text positions are resized when weights are loaded' },
  '--text-reduction': { key: 'textReduction', kind: 'string', choices: ['truncate', 'random', 'shuffle', 'block', 'simple', 'syntax'], help: "clipforge: how a caption longer than the context is cut (CLIPA): truncate (default), random or shuffle words, a block (simple is its OpenCLIP name), or syntax (nouns, then adjectives, then verbs)" },
  '--accum-freq': { key: 'accumFreq', kind: 'int', min: 1, help: 'update the weights every this many batches (gradient accumulation)' },
  '--report-to': { key: 'reportTo', kind: 'string', help: "extra log backends, comma-separated: 'tensorboard'" },
  '--ddp-static-graph': { key: 'ddpStaticGraph', kind: 'bool', help: 'accepted for compatibility with OpenCLIP; has no effect' },
  '--seed': { key: 'seed', kind: 'int', min: 0, help: 'random seed' },
  '--grad-clip-norm': { key: 'gradClipNorm', kind: 'float', min: 0, help: 'clip the global gradient L2 norm to this value' },
  '--log-every-n-steps': { key: 'logEveryNSteps', kind: 'int', min: 1, help: 'write a log line every this many steps' },
  '--delete-previous-checkpoint': { key: 'deletePreviousCheckpoint', kind: 'bool', help: 'delete the previous checkpoint after saving a new one' },
  '--siglip': { key: 'siglip', kind: 'bool', help: 'train with the SigLIP (sigmoid) loss' },
  '--help': { key: 'help', kind: 'bool', help: 'show this text' },
};

const ALIASES: Record<string, string> = { '-h': '--help' };

/** OpenCLIP's get_default_params: ViT models use Adam's (0.9, 0.98, 1e-6), others (0.9, 0.999, 1e-8). */
export function modelDefaults(model: string): { lr: number; beta1: number; beta2: number; eps: number } {
  return model.toLowerCase().includes('vit') ? { lr: 5e-4, beta1: 0.9, beta2: 0.98, eps: 1e-6 } : { lr: 5e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length]!;
}

function nearestFlag(name: string, names: readonly string[]): string {
  let best = '';
  let bestD = Infinity;
  for (const f of names) {
    const d = editDistance(name, f);
    if (d < bestD) [best, bestD] = [f, d];
  }
  return bestD <= Math.max(3, name.length / 3) ? ` (did you mean ${best}?)` : '';
}

/** A mistake on the command line (as opposed to a failure while running): commands answer it with exit code 2. */
export class FlagError extends Error {
  override name = 'FlagError';
}

const TRAIN = 'clipforge train';

function flagError(command: string, flag: string, what: string): FlagError {
  return new FlagError(`${command}: ${flag}: ${what}`);
}

function parseInt10(command: string, flag: string, s: string, min: number | undefined): number {
  if (!/^[+-]?\d+$/.test(s)) throw flagError(command, flag, `expected an integer, got '${s}'`);
  const v = Number(s);
  if (!Number.isSafeInteger(v)) throw flagError(command, flag, `expected an integer of at most 2^53, got '${s}'`);
  if (min !== undefined && v < min) throw flagError(command, flag, `expected an integer >= ${min}, got ${s}`);
  return v;
}

function parseFloat10(command: string, flag: string, s: string, min: number | undefined): number {
  const v = s.trim() === '' ? NaN : Number(s);
  if (!Number.isFinite(v)) throw flagError(command, flag, `expected a finite number, got '${s}'`);
  if (min !== undefined && v < min) throw flagError(command, flag, `expected a number >= ${min}, got ${s}`);
  return v;
}

/**
 * A Python literal as ast.literal_eval reads the simple ones: numbers, True / False / None,
 * quoted strings, and lists or tuples of them. Anything else is kept as the raw string, as
 * OpenCLIP's ParseKwargs falls back to.
 */
export function parseLiteral(text: string): AugValue {
  let i = 0;
  const s = text.trim();
  const ws = (): void => {
    while (i < s.length && /\s/.test(s[i]!)) i++;
  };
  const value = (): AugValue => {
    ws();
    const c = s[i];
    if (c === '(' || c === '[') {
      const close = c === '(' ? ')' : ']';
      i++;
      const items: AugValue[] = [];
      ws();
      while (s[i] !== close) {
        items.push(value());
        ws();
        if (s[i] === ',') {
          i++;
          ws();
        } else if (s[i] !== close) throw new Error('list');
      }
      i++;
      return items;
    }
    if (c === "'" || c === '"') {
      const end = s.indexOf(c, i + 1);
      if (end < 0) throw new Error('string');
      const str = s.slice(i + 1, end);
      i = end + 1;
      return str;
    }
    const m = /^(True|False|None|[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)/.exec(s.slice(i));
    if (!m) throw new Error('token');
    i += m[0].length;
    return m[0] === 'True' ? true : m[0] === 'False' ? false : m[0] === 'None' ? null : Number(m[0]);
  };
  try {
    const v = value();
    ws();
    if (i !== s.length) throw new Error('trailing');
    return v;
  } catch {
    return text;
  }
}

/**
 * Reads `argv` against `table` as the file's header says; `command` opens every error
 * message. Returns the values of the flags given, by their keys, and the flags' names.
 */
export function parseFlags<K extends string>(command: string, table: Readonly<Record<string, Flag<K>>>, argv: readonly string[]): { values: Partial<Record<K, unknown>>; given: Set<string> } {
  const values: Partial<Record<K, unknown>> = {};
  const given = new Set<string>();
  const isFlag = (tok: string | undefined): boolean => tok !== undefined && tok.startsWith('-') && !/^-\d|^-\.\d/.test(tok);
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!;
    if (!isFlag(tok)) throw new FlagError(`${command}: unexpected argument '${tok}' (every option is a --flag)`);
    const eq = tok.indexOf('=');
    const rawName = eq >= 0 ? tok.slice(0, eq) : tok;
    const name = ALIASES[rawName] ?? rawName;
    const flag = table[name];
    if (!flag) throw new FlagError(`${command}: unknown flag ${rawName}${nearestFlag(rawName, Object.keys(table))}`);
    given.add(name);
    const inline = eq >= 0 ? tok.slice(eq + 1) : undefined;
    if (flag.kind === 'bool') {
      if (inline !== undefined) throw flagError(command, name, `takes no value, got '${inline}'`);
      values[flag.key] = true;
      continue;
    }
    if (flag.kind === 'ints' || flag.kind === 'kwargs') {
      const list: string[] = inline !== undefined ? [inline] : [];
      while (inline === undefined && i + 1 < argv.length && !isFlag(argv[i + 1])) list.push(argv[++i]!);
      if (flag.kind === 'ints') {
        if (list.length < 1 || list.length > 2) throw flagError(command, name, `expected one or two integers, got ${list.length}`);
        values[flag.key] = list.map((v) => parseInt10(command, name, v, flag.min));
      } else {
        const kw: Record<string, AugValue> = {};
        for (const v of list) {
          if (v === '') continue;
          const parts = v.split('=');
          if (parts.length !== 2 || parts[0] === '') throw flagError(command, name, `expected key=value pairs, got '${v}'`);
          kw[parts[0]!] = parseLiteral(parts[1]!);
        }
        values[flag.key] = kw;
      }
      continue;
    }
    let value = inline;
    if (value === undefined) {
      if (i + 1 >= argv.length || isFlag(argv[i + 1])) throw flagError(command, name, 'expected a value');
      value = argv[++i]!;
    }
    if (flag.kind === 'int') values[flag.key] = parseInt10(command, name, value, flag.min);
    else if (flag.kind === 'float') values[flag.key] = parseFloat10(command, name, value, flag.min);
    else {
      if (flag.choices && !flag.choices.includes(value)) {
        throw flagError(command, name, `expected one of ${flag.choices.map((c) => `'${c}'`).join(', ')}, got '${value}'`);
      }
      values[flag.key] = value;
    }
  }
  return { values, given };
}

/** Parses `clipforge train` arguments (without the subcommand). */
export function parseTrainArgs(argv: readonly string[]): TrainArgs {
  if (!Array.isArray(argv) || argv.some((a) => typeof a !== 'string')) throw new Error('parseTrainArgs: expected an array of strings for argv');
  const { values, given } = parseFlags(TRAIN, TRAIN_FLAGS, argv);
  const out: Record<string, unknown> = { ...TRAIN_DEFAULTS, augCfg: {}, lr: null, beta1: null, beta2: null, eps: null, ...values };
  const defaults = modelDefaults(out.model as string);
  for (const k of ['lr', 'beta1', 'beta2', 'eps'] as const) if (out[k] === null) out[k] = defaults[k];
  const args = { ...(out as Omit<TrainArgs, 'given'>), given };
  checkTrainArgs(args);
  return args;
}

function checkTrainArgs(a: TrainArgs): void {
  if (a.beta1 >= 1) throw flagError(TRAIN, '--beta1', `expected a number in [0, 1), got ${a.beta1}`);
  if (a.beta2 >= 1) throw flagError(TRAIN, '--beta2', `expected a number in [0, 1), got ${a.beta2}`);
  if (a.forcePatchDropout !== null && a.forcePatchDropout >= 1) throw flagError(TRAIN, '--force-patch-dropout', `expected a rate in [0, 1), got ${a.forcePatchDropout}`);
  if (a.gradClipNorm !== null && a.gradClipNorm <= 0) throw flagError(TRAIN, '--grad-clip-norm', `expected a number > 0, got ${a.gradClipNorm}`);
  if (a.lrScheduler === 'const-cooldown' && a.epochsCooldown === null) throw flagError(TRAIN, '--lr-scheduler', "'const-cooldown' needs --epochs-cooldown");
  if (a.epochsCooldown !== null && a.epochsCooldown > a.epochs) throw flagError(TRAIN, '--epochs-cooldown', `expected at most --epochs (${a.epochs}), got ${a.epochsCooldown}`);
  for (const backend of a.reportTo.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (backend !== 'tensorboard') throw flagError(TRAIN, '--report-to', `expected 'tensorboard' (the one backend clipforge writes), got '${backend}'`);
  }
}

/**
 * A command's help: `intro` lines, then one line per flag of `table` with its value, meaning
 * and `defaultOf` it (nothing for booleans and for empty or absent defaults).
 */
export function flagsHelp<K extends string>(intro: readonly string[], table: Readonly<Record<string, Flag<K>>>, defaultOf: (flag: Flag<K>) => unknown): string {
  const lines = [...intro];
  const shown = (f: Flag<K>): string => {
    const d = defaultOf(f);
    if (f.kind === 'bool' || d === undefined || d === null || d === '' || (typeof d === 'object' && Object.keys(d).length === 0)) return '';
    return ` (default: ${JSON.stringify(d)})`;
  };
  const metavar: Record<FlagKind, string> = { string: 'STR', int: 'N', float: 'X', bool: '', ints: 'N [N]', kwargs: 'KEY=VALUE ...' };
  for (const [name, f] of Object.entries(table)) {
    const head = `  ${name}${f.choices ? ` {${f.choices.join(',')}}` : metavar[f.kind] ? ` ${metavar[f.kind]}` : ''}`;
    lines.push(head.length < 40 ? `${head.padEnd(40)}${f.help}${shown(f)}` : `${head}\n${' '.repeat(40)}${f.help}${shown(f)}`);
  }
  return lines.join('\n');
}

/** The `clipforge train --help` text: every flag, its value, meaning and default. */
export function trainHelp(): string {
  const intro = ['usage: clipforge train [--flag value | --flag=value ...]', '', "Trains a CLIP model. Flags follow OpenCLIP's names and meanings.", ''];
  // The optimizer's defaults depend on the model, so their help lines say them instead.
  const modelDependent = new Set<Key>(['lr', 'beta1', 'beta2', 'eps']);
  return flagsHelp(intro, TRAIN_FLAGS, (f) => (modelDependent.has(f.key) ? undefined : TRAIN_DEFAULTS[f.key as keyof typeof TRAIN_DEFAULTS]));
}
