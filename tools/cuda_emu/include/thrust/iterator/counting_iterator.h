// CPU emulation of thrust::counting_iterator: a random-access iterator over start, start+1, ...
// whose dereference yields the value itself (no storage behind it).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <iterator>

namespace thrust {

template <typename T>
class counting_iterator {
 public:
  using value_type = T;
  using difference_type = std::ptrdiff_t;
  using reference = T;  // by value, as in Thrust: there is no object to refer to
  using pointer = void;
  using iterator_category = std::random_access_iterator_tag;

  counting_iterator() : v_() {}
  explicit counting_iterator(T start) : v_(start) {}

  T operator*() const { return v_; }
  T operator[](difference_type i) const { return static_cast<T>(v_ + static_cast<T>(i)); }

  counting_iterator& operator++() { ++v_; return *this; }
  counting_iterator operator++(int) { counting_iterator t = *this; ++v_; return t; }
  counting_iterator& operator--() { --v_; return *this; }
  counting_iterator operator--(int) { counting_iterator t = *this; --v_; return t; }
  counting_iterator& operator+=(difference_type d) { v_ = static_cast<T>(v_ + static_cast<T>(d)); return *this; }
  counting_iterator& operator-=(difference_type d) { v_ = static_cast<T>(v_ - static_cast<T>(d)); return *this; }

  friend counting_iterator operator+(counting_iterator it, difference_type d) { return it += d; }
  friend counting_iterator operator+(difference_type d, counting_iterator it) { return it += d; }
  friend counting_iterator operator-(counting_iterator it, difference_type d) { return it -= d; }
  friend difference_type operator-(const counting_iterator& a, const counting_iterator& b) {
    return static_cast<difference_type>(a.v_) - static_cast<difference_type>(b.v_);
  }
  friend bool operator==(const counting_iterator& a, const counting_iterator& b) { return a.v_ == b.v_; }
  friend bool operator!=(const counting_iterator& a, const counting_iterator& b) { return a.v_ != b.v_; }
  friend bool operator<(const counting_iterator& a, const counting_iterator& b) { return a.v_ < b.v_; }
  friend bool operator>(const counting_iterator& a, const counting_iterator& b) { return a.v_ > b.v_; }
  friend bool operator<=(const counting_iterator& a, const counting_iterator& b) { return a.v_ <= b.v_; }
  friend bool operator>=(const counting_iterator& a, const counting_iterator& b) { return a.v_ >= b.v_; }

 private:
  T v_;
};

template <typename T>
counting_iterator<T> make_counting_iterator(T start) {
  return counting_iterator<T>(start);
}

}  // namespace thrust
