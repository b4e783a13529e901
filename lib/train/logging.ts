// Training logs: a progress line on a terminal (redrawn in place, only when the stream is a
// TTY), one JSON object per line in <logDir>/out.jsonl every `logEveryNSteps` steps and for
// every evaluation (always), the same scalars in TensorBoard event files when asked, and a
// loss-curve PNG when the run closes.
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { isatty } from 'node:tty';
import { argError } from '../tensor/check.js';
import { writeFileAtomicSync } from './atomic.js';
import { renderLossCurve, type LossPoint } from './plot.js';
import { TensorBoardWriter } from './tensorboard.js';

/** What the training loop knows after a step; loss and logitScale only on steps where it read them. */
export interface StepInfo {
  /** Optimizer steps done (1 after the first update). */
  step: number;
  epoch: number;
  /** Samples in this step (batch size × accumulation). */
  samples: number;
  lr: number;
  loss?: number;
  logitScale?: number;
}

export interface TrainLoggerOptions {
  /** The run's folder, <logs>/<name>. */
  logDir: string;
  totalSteps: number;
  logEveryNSteps: number;
  tensorboard?: boolean;
  /** Where the progress line goes (default process.stdout); drawn only if it is a TTY. */
  stream?: { isTTY?: boolean; write(s: string): unknown };
  /** Clock in milliseconds (default performance.now). */
  now?: () => number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

// The progress line is redrawn at most this often (ms), so a fast loop does not flood the terminal.
const REDRAW_MS = 100;

export class TrainLogger {
  readonly jsonlPath: string;
  readonly lossPoints: LossPoint[] = [];
  private readonly tb: TensorBoardWriter | null;
  private readonly stream: NonNullable<TrainLoggerOptions['stream']> | null;
  private readonly now: () => number;
  private readonly start: number;
  private windowStart: number;
  private windowSamples = 0;
  private samplesPerSecond = NaN;
  private lastLoss = NaN;
  private lastScale = NaN;
  private lastDraw = -Infinity;
  private drawn = false;

  constructor(private readonly opts: TrainLoggerOptions) {
    const op = 'TrainLogger';
    if (typeof opts?.logDir !== 'string' || opts.logDir === '') throw argError(op, 'opts.logDir', 'a folder path', opts?.logDir);
    if (!Number.isSafeInteger(opts.totalSteps) || opts.totalSteps < 0) throw argError(op, 'opts.totalSteps', 'an integer >= 0', opts.totalSteps);
    if (!Number.isSafeInteger(opts.logEveryNSteps) || opts.logEveryNSteps < 1) throw argError(op, 'opts.logEveryNSteps', 'an integer >= 1', opts.logEveryNSteps);
    mkdirSync(opts.logDir, { recursive: true });
    this.jsonlPath = join(opts.logDir, 'out.jsonl');
    this.tb = opts.tensorboard ? new TensorBoardWriter(join(opts.logDir, 'tensorboard')) : null;
    // process.stdout is only touched when fd 1 is a terminal: creating it makes a piped fd 1
    // non-blocking, which breaks other code's synchronous writes to it.
    this.stream = opts.stream ?? (isatty(1) ? process.stdout : null);
    this.now = opts.now ?? (() => performance.now());
    this.start = this.windowStart = this.now();
  }

  /** Records a finished step: redraws the progress line, and logs every logEveryNSteps-th step and the last. */
  step(info: StepInfo): void {
    const op = 'TrainLogger.step';
    if (!Number.isSafeInteger(info?.step) || info.step < 0) throw argError(op, 'info.step', 'an integer >= 0', info?.step);
    if (typeof info.samples !== 'number' || !(info.samples >= 0)) throw argError(op, 'info.samples', 'a number >= 0', info.samples);
    if (info.loss !== undefined) this.lastLoss = info.loss;
    if (info.logitScale !== undefined) this.lastScale = info.logitScale;
    this.windowSamples += info.samples;
    const t = this.now();
    // The last step is logged too, so the log and the loss curve end where the run ended.
    const logStep = info.step % this.opts.logEveryNSteps === 0 || info.step === this.opts.totalSteps;
    if (logStep || !Number.isFinite(this.samplesPerSecond)) {
      const dt = (t - this.windowStart) / 1000;
      if (dt > 0) this.samplesPerSecond = this.windowSamples / dt;
    }
    if (logStep) {
      const record = {
        step: info.step, epoch: info.epoch, loss: this.lastLoss, lr: info.lr, logit_scale: this.lastScale,
        samples_per_second: this.samplesPerSecond, elapsed_s: (t - this.start) / 1000, time: new Date().toISOString(),
      };
      this.appendJson(record);
      if (Number.isFinite(this.lastLoss)) this.lossPoints.push({ step: info.step, loss: this.lastLoss });
      if (this.tb) {
        const scalars: [string, number][] = [['train/loss', this.lastLoss], ['train/lr', info.lr], ['train/scale', this.lastScale], ['train/samples_per_second', this.samplesPerSecond]];
        for (const [tag, v] of scalars) if (Number.isFinite(v)) this.tb.addScalar(tag, v, info.step);
      }
      this.windowStart = t;
      this.windowSamples = 0;
    }
    if (this.stream?.isTTY && (t - this.lastDraw >= REDRAW_MS || info.step === this.opts.totalSteps)) {
      this.stream!.write(`\r\x1b[2K${this.progressLine(info)}`);
      this.lastDraw = t;
      this.drawn = true;
    }
  }

  /** The progress line's text for a step. */
  progressLine(info: StepInfo): string {
    const total = this.opts.totalSteps;
    const remaining = total - info.step;
    const secPerStep = (this.now() - this.start) / 1000 / Math.max(info.step, 1);
    const fmt = (v: number, digits: number): string => (Number.isFinite(v) ? v.toFixed(digits) : '-');
    return [
      `step ${info.step}/${total}`, `epoch ${info.epoch}`, `${fmt(this.samplesPerSecond, 1)} samples/s`, `loss ${fmt(this.lastLoss, 4)}`,
      `lr ${info.lr.toExponential(2)}`, `logit scale ${fmt(this.lastScale, 2)}`, `ETA ${formatDuration(remaining * secPerStep)}`,
    ].join(' | ');
  }

  /** Logs an evaluation or any other record as one JSON line (and its numbers to TensorBoard under `prefix/`). */
  record(step: number, values: Record<string, number | string>, prefix = 'val'): void {
    if (!Number.isSafeInteger(step) || step < 0) throw argError('TrainLogger.record', 'step', 'an integer >= 0', step);
    this.appendJson({ step, ...values, time: new Date().toISOString() });
    if (this.tb) for (const [k, v] of Object.entries(values)) if (typeof v === 'number' && Number.isFinite(v)) this.tb.addScalar(`${prefix}/${k}`, v, step);
  }

  /** Ends the progress line, closes the event file and writes <logDir>/loss.png; returns its path, or null with no loss logged. */
  close(): string | null {
    if (this.drawn) this.stream!.write('\n');
    this.drawn = false;
    this.tb?.close();
    if (this.lossPoints.length === 0) return null;
    const path = join(this.opts.logDir, 'loss.png');
    writeFileAtomicSync(path, renderLossCurve(this.lossPoints).png);
    return path;
  }

  private appendJson(record: Record<string, unknown>): void {
    // NaN is not JSON: a value not known yet is written as null.
    appendFileSync(this.jsonlPath, JSON.stringify(record, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)) + '\n');
  }
}
