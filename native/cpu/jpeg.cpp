// JPEG decode + crop + bicubic resize + normalize over libjpeg-turbo (see jpeg.h).
//
// libjpeg reports errors through error_exit, which by default prints and calls exit(). Here
// it longjmps back to decode_jpeg_crop, which throws. Everything with a destructor is
// constructed before the setjmp (the Decoder), so the longjmp skips no C++ cleanup, and the
// throw then unwinds normally. Warnings (corrupt or truncated data that libjpeg would patch
// over with grey) are errors too, as they are in sharp with its default failOn 'warning'.
#ifdef CLIPFORGE_WITH_JPEG
#include <csetjmp>
#include <cstdio>
#include <jpeglib.h>

#include <string>

#include "core.h"
#include "isa.h"
#include "jpeg.h"
#include "resample.h"

namespace cf::cpu {
namespace {

constexpr const char* kOp = "decodeJpegCrop";
// Scanlines read per jpeg_read_scanlines call.
constexpr int kChunkRows = 16;

struct ErrorState {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void on_error(j_common_ptr c) {
  ErrorState* e = reinterpret_cast<ErrorState*>(c->err);
  c->err->format_message(c, e->message);
  std::longjmp(e->jump, 1);
}

// Level -1 is a warning about the data; higher levels are trace messages.
void on_message(j_common_ptr c, int level) {
  if (level < 0) on_error(c);
}

// The libjpeg state and every buffer of a call, owned outside the setjmp's reach.
struct Decoder {
  jpeg_decompress_struct info;
  ErrorState err;
  Taps h, v;
  std::vector<uint8_t> chunk;
  std::vector<v4f> wide;
  std::vector<float> planes;

  Decoder() {
    std::memset(&info, 0, sizeof info);
    info.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = on_error;
    err.mgr.emit_message = on_message;
    err.message[0] = '\0';
  }
  // Safe on a struct that jpeg_create_decompress never finished: it frees only what exists.
  ~Decoder() { jpeg_destroy_decompress(&info); }
};

// The smallest M of 1, 2, 4, 8 with the box scaled by M/8 still covering the output. Only
// these: libjpeg-turbo has SIMD inverse DCTs for 8, 4, 2 and 1 points, and scales the chroma
// of a 4:2:0 JPEG at twice the luma's M, so 3, 5, 6 and 7 run its scalar 3- to 14-point
// IDCTs. Decoding fewer pixels that way lost: 13-19% fewer images per CPU-second on 256-512
// px photos than decoding more pixels with these four.
int dct_scale(const JpegCrop& c) {
  for (int m = 1; m < 8; m *= 2)
    if (c.width * m / 8 >= c.out_width && c.height * m / 8 >= c.out_height) return m;
  return 8;
}

std::string describe_box(const JpegCrop& c) {
  return "left " + std::to_string(c.left) + ", top " + std::to_string(c.top) + ", width " + std::to_string(c.width) +
         ", height " + std::to_string(c.height);
}

// The resampling passes, built again for AVX2 + FMA (fused multiply-adds shorten the tap
// chains; the vertical pass gets 8-wide vectors) and picked at run time.
struct Resampler {
  void (*rows)(const uint8_t* const* rows, int count, int width, v4f* wide, int x0, const Taps& h, float* planes, size_t plane, size_t r0);
  void (*columns)(const float* planes, size_t plane, int y0, int width, const Taps& v, const float gain[3], const float shift[3], float* out);
};

inline __attribute__((always_inline)) void rows_body(const uint8_t* const* rows, int count, int width, v4f* wide, int x0, const Taps& h,
                                                      float* planes, size_t plane, size_t r0) {
  for (int r = 0; r < count; ++r) {
    widen_row(rows[r], width, wide);
    resample_row(wide, x0, h, planes, plane, r0 + static_cast<size_t>(r));
  }
}

void rows_base(const uint8_t* const* rows, int count, int width, v4f* wide, int x0, const Taps& h, float* planes, size_t plane, size_t r0) {
  rows_body(rows, count, width, wide, x0, h, planes, plane, r0);
}
void columns_base(const float* planes, size_t plane, int y0, int width, const Taps& v, const float gain[3], const float shift[3], float* out) {
  resample_columns_chw(planes, plane, y0, width, v, gain, shift, out);
}

#ifdef CF_X86_DISPATCH
__attribute__((target("avx2,fma"))) void rows_avx2(const uint8_t* const* rows, int count, int width, v4f* wide, int x0, const Taps& h,
                                                   float* planes, size_t plane, size_t r0) {
  rows_body(rows, count, width, wide, x0, h, planes, plane, r0);
}
__attribute__((target("avx2,fma"))) void columns_avx2(const float* planes, size_t plane, int y0, int width, const Taps& v, const float gain[3],
                                                      const float shift[3], float* out) {
  resample_columns_chw(planes, plane, y0, width, v, gain, shift, out);
}
#endif

Resampler resampler() {
#ifdef CF_X86_DISPATCH
  if (has_avx2_fma()) return {rows_avx2, columns_avx2};
#endif
  return {rows_base, columns_base};
}

}  // namespace

int decode_jpeg_crop(const uint8_t* data, size_t size, const JpegCrop& crop, float* out) {
  Decoder d;
  jpeg_decompress_struct& info = d.info;
  if (setjmp(d.err.jump)) throw Error(std::string(kOp) + ": cannot decode JPEG: " + d.err.message);
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, data, static_cast<unsigned long>(size));
  jpeg_read_header(&info, TRUE);
  if (info.jpeg_color_space != JCS_GRAYSCALE && info.jpeg_color_space != JCS_YCbCr && info.jpeg_color_space != JCS_RGB)
    throw Error(std::string(kOp) + ": expected a grey, YCbCr or RGB JPEG, got " +
                (info.jpeg_color_space == JCS_CMYK ? "CMYK" : info.jpeg_color_space == JCS_YCCK ? "YCCK" : "an unknown colour space") +
                " (decode it with sharp)");
  const double img_w = info.image_width, img_h = info.image_height;
  if (!(crop.left >= 0 && crop.top >= 0 && crop.left + crop.width <= img_w && crop.top + crop.height <= img_h))
    throw Error(std::string(kOp) + ": expected a box inside the " + std::to_string(info.image_width) + "x" +
                std::to_string(info.image_height) + " image, got " + describe_box(crop));

