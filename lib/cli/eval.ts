// `clipforge eval`: the evaluations `clipforge train` runs at an epoch's end (zero-shot
// classification, image<->text retrieval), run on a saved model: one of our training
// checkpoints, an OpenCLIP model folder, or a model config with a weights file. Metrics carry
// the names the training logs give them, so a run's log and a later eval compare line by line.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { CLIP } from '../nn/clip.js';
import { createModel, getModelConfig } from '../nn/factory.js';
import { withoutInit } from '../nn/init.js';
import { loadPretrained, loadPretrainedFile } from '../nn/pretrained.js';
import { writeFileAtomicSync } from '../train/atomic.js';
import { latestCheckpoint, loadTrainingCheckpoint, readCheckpointInfo } from '../train/checkpoint.js';
import { valLoader, zeroShotTasks, type EvalDataArgs } from '../train/data.js';
import { closeEvalTasks, runEvaluations, type EvalTasks } from '../train/evaluate.js';
import { flagsHelp, FlagError, parseFlags, TRAIN_DEFAULTS, TRAIN_FLAGS, type Flag, type Precision } from '../train/flags.js';
import { contextLengthOf, imageSizeOf, noticeEvalPrecision, pickDevice } from './common.js';

const EVAL = 'clipforge eval';

interface EvalArgs extends EvalDataArgs {
  /** A clipforge training checkpoint, or 'latest' for the newest one of run --name under --logs. */
  checkpoint: string | null;
  /** An OpenCLIP model folder, or a weights file (with --model). */
  pretrained: string | null;
  model: string | null;
  logs: string;
  name: string | null;
  /** Class names and templates for --imagenet-val, instead of the folder's own file. */
  classNames: string | null;
  /** Zero-shot on the built-in validation split even when other tasks are given. */
  builtinVal: boolean;
  precision: Precision;
  output: string | null;
  json: boolean;
  help: boolean;
  given: Set<string>;
}

type EvalKey = Exclude<keyof EvalArgs, 'given'>;

/** Train's entries for the flags that mean the same here. */
function trainFlags(...names: string[]): Record<string, Flag<EvalKey>> {
  return Object.fromEntries(names.map((n) => [n, TRAIN_FLAGS[n]! as Flag<EvalKey>]));
}

/** Train's defaults of the data flags (a few of which, such as --train-num-samples, eval has no flag for). */
function trainDataDefaults(): EvalDataArgs & { logs: string } {
  const d = TRAIN_DEFAULTS;
  return {
    valData: d.valData, datasetType: d.datasetType, csvSeparator: d.csvSeparator, csvImgKey: d.csvImgKey, csvCaptionKey: d.csvCaptionKey, imagenetVal: d.imagenetVal,
    batchSize: d.batchSize, workers: d.workers, trainNumSamples: d.trainNumSamples, trainDataUpsamplingFactors: d.trainDataUpsamplingFactors, datasetResampled: d.datasetResampled, logs: d.logs,
  };
}

const EVAL_FLAGS: Record<string, Flag<EvalKey>> = {
  '--checkpoint': { key: 'checkpoint', kind: 'string', help: "a clipforge training checkpoint (.safetensors), or 'latest' for the newest one of run --name under --logs" },
  '--pretrained': { key: 'pretrained', kind: 'string', help: 'an OpenCLIP model folder (open_clip_config.json + weights), or a weights file with --model' },
  '--model': { key: 'model', kind: 'string', help: 'model configuration name for a --pretrained weights file (e.g. ViT-B-32)' },
  '--logs': { key: 'logs', kind: 'string', help: 'with --checkpoint latest: the folder holding the runs' },
  '--name': { key: 'name', kind: 'string', help: 'with --checkpoint latest: the run whose newest checkpoint to evaluate' },
  '--builtin-val': { key: 'builtinVal', kind: 'bool', help: 'zero-shot on the built-in validation split (done anyway when neither --imagenet-val nor --val-data is given)' },
  ...trainFlags('--imagenet-val'),
  '--class-names': { key: 'classNames', kind: 'string', help: "class names and templates for --imagenet-val (JSON or one name a line, e.g. OpenCLIP's imagenet classnames/templates); default: DIR/classnames.json or .txt" },
  ...trainFlags('--val-data'),
  '--dataset-type': { key: 'datasetType', kind: 'string', choices: ['webdataset', 'csv', 'auto'], help: 'kind of --val-data; auto: .csv/.tsv files are CSV, anything else webdataset shards' },
  ...trainFlags('--csv-separator', '--csv-img-key', '--csv-caption-key'),
  '--batch-size': { key: 'batchSize', kind: 'int', min: 1, help: "batch size of every task (default: clipforge train's: 64 for --val-data, 256 built-in, 128 --imagenet-val)" },
  ...trainFlags('--workers', '--precision'),
  '--output': { key: 'output', kind: 'string', help: 'also write the results as JSON to this file' },
  '--json': { key: 'json', kind: 'bool', help: 'print the results as one JSON line instead of the summary' },
  '--help': { key: 'help', kind: 'bool', help: 'show this text' },
};

