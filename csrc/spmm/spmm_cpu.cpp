#include <algorithm>
#include <vector>

#include "common/parallel.h"
#include "spmm/spmm.h"

namespace m3ad {
namespace {

// Rows are independent; a grain of ~32k multiply-adds keeps the pool busy without overhead.
int64_t grain_for(int64_t work_per_row) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(work_per_row, 1)); }

template <typename T>
void ell_spmm(const EllParams& p) {
  const T* x = static_cast<const T*>(p.x);
  const T* w = static_cast<const T*>(p.w);
  T* out = static_cast<T*>(p.out);
  parallel_for(p.B * p.R, grain_for(p.K * p.C), [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t b = row / p.R;
      T* o = out + row * p.C;
      std::fill(o, o + p.C, T(0));
      for (int64_t j = 0; j < p.K; ++j) {
        const int64_t src = p.idx[row * p.K + j];
        if (src < 0 || src >= p.N) continue;
        const T wj = w[row * p.K + j];
        const T* xs = x + (b * p.N + src) * p.C;
        for (int64_t c = 0; c < p.C; ++c) o[c] = o[c] + wj * xs[c];
      }
    }
  });
}

template <typename T>
void ell_dot(const EllParams& p) {
  const T* x = static_cast<const T*>(p.x);
  const T* g = static_cast<const T*>(p.g);
  T* out = static_cast<T*>(p.out);
  parallel_for(p.B * p.R, grain_for(p.K * p.C), [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t b = row / p.R;
      const T* gr = g + row * p.C;
      for (int64_t j = 0; j < p.K; ++j) {
        const int64_t src = p.idx[row * p.K + j];
        T acc = 0;
        if (src >= 0 && src < p.N) {
          const T* xs = x + (b * p.N + src) * p.C;
          for (int64_t c = 0; c < p.C; ++c) acc = acc + gr[c] * xs[c];
        }
        out[row * p.K + j] = acc;
      }
    }
  });
}

template <typename T>
void csr_spmm(const CsrParams& p) {
  const T* y = static_cast<const T*>(p.y);
  const T* w = static_cast<const T*>(p.w);
  T* out = static_cast<T*>(p.out);
  const int64_t E = p.R * p.K;
  parallel_for(p.B * p.G, grain_for(p.C * 4), [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t b = row / p.G, g = row % p.G;
      T* o = out + row * p.C;
      std::fill(o, o + p.C, T(0));
      const int64_t* off = p.offsets + b * (p.G + 1);
      const int64_t lo = std::max<int64_t>(off[g], 0), hi = std::min<int64_t>(off[g + 1], E);
      for (int64_t e = lo; e < hi; ++e) {
        const int64_t ent = p.entries[b * E + e];
        if (ent < 0 || ent >= E) continue;
        const T we = w[b * E + ent];
        const T* ys = y + (b * p.R + ent / p.K) * p.C;
        for (int64_t c = 0; c < p.C; ++c) o[c] = o[c] + we * ys[c];
      }
    }
  });
}

}  // namespace

void ell_spmm_cpu(const EllParams& p) {
  dispatch_float(p.dtype, [&](auto t) { ell_spmm<decltype(t)>(p); return 0; });
}
void ell_dot_cpu(const EllParams& p) {
  dispatch_float(p.dtype, [&](auto t) { ell_dot<decltype(t)>(p); return 0; });
}
void csr_spmm_cpu(const CsrParams& p) {
  dispatch_float(p.dtype, [&](auto t) { csr_spmm<decltype(t)>(p); return 0; });
}

}  // namespace m3ad
