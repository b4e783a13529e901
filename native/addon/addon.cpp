// Module entry: registers every op family's exports. No logic lives here.
#include <napi.h>

#include "register.h"

namespace {
Napi::Object init(Napi::Env env, Napi::Object exports) {
  using namespace cf::addon;
  register_storage(env, exports);
  register_creation(env, exports);
  register_elementwise(env, exports);
  register_reduce(env, exports);
  register_embedding(env, exports);
  register_permute(env, exports);
  register_slice(env, exports);
  register_softmax(env, exports);
  register_cross_entropy(env, exports);
  register_layernorm(env, exports);
  register_l2norm(env, exports);
  register_matmul(env, exports);
  register_contrastive_loss(env, exports);
  register_attention(env, exports);
  register_dwconv(env, exports);
  register_adamw(env, exports);
  register_file_read(env, exports);
  register_im2col(env, exports);
  register_batchnorm(env, exports);
  register_grn(env, exports);
  register_jpeg(env, exports);
#ifdef CLIPFORGE_CUDA_EMULATION
  register_emu_selftest(env, exports);
#endif
  return exports;
}
}  // namespace

NODE_API_MODULE(clipforge, init)
