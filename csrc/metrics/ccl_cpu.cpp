// CPU 8-connected component labelling: one raster pass with union-find over provisional labels
// (neighbours W, NW, N, NE are already visited), then a pass over the defect pixels only.
// Masks are mostly zero, so the row scan skips zero bytes eight at a time.
#include <cstring>

#include "metrics/ccl.h"

namespace m3ad {
namespace metrics {
namespace {

inline int32_t find_root(int32_t* par, int32_t x) {
  while (par[x] != x) {
    par[x] = par[par[x]];  // path halving
    x = par[x];
  }
  return x;
}

// The smaller root wins, so every root is the smallest provisional label of its set.
inline void unite(int32_t* par, int32_t a, int32_t b) {
  a = find_root(par, a);
  b = find_root(par, b);
  if (a < b) par[b] = a;
  else if (b < a) par[a] = b;
}

inline int64_t next_nonzero(const uint8_t* row, int64_t x, int64_t W) {
  while (x < W && (x & 7)) {
    if (row[x]) return x;
    ++x;
  }
  while (x + 8 <= W) {
    uint64_t v;
    std::memcpy(&v, row + x, 8);
    if (v) break;
    x += 8;
  }
  while (x < W && !row[x]) ++x;
  return x;
}

}  // namespace

void label_map_cpu(const uint8_t* mask, int64_t H, int64_t W, CclScratch& s,
                   std::vector<int32_t>& region_of, std::vector<uint32_t>& sizes) {
  if (s.label.size() < static_cast<size_t>(H * W)) s.label.resize(static_cast<size_t>(H * W));
  s.parent.clear();
  s.pixels.clear();
  int32_t* lab = s.label.data();
  for (int64_t y = 0; y < H; ++y) {
    const uint8_t* row = mask + y * W;
    const uint8_t* up = y ? row - W : nullptr;
    for (int64_t x = next_nonzero(row, 0, W); x < W; x = next_nonzero(row, x + 1, W)) {
      const int64_t i = y * W + x;
      int32_t l = -1;
      auto take = [&](int64_t j) {
        const int32_t q = lab[j];
        if (l < 0) l = q;
        else if (q != l) unite(s.parent.data(), l, q);
      };
      if (x > 0 && row[x - 1]) take(i - 1);
      if (up) {
        if (x > 0 && up[x - 1]) take(i - W - 1);
        if (up[x]) take(i - W);
        if (x + 1 < W && up[x + 1]) take(i - W + 1);
      }
      if (l < 0) {
        l = static_cast<int32_t>(s.parent.size());
        s.parent.push_back(l);
      }
      lab[i] = l;
      s.pixels.push_back(static_cast<int32_t>(i));
    }
  }
  // Final ids in order of each set's smallest provisional label, i.e. of its first pixel.
  int32_t* par = s.parent.data();
  const size_t nprov = s.parent.size();
  s.comp.resize(nprov);
  int32_t ncomp = 0;
  for (size_t l = 0; l < nprov; ++l) {
    const int32_t r = find_root(par, static_cast<int32_t>(l));
    s.comp[l] = r == static_cast<int32_t>(l) ? ncomp++ : s.comp[r];
  }
  sizes.assign(static_cast<size_t>(ncomp), 0);
  region_of.resize(s.pixels.size());
  for (size_t k = 0; k < s.pixels.size(); ++k) {
    const int32_t c = s.comp[lab[s.pixels[k]]];
    region_of[k] = c;
    ++sizes[c];
  }
}

}  // namespace metrics
}  // namespace m3ad
