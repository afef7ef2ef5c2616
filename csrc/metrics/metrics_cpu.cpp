// CPU build of the interval table (metrics.h). Four passes:
//   1. per map: count defect pixels, reject mask bytes other than 0/1 (masks only);
//   2. per map: 8-connected components (skipped when the regions are not needed); write one
//      (score key, region) record per defect pixel;
//   3. radix sort of the defect records by score; reduce runs of equal scores to groups
//      (count, sum of fixed-point overlap weights);
//   4. per pixel range: locate every normal pixel among the distinct defect scores (uniform
//      lookup table over the key range + binary search inside a slot) and count it; then join
//      the vertical runs (metrics.h), as the CUDA build does.
// Scores are read once (defect pixels in 2, normal pixels in 4), and checked for NaN/Inf there.
// Normal pixels, usually the vast majority, are never copied or sorted; pass 4 is bound by the
// latency of its table lookups (about 4 ns per pixel and thread).
// Extra memory: 2 records (8 bytes for float32 maps, 16 for float64) per defect pixel, a 16-byte
// weight per region, 40 bytes per distinct defect score, a 32 * (#distinct defect scores) byte
// lookup table, an H*W int32 label buffer per worker and 8 * (#distinct defect scores + 1) bytes
// of counters per worker.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "common/parallel.h"
#include "metrics/ccl.h"
#include "metrics/metrics.h"
#include "metrics/radix_sort_cpu.h"

namespace m3ad {
namespace metrics {
namespace {

template <typename Key>
struct Rec {
  Key key;
  uint32_t region;  // global region id
};

struct MapInfo {
  int64_t n_pos = 0, n_nonfinite = 0, first_nonfinite = -1, n_nonbinary = 0, first_nonbinary = -1;
  int64_t rec_offset = 0, region_offset = 0;
  std::vector<uint32_t> sizes;
};

// Defect counts per map (record offsets) and mask validation; scores are checked for NaN/Inf by
// the two passes that read them anyway (defect pixels in pass 2, normal pixels in pass 4).
void count_defects(const uint8_t* masks, int64_t N, int64_t HW, std::vector<MapInfo>& info) {
  parallel_for(N, 1, [&](int64_t b, int64_t e) {
    for (int64_t mi = b; mi < e; ++mi) {
      const uint8_t* m = masks + mi * HW;
      int64_t pos = 0, bad = 0;
      for (int64_t i = 0; i < HW; ++i) {
        pos += m[i] != 0;
        bad += m[i] > 1;
      }
      MapInfo& inf = info[mi];
      inf.n_pos = pos, inf.n_nonbinary = bad;
      if (bad)
        for (int64_t i = 0; i < HW; ++i)
          if (m[i] > 1) { inf.first_nonbinary = mi * HW + i; break; }
    }
  });
}

// Uniform table over [D[0], D[m-1]] in key space: slot -> first index of D inside the slot. Most
// normal pixels fall into slots without any defect score (defect scores crowd the upper range),
// where the answer is the table entry itself; the others binary-search their slot.
template <typename Key>
class Locator {
 public:
  explicit Locator(const std::vector<Key>& d) : d_(d.data()), m_(static_cast<int64_t>(d.size())) {
    if (m_ == 0) return;
    lo_ = d.front(), hi_ = d.back();
    const Key span = hi_ - lo_;
    const uint64_t target = static_cast<uint64_t>(std::min<int64_t>(int64_t{1} << 22, std::max<int64_t>(64, 8 * m_)));
    while (static_cast<uint64_t>(span >> shift_) >= target) ++shift_;
    const int64_t nslots = static_cast<int64_t>(span >> shift_) + 1;
    start_.resize(static_cast<size_t>(nslots) + 1);
    int64_t i = 0;
    for (int64_t sl = 0; sl < nslots; ++sl) {
      const Key from = lo_ + (static_cast<Key>(sl) << shift_);
      while (i < m_ && d[i] < from) ++i;
      start_[sl] = static_cast<uint32_t>(i);
    }
    start_[nslots] = static_cast<uint32_t>(m_);
  }