const EVAL_DEFAULTS: Omit<EvalArgs, 'given'> = {
  ...trainDataDefaults(),
  checkpoint: null,
  pretrained: null,
  model: null,
  name: null,
  classNames: null,
  builtinVal: false,
  // Evaluation computes in f32; fp32 spares the notice a bf16 default would print.
  precision: 'fp32',
  output: null,
  json: false,
  help: false,
};

/** Parses `clipforge eval` arguments; mistakes throw FlagError. */
function parseEvalArgs(argv: readonly string[]): EvalArgs {
  const { values, given } = parseFlags(EVAL, EVAL_FLAGS, argv);
  // parseFlags gave each key a value of its flag's kind, which EvalArgs declares.
  const args = { ...EVAL_DEFAULTS, ...values, given } as EvalArgs;
  if (args.help) return args;
  const usage = (what: string): FlagError => new FlagError(`${EVAL}: ${what}`);
  if (args.checkpoint === null && args.pretrained === null) {
    throw usage('no model given: pass --checkpoint PATH (a clipforge training checkpoint, or latest with --name) or --pretrained DIR (an OpenCLIP model folder)');
  }
  if (args.checkpoint !== null && args.pretrained !== null) throw usage('--checkpoint and --pretrained both name a model; give one');
  if (args.checkpoint !== null && args.model !== null) throw usage('--model is for a --pretrained weights file; a checkpoint carries its own model config');
  if (args.checkpoint === 'latest' && args.name === null) throw usage('--checkpoint latest needs --name (the run under --logs)');
  if (args.checkpoint !== 'latest' && (given.has('--name') || given.has('--logs'))) throw usage('--logs and --name only go with --checkpoint latest');
  if (args.classNames !== null && args.imagenetVal === null) throw usage('--class-names needs --imagenet-val');
  if (args.valData === null && given.has('--dataset-type')) throw usage('--dataset-type needs --val-data');
  return args;
}

/** The `clipforge eval --help` text. */
function evalHelp(): string {
  const intro = [
    'usage: clipforge eval (--checkpoint PATH | --checkpoint latest --name NAME | --pretrained DIR | --pretrained FILE --model NAME) [--flag value ...]',
    '',
    'Evaluates a model as clipforge train does after an epoch: zero-shot top-1/top-5 on the built-in',
    'validation split (by default) and on --imagenet-val, retrieval R@1/5/10 and ranks on --val-data.',
    '',
  ];
  // The batch size's help says its per-task defaults.
  return flagsHelp(intro, EVAL_FLAGS, (f) => (f.key === 'batchSize' ? undefined : EVAL_DEFAULTS[f.key]));
}

interface LoadedModel {
  model: CLIP;
  /** What was loaded, for the results. */
  source: Record<string, string | number>;
}

function checkpointPath(args: EvalArgs): string {
  if (args.checkpoint !== 'latest') return args.checkpoint!;
  const dir = join(args.logs, args.name!, 'checkpoints');
  const found = latestCheckpoint(dir);
  if (!found) throw new Error(`${EVAL}: --checkpoint latest found no checkpoint in ${dir}`);
  return found;
}

function loadModel(args: EvalArgs, device: string): LoadedModel {
  if (args.checkpoint !== null) {
    const path = checkpointPath(args);
    if (!existsSync(path)) throw new Error(`${EVAL}: --checkpoint ${path} does not exist`);
    const info = readCheckpointInfo(path);
    // The checkpoint holds every weight (a strict load), so initial values would be overwritten.
    const model = withoutInit(() => createModel(info.modelConfig, { device }));
    try {
      loadTrainingCheckpoint(path, model, null);
    } catch (e) {
      model.dispose();
      throw e;
    }
    return { model, source: { checkpoint: path, epoch: info.epoch, step: info.step } };
  }
  const path = args.pretrained!;
  if (!existsSync(path)) throw new Error(`${EVAL}: --pretrained ${path} does not exist`);
  if (statSync(path).isDirectory()) {
    if (args.model !== null) throw new FlagError(`${EVAL}: --model is for a --pretrained weights file; the folder ${path} carries its own model config`);
    return { model: loadPretrained(path, { device }), source: { pretrained: path } };
  }
  if (args.model === null) throw new FlagError(`${EVAL}: --pretrained ${path} is a weights file; name its model config with --model`);
  return { model: loadPretrainedFile(getModelConfig(args.model), path, { device }), source: { pretrained: path, model: args.model } };
}

