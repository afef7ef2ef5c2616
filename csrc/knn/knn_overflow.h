// Neighbours at an infinite distance. Finite coordinates can give a squared (or L1) distance
// that overflows to +inf (|x| above ~1e19 in float32). The CPU kernels, the block select and the
// references keep such points as neighbours, after every finite one and in index order. The
// register and in-memory lists of the other kNN kernels mark an empty slot with +inf and accept
// only distances strictly below their K-th entry, so they can never hold one. A row whose list
// ended short of K while its cloud had points left over therefore takes a second pass. Such a
// list was never full, so every finite distance is in it, and the missing entries are exactly
// the infinite-distance points by ascending index. NaN distances (NaN coordinates with value
// checks off) are no neighbours, as on the CPU.
//
// On CUDA the pass is a kernel of its own after the search (knn_overflow_cuda.cu): inlined into
// the search kernels it cost them up to 9 registers (ptxas), enough to lower the occupancy of
// the K = 1 and K = 4 lists; alone it costs a launch and one read per row.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/distance.h"
#include "common/host_device.h"
#include "common/launch.h"
#include "knn/knn.h"

namespace m3ad {

// The entries of a row of K slots whose unfilled slots, a suffix, have index -1.
M3AD_HD int64_t filled_slots(const int64_t* ik, int64_t K) {
  int64_t lo = 0, hi = K;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (ik[mid] < 0) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// Whether a row holding `count` neighbours of a cloud of n2 points must look for infinite ones.
M3AD_HD bool may_miss_overflowed(int64_t count, int64_t K, int64_t n2) { return count < K && count < n2; }

// Appends to the row (dk, ik) holding `count` entries the points of `cloud` (n2 points, D coords;
// `order` gives each point's index, or nullptr for its position) at distance +inf from q, by
// ascending index, up to K entries; returns the new count. Slots past it are left as they were.
template <typename T, int kDim>
M3AD_HD int64_t append_overflowed(const T* cloud, const int64_t* order, int64_t n2, int64_t D, const T* q, int norm,
                                  T* dk, int64_t* ik, int64_t count, int64_t K) {
  const int64_t first = count;
  for (int64_t j = 0; j < n2; ++j) {
    const T d = point_dist<T, kDim>(cloud + j * D, q, D, norm);
    if (!(d == T(INFINITY))) continue;
    const int64_t id = order ? order[j] : j;
    if (count == K) {
      if (!order) break;  // positions ascend: every later point comes after the row's last
      if (id > ik[K - 1]) continue;
      --count;
    }
    int64_t s = count++;
    for (; s > first && ik[s - 1] > id; --s) {
      dk[s] = dk[s - 1];
      ik[s] = ik[s - 1];
    }
    dk[s] = d;
    ik[s] = id;
  }
  return count;
}

// The second pass over every row of a search the CUDA kernels have written (p.dists, p.idx). With
// order1/order2 (the sorted tiles), p.p1 and p.p2 are the sorted clouds, order1 gives each sorted
// query's output row and order2 each sorted point's index; both nullptr for the index-order scans.
void knn_fill_overflowed_cuda(const KnnParams& p, const int64_t* order1, const int64_t* order2, const Device& dev);

}  // namespace m3ad
