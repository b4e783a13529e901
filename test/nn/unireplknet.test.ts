// UniRepLKNet: official parameter names, parameter counts against the published figures,
// BatchNorm running statistics in train / eval, gradients through a block, the deploy form
// equal to the training form in eval mode, and the CLIP tower built from a config.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { assertClose, devices, gradCheck, maxRelError, recordNativeCalls, Rng } from '../support/helpers.js';

const test = suite('nn.unireplknet');
const rng = new Rng(71);

const TINY: cf.UniRepLKNetArch = { depths: [1, 1, 2, 1], dims: [8, 16, 32, 64], kernelSizes: [[3], [13], [13, 3], [13]] };

// Every parameter and buffer drawn at random (positive variances, BatchNorm gains near 1),
// so that no fused term is zero and the layer scales and GRN act.
function randomize(m: cf.Module, seed: number): void {
  const r = new Rng(seed);
  cf.noGrad(() => {
    for (const [name, t] of m.stateDict()) {
      let v: Float32Array;
      if (name.endsWith('running_var')) v = Float32Array.from(r.array(t.size), (x) => 0.5 + Math.abs(x));
      else if (name.endsWith('num_batches_tracked')) v = new Float32Array(t.size);
      else if (/(_bn|norm|pwconv2\.2)[^.]*\.weight$/.test(name) || name.endsWith('bn.weight')) v = Float32Array.from(r.array(t.size), (x) => 1 + 0.3 * x);
      else v = r.array(t.size, 0.3);
      const src = cf.fromArray(v, t.shape, { dtype: t.dtype, device: t.device });
      cf.native.copy(src, t);
      src.dispose();
    }
  });
}

test('parameter names are the official implementation’s (and OpenCLIP’s trunk / head.proj)', () => {
  const tower = new cf.UniRepLKNetTower(TINY, 16);
  const keys = [...tower.stateDict().keys()];
  for (const k of [
    'trunk.downsample_layers.0.0.weight', 'trunk.downsample_layers.0.1.bias', 'trunk.downsample_layers.0.3.weight', 'trunk.downsample_layers.0.4.weight',
    'trunk.downsample_layers.3.0.bias', 'trunk.downsample_layers.3.1.weight',
    'trunk.stages.0.0.dwconv.weight', 'trunk.stages.0.0.norm.running_var', 'trunk.stages.0.0.norm.num_batches_tracked',
    'trunk.stages.1.0.dwconv.lk_origin.weight', 'trunk.stages.1.0.dwconv.origin_bn.running_mean',
    'trunk.stages.1.0.dwconv.dil_conv_k5_1.weight', 'trunk.stages.1.0.dwconv.dil_conv_k7_2.weight', 'trunk.stages.1.0.dwconv.dil_conv_k3_3.weight',
    'trunk.stages.1.0.dwconv.dil_conv_k3_4.weight', 'trunk.stages.1.0.dwconv.dil_bn_k3_5.weight',
    'trunk.stages.2.1.se.down.weight', 'trunk.stages.2.1.se.up.bias', 'trunk.stages.2.1.pwconv1.1.weight', 'trunk.stages.2.1.act.1.gamma',
    'trunk.stages.2.1.act.1.beta', 'trunk.stages.2.1.pwconv2.0.weight', 'trunk.stages.2.1.pwconv2.2.running_mean', 'trunk.stages.2.1.gamma',
    'trunk.norm.weight', 'head.proj.weight',
  ]) {
    assert.ok(keys.includes(k), `missing ${k}`);
  }
  const sd = tower.stateDict();
  assert.equal([...sd.get('trunk.stages.1.0.dwconv.dil_conv_k7_2.weight')!.shape], [16, 1, 7, 7]);
  assert.equal([...sd.get('trunk.stages.2.1.act.1.gamma')!.shape], [1, 1, 1, 128]);
  assert.equal([...sd.get('trunk.stages.2.1.se.down.weight')!.shape], [8, 32, 1, 1]);
  assert.equal([...sd.get('trunk.stages.2.1.pwconv2.0.weight')!.shape], [32, 128]);
  assert.equal([...sd.get('head.proj.weight')!.shape], [16, 64]);
  assert.not.ok(keys.includes('head.proj.bias'), 'no projection bias by default');
  assert.not.ok(keys.includes('trunk.stages.2.1.pwconv2.0.bias'), 'pwconv2 has no bias in the training form');

  const deploy = new cf.UniRepLKNetTower(TINY, 16, { deploy: true });
  const dkeys = [...deploy.stateDict().keys()];
  assert.ok(dkeys.includes('trunk.stages.1.0.dwconv.lk_origin.bias'));
  assert.ok(dkeys.includes('trunk.stages.0.0.dwconv.bias'));
  assert.ok(dkeys.includes('trunk.stages.2.1.pwconv2.0.bias'));
  for (const gone of [/origin_bn/, /dil_conv/, /\.norm\./, /pwconv2\.2/, /act\.1\.beta/, /stages\.\d+\.\d+\.gamma$/]) {
    assert.not.ok(dkeys.some((k) => k.startsWith('trunk.stages') && gone.test(k)), `deploy form has no ${gone}`);
  }
  tower.dispose();
  deploy.dispose();
});

