// Median selection for the KD-tree build: the nth_element contract (records before `nth` have a
// key <= nth's key, records after it >= ) with branch-free partitions.
//
// Why not std::nth_element: on point coordinates its comparisons are coin flips, and the
// mispredicted branches of its partition loop were 90 % of a tree build (16k points: 0.7 ms on
// one core). A Lomuto partition that always swaps and advances its boundary by the comparison's
// 0/1 has no data-dependent branch. Duplicate keys (lattices, flat scans) would make a plain
// "< pivot" partition quadratic, so when nothing is below the pivot the range is split again
// into "not above the pivot" and the rest; the pivot itself always lands in one part, so every
// round shrinks the range, and unordered keys (NaN, possible only with value checks off) can
// neither hang the loop nor send it out of bounds. A round limit falls back to a heap select.
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>

namespace m3ad {

// Moves the records whose key satisfies `pred` to the front of [a, a + n); returns their count.
template <typename Rec, typename Pred>
inline int64_t partition_front(Rec* a, int64_t n, Pred pred) {
  int64_t s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const Rec x = a[i];
    const bool front = pred(x);
    a[i] = a[s];
    a[s] = x;
    s += front;
  }
  return s;
}

// key(rec) -> a comparable coordinate. Rearranges [first, last) so that *nth is where a sort by
// key would put it, with no larger key before it and no smaller one after it.
template <typename Rec, typename Key>
void select_nth(Rec* first, Rec* nth, Rec* last, Key key) {
  using K = decltype(key(*first));
  int64_t n = last - first, want = nth - first;
  if (want < 0 || want >= n) return;
  Rec* a = first;
  int rounds = 0;
  for (int64_t m = n; m > 1; m >>= 1) rounds += 2;
  rounds += 8;
  while (n > 32) {
    if (--rounds < 0) {  // unlucky pivots: bounded fallback
      std::partial_sort(a, a + want + 1, a + n, [&](const Rec& x, const Rec& y) { return key(x) < key(y); });
      return;
    }
    // Median of three spread samples: cheap, and enough to keep rounds near log(n) on points.
    K s0 = key(a[n / 4]), s1 = key(a[n / 2]), s2 = key(a[(3 * n) / 4]);
    if (s1 < s0) std::swap(s0, s1);
    if (s2 < s1) std::swap(s1, s2);
    if (s1 < s0) std::swap(s0, s1);
    const K pivot = s1;
    const int64_t lt = partition_front(a, n, [&](const Rec& r) { return key(r) < pivot; });
    if (want < lt) {
      n = lt;
      continue;
    }
    if (lt > 0) {
      a += lt, n -= lt, want -= lt;
      continue;
    }
    // Nothing below the pivot: peel off everything not above it (the pivot's equals, and
    // unordered keys, which compare as neither).
    const int64_t le = partition_front(a, n, [&](const Rec& r) { return !(pivot < key(r)); });
    if (want < le) return;  // all keys of the front part tie with the pivot
    a += le, n -= le, want -= le;
  }
  // Short ranges: insertion sort (stable under unordered keys: it only moves on a true '<').
  for (int64_t i = 1; i < n; ++i) {
    const Rec x = a[i];
    int64_t j = i;
    for (; j > 0 && key(x) < key(a[j - 1]); --j) a[j] = a[j - 1];
    a[j] = x;
  }
}

}  // namespace m3ad
