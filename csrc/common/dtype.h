// The dtype tag that crosses the Python/C++ boundary, and the dispatch helper on it.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace m3ad {

// Must match mentor3ad_ext/ops/_launch.py (DTYPE_TAGS).
enum class DType : int { kFloat32 = 0, kFloat64 = 1 };

inline DType to_dtype(int tag) {
  if (tag == 0) return DType::kFloat32;
  if (tag == 1) return DType::kFloat64;
  throw std::invalid_argument("mentor3ad_ext: unsupported dtype tag " + std::to_string(tag));
}

// Calls fn with a value of the scalar type named by `dtype` (float or double).
template <typename Fn>
auto dispatch_float(DType dtype, Fn&& fn) {
  if (dtype == DType::kFloat64) return fn(double{});
  return fn(float{});
}

}  // namespace m3ad
