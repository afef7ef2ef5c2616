// The K best (distance, index) pairs of one query, kept as a sorted array.
//
// For small K this beats the heap of topk_heap.h: an accepted pair costs a short shift instead
// of a sift, and the result needs no final sort (which was a fifth of a K = 30 search).  The cost
// of a shift grows with K, so the heap remains the choice for large K.
#pragma once
#include <cstdint>
#include <vector>

namespace m3ad {

// Above this K the heap of topk_heap.h beats a sorted array (shifts grow with K, sifts with
// log K).
constexpr int64_t kSortedMaxK = 48;

template <typename T>
class SortedTopK {
 public:
  explicit SortedTopK(int64_t k) : k_(k), d_(static_cast<size_t>(k)), i_(static_cast<size_t>(k)) {}

  void clear() { size_ = 0; }
  bool full() const { return size_ == k_; }
  // Valid when full(): anything not better than this pair cannot enter.
  T worst() const { return d_[size_ - 1]; }

  void push(T d, int64_t i) {
    if (size_ == k_) {
      if (!less(d, i, d_[size_ - 1], i_[size_ - 1])) return;
      --size_;
    }
    // Shift on distance alone (a simple compare the loop runs fast on), then past equal
    // distances with a higher index (rare).
    int64_t pos = size_;
    for (; pos > 0 && d_[pos - 1] > d; --pos) {
      d_[pos] = d_[pos - 1];
      i_[pos] = i_[pos - 1];
    }
    for (; pos > 0 && d_[pos - 1] == d && i_[pos - 1] > i; --pos) {
      d_[pos] = d_[pos - 1];
      i_[pos] = i_[pos - 1];
    }
    d_[pos] = d;
    i_[pos] = i;
    ++size_;
  }

  // Writes the pairs in ascending (distance, index) order, padding with (0, -1).
  void write_sorted(T* dists, int64_t* idx) const {  // dists may be null (not wanted)
    int64_t s = 0;
    for (; s < size_; ++s) {
      if (dists) dists[s] = d_[s];
      idx[s] = i_[s];
    }
    for (; s < k_; ++s) {
      if (dists) dists[s] = 0;
      idx[s] = -1;
    }
  }

 private:
  // (distance, index) lexicographic order: equal distances rank by the lower index.
  static bool less(T da, int64_t ia, T db, int64_t ib) { return da < db || (da == db && ia < ib); }

  int64_t k_;
  int64_t size_ = 0;
  std::vector<T> d_;
  std::vector<int64_t> i_;
};

}  // namespace m3ad
