// CPU twins of the tiles-plan steps (tiles_plan.h).
#include "common/parallel.h"
#include "knn/tiles_plan.h"

namespace m3ad {

void morton_frame_cpu(const FrameParams& p) {
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_for(p.B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const T* x = static_cast<const T*>(p.points) + b * p.P * 3;
        static_cast<T*>(p.scale)[b] = cloud_frame(x, clamp_len(p.lengths, b, p.P), static_cast<T*>(p.lo) + b * 3);
      }
    });
    return 0;
  });
}

void morton_codes_cpu(const MortonParams& p) {
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_for(p.B * p.P, 4096, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) p.codes[r] = morton_code<T>(p, r / p.P, r % p.P);
    });
    return 0;
  });
}

void tile_boxes_cpu(const TileBoxParams& p) {
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_for(p.B * p.tiles, 256, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) tile_box<T>(p, r / p.tiles, r % p.tiles);
    });
    parallel_for(p.B * p.super_tiles, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) super_box<T>(p, r / p.super_tiles, r % p.super_tiles);
    });
    return 0;
  });
}

}  // namespace m3ad
