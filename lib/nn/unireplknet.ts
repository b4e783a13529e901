// UniRepLKNet (Ding et al., "UniRepLKNet: A Universal Perception Large-Kernel ConvNet"), the
// variants A, F, P, N, T, S, B, L and XL, in the training form (Dilated Reparam Blocks with
// BatchNorms) and the deploy form (one large kernel with bias per block), and the CLIP image
// tower OpenCLIP's TimmModel makes of it (trunk -> head.proj). Parameter names are the official
// implementation's, so its checkpoints and OpenCLIP's `visual.trunk.*` load by name.
//
// Layout: activations are NHWC from the stem on. The depthwise kernels take NHWC natively
// (measured faster than NCHW on the CPU, bench/notes/dwconv.md), the FFN's pointwise layers
// are then plain GEMMs over the channel axis with no transposes (the official code permutes
// to NHWC and back around them in every block), and BatchNorm, LayerNorm, GRN and SE all
// reduce over or broadcast along the last axis. Images enter as NCHW [B, 3, H, W] (the
// data pipeline's layout) and are transposed once.
import { isGradEnabled } from '../tensor/autograd.js';
import { autocastInput } from '../tensor/autocast.js';
import { argError, checkFinite, checkInteger } from '../tensor/check.js';
import { checkpoint } from '../tensor/checkpoint.js';
import { add, gelu } from '../tensor/ops/elementwise.js';
import { dropPath } from '../tensor/ops/drop_path.js';
import { linear } from '../tensor/ops/matmul.js';
import { nchwToNhwc } from '../tensor/ops/dwconv.js';
import { mean } from '../tensor/ops/reduce.js';
import { sameOrWider } from '../tensor/ops/promote.js';
import { reshape } from '../tensor/ops/shape.js';
import { scope } from '../tensor/scope.js';
import type { Generator } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { initConstant, initNormal } from './init.js';
import { emptyParameter, LayerNorm, Linear, type LayerOptions } from './layers.js';
import { Module, ModuleList } from './module.js';
import { BatchNorm2d, Conv2d, DepthwiseConv, GRN, SEBlock, Sequence, UNIREPLKNET_INIT_STD } from './unireplknet_layers.js';
import { deployStateDict } from './unireplknet_reparam.js';

export type UniRepLKNetVariant = 'a' | 'f' | 'p' | 'n' | 't' | 's' | 'b' | 'l' | 'xl';

export interface UniRepLKNetArch {
  depths: [number, number, number, number];
  dims: [number, number, number, number];
  /** One kernel size per block: 0 (no conv), 3 or 5 (plain depthwise) or 7 to 17 (a Dilated Reparam Block). */
  kernelSizes: number[][];
}

const DEPTHS_AFP: UniRepLKNetArch['depths'] = [2, 2, 6, 2];
const DEPTHS_N: UniRepLKNetArch['depths'] = [2, 2, 8, 2];
const DEPTHS_T: UniRepLKNetArch['depths'] = [3, 3, 18, 3];
const DEPTHS_SBLXL: UniRepLKNetArch['depths'] = [3, 3, 27, 3];

/** Depths and widths of the released variants (official unireplknet_* constructors). */
export const UNIREPLKNET_VARIANTS: Record<UniRepLKNetVariant, Pick<UniRepLKNetArch, 'depths' | 'dims'>> = {
  a: { depths: DEPTHS_AFP, dims: [40, 80, 160, 320] },
  f: { depths: DEPTHS_AFP, dims: [48, 96, 192, 384] },
  p: { depths: DEPTHS_AFP, dims: [64, 128, 256, 512] },
  n: { depths: DEPTHS_N, dims: [80, 160, 320, 640] },
  t: { depths: DEPTHS_T, dims: [80, 160, 320, 640] },
  s: { depths: DEPTHS_SBLXL, dims: [96, 192, 384, 768] },
  b: { depths: DEPTHS_SBLXL, dims: [128, 256, 512, 1024] },
  l: { depths: DEPTHS_SBLXL, dims: [192, 384, 768, 1536] },
  xl: { depths: DEPTHS_SBLXL, dims: [256, 512, 1024, 2048] },
};

const repeat = (pattern: number[], times: number): number[] => Array.from({ length: times }, () => pattern).flat();

/**
 * The official per-block kernel sizes for the four released depth plans: 3 x 3 blocks in
 * stage 1, 13 x 13 in stages 2 and 4, and in stage 3 all 13 (A to N), 13 and 3 alternating
 * (T) or one 13 to two 3s (S to XL). Other depths have no default.
 */
