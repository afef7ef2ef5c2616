// CPU FPFH: the SPFH pass over all rows, then the aggregation pass (it reads neighbours' SPFH,
// so it must wait for the whole first pass). Rows are independent within a pass.
//
// Rows come in spatial order (query_index: the kNN's Morton order), point indices do not. Read
// through the indices, a neighbour's coordinates, normal and SPFH were each a cache miss
// somewhere in the cloud (the SPFH table alone is 26 MB at 100k points). So both passes work on
// row-order copies (RowOrder): coordinates and normals, each point's row, and the SPFH table by
// row, where a neighbour's data sits near its row's. Only the point -> row table (4 bytes a
// point) is read at random. Rows that are not one permutation of each cloud's points (never
// from our ops) take the CUDA kernels' row functions instead.
//
// The SPFH pass gathers a row's neighbours into arrays and computes their pair features in one
// loop without branches, which the compiler runs in SIMD lanes, then their bins. Every pair of a
// row adds the same 100 / (n - 1), so a bin that c pairs fall in holds the c-fold sum of it
// (IncrementSums): the pass counts, then reads the sums, with the bits of adding pair by pair.
// The arithmetic is the CUDA kernel's, operation for operation, so the bits are too.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cpu_simd.h"
#include "common/parallel.h"
#include "fpfh/pair_features.h"

namespace m3ad {
namespace {

// Each point's row within its cloud, and the clouds' coordinates and normals in row order.
template <typename T>
struct RowOrder {
  std::vector<int32_t> row_of;  // (B * P): point (b, i) -> its row in cloud b
  std::vector<T> xyz, nrm;      // (B * P, 3), row order

  // False when the rows are not a permutation of each cloud's points.
  bool build(const FpfhParams& p) {
    if (p.P > std::numeric_limits<int32_t>::max()) return false;
    const int64_t rows = p.B * p.P;
    row_of.assign(static_cast<size_t>(rows), -1);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = r / p.P, i = fpfh_row_point(p, r);
      if (i < 0 || row_of[b * p.P + i] >= 0) return false;
      row_of[b * p.P + i] = static_cast<int32_t>(r - b * p.P);
    }
    xyz.resize(static_cast<size_t>(rows) * 3);
    nrm.resize(static_cast<size_t>(rows) * 3);
    const T* pts = static_cast<const T*>(p.points);
    const T* nrms = static_cast<const T*>(p.normals);
    parallel_for(rows, 4096, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t src = (r / p.P * p.P + fpfh_row_point(p, r)) * 3;
        for (int c = 0; c < 3; ++c) xyz[r * 3 + c] = pts[src + c], nrm[r * 3 + c] = nrms[src + c];
      }
    });
    return true;
  }

  // The global row of cloud b's point j.
  int64_t row(int64_t b, int64_t P, int64_t j) const { return b * P + row_of[b * P + j]; }
};

// sums(n)[c]: c additions of 100 / (n - 1), starting from 0. One table for every n up to
// min(K, kTabledK) (at most 33k values, made once per call); rows with more neighbours make their
// own, in the worker's buffer, when their n differs from the last (the buffer's size is its n).
class IncrementSums {
 public:
  static constexpr int64_t kTabledK = 256;

  explicit IncrementSums(int64_t K) {
    const int64_t tabled = K < kTabledK ? K : kTabledK;
    start_.assign(static_cast<size_t>(tabled) + 1, 0);
    for (int64_t n = 2; n <= tabled; ++n) {
      start_[n] = static_cast<int64_t>(table_.size());
      append(n, table_);
    }
  }

  // own: the calling worker's buffer for rows past the table.
  const double* sums(int64_t n, std::vector<double>& own) const {
    if (n < static_cast<int64_t>(start_.size())) return table_.data() + start_[n];
    if (static_cast<int64_t>(own.size()) != n) {
      own.clear();
      append(n, own);
    }
    return own.data();
  }

 private:
  static void append(int64_t n, std::vector<double>& to) {
    const double incr = 100.0 / static_cast<double>(n - 1);
    double s = 0.0;
    for (int64_t c = 0; c < n; ++c, s += incr) to.push_back(s);
  }
  std::vector<int64_t> start_;
  std::vector<double> table_;
};

// One worker's arrays for a row's neighbours (structure of arrays, one entry per neighbour).
struct SpfhScratch {
  std::vector<double> buf, own_sums;
  double *px, *py, *pz, *nx, *ny, *nz, *y, *x, *s, *f1, *f2;
  void reserve(int64_t m) {
    if (static_cast<int64_t>(buf.size()) >= 11 * m) return;
    buf.assign(static_cast<size_t>(11 * m), 0.0);
    double* at = buf.data();
    for (double** a : {&px, &py, &pz, &nx, &ny, &nz, &y, &x, &s, &f1, &f2}) *a = at, at += m;
  }
};