test('parameter counts: the published / computed figures of every variant, and the built modules agree', () => {
  // specs/models.md §A.7, millions with a 1000-class head: deploy form, training form.
  const published: Record<cf.UniRepLKNetVariant, [number, number]> = {
    a: [4.44, 4.65], f: [6.24, 6.49], p: [10.74, 11.08], n: [18.32, 18.82], t: [31.04, 31.69],
    s: [55.65, 56.46], b: [98.01, 99.09], l: [218.45, 220.08], xl: [386.53, 388.69],
  };
  for (const [v, [deploy, train]] of Object.entries(published) as [cf.UniRepLKNetVariant, [number, number]][]) {
    const arch = cf.variantArch(v);
    const head = arch.dims[3] * 1000 + 1000;
    assert.is(((cf.uniRepLKNetTrunkParameters(arch, { deploy: true }) + head) / 1e6).toFixed(2), deploy.toFixed(2), `${v} deploy`);
    assert.is(((cf.uniRepLKNetTrunkParameters(arch, { deploy: false }) + head) / 1e6).toFixed(2), train.toFixed(2), `${v} training`);
  }
  assert.is((cf.uniRepLKNetTrunkParameters(cf.variantArch('l'), { deploy: true }) / 1e6).toFixed(1), '216.9', 'L trunk without head');
  // GMACs at 224 (A, S, L) and 384 (B, XL) from the same table.
  const gmac = (v: cf.UniRepLKNetVariant, size: number): string => (cf.uniRepLKNetFlops(cf.variantArch(v), [size, size], 1000) / 2e9).toFixed(2);
  assert.is(gmac('a', 224), '0.64');
  assert.is(gmac('s', 224), '9.09');
  assert.is(gmac('l', 224), '35.88');
  const gmac1 = (v: cf.UniRepLKNetVariant, size: number): string => (cf.uniRepLKNetFlops(cf.variantArch(v), [size, size], 1000) / 2e9).toFixed(1);
  assert.is(gmac1('b', 384), '47.2');
  assert.is(gmac1('xl', 384), '186.8');

  for (const deploy of [false, true]) {
    const a = new cf.UniRepLKNet(cf.variantArch('a'), { deploy });
    assert.is(a.numParameters(), cf.uniRepLKNetTrunkParameters(cf.variantArch('a'), { deploy }), `built A, deploy ${deploy}`);
    a.dispose();
  }
  const counts = cf.countParameters('UniRepLKNet-L-CLIP');
  assert.is(counts.visual, cf.uniRepLKNetTrunkParameters(cf.variantArch('l'), { deploy: false }) + 1536 * 1024);
  assert.is((counts.total / 1e9).toFixed(2), '0.57', 'L tower + ViT-H-sized text tower, as the spec computes');
  const tiny = cf.createModel('tiny-unireplknet');
  assert.is(tiny.numParameters(), cf.countParameters('tiny-unireplknet').total);
  tiny.dispose();
});