/**
 * Fills `tasks` with the zero-shot tasks and validation data the flags ask for, on the model's
 * input sizes (filled step by step, so that the caller closes what was opened when one fails).
 */
function addEvalTasks(tasks: EvalTasks, args: EvalArgs, model: CLIP): void {
  const imageSize = imageSizeOf(model.config);
  const builtin = args.builtinVal || (args.imagenetVal === null && args.valData === null);
  // Without --batch-size the zero-shot tasks keep clipforge train's batch sizes.
  const batchSize = args.given.has('--batch-size') ? args.batchSize : undefined;
  tasks.zeroShot = zeroShotTasks(args, { builtin, imageSize, contextLength: tasks.contextLength, namesFile: args.classNames ?? undefined, batchSize });
  tasks.val = valLoader(args, imageSize, tasks.contextLength, EVAL);
}

const percent = (x: number): string => `${(100 * x).toFixed(2)}%`;

/** The results as lines for a reader: one per zero-shot task, two for retrieval. */
function evalSummary(metrics: Record<string, number>): string {
  const lines: string[] = [];
  for (const key of Object.keys(metrics)) {
    const prefix = /^(.*)-top1$/.exec(key)?.[1];
    if (prefix === undefined) continue;
    lines.push(`${prefix}: top-1 ${percent(metrics[key]!)}, top-5 ${percent(metrics[`${prefix}-top5`]!)} (${metrics[`${prefix}-samples`]} images)`);
  }
  if (metrics.val_loss !== undefined) {
    lines.push(`retrieval on --val-data (${metrics.samples} pairs), val_loss ${metrics.val_loss.toFixed(4)}:`);
    for (const [dir, label] of [['image_to_text', 'image->text'], ['text_to_image', 'text->image']] as const) {
      const m = (k: string): number => metrics[`${dir}_${k}`]!;
      lines.push(`  ${label}: R@1 ${percent(m('R@1'))}, R@5 ${percent(m('R@5'))}, R@10 ${percent(m('R@10'))}, mean rank ${m('mean_rank').toFixed(2)}, median rank ${m('median_rank')}`);
    }
  }
  return lines.join('\n');
}

/** Runs `clipforge eval argv…`; resolves to the exit code (0 done, 1 failed, 2 usage error). */
export async function evalCommand(argv: string[]): Promise<number> {
  let args: EvalArgs;
  try {
    args = parseEvalArgs(argv);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n(${EVAL} --help lists the flags)\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(evalHelp() + '\n');
    return 0;
  }
  noticeEvalPrecision(EVAL, args.precision);
  let loaded: LoadedModel | null = null;
  let tasks: EvalTasks | null = null;
  try {
    const device = pickDevice();
    loaded = loadModel(args, device);
    tasks = { zeroShot: [], val: null, contextLength: contextLengthOf(loaded.model.config) };
    addEvalTasks(tasks, args, loaded.model);
    const metrics = await runEvaluations(loaded.model, tasks, { zeroShot: true, retrieval: true });
    const result = { ...loaded.source, device, metrics };
    const json = JSON.stringify(result);
    if (args.output !== null) writeFileAtomicSync(args.output, json + '\n');
    if (args.json) {
      process.stdout.write(json + '\n');
    } else {
      const what = Object.entries(loaded.source).map(([k, v]) => `${k} ${v}`).join(', ');
      process.stdout.write(`${EVAL}: ${what} on ${device} (${(loaded.model.numParameters() / 1e6).toFixed(2)} M parameters)\n${evalSummary(metrics)}\n`);
      if (args.output !== null) process.stdout.write(`results written to ${args.output}\n`);
    }
    return 0;
  } catch (e) {
    const message = (e as Error).message;
    process.stderr.write(`${message.startsWith(`${EVAL}:`) ? message : `${EVAL}: ${message}`}\n`);
    return e instanceof FlagError ? 2 : 1;
  } finally {
    if (tasks) await closeEvalTasks(tasks);
    loaded?.model.dispose();
  }
}