  const int m = dct_scale(crop);
  info.scale_num = m;
  info.scale_denom = 8;
  // RGBX: 4 bytes a pixel, the layout of the resampler's pixel vectors.
  info.out_color_space = JCS_EXT_RGBX;
  info.dct_method = JDCT_ISLOW;
  jpeg_start_decompress(&info);

  // The box in the scaled image: scaled pixel i covers source pixels [8i/M, 8(i+1)/M).
  const double f = m / 8.0;
  const double left = crop.left * f, top = crop.top * f, width = crop.width * f, height = crop.height * f;
  const int scaled_w = static_cast<int>(info.output_width), scaled_h = static_cast<int>(info.output_height);
  const int col_lo = std::max(0, static_cast<int>(std::floor(left)));
  const int col_hi = std::min(scaled_w, static_cast<int>(std::ceil(left + width)));
  const int row_lo = std::max(0, static_cast<int>(std::floor(top)));
  const int row_hi = std::min(scaled_h, static_cast<int>(std::ceil(top + height)));
  cubic_taps(left, width, crop.out_width, col_lo, col_hi, d.h);
  cubic_taps(top, height, crop.out_height, row_lo, row_hi, d.v);

  // Decode only the columns and rows the taps read. The crop widens to whole iMCU columns.
  JDIMENSION x0 = static_cast<JDIMENSION>(d.h.lowest());
  JDIMENSION decoded_w = static_cast<JDIMENSION>(d.h.end()) - x0;
  if (decoded_w < info.output_width) jpeg_crop_scanline(&info, &x0, &decoded_w);
  else x0 = 0;
  const int y0 = d.v.lowest(), y1 = d.v.end();
  if (y0 > 0) jpeg_skip_scanlines(&info, static_cast<JDIMENSION>(y0));

  const size_t in_row = static_cast<size_t>(info.output_width) * 4;
  const size_t plane = static_cast<size_t>(crop.out_width) * static_cast<size_t>(y1 - y0);
  d.chunk.resize(in_row * kChunkRows);
  d.wide.resize(info.output_width);
  d.planes.resize(3 * plane);
  const Resampler pass = resampler();
  JSAMPROW pointers[kChunkRows];
  for (int r = 0; r < kChunkRows; ++r) pointers[r] = d.chunk.data() + r * in_row;
  while (static_cast<int>(info.output_scanline) < y1) {
    const int first = static_cast<int>(info.output_scanline);
    const int want = std::min(kChunkRows, y1 - first);
    const int got = static_cast<int>(jpeg_read_scanlines(&info, pointers, static_cast<JDIMENSION>(want)));
    if (got == 0) throw Error(std::string(kOp) + ": cannot decode JPEG: the decoder returned no rows at row " + std::to_string(first));
    pass.rows(pointers, got, static_cast<int>(info.output_width), d.wide.data(), static_cast<int>(x0), d.h, d.planes.data(), plane,
              static_cast<size_t>(first - y0));
  }
  // The rows below the box are never needed: stop without decoding them.
  jpeg_abort_decompress(&info);

  float gain[3], shift[3];
  for (int c = 0; c < 3; ++c) {
    gain[c] = 1.f / (255.f * crop.std[c]);
    shift[c] = -crop.mean[c] / crop.std[c];
  }
  pass.columns(d.planes.data(), plane, y0, crop.out_width, d.v, gain, shift, out);
  return m;
}

const char* jpeg_library_version() {
#define CF_STRINGIFY2(x) #x
#define CF_STRINGIFY(x) CF_STRINGIFY2(x)
  return CF_STRINGIFY(LIBJPEG_TURBO_VERSION);
#undef CF_STRINGIFY
#undef CF_STRINGIFY2
}

}  // namespace cf::cpu
#endif
