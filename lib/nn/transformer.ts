// OpenCLIP's transformer: pre-norm residual attention blocks with packed QKV attention and
// an MLP, stacked in `resblocks`. Parameter names follow OpenCLIP's state dict
// (resblocks.N.ln_1, .attn.in_proj_weight / in_proj_bias / out_proj, .ln_2, .mlp.c_fc /
// c_proj, and ls_1.gamma / ls_2.gamma when layer scale is on).
//
// Attention runs on the QKV projection's output in place: linear() writes [B, S, 3W], which
// is viewed as [B, S, 3, H, D] and read by attentionPacked, whose [B, S, H, D] result is
// already the [B, S, W] input of out_proj: no permute copies around the kernel.
import { isGradEnabled } from '../tensor/autograd.js';
import { autocastDtype } from '../tensor/autocast.js';
import { argError, checkBoolean, checkFinite, checkInteger, shapeStr } from '../tensor/check.js';
import { checkpoint } from '../tensor/checkpoint.js';
import { type Tensor } from '../tensor/tensor.js';
import { attentionPacked } from '../tensor/ops/attention.js';
import { add } from '../tensor/ops/elementwise.js';
import { linear } from '../tensor/ops/matmul.js';
import { reshape } from '../tensor/ops/shape.js';
import { floatTensor } from '../tensor/ops/util.js';
import { MAX_LAYERS } from './config.js';
import { initConstant, initXavierUniform } from './init.js';
import { emptyParameter, LayerNorm, LayerScale, Linear, Mlp, type Activation, type LayerOptions } from './layers.js';
import { Module, ModuleList } from './module.js';

/** Multi-head self-attention with a packed in-projection (torch.nn.MultiheadAttention's keys). */
export class SelfAttention extends Module {
  readonly headDim: number;
  readonly outProj: Linear;

  constructor(
    readonly width: number,
    readonly heads: number,
    opts: LayerOptions = {},
  ) {
    super();
    checkInteger('SelfAttention', 'width', width, 1, 1 << 20);
    checkInteger('SelfAttention', 'heads', heads, 1, width);
    if (width % heads !== 0) throw new Error(`SelfAttention: expected heads to divide width ${width}, got ${heads}`);
    this.headDim = width / heads;
    // nn.MultiheadAttention's init: xavier-uniform in-projection, zero biases.
    this.registerParameter('in_proj_weight', initXavierUniform(emptyParameter([3 * width, width], opts), opts.generator));
    this.registerParameter('in_proj_bias', initConstant(emptyParameter([3 * width], opts), 0));
    this.outProj = this.registerModule('out_proj', new Linear(width, width, opts));
    initConstant(this.outProj.bias!, 0);
  }

  get inProjWeight(): Tensor {
    return this.param('in_proj_weight');
  }

  /** x [B, S, W] -> [B, S, W]; position i sees only j <= i when `causal`. */
  forward(x: Tensor, causal = false): Tensor {
    const [B, S] = x.shape as [number, number];
    const qkv = linear(x, this.inProjWeight, this.param('in_proj_bias'));
    const packed = reshape(qkv, [B, S, 3, this.heads, this.headDim]);
    qkv.dispose();
    const heads = attentionPacked(packed, { causal });
    packed.dispose();
    const merged = reshape(heads, [B, S, this.width]);
    heads.dispose();
    const y = this.outProj.forward(merged);
    merged.dispose();
    return y;
  }
}

export interface BlockOptions extends LayerOptions {
  /** MLP hidden width as a multiple of the width (default 4). */
  mlpRatio?: number;
  /** Layer-scale initial value; no layer scale when undefined or null (OpenCLIP's ls_init_value). */
  lsInitValue?: number | null;
  /** MLP activation (default 'gelu'; OpenAI's models use 'quickGelu'). */
  activation?: Activation;
  /** LayerNorm epsilon (default 1e-5). */
  eps?: number;
}

/** x + ls_1(attn(ln_1(x))), then + ls_2(mlp(ln_2(x))). */
export class ResidualAttentionBlock extends Module {
  readonly ln1: LayerNorm;
  readonly attn: SelfAttention;
  readonly ls1: LayerScale | null = null;
  readonly ln2: LayerNorm;
  readonly mlp: Mlp;
  readonly ls2: LayerScale | null = null;