export function defaultKernelSizes(depths: readonly number[]): number[][] | null {
  if (!Array.isArray(depths)) throw argError('defaultKernelSizes', 'depths', 'an array of 4 stage depths', depths);
  const key = depths.join(',');
  const ends = (n: number): number[][] => [repeat([3], n), repeat([13], n)];
  if (key === DEPTHS_AFP.join(',')) return [...ends(2), repeat([13], 6), repeat([13], 2)];
  if (key === DEPTHS_N.join(',')) return [...ends(2), repeat([13], 8), repeat([13], 2)];
  if (key === DEPTHS_T.join(',')) return [...ends(3), repeat([13, 3], 9), repeat([13], 3)];
  if (key === DEPTHS_SBLXL.join(',')) return [...ends(3), repeat([13, 3, 3], 9), repeat([13], 3)];
  return null;
}

/** The dilated branches of a Dilated Reparam Block by its large kernel size (official defaults). */
export const DILATED_BRANCHES: Readonly<Record<number, { kernels: number[]; dilations: number[] }>> = {
  17: { kernels: [5, 9, 3, 3, 3], dilations: [1, 2, 4, 5, 7] },
  15: { kernels: [5, 7, 3, 3, 3], dilations: [1, 2, 3, 5, 7] },
  13: { kernels: [5, 7, 3, 3, 3], dilations: [1, 2, 3, 4, 5] },
  11: { kernels: [5, 5, 3, 3, 3], dilations: [1, 2, 3, 4, 5] },
  9: { kernels: [5, 5, 3, 3], dilations: [1, 2, 3, 4] },
  7: { kernels: [5, 3, 3], dilations: [1, 2, 3] },
};

/** Checks an architecture: four stages, kernel sizes matching the depths, every size supported. */
export function checkArch(op: string, arch: UniRepLKNetArch): UniRepLKNetArch {
  if (arch === null || typeof arch !== 'object') throw argError(op, 'arch', 'an object { depths, dims, kernelSizes }', arch);
  const four = (name: string, v: unknown): void => {
    if (!Array.isArray(v) || v.length !== 4) throw new Error(`${op}: expected 4 entries (one per stage) for ${name}, got ${JSON.stringify(v)}`);
    v.forEach((d, i) => checkInteger(op, `${name}[${i}]`, d, 1));
  };
  four('depths', arch.depths);
  four('dims', arch.dims);
  if (!Array.isArray(arch.kernelSizes) || arch.kernelSizes.length !== 4) throw new Error(`${op}: expected 4 lists (one per stage) for kernel_sizes, got ${JSON.stringify(arch.kernelSizes)}`);
  arch.kernelSizes.forEach((ks, s) => {
    if (!Array.isArray(ks) || ks.length !== arch.depths[s]) {
      throw new Error(`${op}: expected ${arch.depths[s]} kernel sizes (the depth) for kernel_sizes[${s}], got ${JSON.stringify(ks)}`);
    }
    ks.forEach((k, j) => {
      if (!(k === 0 || k === 3 || k === 5 || k in DILATED_BRANCHES)) {
        throw new Error(`${op}: expected 0, 3, 5, 7, 9, 11, 13, 15 or 17 for kernel_sizes[${s}][${j}], got ${JSON.stringify(k)}`);
      }
    });
  });
  if (arch.dims[0] % 2 !== 0) throw new Error(`${op}: expected an even dims[0] (the stem's first conv has dims[0] / 2 channels), got ${arch.dims[0]}`);
  if (arch.dims.some((d) => d < 4)) throw new Error(`${op}: expected every dim >= 4 (SE squeezes to dim / 4), got ${JSON.stringify(arch.dims)}`);
  return arch;
}

/** The architecture of a named variant with its default kernel sizes. */
export function variantArch(variant: UniRepLKNetVariant): UniRepLKNetArch {
  if (typeof variant !== 'string' || !Object.hasOwn(UNIREPLKNET_VARIANTS, variant)) {
    throw argError('variantArch', 'variant', `one of ${Object.keys(UNIREPLKNET_VARIANTS).map((k) => `'${k}'`).join(', ')}`, variant);
  }
  const v = UNIREPLKNET_VARIANTS[variant];
  return { depths: [...v.depths], dims: [...v.dims], kernelSizes: defaultKernelSizes(v.depths)! };
}

export interface UniRepLKNetOptions extends LayerOptions {
  /** Build the inference structure (merged kernels with bias, no BatchNorm, no layer scale). Default false. */
  deploy?: boolean;
  /** Stochastic depth, rising linearly from 0 over the blocks to this rate (default 0). */
  dropPathRate?: number;
  /** Initial layer scale; 0 or null for none (default 1e-6). */
  layerScaleInitValue?: number | null;
  /** Source of the drop-path draws (default: the default generator). */
  dropPathGenerator?: Generator;
}