test('BatchNorm: training mode normalizes with batch statistics and moves the running ones; eval mode uses them', () => {
  const trunk = new cf.UniRepLKNet(TINY);
  randomize(trunk, 3);
  const sd = trunk.stateDict();
  const rm = sd.get('stages.1.0.dwconv.dil_bn_k7_2.running_mean')!;
  const count = sd.get('stages.1.0.dwconv.dil_bn_k7_2.num_batches_tracked')!;
  const before = rm.toArray();
  cf.scope(() => {
    const x = cf.randn([2, 3, 64, 64]);
    const evalOut = cf.noGrad(() => trunk.eval().forward(x)).toArray();
    assert.equal([...rm.toArray()], [...before], 'eval leaves running statistics alone');
    const trainOut = cf.noGrad(() => trunk.train().forward(x)).toArray();
    assert.ok(maxRelError(trainOut, evalOut) > 1e-2, 'batch statistics differ from the random running ones');
    const after = rm.toArray();
    assert.ok(after.some((v, i) => Math.abs(v - before[i]!) > 1e-4), 'running mean moved');
    assert.is(count.item(), 1);
  });
  trunk.dispose();
});

test('the deploy form equals the training form in eval mode (random BatchNorm statistics, f32, rel err < 1e-4)', () => {
  for (const device of devices()) {
    const tower = new cf.UniRepLKNetTower(TINY, 16, { device });
    randomize(tower, 5);
    tower.eval();
    const deployed = tower.reparameterize();
    assert.is(deployed.numParameters(), cf.uniRepLKNetTrunkParameters(TINY, { deploy: true }) + 64 * 16);
    assert.not.ok(deployed.training, 'keeps the mode');
    cf.scope(() => {
      const x = cf.randn([2, 3, 64, 64], { device });
      const want = cf.noGrad(() => tower.forward(x)).toArray();
      const got = cf.noGrad(() => deployed.forward(x)).toArray();
      const err = maxRelError(got, want, 1e-2);
      assert.ok(err < 1e-4, `deploy vs training on ${device}: max relative error ${err}`);
      const feats = cf.noGrad(() => tower.trunk.forward(x)).toArray();
      assert.ok(feats.some((v) => Math.abs(v) > 1e-3), 'features are not trivially zero');
    });
    assert.throws(() => deployed.reparameterize(), /deployStateDict: found no UniRepLKNet block in training form/);
    tower.dispose();
    deployed.dispose();
  }
});

test('gradients through a block (Dilated Reparam Block, BatchNorm in training, SE, GRN, layer scale) match finite differences', () => {
  const block = new cf.UniRepLKNetBlock(4, 7, 0, false, 0.7);
  randomize(block, 9);
  const x = { data: rng.array(2 * 5 * 5 * 4), shape: [2, 5, 5, 4] };
  for (const training of [true, false]) {
    block.train(training);
    gradCheck((t) => block.forward(t), [x], { maxElements: 40 });
  }
  // Parameter gradients against central differences on a few elements of each tensor.
  block.train(true);
  block.zeroGrad();
  const xt = cf.fromArray(x.data, x.shape);
  const w = cf.fromArray(rng.array(2 * 5 * 5 * 4), x.shape);
  const loss = (): number => cf.noGrad(() => cf.scope(() => cf.sum(cf.mul(block.forward(xt), w)).item()));
  cf.scope(() => cf.sum(cf.mul(block.forward(xt), w)).backward());
  const params = new Map(block.namedParameters());
  for (const name of ['dwconv.lk_origin.weight', 'dwconv.dil_conv_k3_2.weight', 'dwconv.dil_bn_k5_1.weight', 'norm.bias', 'se.down.weight', 'pwconv1.1.bias', 'act.1.gamma', 'act.1.beta', 'pwconv2.0.weight', 'pwconv2.2.weight', 'gamma']) {
    const p = params.get(name)!;
    const grad = p.grad!.toArray();
    const values = p.toArray();
    for (const i of [0, Math.floor(p.size / 2), p.size - 1]) {
      const at = (v: number): number => {
        const changed = Float32Array.from(values);
        changed[i] = v;
        cf.noGrad(() => cf.native.copy(cf.fromArray(changed, p.shape), p));
        return loss();
      };
      const numeric = (at(values[i]! + 1e-2) - at(values[i]! - 1e-2)) / 2e-2;
      at(values[i]!);
      assert.ok(Math.abs(grad[i]! - numeric) <= 3e-3 + 3e-2 * Math.abs(numeric), `${name}[${i}]: analytic ${grad[i]}, numeric ${numeric}`);
    }
  }
  xt.dispose();
  w.dispose();
  block.dispose();
});

