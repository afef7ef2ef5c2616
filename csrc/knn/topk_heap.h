// Bounded selection of the K best (distance, index) pairs for one query.
//
// Until K pairs are in, they are only appended; the heap (worst pair on top) is built once when
// the K-th arrives, then each better candidate replaces the top and sifts down. This avoids the
// O(K log K) of heap-pushing the first K (a fifth of the whole search for K = 30 on 100k points).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace m3ad {

template <typename T>
class TopK {
 public:
  explicit TopK(int64_t k) : k_(k), buf_(static_cast<size_t>(k)) {}

  void clear() { size_ = 0; }
  bool full() const { return size_ == k_; }
  // Valid when full(): anything not better than this pair cannot enter.
  T worst() const { return buf_[0].d; }

  void push(T d, int64_t i) {
    if (size_ < k_) {
      buf_[size_++] = {d, i};
      if (size_ == k_) std::make_heap(buf_.begin(), buf_.end(), Less());
      return;
    }
    const Entry e{d, i};
    if (!Less()(e, buf_[0])) return;
    sift_down(e);
  }

  // Writes the pairs in ascending (distance, index) order, padding with (0, -1); dists may be
  // null (not wanted).
  void write_sorted(T* dists, int64_t* idx) {
    std::sort(buf_.begin(), buf_.begin() + size_, Less());
    int64_t s = 0;
    for (; s < size_; ++s) {
      if (dists) dists[s] = buf_[s].d;
      idx[s] = buf_[s].i;
    }
    for (; s < k_; ++s) {
      if (dists) dists[s] = 0;
      idx[s] = -1;
    }
  }

 private:
  struct Entry {
    T d;
    int64_t i;
  };
  // (distance, index) lexicographic order: equal distances rank by the lower index.
  struct Less {
    bool operator()(const Entry& a, const Entry& b) const { return a.d < b.d || (a.d == b.d && a.i < b.i); }
  };

  // Replaces the top (the worst pair) by e and restores the max-heap.
  void sift_down(const Entry& e) {
    int64_t pos = 0;
    for (;;) {
      int64_t child = 2 * pos + 1;
      if (child >= k_) break;
      if (child + 1 < k_ && Less()(buf_[child], buf_[child + 1])) ++child;
      if (!Less()(e, buf_[child])) break;
      buf_[pos] = buf_[child];
      pos = child;
    }
    buf_[pos] = e;
  }

  int64_t k_;
  int64_t size_ = 0;
  std::vector<Entry> buf_;
};

}  // namespace m3ad
