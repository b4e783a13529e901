// What `clipforge train` tells the user: TrainLogger's progress line, JSON lines, TensorBoard
// events and loss plot, plus plain lines for what a log file reader also wants to see on a
// non-terminal (a progress line every --log-every-n-steps), evaluations and the summary.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TrainArgs } from './flags.js';
import { TrainLogger, type StepInfo } from './logging.js';
import type { TrainOutcome, TrainReporter } from './trainer.js';

export interface RunReporter extends TrainReporter {
  finish(outcome: TrainOutcome): void;
  close(): void;
}

export interface RunReporterOptions {
  runDir: string;
  args: TrainArgs;
  /** Where lines go (default process.stdout); the progress line is redrawn in place only on a TTY. */
  out?: { isTTY?: boolean; write(s: string): unknown };
}

function formatMetrics(metrics: Record<string, number>): string {
  return Object.entries(metrics)
    .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`)
    .join(', ');
}

export function createRunReporter(opts: RunReporterOptions): RunReporter {
  const out = opts.out ?? process.stdout;
  const tty = out.isTTY === true;
  writeFileSync(join(opts.runDir, 'params.json'), JSON.stringify({ ...opts.args, given: [...opts.args.given] }, null, 2) + '\n');
  let logger: TrainLogger | null = null;
  const line = (text: string): void => {
    out.write(`${tty ? '\r\x1b[2K' : ''}${text}\n`);
  };
  return {
    begin(totalSteps: number): void {
      logger = new TrainLogger({
        logDir: opts.runDir,
        totalSteps,
        logEveryNSteps: opts.args.logEveryNSteps,
        tensorboard: opts.args.reportTo.split(',').includes('tensorboard'),
        stream: out,
      });
    },
    step(info: StepInfo): void {
      if (!logger) throw new Error('RunReporter.step: begin() was not called');
      logger.step(info);
      if (!tty && info.step % opts.args.logEveryNSteps === 0) line(logger.progressLine(info));
    },
    eval(epoch: number, step: number, metrics: Record<string, number>): void {
      logger?.record(step, { epoch, ...metrics });
      line(`eval after epoch ${epoch}: ${formatMetrics(metrics)}`);
    },
    message: line,
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
      const plot = logger?.close();
      logger = null;
      if (plot) line(`loss curve: ${plot}`);
    },
  };
}