test('a block under autocast keeps its activations in bf16: one cast of the input (and of its gradient), gradients close to f32', () => {
  const block = new cf.UniRepLKNetBlock(16, 13, 0, false, 0.5);
  randomize(block, 10);
  block.train(true);
  const xData = rng.array(2 * 12 * 12 * 16);
  // Casts of activation-sized tensors (x's size or more; the 13 x 13 weights are smaller), by direction, and the input's and weights' gradients.
  const run = (amp: boolean) => {
    const casts: string[] = [];
    const addon = cf.native as unknown as Record<string, (...a: unknown[]) => unknown>;
    const cast = addon.cast!;
    addon.cast = (x: unknown, y: unknown) => {
      const [a, b] = [x, y] as cf.Tensor[];
      if (a!.size >= xData.length) casts.push(`${a!.dtype}->${b!.dtype} ${a!.shape}`);
      return cast.call(addon, x, y);
    };
    try {
      block.zeroGrad();
      return cf.scope(() => {
        const x = cf.fromArray(xData, [2, 12, 12, 16], { requiresGrad: true });
        const y = amp ? cf.autocast('bf16', () => block.forward(x)) : block.forward(x);
        casts.push('backward');
        cf.sum(cf.mul(y, y)).backward();
        const r = { casts, dtype: y.dtype, dx: x.grad!.toArray(), dw: block.namedParameters().map(([n, p]) => [n, p.grad!.dtype, p.grad!.toArray()] as const) };
        x.dispose();
        return r;
      });
    } finally {
      addon.cast = cast;
    }
  };
  const amp = run(true), plain = run(false);
  // Forward: the Dilated Reparam Block's input, once for its six convolutions. Backward: the
  // block input's gradient. The last BatchNorm writes the f32 residual sum and reads its
  // gradient in f32, so that gradient is never cast to bf16.
  assert.equal(amp.casts, ['f32->bf16 2,12,12,16', 'backward', 'bf16->f32 2,12,12,16']);
  assert.equal(plain.casts, ['backward']);
  assert.is(amp.dtype, 'f32');
  // Errors against each gradient's largest element (bf16 keeps 8 bits). The biases of the
  // BatchNorms inside the Dilated Reparam Block and GRN's beta shift channels that a training
  // BatchNorm after them removes: their gradients are zero but for rounding, so those are held
  // to the block's largest gradient instead.
  const largest = (a: ArrayLike<number>): number => Math.max(...Array.from(a, Math.abs));
  const overall = Math.max(...plain.dw.map(([, , g]) => largest(g)));
  assert.ok(maxRelError(amp.dx, plain.dx, largest(plain.dx)) < 3e-2, `dx: ${maxRelError(amp.dx, plain.dx, largest(plain.dx))}`);
  amp.dw.forEach(([name, dtype, g], i) => {
    assert.is(dtype, 'f32', `${name}'s gradient dtype`);
    const want = plain.dw[i]![2];
    if (/^dwconv\..*_bn[^.]*\.bias$|^act\.1\.beta$/.test(name)) {
      assert.ok(largest(want) < 1e-6 * overall && largest(g) < 1e-3 * overall, `${name}: ${largest(g)} against ${overall}`);
    } else {
      assert.ok(maxRelError(g, want, largest(want)) < 3e-2, `${name}: ${maxRelError(g, want, largest(want))}`);
    }
  });
  block.dispose();
});