  constructor(width: number, heads: number, opts: BlockOptions = {}) {
    super();
    const mlpRatio = opts.mlpRatio === undefined ? 4 : checkFinite('ResidualAttentionBlock', 'mlpRatio', opts.mlpRatio);
    if (!(mlpRatio > 0 && mlpRatio <= 64)) throw argError('ResidualAttentionBlock', 'mlpRatio', 'a number in (0, 64]', mlpRatio);
    const hidden = Math.floor(width * mlpRatio);
    const hasScale = opts.lsInitValue !== undefined && opts.lsInitValue !== null;
    this.ln1 = this.registerModule('ln_1', new LayerNorm(width, opts));
    this.attn = this.registerModule('attn', new SelfAttention(width, heads, opts));
    if (hasScale) this.ls1 = this.registerModule('ls_1', new LayerScale(width, opts.lsInitValue!, opts));
    this.ln2 = this.registerModule('ln_2', new LayerNorm(width, opts));
    this.mlp = this.registerModule('mlp', new Mlp(width, hidden, opts));
    if (hasScale) this.ls2 = this.registerModule('ls_2', new LayerScale(width, opts.lsInitValue!, opts));
  }

  forward(x: Tensor, causal = false): Tensor {
    const h = this.residual(x, this.ln1, (t) => this.attn.forward(t, causal), this.ls1);
    const y = this.residual(h, this.ln2, (t) => this.mlp.forward(t), this.ls2);
    h.dispose();
    return y;
  }

  /** x + scale(branch(norm(x))), freeing each intermediate once read. */
  private residual(x: Tensor, norm: LayerNorm, branch: (t: Tensor) => Tensor, scale: LayerScale | null): Tensor {
    // Both branches start with a product, which under autocast reads the normalized rows in
    // bf16: the norm writes them so, rounded once, instead of in f32 for a cast to read.
    const n = norm.forward(x, autocastDtype());
    let b = branch(n);
    n.dispose();
    if (scale) {
      const s = scale.forward(b);
      b.dispose();
      b = s;
    }
    const y = add(x, b);
    b.dispose();
    return y;
  }
}

export interface TransformerOptions extends BlockOptions {
  /** Causal self-attention (the text tower's mask); default false. */
  causal?: boolean;
}

/** A stack of residual attention blocks over [B, S, width] (OpenCLIP's Transformer). */
export class Transformer extends Module {
  readonly resblocks: ModuleList<ResidualAttentionBlock>;
  readonly causal: boolean;
  /**
   * Recompute each block's activations during backward instead of keeping them (OpenCLIP's
   * set_grad_checkpointing): memory per block drops to its input, at the cost of a second
   * forward. Only in training mode with gradients on.
   */
  gradCheckpointing = false;

  constructor(
    readonly width: number,
    readonly layers: number,
    readonly heads: number,
    opts: TransformerOptions = {},
  ) {
    super();
    checkInteger('Transformer', 'width', width, 1, 1 << 20);
    checkInteger('Transformer', 'layers', layers, 0, MAX_LAYERS);
    checkInteger('Transformer', 'heads', heads, 1, 1 << 20);
    this.causal = opts.causal === undefined ? false : checkBoolean('Transformer', 'causal', opts.causal);
    const blocks: ResidualAttentionBlock[] = [];
    for (let i = 0; i < layers; i++) blocks.push(new ResidualAttentionBlock(width, heads, opts));
    this.resblocks = this.registerModule('resblocks', new ModuleList(blocks));
  }

  /** x [B, S, width] -> [B, S, width]. */
  forward(xIn: Tensor): Tensor {
    const x = floatTensor('Transformer.forward', 'x', xIn);
    if (x.rank !== 3 || x.shape[2] !== this.width) {
      throw new Error(`Transformer.forward: expected shape [B, S, ${this.width}] for x, got ${shapeStr(x.shape)}`);
    }
    const recompute = this.gradCheckpointing && this.training && isGradEnabled();
    let h = x;
    for (const block of this.resblocks) {
      const next = recompute ? checkpoint((t) => block.forward(t, this.causal), h) : block.forward(h, this.causal);
      if (h !== x) h.dispose();
      h = next;
    }
    return h === x ? reshape(x, x.shape) : h;
  }
}
