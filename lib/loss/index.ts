// Contrastive losses: CLIP (softmax cross-entropy, InfoNCE) and SigLIP (pairwise sigmoid), fused
// and tiled in the native kernels so that the N×N logit matrix never exists (memory O(N)).
//
// The logit scale is a learned *log* parameter t, as in OpenCLIP: the losses use exp(t). Create it
// with initLogitScale() (ln(1/0.07); SigLIP: ln 10 and initLogitBias() = −10) and clamp it with
// clampLogitScale() after each optimizer step ([0, ln 100]).
//
// Distributed forms (OpenCLIP's meaning), W ranks with n rows each, N = W·n:
//
// - gatherFeatures(parts, rank) is all_gather: [W·n, D] in rank order. By default the gradient
//   reaches only parts[rank] (the rank's own slice); with { withGrad: true } every slice's gradient
//   reaches its owner (OpenCLIP --gather-with-grad; across processes, a reduce-scatter).
// - localClipLoss / localSiglipLoss on rank r: local rows against all gathered columns, labels at
//   r·n + i, normalized by the local batch n (OpenCLIP --local-loss; SigLipLoss).
//
// The identities, each checked by simulating ranks in one process (test/loss/distributed.test.ts):
//
// 1. Loss: Σ_r loss_r = W · L, where L is clipLoss (or siglipLoss) over all N pairs: each global
//    row and column term appears on exactly one rank, divided by n instead of N.
// 2. Gradients of the local losses, gathered with withGrad: every ℓ_r depends on every feature
//    through the gathered tensors, and each slice's gradient flows back to its owner, so the
//    gradient arriving at rank r's features is ∂(Σ_r' ℓ_r')/∂(features of r) = W · ∂L/∂(features
//    of r). The sum over ranks of the local losses' gradients is W·∇L; data-parallel training
//    averages gradients over ranks, which gives exactly ∇L (the logit scale and bias too).
//    Gathered without withGrad, rank r's features miss the terms of the other ranks' losses
//    (the columns of other ranks' rows); OpenCLIP pairs --local-loss with --gather-with-grad.
// 3. Full loss on gathered features, local slice only (the default gather): every rank computes L
//    itself and its gradient reaches only its own features, so rank r holds exactly ∂L/∂(features
//    of r) and the sum over ranks of the gradients is ∇L.
export { clipLoss, initLogitScale, clampLogitScale, LOGIT_SCALE_INIT, LOGIT_SCALE_MAX } from './clip.js';
export { siglipLoss, initLogitBias, SIGLIP_LOGIT_SCALE_INIT, SIGLIP_LOGIT_BIAS_INIT } from './siglip.js';
export { gatherFeatures, localClipLoss, localSiglipLoss, type GatherOptions } from './distributed.js';