test('gradient checkpointing: same outputs, gradients and running statistics as without it (drop path on)', () => {
  const run = (checkpointing: boolean) => {
    cf.manualSeed(99);
    const trunk = new cf.UniRepLKNet(TINY, { dropPathRate: 0.4 });
    randomize(trunk, 13);
    trunk.gradCheckpointing = checkpointing;
    cf.manualSeed(5);
    const out = cf.scope(() => {
      const y = trunk.forward(cf.fromArray(new Rng(3).array(2 * 3 * 64 * 64), [2, 3, 64, 64]));
      cf.sum(cf.mul(y, cf.fromArray(new Rng(4).array(y.size), [...y.shape]))).backward();
      return y.toArray();
    });
    const grads = trunk.namedParameters().map(([n, p]) => [n, p.grad!.toArray()] as const);
    const stats = [...trunk.stateDict()].filter(([n]) => n.includes('running') || n.includes('num_batches')).map(([n, t]) => [n, t.toArray()] as const);
    trunk.dispose();
    return { out, grads, stats };
  };
  const plain = run(false), recomputed = run(true);
  assert.equal([...recomputed.out], [...plain.out], 'outputs');
  plain.grads.forEach(([n, g], i) => assert.ok(maxRelError(recomputed.grads[i]![1], g, 1e-3) < 1e-5, `gradient of ${n}`));
  plain.stats.forEach(([n, v], i) => assert.equal([...recomputed.stats[i]![1]], [...v], n));
});

test('drop path: rates rise linearly over the blocks; training drops whole samples, eval does not', () => {
  const trunk = new cf.UniRepLKNet(TINY, { dropPathRate: 0.3 });
  const rates = [...trunk.namedModules()].map(([, m]) => m).filter((m): m is cf.UniRepLKNetBlock => m instanceof cf.UniRepLKNetBlock).map((b) => b.dropPathRate);
  assert.equal(rates.map((r) => r.toFixed(4)), ['0.0000', '0.0750', '0.1500', '0.2250', '0.3000']);
  trunk.dispose();
});

test("a block's last BatchNorm writes the residual sum, but not while drop path is active; the two forms agree", () => {
  const xData = rng.array(2 * 6 * 6 * 8);
  const run = (rate: number, training: boolean) => {
    const block = new cf.UniRepLKNetBlock(8, 3, rate, false, 0.5);
    randomize(block, 12);
    block.train(training);
    const describe = {
      batchNormApply: (a: unknown[]) => `norm${a[5] === null ? '' : ' + residual'}`,
      binary: (a: unknown[]) => ((a[1] as cf.Tensor).size === xData.length ? `${a[0] as string} ${(a[1] as cf.Tensor).size}` : null),
    };
    const result = cf.scope(() => {
      const x = cf.fromArray(xData, [2, 6, 6, 8], { requiresGrad: true });
      const { result: y, calls } = recordNativeCalls(describe, () => block.forward(x));
      cf.sum(cf.mul(y, y)).backward();
      return { y: y.toArray(), dx: x.grad!.toArray(), calls };
    });
    block.dispose();
    return result;
  };
  const fused = run(0, true);
  assert.equal(fused.calls.filter((c) => c.startsWith('norm') || c.startsWith('add')), ['norm', 'norm + residual']);
  assert.equal(run(0.5, false).calls.filter((c) => c.startsWith('norm') || c.startsWith('add')), ['norm', 'norm + residual']);
  // Drop path at a rate of 1e-7 keeps every sample of this batch (scaled by 1 / (1 - 1e-7)): the separate form, same values.
  const separate = run(1e-7, true);
  assert.equal(separate.calls.filter((c) => c.startsWith('norm') || c.startsWith('add')), ['norm', 'norm', `add ${xData.length}`]);
  assertClose(fused.y, separate.y, { rtol: 1e-5, atol: 1e-5, what: 'y' });
  assertClose(fused.dx, separate.dx, { rtol: 1e-4, atol: 1e-5, what: 'dx' });
});

