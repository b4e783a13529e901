// Memory statistics and device control.
import { native, type NativeInfo, type NativeMemoryStats } from '../native.js';
import { checkDevice, liveTensorCount } from './tensor.js';
import { checkInteger } from './check.js';

export interface MemoryStats {
  /** Tensors created and not yet disposed. */
  liveTensors: number;
  cpu: NativeMemoryStats;
  /** One entry per CUDA device, by index. */
  cuda: NativeMemoryStats[];
}

export function memoryStats(): MemoryStats {
  const m = native.memoryStats();
  return { liveTensors: liveTensorCount(), cpu: m.cpu, cuda: m.cuda };
}

/** Returns cached, unused memory (host and CUDA) to the system. */
export function emptyCache(): void {
  native.emptyCache();
}

/** Waits until all work queued on the device has finished. */
export function synchronize(device = 'cuda:0'): void {
  native.synchronize(checkDevice('synchronize', 'device', device));
}

/** Backends compiled in, GPUs found (or why none), CPU threads. */
export function backendInfo(): NativeInfo {
  return native.info();
}

export function setNumThreads(n: number): void {
  native.setNumThreads(checkInteger('setNumThreads', 'n', n, 1, 1024));
}
