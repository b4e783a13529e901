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
  return exports;
}
}  // namespace

NODE_API_MODULE(clipforge, init)
