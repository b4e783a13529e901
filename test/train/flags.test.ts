import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';

const test = suite('flags');

test("defaults are OpenCLIP's, with model-dependent Adam settings", () => {
  const a = cf.parseTrainArgs([]);
  assert.is(a.batchSize, 64);
  assert.is(a.epochs, 32);
  assert.is(a.warmup, 10000);
  assert.is(a.wd, 0.2);
  assert.is(a.lr, 5e-4);
  assert.equal([a.beta1, a.beta2, a.eps], [0.9, 0.999, 1e-8]);
  assert.is(a.model, 'RN50');
  assert.is(a.precision, 'amp_bf16');
  assert.is(a.lrScheduler, 'cosine');
  assert.is(a.logs, './logs/');
  assert.is(a.logEveryNSteps, 100);
  assert.is(a.csvSeparator, '\t');
  assert.is(a.csvImgKey, 'filepath');
  assert.is(a.csvCaptionKey, 'title');
  assert.is(a.gradClipNorm, null);
  assert.is(a.given.size, 0);
  const vit = cf.parseTrainArgs(['--model', 'ViT-B-32']);
  assert.equal([vit.beta1, vit.beta2, vit.eps], [0.9, 0.98, 1e-6]);
  const explicit = cf.parseTrainArgs(['--model=ViT-B-32', '--beta2', '0.95']);
  assert.equal([explicit.beta2, explicit.eps], [0.95, 1e-6]);
});

test('a seed-style command: both value forms, booleans, nargs flags, last value wins', () => {
  const a = cf.parseTrainArgs([
    '--train-data=/data/{000000..000099}.tar', '--train-num-samples', '1000000', '--dataset-type', 'webdataset',
    '--dataset-resampled', '--batch-size', '256', '--epochs=10', '--warmup', '2000', '--lr', '1e-3', '--wd', '0.1',
    '--grad-clip-norm', '1.0', '--precision', 'bf16', '--local-loss', '--gather-with-grad', '--grad-checkpointing',
    '--save-most-recent', '--report-to', 'tensorboard', '--aug-cfg', 'scale=(0.4, 1.0)', 'color_jitter=0.4', "interp='bicubic'",
    'use_timm=True', '--force-image-size', '112', '--lr-scheduler', 'const-cooldown', '--epochs-cooldown', '2',
    '--lr-cooldown-power', '2', '--ddp-static-graph', '--accum-freq', '4', '--seed', '3', '--seed', '5', '--lr-cooldown-end=-0.0',
  ]);
  assert.is(a.trainData, '/data/{000000..000099}.tar');
  assert.is(a.trainNumSamples, 1000000);
  assert.is(a.datasetResampled, true);
  assert.is(a.epochs, 10);
  assert.is(a.lr, 1e-3);
  assert.is(a.gradClipNorm, 1);
  assert.is(a.precision, 'bf16');
  assert.ok(a.localLoss && a.gatherWithGrad && a.gradCheckpointing && a.saveMostRecent && a.ddpStaticGraph);
  assert.not.ok(a.siglip);
  assert.equal(a.augCfg, { scale: [0.4, 1], color_jitter: 0.4, interp: 'bicubic', use_timm: true });
  assert.equal(a.forceImageSize, [112]);
  assert.is(a.seed, 5);
  assert.is(a.accumFreq, 4);
  assert.ok(a.given.has('--seed') && a.given.has('--aug-cfg') && !a.given.has('--model'));
  assert.equal(cf.parseTrainArgs(['--force-image-size', '64', '96', '--siglip']).forceImageSize, [64, 96]);
  assert.is(cf.parseTrainArgs(['-h']).help, true);
  assert.equal(cf.parseLiteral('[1, (2, "a")]'), [1, [2, 'a']]);
  assert.is(cf.parseLiteral('not a literal'), 'not a literal');
});

test('unknown and malformed flags are errors naming the flag', () => {
  const bad: [string[], RegExp][] = [
    [['--batchsize', '4'], /unknown flag --batchsize \(did you mean --batch-size\?\)/],
    [['--lr-schedular', 'cosine'], /unknown flag --lr-schedular \(did you mean --lr-scheduler\?\)/],
    [['--completely-unrelated-thing'], /unknown flag --completely-unrelated-thing$/],
    [['--batch-size'], /--batch-size: expected a value/],
    [['--batch-size', '--epochs', '3'], /--batch-size: expected a value/],
    [['--batch-size', '1.5'], /--batch-size: expected an integer, got '1.5'/],
    [['--batch-size', '0'], /--batch-size: expected an integer >= 1, got 0/],
    [['--lr', 'fast'], /--lr: expected a finite number, got 'fast'/],
    [['--precision', 'fp16'], /--precision: expected one of 'fp32', 'amp_bf16', 'bf16', got 'fp16'/],
    [['--lr-scheduler', 'step'], /--lr-scheduler: expected one of 'cosine', 'const', 'const-cooldown', got 'step'/],
    [['--lr-scheduler', 'const-cooldown'], /'const-cooldown' needs --epochs-cooldown/],
    [['--local-loss=yes'], /--local-loss: takes no value, got 'yes'/],
    [['--aug-cfg', 'scale'], /--aug-cfg: expected key=value pairs, got 'scale'/],
    [['--force-image-size', '1', '2', '3'], /--force-image-size: expected one or two integers, got 3/],
    [['--beta2', '1'], /--beta2: expected a number in \[0, 1\), got 1/],
    [['--report-to', 'wandb'], /--report-to: expected 'tensorboard' .* got 'wandb'/],
    [['train.csv'], /unexpected argument 'train.csv'/],
  ];
  for (const [argv, re] of bad) assert.throws(() => cf.parseTrainArgs(argv), re, argv.join(' '));
});

test('help lists every flag with its meaning', () => {
  const help = cf.trainHelp();
  for (const f of ['--train-data', '--train-num-samples', '--dataset-type', '--dataset-resampled', '--val-data', '--batch-size', '--epochs', '--warmup', '--lr', '--wd', '--beta1', '--beta2', '--eps', '--grad-clip-norm', '--precision', '--model', '--pretrained', '--seed', '--workers', '--local-loss', '--gather-with-grad', '--grad-checkpointing', '--save-frequency', '--save-most-recent', '--resume', '--logs', '--name', '--log-every-n-steps', '--report-to', '--zeroshot-frequency', '--aug-cfg', '--accum-freq', '--lr-scheduler', '--siglip', '--force-image-size', '--force-patch-dropout', '--imagenet-val', '--lock-image', '--lock-image-unlocked-groups', '--lock-text', '--train-data-upsampling-factors', '--val-frequency', '--delete-previous-checkpoint', '--ddp-static-graph', '--csv-img-key', '--csv-caption-key', '--csv-separator', '--epochs-cooldown', '--lr-cooldown-end', '--lr-cooldown-power', '--help']) {
    assert.ok(new RegExp(`^  ${f}[ \\n]`, 'm').test(help), `${f} is in the help`);
  }
  assert.match(help, /--ddp-static-graph\s+accepted for compatibility with OpenCLIP; has no effect/);
  assert.match(help, /--batch-size N\s+batch size per device \(default: 64\)/);
});

test.run();
