// CPU segment reductions. Same element rules as the CUDA kernels (segment_rules.h); loops are
// arranged for caches: plans are counting sorts per batch, reductions run over tiles of rows x
// channels, visiting memory row-major or channel-major depending on which layout is contiguous.
// The per-element operation sequence (entries in ascending m, double accumulation) is the same
// for either visiting order, so results do not depend on the layout or the thread count.
#include <algorithm>
#include <cstdlib>
#include <vector>

#include "common/parallel.h"
#include "scatter/scatter.h"
#include "scatter/segment_rules.h"

namespace m3ad {
namespace {

// Tile shape: with channel-contiguous values a tile spans many channels (each entry's row is one
// contiguous read); with channel-strided values (channels-first images) it spans few channels
// and many rows, so that the channel planes it reads stay in cache.
struct TileShape {
  int64_t rows, channels;
};

template <typename T>
TileShape tile_shape(const SegmentReduceParams& p) {
  if (p.vs_c == 1 || p.C == 1) return {64, 64};
  // ~256 KiB of channel planes per tile (a plane spans about vs_c elements), 8 to 64 channels.
  const int64_t plane = std::max<int64_t>(std::abs(p.vs_c), 1) * static_cast<int64_t>(sizeof(T));
  return {1024, std::min<int64_t>(64, std::max<int64_t>(8, (int64_t{256} << 10) / plane))};
}

// The resolved entries of a tile's rows (structure of arrays) and its accumulators.
struct Scratch {
  std::vector<int64_t> m, src, starts, arg;
  std::vector<double> w, acc;
};

// Reduces one channel of one row over its entries [e0, e1) (non-empty): the arithmetic of
// seg::take (segment_rules.h) with the first entry peeled: sum/mean start at 0.0 and add w*v in
// ascending m; max keeps the first largest, NaN beating numbers.
template <typename T, Reduce R>
inline double reduce_run(const T* v, int64_t stride, const int64_t* src, const double* w, const int64_t* m,
                         int64_t e0, int64_t e1, int64_t* arg) {
  if (R == Reduce::kMax) {
    double a = w[e0] * static_cast<double>(v[src[e0] * stride]);
    int64_t best = m[e0];
    for (int64_t e = e0 + 1; e < e1; ++e) {
      const double x = w[e] * static_cast<double>(v[src[e] * stride]);
      if (x > a || (x != x && a == a)) a = x, best = m[e];
    }
    *arg = best;
    return a;
  }
  double a = 0.0 + w[e0] * static_cast<double>(v[src[e0] * stride]);
  for (int64_t e = e0 + 1; e < e1; ++e) a = a + w[e] * static_cast<double>(v[src[e] * stride]);
  return a;
}

template <typename T, Reduce R>
void reduce_tile(const SegmentReduceParams& p, int64_t b, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                 Scratch& sc) {
  const int64_t nr = r1 - r0, nc = c1 - c0;
  // Resolve each row's entries once (entry id, source row, weight), in ascending m.
  sc.m.clear(), sc.src.clear(), sc.w.clear();
  sc.starts.assign(static_cast<size_t>(nr + 1), 0);
  for (int64_t r = r0; r < r1; ++r) {
    const seg::Span sp = seg::row_span(p, b, r);
    for (int64_t j = sp.begin; j < sp.end; ++j) {
      const int64_t m = seg::entry_at(p, j);
      if (m < 0) continue;
      const int64_t s = seg::source_of(p, b, m);
      if (s < 0) continue;
      sc.m.push_back(m);
      sc.src.push_back(s);
      sc.w.push_back(seg::weight_of<T>(p, b, m));
    }
    sc.starts[r - r0 + 1] = static_cast<int64_t>(sc.m.size());
  }
  const int64_t* st = sc.starts.data();
  const int64_t *em = sc.m.data(), *es = sc.src.data();
  const double* ew = sc.w.data();
  sc.acc.resize(static_cast<size_t>(nr * nc));
  sc.arg.resize(R == Reduce::kMax ? static_cast<size_t>(nr * nc) : 0);
  double* acc = sc.acc.data();
  int64_t* arg = sc.arg.data();
  int64_t dummy = 0;
  const T* vals = static_cast<const T*>(p.values) + b * p.vs_b;
  if (p.vs_c == 1 || nc == 1) {
    // Entry-major: one contiguous value row per entry; the channel loop vectorises for sums.
    for (int64_t i = 0; i < nr; ++i) {
      const int64_t e0 = st[i], e1 = st[i + 1];
      if (e0 == e1) continue;
      double* a = acc + i * nc;
      const T* v0 = vals + es[e0] * p.vs_s + c0 * p.vs_c;
      if (R == Reduce::kMax) {
        for (int64_t c = 0; c < nc; ++c) a[c] = ew[e0] * static_cast<double>(v0[c * p.vs_c]), arg[i * nc + c] = em[e0];
        for (int64_t e = e0 + 1; e < e1; ++e) {
          const T* v = vals + es[e] * p.vs_s + c0 * p.vs_c;
          for (int64_t c = 0; c < nc; ++c) {
            const double x = ew[e] * static_cast<double>(v[c * p.vs_c]);
            if (x > a[c] || (x != x && a[c] == a[c])) a[c] = x, arg[i * nc + c] = em[e];
          }
        }
      } else {
        for (int64_t c = 0; c < nc; ++c) a[c] = 0.0 + ew[e0] * static_cast<double>(v0[c * p.vs_c]);
        for (int64_t e = e0 + 1; e < e1; ++e) {
          const T* v = vals + es[e] * p.vs_s + c0 * p.vs_c;
          const double w = ew[e];
          for (int64_t c = 0; c < nc; ++c) a[c] = a[c] + w * static_cast<double>(v[c * p.vs_c]);
        }
      }
    }
  } else {  // channel-strided values: one channel plane at a time
    for (int64_t c = 0; c < nc; ++c) {
      const T* v = vals + (c0 + c) * p.vs_c;
      for (int64_t i = 0; i < nr; ++i) {
        if (st[i] == st[i + 1]) continue;
        acc[i * nc + c] = reduce_run<T, R>(v, p.vs_s, es, ew, em, st[i], st[i + 1],
                                           R == Reduce::kMax ? arg + i * nc + c : &dummy);
      }
    }
  }
  T* out = static_cast<T*>(p.out) + b * p.os_b;
  auto put = [&](int64_t i, int64_t c) {
    const int64_t n = st[i + 1] - st[i];
    double x = n ? acc[i * nc + c] : 0.0;
    if (R == Reduce::kMean && n) x = x / static_cast<double>(n);
    out[(r0 + i) * p.os_r + (c0 + c) * p.os_c] = static_cast<T>(x);
    if (R == Reduce::kMax && p.argmax)
      p.argmax[b * p.as_b + (r0 + i) * p.as_r + (c0 + c) * p.as_c] = n ? arg[i * nc + c] : -1;
  };
  if (p.os_c == 1 || nr == 1) {
    for (int64_t i = 0; i < nr; ++i)
      for (int64_t c = 0; c < nc; ++c) put(i, c);
  } else {
    for (int64_t c = 0; c < nc; ++c)
      for (int64_t i = 0; i < nr; ++i) put(i, c);
  }
}

// Weighted sums over fixed groups of at most kGatherMaxGroup entries (no plan) between
// channel-contiguous rows: the forward of grid_to_points, knn_gather and the interpolations, as
// one pass per output row with the row's entry count a compile-time constant, so that the channel
// loop vectorises with no accumulator tile. The arithmetic of reduce_tile's sum path (0.0 + w*v,
// then + w*v in ascending m, in double, rounded once): the same bits.
constexpr int64_t kGatherMaxGroup = 8;

template <typename T, int N>
void gather_row(const T* const* v, const double* w, int64_t C, T* out) {
  for (int64_t c = 0; c < C; ++c) {
    double a = 0.0 + w[0] * static_cast<double>(v[0][c]);
    for (int k = 1; k < N; ++k) a = a + w[k] * static_cast<double>(v[k][c]);
    out[c] = static_cast<T>(a);
  }
}

template <typename T>
void gather_rows_typed(const SegmentReduceParams& p) {
  parallel_for(p.B * p.R, std::max<int64_t>(1, 4096 / p.C), [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t b = e / p.R, r = e % p.R;
      const seg::Span sp = seg::row_span(p, b, r);
      const T* vals = static_cast<const T*>(p.values) + b * p.vs_b;
      const T* v[kGatherMaxGroup];
      double w[kGatherMaxGroup];
      int n = 0;
      for (int64_t j = sp.begin; j < sp.end; ++j) {
        const int64_t m = seg::entry_at(p, j);
        const int64_t s = m < 0 ? -1 : seg::source_of(p, b, m);
        if (s < 0) continue;
        v[n] = vals + s * p.vs_s;
        w[n++] = seg::weight_of<T>(p, b, m);
      }
      T* out = static_cast<T*>(p.out) + b * p.os_b + r * p.os_r;
      switch (n) {
        case 0: std::fill(out, out + p.C, T(0)); break;
        case 1: gather_row<T, 1>(v, w, p.C, out); break;
        case 2: gather_row<T, 2>(v, w, p.C, out); break;
        case 3: gather_row<T, 3>(v, w, p.C, out); break;
        case 4: gather_row<T, 4>(v, w, p.C, out); break;
        case 5: gather_row<T, 5>(v, w, p.C, out); break;
        case 6: gather_row<T, 6>(v, w, p.C, out); break;
        case 7: gather_row<T, 7>(v, w, p.C, out); break;
        default: gather_row<T, 8>(v, w, p.C, out); break;
      }
    }
  });
}

template <typename T, Reduce R>
void segment_reduce_typed(const SegmentReduceParams& p) {
  if (R == Reduce::kSum && !p.offsets && p.group <= kGatherMaxGroup && p.vs_c == 1 && p.os_c == 1) {
    gather_rows_typed<T>(p);
    return;
  }
  const TileShape ts = tile_shape<T>(p);
  const int64_t nrt = (p.R + ts.rows - 1) / ts.rows;
  const int64_t nct = (p.C + ts.channels - 1) / ts.channels;
  parallel_for(p.B * nrt * nct, 1, [&](int64_t t0, int64_t t1) {
    Scratch sc;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t ct = t % nct, rt = (t / nct) % nrt, b = t / (nct * nrt);
      const int64_t r0 = rt * ts.rows, c0 = ct * ts.channels;
      reduce_tile<T, R>(p, b, r0, std::min(p.R, r0 + ts.rows), c0, std::min(p.C, c0 + ts.channels), sc);
    }
  });
}

