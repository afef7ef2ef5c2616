// Exact anomaly-detection metrics (AUPRO, pixel/image AUROC): the score-interval table.
//
// All three metrics are functions of one object. Let D[0] < ... < D[m-1] be the distinct scores of
// the defect pixels (mask 1). Every score threshold then falls into one of
//   * a group i: score == D[i]; it holds eq[i] normal pixels, pos[i] defect pixels whose
//     fixed-point overlap weights (exact_math.h, w = 2^96 / region size) sum to wsum[i];
//   * an interval i: D[i-1] < score < D[i] (D[-1] = -inf, D[m] = +inf), holding btw[i] normal
//     pixels and no defect pixel.
// Sweeping the threshold downwards (the official MVTec algorithm: all scores sorted descending,
// tied scores collapsed to one curve point) visits interval m, group m-1, interval m-1, ...,
// group 0, interval 0. An interval only moves the curve horizontally (FPR grows, PRO and TPR
// stay), so all distinct normal scores inside it lie on one straight segment: collapsing them
// changes no area, no interpolation at an FPR limit and no threshold query. The table is
// therefore all the official algorithm needs, and it is O(#distinct defect scores), not O(pixels).
//
// Vertical runs. A group with eq[i] == 0 only moves the curve vertically (PRO and TPR grow, FPR
// stays). When group i and group i-1 are both vertical and no normal pixel lies between them
// (eq[i] == 0, btw[i] == 0, eq[i-1] == 0: joins_previous() below), the curve goes straight up
// through both, and the two are stored as one group (pos and wsum added, eq = 0, the interval
// below is interval i-1's). Nothing the queries compute changes (metrics_table.cpp): a segment
// with dC == 0 adds nothing to an area sum (dC * (...) == 0), it is never the crossing of an
// FPR limit (that needs C0 <= c_lim < C1) nor the segment of a threshold rank (C0 < r <= C1),
// and the running totals (C, P, S) after the merged group equal those after the last of its
// parts, so every later segment starts from the same vertex; curve() already joins consecutive
// vertical segments into one. Both builds apply the same rule, after counting the normal
// pixels, so both devices still produce the same table (on real anomaly maps the defect scores
// crowd the top of the range, where most groups hold no normal pixel: the bench set of
// 100 x 800 x 800 maps goes from m = 797k groups to about 215k).
//
// Building it (metrics_cpu.cpp / metrics_cuda.cu): 8-connected components of each mask give the
// regions and their sizes; the defect pixels are sorted by score and reduced to groups; every
// normal pixel is located among the D (CPU: lookup table + binary search, GPU: two-level binary
// search) and counted; vertical runs are merged. Querying it (metrics_table.cpp, host code shared
// by both devices) walks the segments with exact integer sums: vertices are (C, P, S) =
// (#normal, #defect, weight sum) above a threshold, areas are sums of dC * (S0 + S1) and
// dC * (P0 + P1). The AUROCs need no regions (BuildParams::need_regions = false skips the
// labelling; wsum is then all zero and Stats::n_regions is -1).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/host_device.h"
#include "common/launch.h"
#include "metrics/exact_math.h"

