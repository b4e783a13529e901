// Native JPEG decoding for the data loader (see jpeg.h):
//   decodeJpegCrop(bytes, box, outWidth, outHeight, mean, std, out, offset) -> M (DCT scale M/8)
//     bytes Uint8Array; box [left, top, width, height] in stored-image pixels; mean, std
//     3 numbers; out Float32Array receiving 3 x outHeight x outWidth floats from offset.
//   jpegDecoder() -> { available: true, libjpegTurbo: '2.1.5' } | { available: false, reason }
// Synchronous: the loader calls it from its worker threads, each decoding its own images.
#include <cmath>

#include "args.h"
#include "jpeg.h"
#include "register.h"

namespace cf::addon {
namespace {

constexpr int kMaxSide = 8192;

#ifndef CLIPFORGE_WITH_JPEG
constexpr const char* kUnavailable = "native JPEG decoding was not built (" CLIPFORGE_NO_JPEG_REASON ")";
#endif

// The `n` finite numbers of the array argument info[i]; `expected` says what they must be.
std::vector<double> numbers(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg, size_t n,
                            const std::string& expected) {
  Napi::Env env = info.Env();
  if (!info[i].IsArray()) fail_arg(env, op, arg, expected, describe(info[i]));
  Napi::Array a = info[i].As<Napi::Array>();
  if (a.Length() != n) fail_arg(env, op, arg, expected, "an array of " + std::to_string(a.Length()));
  std::vector<double> out(n);
  for (uint32_t k = 0; k < n; ++k) {
    Napi::Value v = a.Get(k);
    if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue()))
      fail_arg(env, op, arg, expected, "[" + std::to_string(k) + "] = " + describe(v));
    out[k] = v.As<Napi::Number>().DoubleValue();
  }
  return out;
}

std::string list(const std::vector<double>& xs) {
  std::string s = "[";
  for (size_t k = 0; k < xs.size(); ++k) s += (k ? ", " : "") + std::to_string(xs[k]);
  return s + "]";
}

Napi::Value decode_jpeg_crop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "decodeJpegCrop";
  check_arg_count(info, 8, op);
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    fail_arg(env, op, "bytes", "a Uint8Array", describe(info[0]));
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  if (bytes.ElementLength() == 0) fail_arg(env, op, "bytes", "JPEG bytes", "an empty array");
  cpu::JpegCrop crop;
  const char* box_rule = "[left >= 0, top >= 0, width > 0, height > 0]";
  const std::vector<double> box = numbers(info, 1, op, "box", 4, box_rule);
  if (box[0] < 0 || box[1] < 0 || box[2] <= 0 || box[3] <= 0) fail_arg(env, op, "box", box_rule, list(box));
  crop.left = box[0];
  crop.top = box[1];
  crop.width = box[2];
  crop.height = box[3];
  crop.out_width = static_cast<int>(integer(info, 2, op, "outWidth", 1, kMaxSide));
  crop.out_height = static_cast<int>(integer(info, 3, op, "outHeight", 1, kMaxSide));
  const std::vector<double> mean = numbers(info, 4, op, "mean", 3, "3 finite numbers");
  const std::vector<double> std_ = numbers(info, 5, op, "std", 3, "3 positive numbers");
  if (std_[0] <= 0 || std_[1] <= 0 || std_[2] <= 0) fail_arg(env, op, "std", "3 positive numbers", list(std_));
  for (int c = 0; c < 3; ++c) {
    crop.mean[c] = static_cast<float>(mean[c]);
    crop.std[c] = static_cast<float>(std_[c]);
  }
  if (!info[6].IsTypedArray() || info[6].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    fail_arg(env, op, "out", "a Float32Array", describe(info[6]));
  Napi::Float32Array out = info[6].As<Napi::Float32Array>();
  const size_t need = size_t{3} * crop.out_width * crop.out_height;
  const int64_t offset = integer(info, 7, op, "offset", 0, int64_t{1} << 52);
  if (static_cast<size_t>(offset) + need > out.ElementLength())
    fail_arg(env, op, "out", std::to_string(need) + " floats from offset " + std::to_string(offset),
             "a Float32Array of length " + std::to_string(out.ElementLength()));
#ifdef CLIPFORGE_WITH_JPEG
  const int m = cpu::decode_jpeg_crop(bytes.Data(), bytes.ElementLength(), crop, out.Data() + offset);
  return Napi::Number::New(env, m);
#else
  fail(env, std::string(op) + ": " + kUnavailable);
#endif
}

Napi::Value jpeg_decoder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
#ifdef CLIPFORGE_WITH_JPEG
  o.Set("available", true);
  o.Set("libjpegTurbo", cpu::jpeg_library_version());
#else
  o.Set("available", false);
  o.Set("reason", kUnavailable);
#endif
  return o;
}

}  // namespace

void register_jpeg(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "decodeJpegCrop", decode_jpeg_crop);
  CF_EXPORT(exports, "jpegDecoder", jpeg_decoder);
}

}  // namespace cf::addon