template <typename T>
void rows_dot_typed(const RowsDotParams& p) {
  const T* A = static_cast<const T*>(p.a);
  const T* V = static_cast<const T*>(p.v);
  T* out = static_cast<T*>(p.out);
  parallel_for(p.B * p.M, 256, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t b = e / p.M, m = e % p.M;
      const int64_t ra = seg::dot_row(p.a_index, p.a_group, p.a_rows, b, p.M, m);
      const int64_t rv = seg::dot_row(p.v_index, p.v_group, p.v_rows, b, p.M, m);
      if (ra < 0 || rv < 0) {
        out[e] = T(0);
        continue;
      }
      const T* a = A + b * p.a_sb + ra * p.a_sr;
      const T* v = V + b * p.v_sb + rv * p.v_sr;
      double part[32];
      for (int l = 0; l < 32; ++l) part[l] = seg::dot_lane(a, p.a_sc, v, p.v_sc, p.C, l);
      for (int off = 16; off > 0; off >>= 1)
        for (int l = 0; l < off; ++l) part[l] = part[l] + part[l + off];
      out[e] = static_cast<T>(part[0]);
    }
  });
}

template <typename T>
void max_backward_typed(const MaxBackwardParams& p) {
  const T* g = static_cast<const T*>(p.grad);
  T* out = static_cast<T*>(p.out);
  parallel_for(p.B * p.S, 64, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t b = e / p.S, s = e % p.S;
      for (int64_t c = 0; c < p.C; ++c) {
        double acc = 0.0;
        for (int64_t k = 0; k < p.group; ++k) {
          const int64_t m = s * p.group + k;
          if (m >= p.M) break;
          const int64_t r = p.index[b * p.M + m];
          if (r < 0 || r >= p.R) continue;
          if (p.argmax[b * p.am_sb + r * p.am_sr + c * p.am_sc] != m) continue;
          acc = acc + static_cast<double>(g[b * p.g_sb + r * p.g_sr + c * p.g_sc]);
        }
        out[e * p.C + c] = static_cast<T>(acc);
      }
    }
  });
}

}  // namespace

