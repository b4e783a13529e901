// The GPU's ceilings that every kernel's "fraction of the floor" is measured against, read on
// the device in use: device-to-device copy bandwidth and the bf16 matrix rate (8192³ on random
// data), both through PyTorch (bench/compare/ceilings.py), plus clipforge's own elementwise pass (neg) over the
// same 2 GiB buffer, as a check of our elementwise path against the copy ceiling.
//
// Run: node --import tsx bench/ceilings.bench.ts   (needs a CUDA device)
// Writes bench/results/<date>-<device>-ceilings.json.
import * as cf from '../lib/index.js';
import { median, runPython, writeResult } from './lib.js';

const info = cf.backendInfo();
if (info.devices.length === 0) throw new Error(`ceilings.bench: needs a CUDA device (${info.cudaUnavailable ?? 'none found'})`);
const device = info.devices[0]!;

const elements = (2 << 30) / 4;
const ours = cf.scope(() => {
  const src = cf.randn([elements], { device: 'cuda:0' });
  const times: number[] = [];
  for (let i = 0; i < 12; i++) {
    cf.synchronize('cuda:0');
    const t0 = performance.now();
    cf.scope(() => cf.neg(src));
    cf.synchronize('cuda:0');
    if (i >= 2) times.push(performance.now() - t0);
  }
  const ms = median(times);
  return { what: 'clipforge neg of 2 GiB f32', bytes: 2 * 4 * elements, ms, 'GB/s': (2 * 4 * elements) / ms / 1e6 };
});
console.log(`clipforge copy: ${ours['GB/s'].toFixed(0)} GB/s`);
const torch = runPython('ceilings.py', []);
if (torch.ok) console.log(JSON.stringify(torch.value));
else console.log(`PyTorch ceilings did not run: ${torch.why}`);
console.log(`wrote ${writeResult('ceilings', device.name, { ours, torch: torch.ok ? torch.value : { skipped: torch.why } })}`);