// The SIMD loop: the pair features of (pi, ni) against m neighbours, and alpha's pseudo-angle.
// (restrict on parameters: GCC gave up its alias checks for the same pointers as locals.)
#define M3AD_PAIR_FEATURES_SOA(NAME, ATTR)                                                              \
  ATTR void NAME(const Vec3d pi, const Vec3d ni, int64_t m, const double* __restrict px,             \
                 const double* __restrict py, const double* __restrict pz, const double* __restrict nx, \
                 const double* __restrict ny, const double* __restrict nz, double* __restrict y,      \
                 double* __restrict x, double* __restrict s, double* __restrict f1,                   \
                 double* __restrict f2) {                                                             \
    for (int64_t k = 0; k < m; ++k) {                                                                 \
      const PairFeatures f = pair_features(pi, ni, Vec3d{px[k], py[k], pz[k]}, Vec3d{nx[k], ny[k], nz[k]}); \
      y[k] = f.f0_y, x[k] = f.f0_x, f1[k] = f.f1, f2[k] = f.f2;                                       \
      s[k] = diamond_angle(f.f0_y, f.f0_x);                                                           \
    }                                                                                                 \
  }
M3AD_PAIR_FEATURES_SOA(pair_features_soa, )
M3AD_PAIR_FEATURES_SOA(pair_features_soa_avx2, M3AD_TARGET_AVX2)
M3AD_PAIR_FEATURES_SOA(pair_features_soa_avx512, M3AD_TARGET_AVX512)
using PairFeaturesSoa = decltype(&pair_features_soa);

// aggregate_neighbours in row order with its sums in registers (a local array, which no pointer
// can alias): 33 doubles spill from SSE2's 16 registers, not from AVX2's.
#define M3AD_AGGREGATE_ROW(NAME, ATTR)                                                                \
  template <typename T, typename I>                                                                 \
  ATTR void NAME(const Vec3d pi, const I* nb, int64_t n, const int32_t* row_of, const T* xyz,        \
                 const double* spfh, double* out_acc) {                                             \
    double acc[kFpfhDim];                                                                           \
    aggregate_neighbours<T, I>(pi, nb, n, row_of, xyz, spfh, acc);                                  \
    for (int j = 0; j < kFpfhDim; ++j) out_acc[j] = acc[j];                                         \
  }
M3AD_AGGREGATE_ROW(aggregate_row, )
M3AD_AGGREGATE_ROW(aggregate_row_avx2, M3AD_TARGET_AVX2)
M3AD_AGGREGATE_ROW(aggregate_row_avx512, M3AD_TARGET_AVX512)

// The variants of the two SIMD loops for this CPU (cpu_simd.h): wider lanes, the same bits.
// I: the index type of the neighbour lists.
template <typename T, typename I>
struct SimdLoops {
  PairFeaturesSoa pairs = pair_features_soa;
  decltype(&aggregate_row<T, I>) aggregate = aggregate_row<T, I>;
  explicit SimdLoops(CpuSimd level) {
    if (level == CpuSimd::kAvx512) pairs = pair_features_soa_avx512, aggregate = aggregate_row_avx512<T, I>;
    if (level == CpuSimd::kAvx2) pairs = pair_features_soa_avx2, aggregate = aggregate_row_avx2<T, I>;
  }
};

// Row r's list, and in n its neighbour count (the point itself included): padded rows of K, or
// packed rows (p.row_start; fpfh_cpu checked their ranges), each read up to its first invalid
// index as neighbour_count reads.
template <typename T, typename I>
const I* row_list(const FpfhParams& p, const I* idx, int64_t r, int64_t& n) {
  if (!p.row_start) {
    n = row_neighbour_count<T>(p, idx, r);
    return idx + r * p.K;
  }
  const I* nb = idx + p.row_start[r];
  n = neighbour_count<T>(nb, static_cast<const T*>(nullptr), static_cast<int64_t>(p.row_count[r]), p.P, false, T(0));
  return nb;
}

