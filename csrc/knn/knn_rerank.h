// A float64 K-nearest search decided by a float32 one (the sorted tiles' "float32 filter").
//
// Why: the float64 register lists of K = 32 spill (ptxas, sm_90: 196 bytes a thread), which made
// the float64 K = 30 search of estimate_normals ~1.5x its float32 twin on an H200 (3.9 against
// 2.6 ms at 100k points) and left issue 7's GPU target unmet there. The float32 lists fit.
//
// How: the adapter searches a float32 copy of the cloud, moved to a corner of its box
// (p~ = fl32(fl64(p - lo))), for the M = 32 nearest of each point; this kernel then
//  1. bounds, from the float32 distances s (the K-th) and t (the M-th) and the copy's largest
//     coordinate, the exact distances: every point outside the M has an exact squared distance
//     >= D_lo(t), each of the K float32-nearest one <= D_hi(s) (f32_filter_decides);
//  2. if D_lo > D_hi (with room for float64's own rounding), the K float64-nearest are among the
//     M: it computes their float64 distances exactly as the float64 kernels do (point_dist) and
//     ranks them by (distance, index), the result order, which gives the float64 rows bit for
//     bit;
//  3. otherwise (near ties at the K-th distance, lattices, coordinates far beyond the cloud's
//     extent, points that overflow float32) it marks the row, and the float64 search runs for the
//     marked rows only (KnnTilesParams::todo).
//
// The bound (u = 2^-24, A >= |p - lo| over the cloud's valid points, a_j = |p_j - q_j| <= 2A):
// a float32 coordinate is off by at most 1.01 u A (two roundings), so a float32 difference s_j is
// off from a_j by at most H = 4.03 u A (its own rounding included; 4.1 taken); then
// |sum s_j^2 - D| <= 2 H sum a_j + 3 H^2 <= 2 sqrt(3) H sqrt(D) + 3 H^2, and the three squares
// and two sums round by at most gamma_3 = 3u / (1 - 3u) of their value, plus the absolute error
// of float32 underflow (5 operations, 2^-150 each). So |d32 - D| <= E(D) = g D + alpha sqrt(D)
// + beta, increasing in D, and D_lo / D_hi solve D + E(D) = t and D - E(D) = s. A is taken as
// the copy's largest |coordinate| (its float32 super-tile boxes), which 4.1 > 4.03 allows for.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/dtype.h"
#include "common/host_device.h"
#include "common/launch.h"

namespace m3ad {

constexpr int kFilterM = 32;  // the float32 search's list: the register lists' largest

struct KnnRerankParams {
  const double* points = nullptr;      // (B, P, 3) the cloud, original order (candidates index it)
  const double* queries = nullptr;     // (B, P, 3) the cloud in sorted order: row r's point
  const int64_t* lengths = nullptr;    // (B,) valid points per cloud
  const float* cand_dists = nullptr;   // (B, P, kFilterM) the float32 search's rows (sorted order)
  const int64_t* cand_idx = nullptr;   // (B, P, kFilterM), -1 padded
  const float* supers32 = nullptr;     // (B, super_tiles, 6) the float32 copy's super-tile boxes
  int64_t super_tiles = 0;
  const int64_t* out_rows = nullptr;   // (B, P): each sorted row's output row in its cloud; nullptr: itself
  double* dists = nullptr;             // (B, P, K) output rows
  int64_t* idx = nullptr;
  uint8_t* todo = nullptr;             // (B, P): 1 where the float64 search must decide
  int64_t B = 0, P = 0, K = 0;         // K < kFilterM
};

// Where sorted row r (of B * P) writes.
M3AD_HD int64_t rerank_out_row(const KnnRerankParams& p, int64_t r) {
  return p.out_rows ? r - r % p.P + p.out_rows[r] : r;
}

void knn_rerank_cpu(const KnnRerankParams& p);
void knn_rerank_cuda(const KnnRerankParams& p, const Device& dev);

// Accumulates into `a` the largest |coordinate| of a (lo xyz, hi xyz) box; empty boxes (lo > hi:
// no valid point) add nothing. Boxes never hold NaN (min / max skip it), but may hold inf.
M3AD_HD float box_extent(const float* box, float a) {
  if (!(box[0] <= box[3])) return a;
  for (int j = 0; j < 6; ++j) {
    const float v = box[j] < 0 ? -box[j] : box[j];
    a = v > a ? v : a;
  }
  return a;
}

// Whether the K float32-nearest (K-th distance s) and the M-th (t >= s) of a row prove that the
// row's K float64-nearest are among its M float32-nearest, for a float32 copy whose valid
// coordinates are at most a32 in magnitude (see above). False whenever unsure (inf, NaN).
M3AD_HD bool f32_filter_decides(float s, float t, float a32) {
  if (!(a32 < 1e18f)) return false;  // squares could overflow float32; inf / NaN too
  const double u = 1.0 / 16777216.0;  // 2^-24
  const double H = 4.1 * u * static_cast<double>(a32) + 4 * 1.4e-45;  // + float32 denormal rounding
  const double g = 3.01 * u;
  const double alpha = 2 * 1.7320509 * H * (1 + g);
  const double beta = 3 * H * H * (1 + g) + 8.0 * 1.4e-45;  // + float32 underflow (2^-149 ~ 1.4e-45)
  const double td = t, sd = s;
  // D_lo = y_lo^2, y_lo the positive root of (1 + g) y^2 + alpha y + beta - t, in the form
  // without cancellation; 0 when t <= beta.
  const double a1 = 1 + g, a2 = 1 - g;
  const double y_lo = td > beta ? 2 * (td - beta) / (alpha + sqrt(alpha * alpha + 4 * a1 * (td - beta))) : 0.0;
  // D_hi = y_hi^2, y_hi the larger root of (1 - g) y^2 - alpha y - beta - s.
  const double y_hi = (alpha + sqrt(alpha * alpha + 4 * a2 * (sd + beta))) / (2 * a2);
  // Float64's own distances are within ~5.6e-16 relative of the exact ones (and these roots
  // within a few ulps); 1e-12 covers both, 1e-300 its underflow.
  return y_lo * y_lo * (1 - 1e-12) > y_hi * y_hi * (1 + 1e-12) + 1e-300;
}

// Whether a row's float32 search (count entries of at most kFilterM, the K-th at distance s and
// the last at t, of a cloud of n valid points, extent a32) decides its float64 row.
M3AD_HD bool filter_row_decided(int64_t count, int64_t n, float s, float t, float a32) {
  if (count < (n < kFilterM ? n : kFilterM)) return false;  // points the float32 copy dropped
  if (count < kFilterM) return true;                        // it holds every point of the cloud
  return f32_filter_decides(s, t, a32);  // (K < kFilterM: s is a kept entry)
}

}  // namespace m3ad