  // Counter slot of key k: 2 * (number of D values below k), plus 1 when k equals the next one.
  // A value type with the hot fields, so that the counting loop keeps them in registers (the
  // counter stores could otherwise alias them and force reloads on every pixel).
  struct View {
    const Key* d;
    const uint32_t* start;
    int64_t m;
    Key lo, hi;
    int shift;
    int64_t counter(Key k) const {
      if (k < lo || m == 0) return 0;
      if (k > hi) return 2 * m;
      const int64_t sl = static_cast<int64_t>((k - lo) >> shift);
      const uint32_t b = start[sl], e = start[sl + 1];
      if (b == e) return 2 * static_cast<int64_t>(b);
      const Key* it = std::lower_bound(d + b, d + e, k);
      const int64_t idx = it - d;
      return 2 * idx + (idx < m && *it == k ? 1 : 0);
    }
  };
  View view() const { return View{d_, start_.data(), m_, lo_, hi_, shift_}; }

 private:
  const Key* d_;
  int64_t m_;
  Key lo_ = 0, hi_ = 0;
  int shift_ = 0;
  std::vector<uint32_t> start_;
};

// Host clock per phase when BuildParams::profile is set.
class PhaseClock {
 public:
  PhaseClock(bool on, std::vector<Phase>& out) : on_(on), out_(out), start_(now()), last_(start_) {
    if (on_) out_.clear();
  }
  void mark(const char* name) {
    if (!on_) return;
    const auto t = now();
    out_.push_back(Phase{name, ms(last_, t), false});
    last_ = t;
  }
  void total() {
    if (on_) out_.push_back(Phase{"total", ms(start_, now()), false});
  }

