// Bounded max-heap keeping the K best (distance, index) pairs; the worst one sits on top.
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace m3ad {

template <typename T>
class TopK {
 public:
  explicit TopK(int64_t k) : k_(k) { heap_.reserve(static_cast<size_t>(k)); }

  void clear() { heap_.clear(); }
  bool full() const { return static_cast<int64_t>(heap_.size()) == k_; }
  // Anything not better than this cannot enter a full heap.
  T worst() const { return heap_.front().first; }

  void push(T d, int64_t i) {
    if (!full()) {
      heap_.emplace_back(d, i);
      std::push_heap(heap_.begin(), heap_.end());
    } else if (std::make_pair(d, i) < heap_.front()) {
      std::pop_heap(heap_.begin(), heap_.end());
      heap_.back() = {d, i};
      std::push_heap(heap_.begin(), heap_.end());
    }
  }

  // Writes the pairs in ascending (distance, index) order, padding with (0, -1).
  void write_sorted(T* dists, int64_t* idx) {
    std::sort_heap(heap_.begin(), heap_.end());
    int64_t s = 0;
    for (; s < static_cast<int64_t>(heap_.size()); ++s) {
      dists[s] = heap_[s].first;
      idx[s] = heap_[s].second;
    }
    for (; s < k_; ++s) {
      dists[s] = 0;
      idx[s] = -1;
    }
  }

 private:
  int64_t k_;
  std::vector<std::pair<T, int64_t>> heap_;
};

}  // namespace m3ad
