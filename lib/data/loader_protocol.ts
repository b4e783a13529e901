// The messages between the data loader and its producers (worker threads, or one producer in
// the loader's own thread), and the credit-based pump that bounds how far a producer runs
// ahead: it starts a batch only while it holds a credit, and the loader hands one back each
// time it passes a batch to the training loop. A producer therefore never holds more than
// `prefetch` finished batches.
import type { BatchProducer, ProducedBatch, SourceInfo } from './batch_producer.js';

export type ToProducer = { type: 'epoch'; epoch: number; credits: number } | { type: 'credit' };

export type FromProducer =
  | { type: 'ready'; info: SourceInfo }
  | { type: 'batch'; epoch: number; batch: ProducedBatch }
  | { type: 'end'; epoch: number; skipped: string[] }
  | { type: 'error'; message: string };

/** A counting semaphore a producer waits on before each batch; closing it ends the wait with false. */
export class Credits {
  private available = 0;
  private closed = false;
  private waiter: (() => void) | null = null;

  add(n: number): void {
    this.available += n;
    this.wake();
  }

  close(): void {
    this.closed = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Waits for a credit and takes it; false once closed. */
  async take(): Promise<boolean> {
    while (this.available === 0 && !this.closed) await new Promise<void>((resolve) => (this.waiter = resolve));
    if (this.closed) return false;
    this.available--;
    return true;
  }
}

/** Runs one epoch of `producer`, posting each batch when a credit allows, then the end (or the error). */
export async function pumpEpoch(producer: BatchProducer, epoch: number, credits: Credits, post: (m: FromProducer) => void): Promise<void> {
  try {
    const batches = producer.batches(epoch);
    for (;;) {
      if (!(await credits.take())) {
        // Abandoned: let the producer close what it holds open (shard files, commands).
        await batches.return(undefined);
        return;
      }
      const next = await batches.next();
      if (next.done) break;
      post({ type: 'batch', epoch, batch: next.value });
    }
    post({ type: 'end', epoch, skipped: producer.takeTrailingSkips() });
  } catch (e) {
    post({ type: 'error', message: e instanceof Error ? e.message : String(e) });
  }
}

/** The buffers of a batch, to move rather than copy between threads. */
export function transferList(b: ProducedBatch): ArrayBuffer[] {
  const out = [b.images.buffer as ArrayBuffer, b.texts.buffer as ArrayBuffer];
  if (b.labels) out.push(b.labels.buffer as ArrayBuffer);
  return [...new Set(out)];
}
