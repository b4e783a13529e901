// One registration function per op family; addon.cpp calls them all.
#pragma once
#include <napi.h>

namespace cf::addon {
void register_storage(Napi::Env env, Napi::Object exports);
void register_creation(Napi::Env env, Napi::Object exports);
void register_elementwise(Napi::Env env, Napi::Object exports);
void register_reduce(Napi::Env env, Napi::Object exports);
void register_embedding(Napi::Env env, Napi::Object exports);
void register_permute(Napi::Env env, Napi::Object exports);
void register_slice(Napi::Env env, Napi::Object exports);
void register_softmax(Napi::Env env, Napi::Object exports);
void register_cross_entropy(Napi::Env env, Napi::Object exports);
void register_layernorm(Napi::Env env, Napi::Object exports);
void register_l2norm(Napi::Env env, Napi::Object exports);
void register_matmul(Napi::Env env, Napi::Object exports);
void register_contrastive_loss(Napi::Env env, Napi::Object exports);
void register_attention(Napi::Env env, Napi::Object exports);
void register_dwconv(Napi::Env env, Napi::Object exports);
void register_adamw(Napi::Env env, Napi::Object exports);
void register_file_read(Napi::Env env, Napi::Object exports);
void register_im2col(Napi::Env env, Napi::Object exports);
void register_batchnorm(Napi::Env env, Napi::Object exports);
void register_grn(Napi::Env env, Napi::Object exports);
void register_jpeg(Napi::Env env, Napi::Object exports);
#ifdef CLIPFORGE_CUDA_EMULATION
void register_emu_selftest(Napi::Env env, Napi::Object exports);  // native/emu/selftest.cu
#endif
}  // namespace cf::addon