void rows_plan_cpu(const RowsPlanParams& p) {
  const int64_t BR = p.B * p.R;
  std::fill(p.offsets, p.offsets + BR + 1, int64_t{0});
  // 1. counts of batch b's rows in offsets[b*R + r + 1] (disjoint slices: batches in parallel)
  parallel_for(p.B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t* idx = p.index + b * p.M;
      int64_t* cnt = p.offsets + b * p.R + 1;
      for (int64_t m = 0; m < p.M; ++m)
        if (idx[m] >= 0 && idx[m] < p.R) ++cnt[idx[m]];
    }
  });
  // 2. inclusive scan over the shifted counts = exclusive offsets over all batches
  for (int64_t k = 1; k <= BR; ++k) p.offsets[k] += p.offsets[k - 1];
  // 3. stable placement: entries visited in ascending m keep that order inside each row
  parallel_for(p.B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<int64_t> cursor(static_cast<size_t>(p.R));
    for (int64_t b = b0; b < b1; ++b) {
      std::copy(p.offsets + b * p.R, p.offsets + (b + 1) * p.R, cursor.begin());
      const int64_t* idx = p.index + b * p.M;
      for (int64_t m = 0; m < p.M; ++m)
        if (idx[m] >= 0 && idx[m] < p.R) p.order[cursor[idx[m]]++] = m;
    }
  });
  std::fill(p.order + p.offsets[BR], p.order + p.B * p.M, int64_t{-1});
}

void segment_reduce_cpu(const SegmentReduceParams& p) {
  if (p.B == 0 || p.R == 0 || p.C == 0) return;
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    switch (p.reduce) {
      case Reduce::kSum: segment_reduce_typed<T, Reduce::kSum>(p); break;
      case Reduce::kMean: segment_reduce_typed<T, Reduce::kMean>(p); break;
      case Reduce::kMax: segment_reduce_typed<T, Reduce::kMax>(p); break;
    }
    return 0;
  });
}

void rows_dot_cpu(const RowsDotParams& p) {
  if (p.B == 0 || p.M == 0) return;
  dispatch_float(p.dtype, [&](auto tag) {
    rows_dot_typed<decltype(tag)>(p);
    return 0;
  });
}

void scatter_max_backward_cpu(const MaxBackwardParams& p) {
  if (p.B == 0 || p.S == 0 || p.C == 0) return;
  dispatch_float(p.dtype, [&](auto tag) {
    max_backward_typed<decltype(tag)>(p);
    return 0;
  });
}

}  // namespace m3ad
