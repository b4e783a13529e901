// Entry point of a data loader worker thread: builds a BatchProducer from the ProducerConfig in
// workerData, says it is ready (or why not), then runs the epochs the loader asks for.
import { parentPort, workerData } from 'node:worker_threads';
import { BatchProducer, type ProducerConfig } from './batch_producer.js';
import { Credits, pumpEpoch, transferList, type FromProducer, type ToProducer } from './loader_protocol.js';

const port = parentPort;
if (!port) throw new Error('loader_worker: expected to run in a worker thread, got the main thread');

function post(m: FromProducer): void {
  port!.postMessage(m, m.type === 'batch' ? transferList(m.batch) : []);
}

let producer: BatchProducer | null = null;
let credits = new Credits();
let ready: Promise<void>;

try {
  ready = BatchProducer.create(workerData as ProducerConfig).then(
    (p) => {
      producer = p;
      post({ type: 'ready', info: p.info });
    },
    (e: unknown) => post({ type: 'error', message: e instanceof Error ? e.message : String(e) }),
  );
} catch (e) {
  ready = Promise.resolve();
  post({ type: 'error', message: e instanceof Error ? e.message : String(e) });
}

port.on('message', (m: ToProducer) => {
  if (m.type === 'credit') {
    credits.add(1);
    return;
  }
  // A new epoch starts with fresh credits; the loader starts one only after the last ended.
  credits.close();
  credits = new Credits();
  credits.add(m.credits);
  const epochCredits = credits;
  void ready.then(() => {
    if (producer) void pumpEpoch(producer, m.epoch, epochCredits, post);
  });
});
