// The native addon's interface, and `native`, the addon itself: importing this module loads
// it (lib/native_load.ts finds it) and throws, saying how to build it, when it is not built.
import { loadAddon } from './native_load.js';

/** A tensor as the addon reads it: storage handle, element offset, shape and dtype. */
export interface NativeTensor {
  readonly handle: unknown;
  readonly offset: number;
  readonly shape: readonly number[];
  readonly dtype: string;
}

export interface NativeMemoryStats {
  allocatedBytes: number;
  peakAllocatedBytes: number;
  reservedBytes: number;
  liveBlocks: number;
  allocCalls: number;
  systemAllocs: number;
  cacheHits: number;
}

export interface NativeDeviceInfo {
  index: number;
  name: string;
  totalMemory: number;
  computeCapability: string;
  multiprocessors: number;
}

export interface NativeInfo {
  backends: string[];
  devices: NativeDeviceInfo[];
  threads: number;
  cudaVersion?: string;
  cudaUnavailable?: string;
}

type T = NativeTensor;

/** An activation fused into matmul's store (native/include/matmul.h). */
export type MatmulEpilogue = 'none' | 'gelu' | 'quickGelu' | 'geluBackward' | 'quickGeluBackward';

/** The addon's exports. Every function validates its arguments and throws an Error. */
export interface NativeAddon {
  alloc(nbytes: number, device: string): unknown;
  free(handle: unknown): void;
  storageBytes(handle: unknown): number;
  upload(t: T, data: Float32Array | Int32Array | Uint16Array): void;
  download(t: T): Float32Array | Int32Array;
  copy(src: T, dst: T): void;
  memoryStats(): { cpu: NativeMemoryStats; cuda: NativeMemoryStats[] };
  emptyCache(): void;
  synchronize(device: string): void;
  info(): NativeInfo;
  setNumThreads(n: number): void;
  fill(out: T, value: number): void;
  arange(out: T, start: number, step: number): void;
  random(out: T, kind: 'uniform' | 'normal', seed: number, offset: number, a: number, b: number): void;
  cast(x: T, out: T): void;
  unary(op: string, x: T, out: T, p0: number, p1: number): void;
  unaryBackward(op: string, x: T, dy: T, dx: T, p0: number, p1: number): void;
  binary(op: string, a: T, b: T, out: T): void;
  binaryBackward(op: string, side: number, a: T, b: T, dy: T, out: T): void;
  // reduce: out has x's dtype, or f32 for a bf16 x's sum or mean
  reduce(op: 'sum' | 'mean' | 'max', x: T, out: T, axis: number, indices?: T): void;
  reduceMaxBackward(dy: T, indices: T, dx: T, axis: number): void;
  // embedding: weight [V, D], ids i32 [...], out / dy [..., D]; dweight is overwritten
  embedding(weight: T, ids: T, out: T): void;
  embeddingBackward(dy: T, ids: T, dweight: T): void;
  // permute: out.shape[k] = x.shape[dims[k]]
  permute(x: T, out: T, dims: number[]): void;
  // slice: dst[.., dstStart + k, ..] = src[.., srcStart + k, ..] along axis, k < count
  sliceCopy(src: T, dst: T, axis: number, srcStart: number, dstStart: number, count: number): void;
  // softmax over the last axis (log: log-softmax); the backward reads the saved output y
  softmax(x: T, y: T, log: boolean): void;
  softmaxBackward(y: T, dy: T, dx: T, log: boolean): void;
  // cross_entropy: logits [..., C], labels i32 [...], lse f32 [...]; out / dy [...] ('none') or []
  crossEntropy(logits: T, labels: T, out: T, lse: T, reduction: 'mean' | 'sum' | 'none', ignoreIndex: number, labelSmoothing: number): void;
  crossEntropyBackward(logits: T, labels: T, lse: T, dy: T, dlogits: T, reduction: 'mean' | 'sum' | 'none', ignoreIndex: number, labelSmoothing: number): void;
  // layernorm: x [..., D], weight / bias / dweight / dbias [D] or null, mean / rstd f32 [...]
  layerNorm(x: T, weight: T | null, bias: T | null, y: T, mean: T, rstd: T, eps: number): void;
  // accumulate (dx given): dx += the input gradient instead of dx = it
  layerNormBackward(x: T, weight: T | null, mean: T, rstd: T, dy: T, dx: T | null, dweight: T | null, dbias: T | null, accumulate: boolean): void;
  // l2norm: x / max(||x||, eps) over the last axis; norm f32 [...] (unclamped)
  l2Normalize(x: T, y: T, norm: T, eps: number): void;
  l2NormalizeBackward(x: T, norm: T, dy: T, dx: T, eps: number): void;
  // matmul: out[..., M, N] = (accumulate ? out : 0) + op(a) · op(b) + bias; a [..., M, K] ([..., K, M] with
  // transA), b [..., K, N] ([..., N, K] with transB), a rank-2 operand shared over the batch; bias [N] or null.
  // epilogue (default 'none', not with accumulate): 'gelu' | 'quickGelu' store act(product + bias) in out and
  // product + bias in aux (out's shape and dtype, or null); 'geluBackward' | 'quickGeluBackward' store
  // product * act'(aux) with aux the pre-activation (bias null): exactly the separate ops' values
  matmul(a: T, b: T, bias: T | null, out: T, transA: boolean, transB: boolean, accumulate: boolean, epilogue?: MatmulEpilogue, aux?: T | null): void;
  // the CPU GEMM micro-kernel: selects one when `which` is given; returns the name of the one in use
  gemmKernel(which?: 'auto' | 'avx2' | 'generic'): string;
  // the bf16 GEMM kernel on a CUDA device: 'mma.sync' forces the sm_80 one everywhere (GEMMs and the
  // contrastive losses' tiles), 'auto' lets Hopper GPUs run TMA + wgmma; returns the name of the one the device runs
  cudaGemmKernel(device: string, which?: 'auto' | 'mma.sync'): string;
  // rows of `a` per chunk of the contrastive losses on Hopper GPUs (a multiple of 128; 0 chooses by size)
  cudaLossChunkRows(device: string, rows: number): void;
  // contrastive loss: a [na, D], b [nb, D]; logScale / bias / loss / dloss / scalar grads [] or [1];
  // a CLIP term is computed when its lse (f32 [na] / [nb]) is given; gradients are f32, null when not wanted
  clipLossForward(a: T, b: T, logScale: T, rowOffset: number, colOffset: number, wRow: number, wCol: number, loss: T, lseRow: T | null, lseCol: T | null): void;
  clipLossBackward(a: T, b: T, logScale: T, lseRow: T | null, lseCol: T | null, rowOffset: number, colOffset: number, wRow: number, wCol: number, dloss: T, da: T | null, db: T | null, dLogScale: T | null): void;
  // SigLIP writes the loss and, in the same pass, the gradients of the loss itself (dloss = 1) that are given
  siglipLoss(a: T, b: T, logScale: T, bias: T, offset: number, weight: number, loss: T, da: T | null, db: T | null, dLogScale: T | null, dBias: T | null): void;
  // attention: q, k, v, out, dout, dq, dk, dv [B, H, S, D]; packed qkv / dqkv [B, S, 3, H, D] with out / dout
  // [B, S, H, D]; lse f32 [B, H, S]; gradients are overwritten
  attentionForward(q: T, k: T, v: T, out: T, lse: T, causal: boolean, scale: number): void;
  attentionBackward(q: T, k: T, v: T, out: T, dout: T, lse: T, dq: T, dk: T, dv: T, causal: boolean, scale: number): void;
  attentionPackedForward(qkv: T, out: T, lse: T, causal: boolean, scale: number): void;
  attentionPackedBackward(qkv: T, out: T, dout: T, lse: T, dqkv: T, causal: boolean, scale: number): void;
  // dwconv: depthwise conv, NHWC x / dx [N, H, W, C], y / dy [N, Ho, Wo, C], w / dw [C, 1, K, K] or [C, K, K],
  // bias / db [C]; x may be null in the weight gradient when dw is (db needs dy alone)
  dwconvForward(x: T, w: T, bias: T | null, y: T, stride: number, padH: number, padW: number, dilation: number): void;
  // accumulate: dx += the input gradient (rounded once) instead of dx = it
  dwconvBackwardInput(dy: T, w: T, dx: T, stride: number, padH: number, padW: number, dilation: number, accumulate: boolean): void;
  dwconvBackwardWeight(x: T | null, dy: T, dw: T | null, db: T | null, kernelSize: number, stride: number, padH: number, padW: number, dilation: number): void;
  // adamw: one AdamW update of each listed parameter in place; params / expAvgs / expAvgSqs f32, grads f32 or
  // bf16 (one dtype per call), one shape per entry, one device; lrs / weightDecays / steps (after this update) per entry
  adamw(params: T[], grads: T[], expAvgs: T[], expAvgSqs: T[], lrs: number[], weightDecays: number[], steps: number[], beta1: number, beta2: number, eps: number): void;
  // readFileInto: the raw bytes of an open file (fd) from `position` into the tensor's memory, numel x dtype size
  readFileInto(t: T, fd: number, position: number): void;
  // im2col: x / dx [N, H, W, C] <-> cols / dcols [N * Ho * Wo, C * K * K] in (c, kh, kw) column order; dx is overwritten
  im2col(x: T, cols: T, kernelSize: number, stride: number, padH: number, padW: number): void;
  col2im(dcols: T, dx: T, kernelSize: number, stride: number, padH: number, padW: number): void;
  // batchNorm over the last (channel) axis: x / y / dy / dx [..., C]; weight, bias [C] of one dtype, x's or f32 beside bf16 x; mean, var, rstd,
  // sumDy, sumDyXhat f32 [C]; batchStats: mean and rstd came from this batch (false: constants, eval mode)
  batchNormStats(x: T, mean: T, variance: T, rstd: T, eps: number): void;
  // y = residual + the normalized x when a residual is given (y in the residual's dtype: x's, or f32 beside bf16 x)
  batchNormApply(x: T, mean: T, rstd: T, weight: T | null, bias: T | null, residual: T | null, y: T): void;
  // y = the sum over 1 to 8 branches of batchNormApply's value; the branches' x of one dtype and shape, their weights and biases of one dtype
  batchNormSumApply(xs: T[], means: T[], rstds: T[], weights: (T | null)[], biases: (T | null)[], y: T): void;
  // dy of x's dtype, or f32 beside bf16 x (the gradient of an f32 residual sum); dx of x's dtype
  batchNormBackwardReduce(x: T, dy: T, mean: T, rstd: T, sumDy: T, sumDyXhat: T): void;
  batchNormBackwardInput(x: T, dy: T, mean: T, rstd: T, weight: T | null, sumDy: T, sumDyXhat: T, dx: T, batchStats: boolean): void;
  // The backward of batchNormSumApply's branches, which share dy (x's dtype): sumDy once, sumDyXhats and dxs (null: not needed) one per branch
  batchNormSumBackwardReduce(xs: T[], means: T[], rstds: T[], dy: T, sumDy: T, sumDyXhats: T[]): void;
  batchNormSumBackwardInput(xs: T[], means: T[], rstds: T[], weights: (T | null)[], dy: T, sumDy: T, sumDyXhats: T[], dxs: (T | null)[], batchStats: boolean): void;
  // GRN passes over a / b / y [N, P, C] with x = (b ?? a) + xBias[c]: out[n, c] = sum_p a * x (b null: x * x; and
  // aSums[n, c] = sum_p a in the same pass); y = a * fa[n, c] + b * fb[n, c] + beta[c] (and ySums[n, c] = sum_p y);
  // out, aSums, ySums, fa, fb f32 [N, C]; beta [C] or [N, C] and xBias [C] with a's dtype or f32 beside bf16 a;
  // gelu: the GELU forms (native/include/grn.h)
  sampleChannelDot(a: T, b: T | null, out: T, gelu: boolean, aSums: T | null, xBias: T | null): void;
  sampleChannelAffine(a: T, fa: T, b: T | null, fb: T | null, beta: T | null, y: T, gelu: boolean, xBias: T | null, ySums: T | null): void;
  // JPEG decode + crop (box [left, top, width, height], stored-image pixels) + bicubic resize + normalize into
  // out[offset ..] as CHW, synchronously (native/include/jpeg.h); returns M of the DCT scale M/8 it decoded at
  decodeJpegCrop(bytes: Uint8Array, box: number[], outWidth: number, outHeight: number, mean: readonly number[], std: readonly number[], out: Float32Array, offset: number): number;
  jpegDecoder(): { available: true; libjpegTurbo: string } | { available: false; reason: string };
}

export { packageRoot } from './native_load.js';

export const native: NativeAddon = loadAddon();