template <typename T, typename I>
void spfh_row_ordered(const FpfhParams& p, const I* idx, const RowOrder<T>& ro, const IncrementSums& sums,
                      int64_t r, SpfhScratch& sc, const SimdLoops<T, I>& simd) {
  double* hist = p.spfh + r * kFpfhDim;
  int64_t n;
  const I* nb = row_list<T>(p, idx, r, n) + 1;
  if (n <= 1) {  // (else every bin is written from the counts below)
    for (int j = 0; j < kFpfhDim; ++j) hist[j] = 0.0;
    return;
  }
  const int64_t b = r / p.P, m = n - 1;
  sc.reserve(p.K);
  for (int64_t k = 0; k < m; ++k) {
    const int64_t q = ro.row(b, p.P, nb[k]) * 3;
    sc.px[k] = static_cast<double>(ro.xyz[q]), sc.py[k] = static_cast<double>(ro.xyz[q + 1]);
    sc.pz[k] = static_cast<double>(ro.xyz[q + 2]);
    sc.nx[k] = static_cast<double>(ro.nrm[q]), sc.ny[k] = static_cast<double>(ro.nrm[q + 1]);
    sc.nz[k] = static_cast<double>(ro.nrm[q + 2]);
  }
  simd.pairs(load3(ro.xyz.data() + r * 3), load3(ro.nrm.data() + r * 3), m, sc.px, sc.py, sc.pz, sc.nx, sc.ny,
             sc.nz, sc.y, sc.x, sc.s, sc.f1, sc.f2);
  int32_t count[kFpfhDim] = {};
  for (int64_t k = 0; k < m; ++k) {
    ++count[alpha_bin_of(sc.s[k], sc.y[k], sc.x[k])];
    ++count[kFpfhBins + cosine_bin(sc.f1[k])];
    ++count[2 * kFpfhBins + cosine_bin(sc.f2[k])];
  }
  const double* s = sums.sums(n, sc.own_sums);
  for (int j = 0; j < kFpfhDim; ++j) hist[j] = s[count[j]];
}

template <typename T, typename I>
void fpfh_row_ordered(const FpfhParams& p, const I* idx, const RowOrder<T>& ro, int64_t r,
                      const SimdLoops<T, I>& simd) {
  const int64_t b = r / p.P;
  T* out = static_cast<T*>(p.out) + (b * p.P + fpfh_row_point(p, r)) * kFpfhDim;
  int64_t n;
  const I* nb = row_list<T>(p, idx, r, n);
  if (n <= 1) {
    for (int j = 0; j < kFpfhDim; ++j) out[j] = T(0);
    return;
  }
  const Vec3d pi = load3(ro.xyz.data() + r * 3);
  double acc[kFpfhDim];
  const double* spfh = p.spfh + b * p.P * kFpfhDim;
  simd.aggregate(pi, nb, n, ro.row_of.data() + b * p.P, ro.xyz.data() + b * p.P * 3, spfh, acc);
  fpfh_finish(acc, p.spfh + r * kFpfhDim, out);
}

// The row-order passes over lists of index type I (p.idx, or p.idx32).
template <typename T, typename I>
void ordered_passes(const FpfhParams& p, const I* idx, const RowOrder<T>& ro) {
  const int64_t rows = p.B * p.P;
  const IncrementSums sums(p.K);
  const SimdLoops<T, I> simd(cpu_simd());
  parallel_for(rows, 128, [&](int64_t r0, int64_t r1) {
    SpfhScratch sc;
    for (int64_t r = r0; r < r1; ++r) spfh_row_ordered<T>(p, idx, ro, sums, r, sc, simd);
  });
  parallel_for(rows, 128, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) fpfh_row_ordered<T>(p, idx, ro, r, simd);
  });
}

// Packed rows must lie within the (B * P * K) buffer: they come through an op that callers can
// reach with any tensors, and are read without further bounds.
void check_packed_rows(const FpfhParams& p) {
  if (!p.row_start) return;
  if (!p.idx32 || !p.row_count) throw std::invalid_argument("fpfh: packed rows need int32 indices and row_count");
  const int64_t rows = p.B * p.P, size = rows * p.K;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t start = p.row_start[r], count = p.row_count[r];
    if (count < 0 || count > p.K || start < 0 || start > size - count)
      throw std::invalid_argument("fpfh: packed row " + std::to_string(r) + " (start " + std::to_string(start) +
                                  ", count " + std::to_string(count) + ") is not within the " +
                                  std::to_string(size) + "-entry list of rows of at most " + std::to_string(p.K));
  }
}

}  // namespace

void fpfh_cpu(const FpfhParams& p) {
  if (p.B == 0 || p.P == 0) return;
  check_packed_rows(p);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t rows = p.B * p.P;
    RowOrder<T> ro;
    if (ro.build(p)) {
      if (p.idx32) ordered_passes<T>(p, p.idx32, ro);
      else ordered_passes<T>(p, p.idx, ro);
      return 0;
    }
    // The row functions read padded int64 lists.
    std::vector<int64_t> wide;
    FpfhParams q = p;
    if (p.row_start) {
      wide.assign(static_cast<size_t>(rows * p.K), -1);
      for (int64_t r = 0; r < rows; ++r)
        std::copy(p.idx32 + p.row_start[r], p.idx32 + p.row_start[r] + p.row_count[r], wide.data() + r * p.K);
    } else if (p.idx32) {
      wide.assign(p.idx32, p.idx32 + rows * p.K);
    }
    if (p.idx32) q.idx = wide.data(), q.idx32 = nullptr, q.row_start = nullptr, q.row_count = nullptr;
    parallel_for(rows, 128, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) spfh_row<T>(q, r);
    });
    parallel_for(rows, 128, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) fpfh_row<T>(q, r);
    });
    return 0;
  });
}

}  // namespace m3ad
