// CUDA 8-connected component labelling: union-find over pixels (Playne & Hawick, "A New
// Algorithm for Parallel Connected-Component Labelling on GPUs", 2018), with three changes that
// keep the trees shallow and the atomics few:
//   * row runs: ccl_init labels every defect pixel with the first pixel of its horizontal run
//     inside its 32-pixel window (one warp ballot), so the runs need no unions except across a
//     window border;
//   * fewer unions: a run unites with each run of the row above that it touches (8-connected)
//     once, at the leftmost pixel where they touch, instead of every pixel with all of W, NW, N,
//     NE (argument at ccl_merge);
//   * path splitting in every find (each visited node is re-pointed to its grandparent), and
//     ccl_finish points every pixel straight at its root, so the old flatten pass is gone; the
//     component sizes are counted with one atomic per group of warp lanes sharing a root.
//
// Concurrency argument (labels L, in-map indices, H * W < 2^31). Invariants:
//   (a) L[x] <= x, with equality exactly for roots; labels only ever decrease.
//   (b) A tree never loses a node: two trees are joined only by a successful
//       atomicCAS(L + b, b, a) in unite(), which requires b to be a root at that instant (so no
//       existing edge is replaced), with a < b; path splitting replaces a non-root x's parent p
//       by g, a value read from L[p], i.e. a node of the same tree (trees only ever merge), and
//       g < p < x. atomicMin keeps the smaller of two such values, which is in the same tree too.
//   (c) No cycle: along parent pointers labels strictly decrease (a), and every descendant of x
//       is > x, so a new parent g < x is never a descendant.
// Hence find_root terminates (a strictly decreasing walk) and returns a node that was a root
// when it was read; unite() retries (re-finding both roots) until its CAS links a current root
// or both finds agree. When ccl_merge has finished, every unite(a, b) it made left a and b in one
// tree and no tree has split since, so the trees are exactly the components, and each root is its
// tree's smallest index (a), i.e. the component's first pixel in raster order (the numbering
// scipy.ndimage.label uses). The reads in find_root race with the atomics of other threads by
// design (CUDA gives such relaxed accesses defined results; tools/cuda_emu/tsan.supp names them).
#include <cuda_runtime.h>

#include "common/cuda_utils.cuh"
#include "metrics/ccl.h"

namespace m3ad {
namespace metrics {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ int32_t find_root(int32_t* L, int32_t x) {
  const volatile int32_t* V = L;
  int32_t p = V[x];
  if (p == x) return x;
  for (;;) {
    const int32_t g = V[p];
    if (g == p) return p;
    atomicMin(L + x, g);  // path splitting: x skips p (result unused: a fire-and-forget reduction)
    x = p;
    p = g;
  }
}

__device__ __forceinline__ void unite(int32_t* L, int32_t a, int32_t b) {
  for (;;) {
    a = find_root(L, a);
    b = find_root(L, b);
    if (a == b) return;
    if (a > b) {
      const int32_t t = a;
      a = b;
      b = t;
    }
    if (atomicCAS(L + b, b, a) == b) return;  // b was still a root: now below a
  }
}

// ccl_init and ccl_finish walk the pixels in windows of 32 consecutive flat indices, all lanes of
// a warp in lock step (for_each_warp_window), so that warp votes see every lane. A map border is
// always a row start, so no run crosses it.
__global__ void ccl_init(const uint8_t* __restrict__ masks, int64_t n, int64_t HW, int64_t W,
                         int32_t* __restrict__ labels, uint32_t* __restrict__ sizes) {
  for_each_warp_window(n, [&](int64_t i, int lane) {
    const bool d = i < n && masks[i];
    int64_t loc = 0;
    bool start = false;
    if (d) {
      loc = i % HW;
      start = lane == 0 || loc % W == 0 || !masks[i - 1];
    }
    const unsigned starts = __ballot_sync(kFull, start);
    if (d) {
      // The nearest start at or below this lane begins its run: every lane in between is a
      // defect pixel of the same row (a gap or a row start would have made a later start).
      const unsigned upto = starts & (kFull >> (31 - lane));
      const int s = 31 - __clz(static_cast<int>(upto));
      labels[i] = static_cast<int32_t>(loc - (lane - s));
      sizes[i] = 0;
    }
  });
}

// Each run R = [s, e] of row y must be united with every run U of row y - 1 that touches it,
// i.e. meets columns [s - 1, e + 1]. Let c be U's leftmost column in that range. If c <= s + 1,
// the run's first pixel s sees U: it unites with N when N is a defect pixel (then NW and NE,
// where defect, belong to N's run; and c = s + 1 cannot happen with N set, since column s would
// belong to U), else with NW and NE separately. If c >= s + 2, column c - 1 is inside R, is not
// R's first pixel, has no defect pixel above it (it would belong to U) and has U at its NE: the
// second rule below unites there. Inside a row, ccl_init's labels join each run within a window
// and the first pixel of a window joins its left neighbour. So every pair of touching pixels ends
// in one tree, and only touching pixels are ever united.
__global__ void ccl_merge(const uint8_t* __restrict__ masks, int64_t n, int64_t HW, int64_t W, int32_t* labels) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    if (!masks[i]) continue;
    const int64_t loc64 = i % HW;
    const int64_t y = loc64 / W, x = loc64 - y * W;
    const int32_t loc = static_cast<int32_t>(loc64);
    const uint8_t* mk = masks + (i - loc64);
    int32_t* L = labels + (i - loc64);
    const bool left = x > 0 && mk[loc - 1];
    if (left && (i & 31) == 0) unite(L, loc, loc - 1);  // a run continued from the previous window
    if (y == 0) continue;
    const int32_t up = loc - static_cast<int32_t>(W);
    const bool north = mk[up] != 0;
    if (!left) {  // first pixel of its run
      if (north) {
        unite(L, loc, up);
      } else {
        if (x > 0 && mk[up - 1]) unite(L, loc, up - 1);
        if (x + 1 < W && mk[up + 1]) unite(L, loc, up + 1);
      }
    } else if (!north && x + 1 < W && mk[up + 1]) {
      unite(L, loc, up + 1);  // a run above that begins over this pixel's NE corner
    }
  }
}