/**
 * The Dilated Reparam Block: BN(DW_K(x)) + sum over branches of BN_b(DW_{k_b, d_b}(x)),
 * names lk_origin / origin_bn / dil_conv_k{k}_{d} / dil_bn_k{k}_{d}; in the deploy form only
 * lk_origin, with bias.
 */
export class DilatedReparamBlock extends Module {
  readonly branches: { kernel: number; dilation: number }[];

  constructor(
    readonly channels: number,
    readonly kernelSize: number,
    readonly deploy: boolean,
    opts: LayerOptions = {},
  ) {
    super();
    const table = DILATED_BRANCHES[kernelSize];
    if (!table) throw new Error(`DilatedReparamBlock: expected a kernel size in ${Object.keys(DILATED_BRANCHES).join(', ')}, got ${kernelSize}`);
    this.branches = table.kernels.map((kernel, i) => ({ kernel, dilation: table.dilations[i]! }));
    this.registerModule('lk_origin', new DepthwiseConv(channels, kernelSize, 1, { ...opts, bias: deploy }));
    if (deploy) return;
    this.registerModule('origin_bn', new BatchNorm2d(channels, opts));
    for (const { kernel, dilation } of this.branches) {
      this.registerModule(`dil_conv_k${kernel}_${dilation}`, new DepthwiseConv(channels, kernel, dilation, { ...opts, bias: false }));
      this.registerModule(`dil_bn_k${kernel}_${dilation}`, new BatchNorm2d(channels, opts));
    }
  }

  forward(x: Tensor, updateRunningStats = true): Tensor {
    const main = this.child<DepthwiseConv>('lk_origin');
    if (this.deploy) return main.forward(x);
    return scope(() => {
      const input = autocastInput(x);
      const terms: [BatchNorm2d, Tensor][] = [[this.child<BatchNorm2d>('origin_bn'), main.forward(input)]];
      for (const { kernel, dilation } of this.branches) {
        const conv = this.child<DepthwiseConv>(`dil_conv_k${kernel}_${dilation}`);
        terms.push([this.child<BatchNorm2d>(`dil_bn_k${kernel}_${dilation}`), conv.forward(input)]);
      }
      return BatchNorm2d.sum(terms, updateRunningStats);
    });
  }
}

/**
 * One UniRepLKNet block on NHWC x: x + dropPath(gamma * BN(pwconv2(GRN(GELU(pwconv1(SE(BN(dwconv(x))))))))).
 * Deploy form: x + pwconv2(GRN(GELU(pwconv1(SE(dwconv(x)))))) with biases carrying what the
 * BatchNorms, GRN's beta and the layer scale contributed.
 */
export class UniRepLKNetBlock extends Module {
  readonly dwconv: DilatedReparamBlock | DepthwiseConv | null;
  readonly ffnDim: number;
  private readonly generator: Generator | undefined;

  constructor(
    readonly dim: number,
    readonly kernelSize: number,
    readonly dropPathRate: number,
    readonly deploy: boolean,
    layerScaleInitValue: number | null,
    opts: LayerOptions & { dropPathGenerator?: Generator } = {},
  ) {
    super();
    if (kernelSize === 0) this.dwconv = null;
    else if (kernelSize >= 7) this.dwconv = this.registerModule('dwconv', new DilatedReparamBlock(dim, kernelSize, deploy, opts));
    else this.dwconv = this.registerModule('dwconv', new DepthwiseConv(dim, kernelSize, 1, { ...opts, bias: deploy }));
    if (!deploy && kernelSize !== 0) this.registerModule('norm', new BatchNorm2d(dim, opts));
    this.registerModule('se', new SEBlock(dim, Math.floor(dim / 4), opts));
    this.ffnDim = 4 * dim;
    this.registerModule('pwconv1', new Sequence({ 1: linearLayer(dim, this.ffnDim, true, opts) }));
    this.registerModule('act', new Sequence({ 1: new GRN(this.ffnDim, { ...opts, bias: !deploy }) }));
    const pw2 = linearLayer(this.ffnDim, dim, deploy, opts);
    this.registerModule('pwconv2', new Sequence(deploy ? { 0: pw2 } : { 0: pw2, 2: new BatchNorm2d(dim, opts) }));
    if (!deploy && layerScaleInitValue) this.registerParameter('gamma', initConstant(emptyParameter([dim], opts), layerScaleInitValue));
    this.generator = opts.dropPathGenerator;
  }

