// CPU emulation of thrust::transform_iterator / make_transform_iterator: a random-access view
// that applies a unary functor to each element of a base iterator on dereference.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <iterator>
#include <type_traits>
#include <utility>

namespace thrust {

template <typename F, typename It>
class transform_iterator {
  using base_reference = typename std::iterator_traits<It>::reference;

 public:
  // Thrust's default value_type is the functor's result type; elements are produced by value.
  using value_type = std::decay_t<std::invoke_result_t<const F&, base_reference>>;
  using reference = value_type;
  using pointer = void;
  using difference_type = typename std::iterator_traits<It>::difference_type;
  using iterator_category = std::random_access_iterator_tag;

  transform_iterator(It base, F f) : base_(base), f_(std::move(f)) {}

  It base() const { return base_; }
  F functor() const { return f_; }

  value_type operator*() const { return f_(*base_); }
  value_type operator[](difference_type i) const { return f_(base_[i]); }

  transform_iterator& operator++() { ++base_; return *this; }
  transform_iterator operator++(int) { transform_iterator t = *this; ++base_; return t; }
  transform_iterator& operator--() { --base_; return *this; }
  transform_iterator operator--(int) { transform_iterator t = *this; --base_; return t; }
  transform_iterator& operator+=(difference_type d) { base_ += d; return *this; }
  transform_iterator& operator-=(difference_type d) { base_ -= d; return *this; }

  friend transform_iterator operator+(transform_iterator it, difference_type d) { return it += d; }
  friend transform_iterator operator+(difference_type d, transform_iterator it) { return it += d; }
  friend transform_iterator operator-(transform_iterator it, difference_type d) { return it -= d; }
  friend difference_type operator-(const transform_iterator& a, const transform_iterator& b) {
    return a.base_ - b.base_;
  }
  friend bool operator==(const transform_iterator& a, const transform_iterator& b) { return a.base_ == b.base_; }
  friend bool operator!=(const transform_iterator& a, const transform_iterator& b) { return a.base_ != b.base_; }
  friend bool operator<(const transform_iterator& a, const transform_iterator& b) { return a.base_ < b.base_; }
  friend bool operator>(const transform_iterator& a, const transform_iterator& b) { return a.base_ > b.base_; }
  friend bool operator<=(const transform_iterator& a, const transform_iterator& b) { return a.base_ <= b.base_; }
  friend bool operator>=(const transform_iterator& a, const transform_iterator& b) { return a.base_ >= b.base_; }

 private:
  It base_;
  F f_;
};

template <typename It, typename F>
transform_iterator<F, It> make_transform_iterator(It it, F f) {
  return transform_iterator<F, It>(it, std::move(f));
}

}  // namespace thrust
