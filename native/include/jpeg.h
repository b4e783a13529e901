// JPEG decode + crop + bicubic resize + normalize in one call, over libjpeg-turbo: the data
// loader's per-image transform for JPEG files (lib/data/jpeg.ts).
//
//   out[c, y, x] = (resize(crop(decode(bytes)))[y, x, c] / 255 - mean[c]) / std[c]
//
// The crop box is in the stored image's pixels (no EXIF orientation). The decoder scales in
// the DCT by M/8, the smallest M of 1, 2, 4, 8 that keeps the scaled box at least the output
// size, and decodes only the box's rows (and, where it saves work, its columns). The resize
// is the antialiased bicubic (a = -0.5, Catmull-Rom) that PIL, torchvision and sharp's 'cubic'
// apply: taps stretched by the downscaling factor, limited to the box, renormalized.
// Grey JPEGs give three equal channels; CMYK and YCCK ones are an error (the caller
// decodes those elsewhere). Corrupt data, warnings included, is an error.
//
// CPU only. Built when CMake finds libjpeg (CLIPFORGE_WITH_JPEG); reentrant, no globals.
#pragma once
#include <cstddef>
#include <cstdint>

namespace cf::cpu {

struct JpegCrop {
  double left = 0, top = 0, width = 0, height = 0;  // the box, stored-image pixels
  int out_width = 0, out_height = 0;
  float mean[3] = {0, 0, 0};
  float std[3] = {1, 1, 1};
};

// Writes 3 x out_height x out_width floats (CHW) to `out`; returns M, the DCT scale M/8
// used. Throws cf::Error naming what was wrong (bad data, a box outside the image, an
// unsupported colour space).
int decode_jpeg_crop(const uint8_t* data, size_t size, const JpegCrop& crop, float* out);

// The libjpeg-turbo version the addon was built against ("2.1.5").
const char* jpeg_library_version();

}  // namespace cf::cpu
