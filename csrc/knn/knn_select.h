// When the CUDA kNN takes the block-select path (knn_select_cuda.cu: one block per query, exact
// radix select of the K-th (distance, index) key, then a sort of the K selected). Host-only and
// CUDA-free, so that the bindings can hand the same rule to the Python adapter, which must not
// route these sizes to the sorted-tiles path (mentor3ad_ext/ops/knn.py, _tiles_pay).
#pragma once
#include <cstdint>

namespace m3ad {

// KnnParams::select_mode: tests and profiling force or forbid the path; kSelectAuto uses
// knn_block_select_pays.
enum KnnSelectMode : int { kSelectAuto = 0, kSelectAlways = 1, kSelectNever = 2 };

// Shared memory holds the selected keys, padded to a power of two for the sort: 2048 keys of 16
// bytes (float64: distance bits and index) plus the 8 KiB histogram stay under the 48 KiB a block
// gets without an opt-in (and under the emulator's limit).
constexpr int64_t kBlockSelectMaxK = 2048;
// Keys carry the index in 32 bits; the kernel counts points in 32-bit integers.
constexpr int64_t kBlockSelectMaxPoints = (int64_t{1} << 31) - 1;

// The work model behind the rule (predicted, not yet measured on a GPU). Block select streams the
// cloud about three times per query (two 11-bit digit passes usually isolate the K-th key, then a
// collection pass), spread over 256 threads, with no per-candidate cost that grows with K. Its
// rivals for K > 32 do one pass but pay per insertion into a sorted list: the warp lists
// (K <= 256) ~K ln(P2/K) insertions of ~K/32 + 10 warp steps each, i.e. ~9k warp steps against
// 512 of scanning at P2 = 16k, K = 128 (0.63 ms measured on the H200); a thread per query up to K
// global-memory moves per insertion. (The warp lists now append to shared memory and sort when
// full, ~30 warp steps per chunk of 32 and a few 512-key sorts per query: perhaps faster than this
// path at K <= 256; not yet measured, so the rule stands.) The sorted tiles prune most of the
// cloud and amortise their ~0.4 ms plan over many queries. So block select is for few query rows (8192 rows are ~8 waves
// of 256-thread blocks on a 132-SM GPU), and, while a list path can take K, for at most 2^29
// query-point pairs: beyond that its three unpruned passes (~3 x 2^29 x 12 bytes from L2, a few
// ms) cost what the tiles measured at 4096 x 100k (2.8 ms, K = 32). Below 256 points per cloud
// (fewer than one point per thread and pass) one thread per query with a short list is enough.
constexpr int64_t kBlockSelectMaxRows = 8192;
constexpr int64_t kBlockSelectMaxPairs = int64_t{1} << 29;
constexpr int64_t kBlockSelectMinPoints = 256;
constexpr int64_t kBlockSelectListMaxK = 256;  // = kWarpListMaxK (warp_list.cuh, CUDA-only)

// Whether the kernel can serve these sizes at all (forced or not).
inline bool knn_block_select_fits(int64_t P2, int64_t K) {
  return K >= 1 && K <= kBlockSelectMaxK && P2 <= kBlockSelectMaxPoints;
}

inline bool knn_block_select_pays(int64_t B, int64_t P1, int64_t P2, int64_t K) {
  const int64_t rows = B * P1;
  return K > 32 && knn_block_select_fits(P2, K) && P2 >= kBlockSelectMinPoints && rows <= kBlockSelectMaxRows &&
         (K > kBlockSelectListMaxK || rows * P2 <= kBlockSelectMaxPairs);
}

}  // namespace m3ad
