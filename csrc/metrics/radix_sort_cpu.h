// Parallel stable LSD radix sort of (key, payload) records by an unsigned integer key, for the
// defect pixels of the metrics (order_key() makes float scores sortable as integers).
// 8-bit digits; passes whose digit is the same for every record are skipped (scores of one data
// set usually share their top bits). Extra memory: one buffer of the same size.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "common/parallel.h"

namespace m3ad {
namespace metrics {

template <typename Rec>
void radix_sort_by_key(std::vector<Rec>& a, std::vector<Rec>& tmp) {
  using Key = decltype(Rec{}.key);
  const int64_t n = static_cast<int64_t>(a.size());
  if (n < 2) return;
  if (n < (1 << 14)) {
    std::stable_sort(a.begin(), a.end(), [](const Rec& x, const Rec& y) { return x.key < y.key; });
    return;
  }
  tmp.resize(static_cast<size_t>(n));
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), n / (1 << 15)));
  auto range = [&](int64_t p) { return std::make_pair(p * n / parts, (p + 1) * n / parts); };
  std::vector<std::array<int64_t, 256>> hist(static_cast<size_t>(parts));
  Rec* src = a.data();
  Rec* dst = tmp.data();
  for (int shift = 0; shift < static_cast<int>(8 * sizeof(Key)); shift += 8) {
    parallel_for(parts, 1, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        auto& h = hist[p];
        h.fill(0);
        const auto r = range(p);
        for (int64_t i = r.first; i < r.second; ++i) ++h[(src[i].key >> shift) & 0xff];
      }
    });
    bool trivial = false;
    for (int d = 0; d < 256 && !trivial; ++d) {
      int64_t tot = 0;
      for (int64_t p = 0; p < parts; ++p) tot += hist[p][d];
      trivial = tot == n;
    }
    if (trivial) continue;
    int64_t run = 0;
    for (int d = 0; d < 256; ++d)
      for (int64_t p = 0; p < parts; ++p) {
        const int64_t c = hist[p][d];
        hist[p][d] = run;
        run += c;
      }
    parallel_for(parts, 1, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        auto& off = hist[p];
        const auto r = range(p);
        for (int64_t i = r.first; i < r.second; ++i) dst[off[(src[i].key >> shift) & 0xff]++] = src[i];
      }
    });
    std::swap(src, dst);
  }
  if (src != a.data()) a.swap(tmp);
  std::vector<Rec>().swap(tmp);
}

}  // namespace metrics
}  // namespace m3ad