 private:
  using Clock = std::chrono::steady_clock;
  static Clock::time_point now() { return Clock::now(); }
  static double ms(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  }
  bool on_;
  std::vector<Phase>& out_;
  Clock::time_point start_, last_;
};

// Joins the vertical runs in place (metrics.h): group i is added to the group before it when
// joins_previous(eq[i-1], btw[i], eq[i]) holds for the original counts.
void join_vertical_runs(Table& t) {
  const int64_t m = static_cast<int64_t>(t.eq.size());
  int64_t r = 0;
  uint64_t eq_prev = 0;
  for (int64_t i = 0; i < m; ++i) {
    const uint64_t eq = t.eq[i];
    if (i > 0 && joins_previous(eq_prev, t.btw[i], eq)) {
      t.pos[r - 1] += t.pos[i];
      t.wsum[r - 1] += t.wsum[i];
    } else {
      t.btw[r] = t.btw[i], t.eq[r] = eq, t.pos[r] = t.pos[i], t.wsum[r] = t.wsum[i];
      ++r;
    }
    eq_prev = eq;
  }
  t.btw[r] = t.btw[m];
  t.btw.resize(static_cast<size_t>(r + 1));
  t.eq.resize(static_cast<size_t>(r));
  t.pos.resize(static_cast<size_t>(r));
  t.wsum.resize(static_cast<size_t>(r));
}

template <typename T>
void build(const BuildParams& p, Table& t) {
  using Key = decltype(order_key(T{}));
  const T* maps = static_cast<const T*>(p.maps);
  const int64_t N = p.N, HW = p.H * p.W, n = N * HW;
  Stats& st = t.stats;
  st = Stats{};
  st.n_pixels = n;
  PhaseClock clock(p.profile, t.profile);
  std::vector<MapInfo> info(static_cast<size_t>(N));

  // 1. Mask validation and defect counts.
  count_defects(p.masks, N, HW, info);
  for (int64_t mi = 0; mi < N; ++mi) {
    const MapInfo& inf = info[mi];
    st.n_pos += inf.n_pos;
    st.n_nonbinary += inf.n_nonbinary;
    if (st.first_nonbinary < 0) st.first_nonbinary = inf.first_nonbinary;
  }
  st.n_neg = n - st.n_pos;
  clock.mark("validate masks");
  if (!st.valid()) return;
  for (int64_t mi = 1; mi < N; ++mi) info[mi].rec_offset = info[mi - 1].rec_offset + info[mi - 1].n_pos;
  const bool regions = p.need_regions;

  // 2. Components and defect records (region ids local to the map for now).
  std::vector<Rec<Key>> recs(static_cast<size_t>(st.n_pos));
  parallel_for(N, 1, [&](int64_t b, int64_t e) {
    CclScratch scratch;
    std::vector<int32_t> region_of;
    for (int64_t mi = b; mi < e; ++mi) {
      if (info[mi].n_pos == 0) continue;
      if (!regions) {  // defect pixels in raster order, region 0
        const uint8_t* mk = p.masks + mi * HW;
        const T* s = maps + mi * HW;
        Rec<Key>* out = recs.data() + info[mi].rec_offset;
        int64_t k = 0;
        for (int64_t i = 0; i < HW;) {
          if (i + 8 <= HW) {  // masks are mostly zero: skip them eight at a time
            uint64_t word;
            std::memcpy(&word, mk + i, 8);
            if (!word) {
              i += 8;
              continue;
            }
          }
          const int64_t e = std::min(HW, i + 8);
          for (; i < e; ++i) {
            if (!mk[i]) continue;
            const T v = s[i];
            if (!is_finite_bits(v)) {
              if (info[mi].n_nonfinite++ == 0) info[mi].first_nonfinite = mi * HW + i;
            }
            out[k++] = Rec<Key>{order_key(v), 0};
          }
        }
        continue;
      }
      label_map_cpu(p.masks + mi * HW, p.H, p.W, scratch, region_of, info[mi].sizes);
      const T* s = maps + mi * HW;
      Rec<Key>* out = recs.data() + info[mi].rec_offset;
      for (size_t k = 0; k < scratch.pixels.size(); ++k) {
        const T v = s[scratch.pixels[k]];
        if (!is_finite_bits(v)) {
          if (info[mi].n_nonfinite++ == 0) info[mi].first_nonfinite = mi * HW + scratch.pixels[k];
        }
        out[k] = Rec<Key>{order_key(v), static_cast<uint32_t>(region_of[k])};
      }
    }
  });
  for (int64_t mi = 0; mi < N; ++mi) {
    st.n_nonfinite += info[mi].n_nonfinite;
    if (st.first_nonfinite < 0) st.first_nonfinite = info[mi].first_nonfinite;
    if (mi) info[mi].region_offset = info[mi - 1].region_offset + static_cast<int64_t>(info[mi - 1].sizes.size());
    st.n_regions += static_cast<int64_t>(info[mi].sizes.size());
  }
  if (st.n_regions >= (int64_t{1} << 32)) throw std::invalid_argument("metrics: more than 2^32 defect regions");
  if (!regions) st.n_regions = -1;
  std::vector<u128> weight(regions ? static_cast<size_t>(st.n_regions) : 0);
  if (regions) parallel_for(N, 1, [&](int64_t b, int64_t e) {
    for (int64_t mi = b; mi < e; ++mi) {
      const MapInfo& inf = info[mi];
      for (size_t r = 0; r < inf.sizes.size(); ++r) weight[inf.region_offset + r] = region_weight(inf.sizes[r]);
      Rec<Key>* out = recs.data() + inf.rec_offset;
      for (int64_t k = 0; k < inf.n_pos; ++k) out[k].region += static_cast<uint32_t>(inf.region_offset);
    }
  });
  info.clear();
  clock.mark(regions ? "components + records" : "records");

  // 3. Sort by score, reduce equal scores to groups.
  {
    std::vector<Rec<Key>> tmp;
    radix_sort_by_key(recs, tmp);
  }
  clock.mark("sort");
  std::vector<Key> d;
  for (int64_t i = 0; i < st.n_pos;) {
    const Key k = recs[i].key;
    uint64_t cnt = 0;
    u128 w = 0;
    if (regions) {
      for (; i < st.n_pos && recs[i].key == k; ++i) ++cnt, w += weight[recs[i].region];
    } else {
      for (; i < st.n_pos && recs[i].key == k; ++i) ++cnt;
    }
    d.push_back(k);
    t.pos.push_back(cnt);
    t.wsum.push_back(w);
  }
  std::vector<Rec<Key>>().swap(recs);
  std::vector<u128>().swap(weight);
  const int64_t m = static_cast<int64_t>(d.size());
  st.n_groups = m;
  if (m >= (int64_t{1} << 32) - 1) throw std::invalid_argument("metrics: more than 2^32 distinct defect scores");
  clock.mark("reduce groups");

  // 4. Count the normal pixels per group (equal score) and per interval (between two groups).
  // 32-bit counters per worker (each worker's range is below 2^32 pixels), summed at the end.
  Locator<Key> loc(d);
  const int64_t width = 2 * m + 1;  // [2 i] interval i, [2 i + 1] group i
  const int64_t budget = int64_t{256} << 20;
  int64_t parts = std::max<int64_t>(
      1, std::min<int64_t>({get_num_threads(), budget / (4 * width), (n + (1 << 16) - 1) >> 16}));
  parts = std::max<int64_t>(parts, (n >> 31) + 1);
  std::vector<std::vector<uint32_t>> counts(static_cast<size_t>(parts));
  std::vector<int64_t> bad(static_cast<size_t>(parts), 0), first_bad(static_cast<size_t>(parts), -1);
  parallel_for(parts, 1, [&](int64_t b, int64_t e) {
    for (int64_t part = b; part < e; ++part) {
      std::vector<uint32_t>& c = counts[part];
      c.assign(static_cast<size_t>(width), 0);
      uint32_t* __restrict cp = c.data();
      const int64_t lo = part * n / parts, hi = (part + 1) * n / parts;
      const uint8_t* __restrict mk = p.masks;
      const T* __restrict sc = maps;
      const typename Locator<Key>::View v = loc.view();
      int64_t nbad = 0;
      for (int64_t i = lo; i < hi; ++i) {
        if (mk[i]) continue;
        const T x = sc[i];
        nbad += !is_finite_bits(x);
        ++cp[v.counter(order_key(x))];  // a NaN key is still a valid slot; the result is discarded
      }
      if (nbad)
        for (int64_t i = lo; i < hi; ++i)
          if (!mk[i] && !is_finite_bits(maps[i])) { first_bad[part] = i; break; }
      bad[part] = nbad;
    }
  });
  for (int64_t part = 0; part < parts; ++part) {
    st.n_nonfinite += bad[part];
    if (first_bad[part] >= 0 && (st.first_nonfinite < 0 || first_bad[part] < st.first_nonfinite))
      st.first_nonfinite = first_bad[part];
  }
  t.btw.assign(static_cast<size_t>(m + 1), 0);
  t.eq.assign(static_cast<size_t>(m), 0);
  for (const auto& c : counts) {
    for (int64_t i = 0; i <= m; ++i) t.btw[i] += c[2 * i];
    for (int64_t i = 0; i < m; ++i) t.eq[i] += c[2 * i + 1];
  }
  clock.mark("count normals");
  if (p.join_runs) join_vertical_runs(t);
  st.n_table = static_cast<int64_t>(t.eq.size());
  clock.mark("join vertical runs");
  t.finalize();
  clock.mark("finalize");
  clock.total();
}

}  // namespace

void build_table_cpu(const BuildParams& p, Table& t) {
  if (p.H * p.W >= (int64_t{1} << 31)) throw std::invalid_argument("metrics: H * W must be < 2^31");
  dispatch_float(p.dtype, [&](auto tag) {
    build<decltype(tag)>(p, t);
    return 0;
  });
}

}  // namespace metrics
}  // namespace m3ad