namespace m3ad {
namespace metrics {

struct BuildParams {
  const void* maps = nullptr;      // (N, H, W) contiguous float32/float64 scores
  const uint8_t* masks = nullptr;  // (N, H, W) contiguous 0/1 bytes
  int64_t N = 0, H = 0, W = 0;     // H * W < 2^31 (region sizes and in-map indices are 32-bit)
  DType dtype = DType::kFloat32;
  // false: the AUROCs only; skips the connected components and the region weights (wsum all
  // zero, Stats::n_regions = -1). The AUPRO needs them.
  bool need_regions = true;
  // false: keeps one group per distinct defect score (no joined vertical runs); for tests that
  // compare the joined table with the plain one.
  bool join_runs = true;
  // Records the time of each phase into Table::profile (CUDA: events around every kernel, host
  // clocks around every wait and host step; CPU: host clocks). Costs a little; off by default.
  bool profile = false;
  // CUDA only, for measurements: how count_normals locates a normal pixel's score among the
  // distinct defect scores. 0: binary search over a sample of them in shared memory, then over
  // the at most 2^shift scores between two samples in global memory; 1: plain binary search in
  // global memory. Same counts either way.
  int search = 0;
  // CUDA only: scratch memory from the caller (the adapter hands out torch.empty buffers, so all
  // device memory comes from torch's caching allocator); valid until build_table_cuda returns.
  std::function<void*(size_t)> alloc;
  // CUDA only, optional: host memory for the device-to-host copy of the table (the adapter hands
  // out pinned torch buffers, which copy at full bus speed; pageable memory is staged by the
  // driver). Without it the build copies into a std::vector.
  std::function<void*(size_t)> alloc_host;
};

// Group i joins group i-1 into one (see "Vertical runs" above): the same rule on both devices.
M3AD_HD bool joins_previous(uint64_t eq_prev, uint64_t btw, uint64_t eq) {
  return eq_prev == 0 && btw == 0 && eq == 0;
}

// Input validation results and totals; filled before anything else so that bad inputs stop early.
struct Stats {
  int64_t n_pixels = 0;
  int64_t n_neg = 0;             // normal pixels (mask 0)
  int64_t n_pos = 0;             // defect pixels (mask 1)
  int64_t n_regions = 0;         // 8-connected defect regions over all maps (-1: not computed)
  int64_t n_groups = 0;          // m: distinct defect scores
  int64_t n_table = 0;           // groups of the table after joining vertical runs (<= m)
  int64_t n_nonfinite = 0;       // NaN/Inf scores
  int64_t first_nonfinite = -1;  // flat index of the first one
  int64_t n_nonbinary = 0;       // mask bytes other than 0/1
  int64_t first_nonbinary = -1;
  bool valid() const { return n_nonfinite == 0 && n_nonbinary == 0; }
};

// One segment of the curve between two consecutive (collapsed) thresholds.
struct Crossing {
  bool found = false;
  uint64_t c0 = 0, c1 = 0;  // normal pixels above, before and after the segment
  u128 s0 = 0, s1 = 0;      // overlap weight sums before and after
};

struct QueryResult {
  u128 roc2 = 0;                 // sum over segments dC * (P0 + P1) = 2 * AUROC * n_neg * n_pos
  u128 s_total = 0;              // weight sum of all defect pixels (<= n_regions * 2^96)
  std::vector<U256> area;        // per limit: sum of dC * (S0 + S1) over segments with C1 <= c_lim
  std::vector<Crossing> cross;   // per limit: the segment with C0 <= c_lim < C1 (if c_lim < n_neg)
  std::vector<u128> rank_s;      // per rank r: S before the segment with C0 < r <= C1
};

// One timed phase of a build (BuildParams::profile).
struct Phase {
  std::string name;
  double ms = 0;
  bool device = false;  // measured with CUDA events (else a host clock)
};

// The interval table (ascending D order as described above, vertical runs joined); identical on
// both devices.
class Table {
 public:
  Stats stats;
  std::vector<Phase> profile;  // filled when BuildParams::profile is set
  std::vector<uint64_t> btw;  // m + 1
  std::vector<uint64_t> eq;   // m
  std::vector<uint64_t> pos;  // m
  std::vector<u128> wsum;     // m

  // c_lims: floor(limit * n_neg) per FPR limit; ranks: 1 <= r <= n_neg normal-pixel counts.
  QueryResult query(const std::vector<int64_t>& c_lims, const std::vector<int64_t>& ranks) const;
  // Vertices of the curve from (0, 0) on (without the final (1, 1)): runs of thresholds that only
  // add normal pixels (horizontal) or only defect pixels (vertical) appear as one segment.
  void curve(std::vector<uint64_t>& c, std::vector<uint64_t>& p, std::vector<u128>& s) const;
  // Prepares the chunk prefix sums used by query(); called once after the arrays are filled.
  void finalize();

 private:
  static constexpr int64_t kChunk = 4096;  // entries per chunk of the parallel walk
  struct ChunkSum {
    uint64_t c = 0, p = 0;
    u128 s = 0;
    U256 area;
    u128 roc2 = 0;
  };
  std::vector<ChunkSum> chunk_;  // per chunk totals
  std::vector<ChunkSum> before_; // exclusive prefix (c, p, s) per chunk
  int64_t entries() const { return static_cast<int64_t>(btw.size()); }
};

void build_table_cpu(const BuildParams& p, Table& t);
void build_table_cuda(const BuildParams& p, const Device& dev, Table& t);

}  // namespace metrics
}  // namespace m3ad