  /** updateRunningStats false: a recomputation (gradient checkpointing) of a forward that already updated them. */
  forward(x: Tensor, updateRunningStats = true): Tensor {
    return scope(() => {
      let y = this.dwconv instanceof DilatedReparamBlock ? this.dwconv.forward(x, updateRunningStats) : this.dwconv ? this.dwconv.forward(x) : x;
      if (!this.deploy && this.dwconv) y = this.child<BatchNorm2d>('norm').forward(y, { updateRunningStats });
      y = this.child<SEBlock>('se').forward(y);
      // pwconv1's bias is added inside GRN's passes, whose backward then sums its gradient.
      const pw1 = this.child<Sequence>('pwconv1').at<Linear>(1);
      y = this.child<Sequence>('act').at<GRN>(1).forward(linear(y, pw1.weight, null), true, pw1.bias);
      const pw2 = this.child<Sequence>('pwconv2');
      y = pw2.at<Linear>(0).forward(y);
      if (!this.deploy) {
        const norm = pw2.at<BatchNorm2d>(2);
        const outputScale = this.optionalParam('gamma') ?? undefined;
        // Without drop path the norm's pass writes the residual sum itself: no norm output in
        // the activations' dtype, no add, no cast of the f32 stream's gradient for the norm.
        const dropping = this.training && this.dropPathRate > 0;
        if (!dropping && sameOrWider(y.dtype, x.dtype)) return norm.forward(y, { updateRunningStats, outputScale, residual: x });
        y = norm.forward(y, { updateRunningStats, outputScale });
      }
      return add(x, dropPath(y, this.dropPathRate, { training: this.training, generator: this.generator }));
    });
  }
}

/** A Linear initialized as the official _init_weights does: N(0, 0.02) weight, zero bias. */
function linearLayer(inF: number, outF: number, bias: boolean, opts: LayerOptions): Linear {
  const l = new Linear(inF, outF, { ...opts, bias });
  initNormal(l.weight, UNIREPLKNET_INIT_STD, opts.generator);
  if (l.bias) initConstant(l.bias, 0);
  return l;
}

/**
 * The UniRepLKNet trunk without its classifier: images [B, 3, H, W] -> the final LayerNorm
 * of the spatial mean of stage 4 [B, dims[3]] (timm's forward_features + pooling, which is
 * what OpenCLIP's TimmModel projects). Names: downsample_layers.*, stages.*, norm.
 */
export class UniRepLKNet extends Module {
  readonly arch: UniRepLKNetArch;
  readonly deploy: boolean;
  /**
   * Recompute each block's activations during backward instead of keeping them (the
   * official with_cp; CLIP.setGradCheckpointing sets it). The recomputation leaves the
   * BatchNorm running statistics alone, so they move once per step as without it. Drop
   * path must then draw from the default generator (the one checkpoint rewinds).
   */
  gradCheckpointing = false;

  constructor(arch: UniRepLKNetArch, opts: UniRepLKNetOptions = {}) {
    super();
    this.arch = checkArch('UniRepLKNet', arch);
    this.deploy = opts.deploy ?? false;
    const dropPathRate = checkFinite('UniRepLKNet', 'dropPathRate', opts.dropPathRate ?? 0);
    if (dropPathRate < 0 || dropPathRate >= 1) throw new Error(`UniRepLKNet: expected a rate in [0, 1) for dropPathRate, got ${dropPathRate}`);
    const layerScale = opts.layerScaleInitValue === undefined ? 1e-6 : opts.layerScaleInitValue === null ? null : checkFinite('UniRepLKNet', 'layerScaleInitValue', opts.layerScaleInitValue);
    const { dims, depths } = this.arch;
    const stem = new Sequence({
      0: new Conv2d(3, dims[0] / 2, 3, 2, 1, opts),
      1: new LayerNorm(dims[0] / 2, { ...opts, eps: 1e-6 }),
      3: new Conv2d(dims[0] / 2, dims[0], 3, 2, 1, opts),
      4: new LayerNorm(dims[0], { ...opts, eps: 1e-6 }),
    });
    const downsample = new ModuleList<Sequence>([stem]);
    for (let i = 0; i < 3; i++) {
      downsample.push(new Sequence({ 0: new Conv2d(dims[i]!, dims[i + 1]!, 3, 2, 1, opts), 1: new LayerNorm(dims[i + 1]!, { ...opts, eps: 1e-6 }) }));
    }
    this.registerModule('downsample_layers', downsample);
    const total = depths.reduce((a, b) => a + b, 0);
    const stages = new ModuleList<ModuleList<UniRepLKNetBlock>>();
    let block = 0;
    for (let s = 0; s < 4; s++) {
      const stage = new ModuleList<UniRepLKNetBlock>();
      for (let j = 0; j < depths[s]!; j++, block++) {
        // torch.linspace(0, rate, total): the rates of the first and the last block are exact.
        const rate = total > 1 ? (dropPathRate * block) / (total - 1) : 0;
        stage.push(new UniRepLKNetBlock(dims[s]!, this.arch.kernelSizes[s]![j]!, rate, this.deploy, layerScale, opts));
      }
      stages.push(stage);
    }
    this.registerModule('stages', stages);
    this.registerModule('norm', new LayerNorm(dims[3], { ...opts, eps: 1e-6 }));
  }

