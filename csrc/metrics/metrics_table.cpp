// Queries on the interval table (see metrics.h): the exact walk over curve segments, shared by the
// CPU and CUDA builds (the CUDA build copies its O(#distinct defect scores) table to the host).
// The walk is split into fixed chunks of entries whose integer totals are summed in parallel;
// integer sums make the result independent of the chunking and the thread count.
#include <algorithm>
#include <stdexcept>

#include "common/parallel.h"
#include "metrics/metrics.h"

namespace m3ad {
namespace metrics {
namespace {

struct Seg {
  uint64_t c0, c1, p0, p1;
  u128 s0, s1;
};

// Calls fn(seg) for the non-empty segments of entries [k0, k1), entry k being interval m-k
// followed by group m-1-k; (c, p, s) are the totals above entry k0 and are advanced.
template <typename Fn>
void walk(const Table& t, int64_t k0, int64_t k1, uint64_t& c, uint64_t& p, u128& s, Fn&& fn) {
  const int64_t m = static_cast<int64_t>(t.eq.size());
  for (int64_t k = k0; k < k1; ++k) {
    const uint64_t h = t.btw[m - k];
    if (h) {
      if (fn(Seg{c, c + h, p, p, s, s})) return;
      c += h;
    }
    if (k < m) {
      const int64_t i = m - 1 - k;
      const Seg g{c, c + t.eq[i], p, p + t.pos[i], s, s + t.wsum[i]};
      c = g.c1, p = g.p1, s = g.s1;
      if (fn(g)) return;
    }
  }
}

inline void add_terms(const Seg& g, U256& area, u128& roc2) {
  const uint64_t dc = g.c1 - g.c0;
  if (!dc) return;
  area.add_mul(dc, g.s0 + g.s1);
  roc2 += static_cast<u128>(dc) * (static_cast<u128>(g.p0) + g.p1);
}

}  // namespace

void Table::finalize() {
  const int64_t n = entries();
  const int64_t nchunks = (n + kChunk - 1) / kChunk;
  chunk_.assign(static_cast<size_t>(nchunks), ChunkSum{});
  // Pass 1: plain totals per chunk (walked from zero, so only the differences are meaningful).
  parallel_for(nchunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      uint64_t c = 0, p = 0;
      u128 s = 0;
      walk(*this, k * kChunk, std::min(n, (k + 1) * kChunk), c, p, s, [](const Seg&) { return false; });
      chunk_[k].c = c, chunk_[k].p = p, chunk_[k].s = s;
    }
  });
  before_.assign(static_cast<size_t>(nchunks) + 1, ChunkSum{});
  for (int64_t k = 0; k < nchunks; ++k) {
    before_[k + 1].c = before_[k].c + chunk_[k].c;
    before_[k + 1].p = before_[k].p + chunk_[k].p;
    before_[k + 1].s = before_[k].s + chunk_[k].s;
  }
  // Pass 2: the area terms need the absolute (c, p, s) at the start of each chunk.
  parallel_for(nchunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      uint64_t c = before_[k].c, p = before_[k].p;
      u128 s = before_[k].s;
      U256 area;
      u128 roc2 = 0;
      walk(*this, k * kChunk, std::min(n, (k + 1) * kChunk), c, p, s, [&](const Seg& g) {
        add_terms(g, area, roc2);
        return false;
      });
      chunk_[k].area = area, chunk_[k].roc2 = roc2;
    }
  });
  for (int64_t k = 0; k < nchunks; ++k) {
    before_[k + 1].area = before_[k].area;
    before_[k + 1].area.add(chunk_[k].area);
    before_[k + 1].roc2 = before_[k].roc2 + chunk_[k].roc2;
  }
}

QueryResult Table::query(const std::vector<int64_t>& c_lims, const std::vector<int64_t>& ranks) const {
  if (before_.empty()) throw std::logic_error("metrics table: query before finalize");
  const int64_t n = entries();
  const int64_t nchunks = static_cast<int64_t>(chunk_.size());
  const uint64_t n_neg = before_[nchunks].c;
  QueryResult r;
  r.roc2 = before_[nchunks].roc2;
  r.s_total = before_[nchunks].s;
  // First chunk whose end count reaches `need` (before_ is non-decreasing in c).
  auto chunk_reaching = [&](uint64_t need) {
    int64_t lo = 0, hi = nchunks - 1;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (before_[mid + 1].c >= need) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
  for (int64_t lim : c_lims) {
    if (lim < 0) throw std::invalid_argument("metrics: negative FPR limit count");
    const uint64_t cl = static_cast<uint64_t>(lim);
    if (cl >= n_neg) {
      r.area.push_back(before_[nchunks].area);
      r.cross.push_back(Crossing{});
      continue;
    }
    const int64_t k = chunk_reaching(cl + 1);
    U256 area = before_[k].area;
    u128 roc_unused = 0;
    Crossing x;
    uint64_t c = before_[k].c, p = before_[k].p;
    u128 s = before_[k].s;
    walk(*this, k * kChunk, std::min(n, (k + 1) * kChunk), c, p, s, [&](const Seg& g) {
      if (g.c1 <= cl) {
        add_terms(g, area, roc_unused);
        return false;
      }
      x = Crossing{true, g.c0, g.c1, g.s0, g.s1};
      return true;
    });
    if (!x.found) throw std::logic_error("metrics table: FPR limit crossing not found");
    r.area.push_back(area);
    r.cross.push_back(x);
  }
  for (int64_t rank : ranks) {
    if (rank < 1 || static_cast<uint64_t>(rank) > n_neg)
      throw std::invalid_argument("metrics: threshold rank outside [1, n_normal]");
    const uint64_t rk = static_cast<uint64_t>(rank);
    const int64_t k = chunk_reaching(rk);
    uint64_t c = before_[k].c, p = before_[k].p;
    u128 s = before_[k].s, found = 0;
    bool ok = false;
    walk(*this, k * kChunk, std::min(n, (k + 1) * kChunk), c, p, s, [&](const Seg& g) {
      if (g.c0 < rk && rk <= g.c1) {
        found = g.s0, ok = true;
        return true;
      }
      return false;
    });
    if (!ok) throw std::logic_error("metrics table: threshold rank not found");
    r.rank_s.push_back(found);
  }
  return r;
}

void Table::curve(std::vector<uint64_t>& cv, std::vector<uint64_t>& pv, std::vector<u128>& sv) const {
  cv.assign(1, 0), pv.assign(1, 0), sv.assign(1, 0);
  uint64_t c = 0, p = 0;
  u128 s = 0;
  walk(*this, 0, entries(), c, p, s, [&](const Seg& g) {
    const size_t n = cv.size();
    // Horizontal (only normal pixels) and vertical (only defect pixels) runs become one segment.
    const bool horizontal = g.p1 == g.p0, vertical = g.c1 == g.c0;
    if (n >= 2) {
      const bool prev_h = pv[n - 1] == pv[n - 2], prev_v = cv[n - 1] == cv[n - 2];
      if ((horizontal && prev_h) || (vertical && prev_v)) {
        cv[n - 1] = g.c1, pv[n - 1] = g.p1, sv[n - 1] = g.s1;
        return false;
      }
    }
    cv.push_back(g.c1), pv.push_back(g.p1), sv.push_back(g.s1);
    return false;
  });
}

}  // namespace metrics
}  // namespace m3ad
