// UniRepLKNet on the CPU: what the NHWC layout saves, where a block's time goes, and the
// training form against the deploy form.
//
// 1. Layout. A block at UniRepLKNet-A's stage-2 and stage-3 shapes (224 px, batch 8),
//    forward + backward in NHWC, against what NCHW activations would add to it: the official
//    code permutes NCHW -> NHWC before pwconv1 and back after pwconv2 (a copy of the block's
//    input size each way, forward and backward), and our depthwise kernels take NHWC, so
//    NCHW would also convert around each of the Dilated Reparam Block's six convolutions.
// 2. Breakdown. Forward time of each part of a training-form block (the Dilated Reparam
//    Block's six convolutions, its six BatchNorms, SE, pwconv1, GELU + GRN, pwconv2 + BN).
// 3. Model. UniRepLKNet-A at 224 px, batch 2: eval forward of the training form and of the
//    deploy form, and a training step (forward + backward) of the training form, per image.
//
// Run: node --import tsx bench/unireplknet.bench.ts [--threads N]
// Writes bench/results/<date>-cpu-unireplknet.json.
import * as cf from '../lib/index.js';
import { timeMedian, writeResult } from './lib.js';

const threadsArg = process.argv.indexOf('--threads');
const threads = threadsArg > 0 ? Number(process.argv[threadsArg + 1]) : 2;
cf.setNumThreads(threads);

const results: Record<string, unknown> = { threads };
const sumOf = (ts: cf.Tensor[]): cf.Tensor => ts.reduce((a, b) => cf.add(a, b));
const fmt = (ms: number): string => ms.toFixed(2).padStart(9);

function randomized(m: cf.Module): void {
  cf.noGrad(() => {
    for (const [name, t] of m.stateDict()) {
      if (!name.endsWith('running_var') && !name.endsWith('num_batches_tracked')) cf.native.copy(cf.scope(() => cf.randn(t.shape, { std: 0.1 })), t);
    }
  });
}

console.log(`UniRepLKNet on the CPU, ${threads} threads, f32`);
console.log('\n1. layout: a training-form K 13 block, forward + backward (ms)');
console.log('   shape (N, H, W, C)        NHWC block   + 2 permutes   + DRB in NCHW   NCHW total / NHWC');
const layout: unknown[] = [];
for (const [n, h, c] of [[8, 28, 80], [8, 14, 160]] as const) {
  const block = new cf.UniRepLKNetBlock(c, 13, 0, false, 1e-6);
  randomized(block);
  const x = cf.randn([n, h, h, c], { requiresGrad: true });
  const xc = cf.noGrad(() => cf.nhwcToNchw(x));
  xc.requiresGrad = true;
  const step = (fn: () => cf.Tensor): void => {
    cf.scope(() => cf.sum(fn()).backward());
    for (const t of [x, xc]) {
      t.grad?.dispose();
      t.grad = null;
    }
  };
  const blockMs = timeMedian(() => step(() => block.forward(x)), { reps: 5, minMs: 200 }).ms;
  const permuteMs = timeMedian(() => step(() => cf.nchwToNhwc(cf.nhwcToNchw(x))), { reps: 5, minMs: 200 }).ms;
  const drb = block.dwconv as cf.DilatedReparamBlock;
  const convs = [...drb.namedChildren()].filter(([name]) => name === 'lk_origin' || name.startsWith('dil_conv')).map(([, m]) => m as cf.DepthwiseConv);
  const drbNhwcMs = timeMedian(() => step(() => sumOf(convs.map((m) => cf.depthwiseConv2d(x, m.weight, null, { dilation: m.dilation })))), { reps: 5, minMs: 200 }).ms;
  const drbNchwMs = timeMedian(() => step(() => sumOf(convs.map((m) => cf.depthwiseConv2d(xc, m.weight, null, { dilation: m.dilation, layout: 'nchw' })))), { reps: 5, minMs: 200 }).ms;
  const nchwTotal = blockMs + permuteMs + (drbNchwMs - drbNhwcMs);
  console.log(`   ${`${n}, ${h}, ${h}, ${c}`.padEnd(22)} ${fmt(blockMs)}   ${fmt(permuteMs)}     ${fmt(drbNchwMs - drbNhwcMs)}      ${(nchwTotal / blockMs).toFixed(2)}x`);
  layout.push({ n, h, w: h, c, blockMs, permutePairMs: permuteMs, drbNchwExtraMs: drbNchwMs - drbNhwcMs, nchwOverNhwc: nchwTotal / blockMs });
  block.dispose();
  x.dispose();
  xc.dispose();
}
results.layout = layout;