  /** images [B, 3, H, W] -> pooled, normalized features [B, dims[3]]. */
  forward(images: Tensor): Tensor {
    if (images.rank !== 4 || images.shape[1] !== 3) {
      throw new Error(`UniRepLKNet.forward: expected images [B, 3, H, W] for images, got [${images.shape.join(', ')}]`);
    }
    return scope(() => {
      let x = this.forwardStages(nchwToNhwc(images));
      const [b, h, w, c] = x.shape as [number, number, number, number];
      x = mean(reshape(x, [b, h * w, c]), 1);
      return this.child<LayerNorm>('norm').forward(x);
    });
  }

  /** NHWC [B, H, W, 3] -> the stage-4 feature map [B, H / 32, W / 32, dims[3]] (rounded up per stride-2 layer). */
  forwardStages(x: Tensor): Tensor {
    return scope(() => {
      const downsample = this.child<ModuleList<Sequence>>('downsample_layers');
      const stages = this.child<ModuleList<ModuleList<UniRepLKNetBlock>>>('stages');
      const recompute = this.gradCheckpointing && this.training && isGradEnabled();
      // Inside checkpoint the first run has gradients off and the recomputation on: only the
      // first updates the running statistics.
      const run = (blk: UniRepLKNetBlock, t: Tensor): Tensor =>
        recompute ? checkpoint((input) => blk.forward(input, !isGradEnabled()), t) : blk.forward(t);
      let h = x;
      for (let s = 0; s < 4; s++) {
        const ds = downsample.get(s);
        h = ds.at<Conv2d>(0).forward(h);
        h = ds.at<LayerNorm>(1).forward(h);
        if (s === 0) {
          h = gelu(h);
          h = ds.at<Conv2d>(3).forward(h);
          h = ds.at<LayerNorm>(4).forward(h);
        }
        for (const blk of stages.get(s)) h = run(blk, h);
      }
      return h;
    });
  }
}

export interface UniRepLKNetTowerOptions extends UniRepLKNetOptions {
  /** A bias on head.proj (OpenCLIP's timm_proj_bias, default false). */
  projBias?: boolean;
}

/**
 * The CLIP image tower OpenCLIP builds around a timm trunk (TimmModel with pool 'avg' and proj
 * 'linear'): trunk (mean pool -> LayerNorm) -> head.proj, a Linear to embedDim (no bias by
 * default). Names: trunk.*, head.proj.weight.
 */
export class UniRepLKNetTower extends Module {
  readonly trunk: UniRepLKNet;
  readonly proj: Linear;

  constructor(
    arch: UniRepLKNetArch,
    readonly embedDim: number,
    private readonly opts: UniRepLKNetTowerOptions = {},
  ) {
    super();
    checkInteger('UniRepLKNetTower', 'embedDim', embedDim, 1);
    this.trunk = this.registerModule('trunk', new UniRepLKNet(arch, opts));
    this.proj = new Linear(arch.dims[3], embedDim, { ...opts, bias: opts.projBias ?? false });
    this.registerModule('head', new Sequence({ proj: this.proj }));
  }

  /** images [B, 3, H, W] -> image features [B, embedDim] (not normalized). */
  forward(images: Tensor): Tensor {
    return scope(() => this.proj.forward(this.trunk.forward(images)));
  }

  /**
   * The deploy form of this tower: a new module (this one is left as it is) whose every
   * block has one large kernel with bias in place of the dilated branches and BatchNorms, and
   * whose outputs equal this one's in eval mode.
   */
  reparameterize(): UniRepLKNetTower {
    const deployed = new UniRepLKNetTower(this.trunk.arch, this.embedDim, { ...this.opts, deploy: true, device: this.device });
    scope(() => deployed.loadStateDict(deployStateDict(this.stateDict())));
    deployed.train(this.training);
    return deployed;
  }
}
