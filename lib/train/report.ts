// What a training run tells the user: a progress line on a terminal (step, samples/s, loss,
// lr, logit scale, ETA), one JSON line per --log-every-n-steps and per evaluation in
// <logs>/<name>/out.jsonl always, and evaluation results and the summary as plain lines.
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TrainArgs } from './flags.js';
import type { StepRecord, TrainOutcome, TrainReporter } from './trainer.js';

export interface RunReporter extends TrainReporter {
  finish(outcome: TrainOutcome): void;
  close(): void;
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s % 60).padStart(2, '0')}s`;
}

function formatMetrics(metrics: Record<string, number>): string {
  return Object.entries(metrics)
    .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`)
    .join(', ');
}

export interface RunReporterOptions {
  runDir: string;
  args: TrainArgs;
  name: string;
  /** Where lines go (default process.stdout); the progress line only when it is a TTY. */
  out?: NodeJS.WritableStream & { isTTY?: boolean };
}

export function createRunReporter(opts: RunReporterOptions): RunReporter {
  const out = opts.out ?? process.stdout;
  const tty = out.isTTY === true;
  const jsonl = join(opts.runDir, 'out.jsonl');
  writeFileSync(jsonl, '');
  writeFileSync(join(opts.runDir, 'params.json'), JSON.stringify({ ...opts.args, given: [...opts.args.given] }, null, 2));
  let progressShown = false;
  const line = (text: string): void => {
    if (progressShown) out.write('\r\x1b[K');
    progressShown = false;
    out.write(text + '\n');
  };
  const record = (obj: Record<string, unknown>): void => appendFileSync(jsonl, JSON.stringify(obj) + '\n');
  return {
    step(r: StepRecord): void {
      const text =
        `epoch ${r.epoch} step ${r.step}/${r.totalSteps} | loss ${r.loss.toFixed(4)} | ${r.samplesPerSecond.toFixed(1)} samples/s` +
        ` | lr ${r.lr.toExponential(2)} | logit scale ${r.logitScale.toFixed(2)} | ETA ${duration(r.secondsLeft)}`;
      const logNow = r.step % opts.args.logEveryNSteps === 0 || r.step === r.totalSteps || r.step === 1;
      if (logNow) {
        record({ type: 'train', epoch: r.epoch, step: r.step, loss: r.loss, lr: r.lr, logit_scale: r.logitScale, samples_per_second: r.samplesPerSecond, grad_norm: r.gradNorm, time: Date.now() / 1000 });
      }
      if (tty) {
        out.write(`\r\x1b[K${text}`);
        progressShown = true;
      } else if (logNow) {
        line(text);
      }
    },
    eval(epoch: number, step: number, metrics: Record<string, number>): void {
      record({ type: 'eval', epoch, step, ...metrics, time: Date.now() / 1000 });
      line(`eval after epoch ${epoch}: ${formatMetrics(metrics)}`);
    },
    message(text: string): void {
      line(text);
    },
    finish(outcome: TrainOutcome): void {
      const last = outcome.losses.at(-1);
      const final = outcome.evals.at(-1);
      line(
        `done: ${outcome.steps} steps, ${outcome.epochs} epochs` +
          (last ? `, final loss ${last.loss.toFixed(4)}` : '') +
          (final ? `, ${formatMetrics(final.metrics)}` : '') +
          (outcome.lastCheckpoint ? `; checkpoint ${outcome.lastCheckpoint}` : ''),
      );
    },
    close(): void {
      if (progressShown) out.write('\n');
      progressShown = false;
    },
  };
}