// Roots written into every defect pixel's label, component sizes at the root's slot (one atomic
// per group of lanes with the same root), and the number of components.
__global__ void ccl_finish(const uint8_t* __restrict__ masks, int64_t n, int64_t HW, int32_t* labels, uint32_t* sizes,
                           unsigned long long* n_regions) {
  for_each_warp_window(n, [&](int64_t i, int lane) {
    const bool d = i < n && masks[i];
    long long key = -1;
    bool is_root = false;
    if (d) {
      const int64_t loc = i % HW;
      int32_t* L = labels + (i - loc);
      const int32_t r = find_root(L, static_cast<int32_t>(loc));
      atomicMin(L + loc, r);  // the final root (no union is pending): L[loc] becomes exactly r
      key = (i - loc) + r;
      is_root = r == static_cast<int32_t>(loc);
    }
    const unsigned peers = __match_any_sync(kFull, key);
    if (d && lane == __ffs(static_cast<int>(peers)) - 1) atomicAdd(sizes + key, static_cast<uint32_t>(__popc(peers)));
    const unsigned roots = __ballot_sync(kFull, is_root);
    if (lane == 0 && roots) atomicAdd(n_regions, static_cast<unsigned long long>(__popc(roots)));
  });
}

}  // namespace

void label_maps_cuda(const uint8_t* masks, int64_t N, int64_t H, int64_t W, int32_t* labels, uint32_t* sizes,
                     unsigned long long* n_regions, void* stream_ptr, const std::function<void(const char*)>& mark) {
  const int64_t HW = H * W, n = N * HW;
  if (n == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const unsigned blocks = blocks_for(n, kThreads);
  ccl_init<<<blocks, kThreads, 0, stream>>>(masks, n, HW, W, labels, sizes);
  M3AD_CHECK_LAUNCH("ccl_init");
  if (mark) mark("ccl init");
  ccl_merge<<<blocks, kThreads, 0, stream>>>(masks, n, HW, W, labels);
  M3AD_CHECK_LAUNCH("ccl_merge");
  if (mark) mark("ccl merge");
  ccl_finish<<<blocks, kThreads, 0, stream>>>(masks, n, HW, labels, sizes, n_regions);
  M3AD_CHECK_LAUNCH("ccl_finish");
  if (mark) mark("ccl finish");
}

}  // namespace metrics
}  // namespace m3ad