console.log('\n2. breakdown: forward of one training-form K 13 block, N 8, 14 x 14, C 160 (ms)');
const breakdown: Record<string, number> = {};
{
  const c = 160;
  const block = new cf.UniRepLKNetBlock(c, 13, 0, false, 1e-6);
  randomized(block);
  const x = cf.randn([8, 14, 14, c]);
  const hidden = cf.randn([8, 14, 14, 4 * c]);
  const drb = block.dwconv as cf.DilatedReparamBlock;
  const child = <M extends cf.Module>(m: cf.Module, name: string): M => new Map(m.namedChildren()).get(name) as M;
  const convs = [...drb.namedChildren()].filter(([name]) => name === 'lk_origin' || name.startsWith('dil_conv')).map(([, m]) => m as cf.DepthwiseConv);
  const bns = [...drb.namedChildren()].filter(([name]) => name.endsWith('_bn') || name.startsWith('dil_bn')).map(([, m]) => m as cf.BatchNorm2d);
  const pw1 = child<cf.Sequence>(block, 'pwconv1').at<cf.Linear>(1);
  const grn = child<cf.Sequence>(block, 'act').at<cf.GRN>(1);
  const pw2 = child<cf.Sequence>(block, 'pwconv2');
  const parts: [string, () => void][] = [
    ['6 depthwise convs', () => convs.forEach((m) => m.forward(x))],
    ['6 BatchNorms (training)', () => bns.forEach((m) => m.forward(x))],
    ['SE', () => child<cf.SEBlock>(block, 'se').forward(x)],
    ['pwconv1 (GEMM C -> 4C)', () => pw1.forward(x)],
    ['GELU + GRN', () => grn.forward(cf.gelu(hidden))],
    ['pwconv2 (GEMM 4C -> C) + BN', () => pw2.at<cf.BatchNorm2d>(2).forward(pw2.at<cf.Linear>(0).forward(hidden))],
    ['whole block', () => block.forward(x)],
  ];
  cf.noGrad(() => {
    for (const [name, fn] of parts) {
      const ms = timeMedian(() => cf.scope(fn), { reps: 5, minMs: 200 }).ms;
      breakdown[name] = ms;
      console.log(`   ${name.padEnd(30)} ${fmt(ms)}`);
    }
  });
  block.dispose();
  x.dispose();
  hidden.dispose();
}
results.blockForwardBreakdownMs = breakdown;

console.log('\n3. UniRepLKNet-A at 224 px, batch 2 (ms per image)');
{
  const tower = new cf.UniRepLKNetTower(cf.variantArch('a'), 512);
  randomized(tower);
  const images = cf.randn([2, 3, 224, 224]);
  const trainStep = timeMedian(() => cf.scope(() => cf.sum(tower.forward(images)).backward()), { warmup: 1, reps: 3, minMs: 0 }).ms / 2;
  tower.eval();
  const evalTrain = timeMedian(() => cf.noGrad(() => cf.scope(() => tower.forward(images))), { warmup: 1, reps: 3, minMs: 0 }).ms / 2;
  const deployed = tower.reparameterize();
  const evalDeploy = timeMedian(() => cf.noGrad(() => cf.scope(() => deployed.forward(images))), { warmup: 1, reps: 3, minMs: 0 }).ms / 2;
  const gflop = cf.uniRepLKNetFlops(cf.variantArch('a'), [224, 224], 512) / 1e9;
  console.log(`   training step (fwd + bwd), training form  ${fmt(trainStep)}`);
  console.log(`   eval forward, training form               ${fmt(evalTrain)}`);
  console.log(`   eval forward, deploy form                 ${fmt(evalDeploy)}   (${(gflop / (evalDeploy / 1e3)).toFixed(1)} GFLOP/s on ${gflop.toFixed(2)} GFLOP)`);
  results.modelA224 = { batch: 2, trainStepMsPerImage: trainStep, evalTrainingFormMsPerImage: evalTrain, evalDeployFormMsPerImage: evalDeploy, deployGflopPerImage: gflop };
  tower.dispose();
  deployed.dispose();
  images.dispose();
}

console.log(`\nwrote ${writeResult('unireplknet', 'cpu', results)}`);
