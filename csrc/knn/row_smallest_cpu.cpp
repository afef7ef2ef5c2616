#include "knn/row_smallest.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/parallel.h"

namespace m3ad {
namespace {

// Keys that order as torch.sort orders the values: -0 = +0, every NaN after +inf. An entry is
// (key, column): comparing entries is then integer comparison, ties by the lower column. Entries
// are appended with the value's raw bits and keyed only when the buffer is cut (few are).
template <typename U>
U key_of_bits(U b) {
  constexpr U sign = U{1} << (8 * sizeof(U) - 1);
  constexpr U exp_all = sizeof(U) == 4 ? static_cast<U>(0x7f800000u) : static_cast<U>(0x7ff0000000000000ull);
  if ((b & ~sign) > exp_all) return ~U{0};  // NaN
  if ((b & ~sign) == 0) b = 0;              // -0 -> +0
  return b & sign ? ~b : b | sign;
}

template <typename T>
using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;

template <typename T>
Bits<T> bits_of(T x) {
  Bits<T> b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

template <typename T>
struct Entry {
  Bits<T> key;  // raw bits until keyed
  int64_t col;
  bool operator<(const Entry& o) const { return key < o.key || (key == o.key && col < o.col); }
};

// Keys entries [keyed, sz), then keeps the m best of the sz entries of buf (in any order) and
// returns the worst of them.
template <typename T>
Entry<T> keep_best(Entry<T>* buf, int64_t keyed, int64_t& sz, int64_t m) {
  for (int64_t s = keyed; s < sz; ++s) buf[s].key = key_of_bits(buf[s].key);
  std::nth_element(buf, buf + (m - 1), buf + sz);
  sz = m;
  return buf[m - 1];  // nth_element leaves the m-th best there, the better ones before it
}

// 16-byte GCC/Clang vector types: the x86-64 baseline (SSE2) has them; 64-byte ones were split
// into slower scalar code.
typedef float Floats16B __attribute__((vector_size(16)));
typedef double Doubles16B __attribute__((vector_size(16)));

// Whether any of the 16 entries at x is below tau: the pass over every entry. Written as a plain
// loop, the compiler left it scalar (0.27 vs 0.12 ns per entry).
template <typename T>
inline bool any_below16(const T* x, T tau) {
  using V = std::conditional_t<sizeof(T) == 4, Floats16B, Doubles16B>;
  using M = decltype(V{} < V{});
  constexpr int kVecs = 16 * sizeof(T) / sizeof(V);
  V bar;
  for (size_t l = 0; l < sizeof(V) / sizeof(T); ++l) bar[l] = tau;
  M hit{};
  for (int v = 0; v < kVecs; ++v) {
    V chunk;
    std::memcpy(&chunk, x + v * (sizeof(V) / sizeof(T)), sizeof chunk);
    hit |= chunk < bar;
  }
  uint64_t words[sizeof(M) / sizeof(uint64_t)];
  std::memcpy(words, &hit, sizeof words);
  uint64_t any = 0;
  for (uint64_t w : words) any |= w;
  return any != 0;
}

// Candidates are appended unsorted while they beat the worst of the last m kept: one comparison,
// vectorised 16 entries at a time, and blocks with a hit are appended without branches (every
// entry is written, the count advances by the comparison); a full buffer is cut back to its m
// best, which raises the bar. A heap's sift per entry, or a branch per entry, cost 3-5 times
// more on rows of a few thousand.
template <typename T>
void one_row(const T* x, int64_t n, int64_t m, std::vector<Entry<T>>& store, T* vals, int64_t* idx) {
  constexpr int64_t kLanes = 16;
  const int64_t cap = std::max<int64_t>(4 * m, 64);
  store.resize(static_cast<size_t>(cap + kLanes));
  Entry<T>* buf = store.data();
  int64_t sz = 0;
  for (int64_t j = 0; j < m; ++j) buf[sz++] = {bits_of(x[j]), j};
  T tau = x[keep_best(buf, 0, sz, m).col];
  int64_t j = m;
  while (j < n) {
    if (sz >= cap) tau = x[keep_best(buf, m, sz, m).col];
    if (tau == tau) {
      // Later columns lose ties, so only a strictly smaller value can enter (NaN never).
      const int64_t stop = j + (n - j) / kLanes * kLanes;
      static_assert(kLanes == 16, "any_below16");
      while (j < stop && !any_below16(x + j, tau)) j += kLanes;
      if (j == n) break;
      const int64_t end = std::min(n, j + kLanes);
      for (; j < end; ++j) {
        buf[sz] = {bits_of(x[j]), j};
        sz += x[j] < tau;
      }
    } else {  // the bar is a NaN: any number enters, until the buffer is cut back
      for (; j < n && sz < cap; ++j) {
        buf[sz] = {bits_of(x[j]), j};
        sz += x[j] == x[j];
      }
    }
  }
  keep_best(buf, m, sz, m);  // keys the rest, if any
  std::sort(buf, buf + m);
  for (int64_t s = 0; s < m; ++s) {
    vals[s] = x[buf[s].col];
    idx[s] = buf[s].col;
  }
}

}  // namespace

void row_smallest(const void* a, int64_t rows, int64_t n, int64_t m, DType dtype, void* vals, int64_t* idx) {
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(a);
    T* v = static_cast<T*>(vals);
    parallel_for(rows, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(n, 1)), [&](int64_t r0, int64_t r1) {
      std::vector<Entry<T>> store;
      for (int64_t r = r0; r < r1; ++r) one_row(x + r * n, n, m, store, v + r * m, idx + r * m);
    });
    return 0;
  });
}

}  // namespace m3ad
