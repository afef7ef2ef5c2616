// The per-entry rules of segment_reduce and rows_dot, shared verbatim by the CPU and CUDA
// kernels so that both perform the same double operations in the same order (bit-identical).
#pragma once
#include <cstdint>

#include "scatter/scatter.h"

#include "common/host_device.h"

namespace m3ad {
namespace seg {

struct Span {
  int64_t begin, end;
};

// Positions j of row (b, r)'s entries; entry_at() maps a position to the entry id m. A plan's
// offsets are clamped to its B * M entries: one that holds garbage reads none past them.
M3AD_HD int64_t clamp_position(int64_t j, int64_t n) { return j < 0 ? 0 : (j > n ? n : j); }

M3AD_HD Span row_span(const SegmentReduceParams& p, int64_t b, int64_t r) {
  if (p.offsets)
    return {clamp_position(p.offsets[b * p.R + r], p.B * p.M), clamp_position(p.offsets[b * p.R + r + 1], p.B * p.M)};
  const int64_t lo = r * p.group, hi = lo + p.group;
  return {lo < p.M ? lo : p.M, hi < p.M ? hi : p.M};
}

// Entry id at position j, or -1 when the plan holds garbage (never read out of bounds).
M3AD_HD int64_t entry_at(const SegmentReduceParams& p, int64_t j) {
  const int64_t m = p.offsets ? p.order[j] : j;
  return (m >= 0 && m < p.M) ? m : -1;
}

// Source row of entry m, or -1: the entry is skipped.
M3AD_HD int64_t source_of(const SegmentReduceParams& p, int64_t b, int64_t m) {
  const int64_t s = p.src_index ? p.src_index[b * p.M + m] : m / p.src_group;
  return (s >= 0 && s < p.S) ? s : -1;
}

template <typename T>
M3AD_HD double weight_of(const SegmentReduceParams& p, int64_t b, int64_t m) {
  return p.weights ? static_cast<double>(static_cast<const T*>(p.weights)[b * p.M + m]) : 1.0;
}

struct Acc {
  double val = 0.0;
  int64_t arg = -1;
  int64_t n = 0;
};

// One entry's contribution x = w * v (already a double product).
template <Reduce R>
M3AD_HD void take(Acc& a, double x, int64_t m) {
  if (R == Reduce::kMax) {
    // First largest wins (entries arrive in ascending m); NaN beats numbers, first NaN stays.
    if (a.n == 0 || x > a.val || (x != x && a.val == a.val)) {
      a.val = x;
      a.arg = m;
    }
  } else {
    a.val = a.val + x;
  }
  ++a.n;
}

template <Reduce R>
M3AD_HD double finish(const Acc& a) {
  if (R == Reduce::kMean) return a.n ? a.val / static_cast<double>(a.n) : 0.0;
  if (R == Reduce::kMax) return a.n ? a.val : 0.0;
  return a.val;
}

// Reduces channel c of row (b, r): the whole per-element algorithm of segment_reduce.
template <typename T, Reduce R>
M3AD_HD Acc reduce_element(const SegmentReduceParams& p, int64_t b, int64_t r, int64_t c) {
  Acc a;
  const Span sp = row_span(p, b, r);
  const T* vals = static_cast<const T*>(p.values) + b * p.vs_b + c * p.vs_c;
  for (int64_t j = sp.begin; j < sp.end; ++j) {
    const int64_t m = entry_at(p, j);
    if (m < 0) continue;
    const int64_t s = source_of(p, b, m);
    if (s < 0) continue;
    take<R>(a, weight_of<T>(p, b, m) * static_cast<double>(vals[s * p.vs_s]), m);
  }
  return a;
}

// Row of an operand of rows_dot for entry m, or -1.
M3AD_HD int64_t dot_row(const int64_t* index, int64_t group, int64_t rows, int64_t b, int64_t M, int64_t m) {
  const int64_t r = index ? index[b * M + m] : m / group;
  return (r >= 0 && r < rows) ? r : -1;
}

// Partial sum of lane l (channels l, l+32, ...) of one rows_dot entry.
template <typename T>
M3AD_HD double dot_lane(const T* a, int64_t a_sc, const T* v, int64_t v_sc, int64_t C, int lane) {
  double s = 0.0;
  for (int64_t c = lane; c < C; c += 32)
    s = s + static_cast<double>(a[c * a_sc]) * static_cast<double>(v[c * v_sc]);
  return s;
}

}  // namespace seg
}  // namespace m3ad