test('config: the tiny and the L CLIP configs build; bad UniRepLKNet configs are refused with the key named', () => {
  const r = cf.resolveUniRepLKNetConfig(cf.getModelConfig('UniRepLKNet-L-CLIP').vision_cfg, 'test');
  assert.equal(r.arch.dims, [192, 384, 768, 1536]);
  assert.equal(r.arch.kernelSizes[2]!.slice(0, 6), [13, 3, 3, 13, 3, 3]);
  assert.is(cf.getModelConfig('UniRepLKNet-L-CLIP').text_cfg.width, 1024);
  const base = { timm_model_name: 'unireplknet_a', timm_model_kwargs: { depths: [1, 1, 2, 1], dims: [8, 16, 32, 64], kernel_sizes: [[3], [13], [13, 3], [13]] } };
  const bad = (patch: Record<string, unknown>, pattern: RegExp): void => {
    assert.throws(() => cf.createUniRepLKNetTower({ ...base, ...patch } as cf.VisionConfig, 8), pattern);
  };
  bad({ timm_model_name: 'unireplknet_q' }, /expected 'unireplknet_' and one of .* for vision_cfg.timm_model_name, got 'unireplknet_q'/);
  bad({ timm_model_kwargs: { depths: [1, 1, 1], kernel_sizes: [[3], [3], [3]] } }, /expected 4 entries \(one per stage\) for depths/);
  bad({ timm_model_kwargs: { depths: [1, 1, 2, 1] } }, /no default kernel sizes for depths \[1,1,2,1\]/);
  bad({ timm_model_kwargs: { ...base.timm_model_kwargs, kernel_sizes: [[3], [13], [13], [13]] } }, /expected 2 kernel sizes \(the depth\) for kernel_sizes\[2\]/);
  bad({ timm_model_kwargs: { ...base.timm_model_kwargs, kernel_sizes: [[3], [13], [13, 4], [13]] } }, /for kernel_sizes\[2\]\[1\], got 4/);
  bad({ timm_model_kwargs: { foo: 1 } }, /unknown key vision_cfg.timm_model_kwargs.foo/);
  bad({ timm_pool: 'token' }, /expected 'avg' .* for vision_cfg.timm_pool/);
  bad({ timm_drop: 0.1 }, /for vision_cfg.timm_drop, got 0.1/);
  bad({ timm_drop_path: 1.5 }, /expected a number in \[0, 1\) for vision_cfg.timm_drop_path/);
  assert.throws(() => cf.variantArch('q' as cf.UniRepLKNetVariant), /variantArch: expected one of 'a', .* for variant, got 'q'/);
  assert.throws(() => new cf.UniRepLKNet(undefined as unknown as cf.UniRepLKNetArch), /UniRepLKNet: expected an object \{ depths, dims, kernelSizes \} for arch, got undefined/);
  assert.throws(() => cf.uniRepLKNetFlops(TINY, [0, 4], 8), /uniRepLKNetFlops: expected an integer in \[1, Infinity\] for imageSize\[0\], got 0/);
  assert.throws(() => cf.createUniRepLKNetTower(undefined as unknown as cf.VisionConfig, 8), /createUniRepLKNetTower: expected an object for vision_cfg, got undefined/);
  assert.not.ok(cf.isUniRepLKNetConfig(null as unknown as cf.VisionConfig));
  const deploy = cf.createUniRepLKNetTower({ ...base, timm_model_kwargs: { ...base.timm_model_kwargs, deploy: true } } as cf.VisionConfig, 8);
  assert.ok([...deploy.stateDict().keys()].includes('trunk.stages.1.0.dwconv.lk_origin.bias'));
  deploy.dispose();
});

test('CLIP with the tiny UniRepLKNet tower: images [B, 3, H, W] -> [B, embed_dim], and a backward pass reaches every parameter', () => {
  const model = cf.createModel('tiny-unireplknet');
  cf.scope(() => {
    const feats = model.encodeImage(cf.randn([2, 3, 64, 64]));
    assert.equal([...feats.shape], [2, 32]);
    cf.sum(cf.mul(feats, cf.randn([2, 32]))).backward();
    const visual = [...model.namedParameters()].filter(([n]) => n.startsWith('visual.'));
    const missing = visual.filter(([, p]) => !p.grad).map(([n]) => n);
    assert.equal(missing, [], 'every visual parameter has a gradient');
  });
  assert.throws(() => model.encodeImage(cf.zeros([2, 64, 64, 3])), /UniRepLKNet.forward: expected images \[B, 3, H, W\]/);
  model.dispose();
});

test.run();
