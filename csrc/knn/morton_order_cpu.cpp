#include "knn/morton_order.h"

#include <algorithm>
#include <vector>

#include "common/launch.h"
#include "common/parallel.h"
#include "knn/tiles_plan.h"

namespace m3ad {
namespace {

constexpr int kRadixBits = 10;  // three passes over the 30-bit codes
constexpr int64_t kBuckets = int64_t{1} << kRadixBits;

template <typename T>
void order_cloud(const T* pts, int64_t n, int64_t P, int64_t* order) {
  // The frame as morton_frame computes it (tiles_plan.h; NaN coordinates left out of it, their
  // codes clamp to cell 0).
  T lo[3];
  const T scale = cloud_frame(pts, n, lo);
  MortonParams mp;
  mp.points = pts, mp.lo = lo, mp.scale = &scale, mp.B = 1, mp.P = n;
  std::vector<uint32_t> code(static_cast<size_t>(n)), code2(static_cast<size_t>(n));
  std::vector<int64_t> tmp(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) code[i] = static_cast<uint32_t>(morton_code<T>(mp, 0, i)), order[i] = i;
  // LSD counting sort, stable: equal codes keep index order.
  std::vector<int64_t> count(static_cast<size_t>(kBuckets) + 1);
  for (int pass = 0; pass < 3 * kMortonBits / kRadixBits; ++pass) {
    const int shift = pass * kRadixBits;
    std::fill(count.begin(), count.end(), 0);
    for (int64_t i = 0; i < n; ++i) ++count[((code[i] >> shift) & (kBuckets - 1)) + 1];
    for (int64_t b = 0; b < kBuckets; ++b) count[b + 1] += count[b];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t at = count[(code[i] >> shift) & (kBuckets - 1)]++;
      tmp[at] = order[i], code2[at] = code[i];
    }
    std::copy(tmp.begin(), tmp.end(), order);
    code.swap(code2);
  }
  for (int64_t i = n; i < P; ++i) order[i] = i;
}

}  // namespace

void morton_order_cpu(const void* points, const int64_t* lengths, int64_t B, int64_t P, DType dtype,
                      int64_t* order) {
  static_assert(3 * kMortonBits % kRadixBits == 0, "whole radix passes");
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        order_cloud<T>(static_cast<const T*>(points) + b * P * 3, clamp_len(lengths, b, P), P, order + b * P);
    });
    return 0;
  });
}

}  // namespace m3ad
