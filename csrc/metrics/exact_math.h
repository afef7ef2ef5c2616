// Exact integer arithmetic shared by the CPU and CUDA metric kernels (host and device code).
//
// Why integers: every curve coordinate of the metrics is a ratio of integer sums. FPR and TPR are
// counts; the per-region overlap adds 1/region_size per defect pixel, which we represent in fixed
// point as w(s) = floor(2^96 / s) (an error below s * 2^-96 per region, far under float64
// resolution). Sums of integers do not depend on the order of addition, so the results are
// identical for any thread count, on CPU and on GPU, and need no float atomics; the areas are
// then exact integers too (see metrics.h) and Python turns them into a float once, exactly.
#pragma once
#include <cstdint>
#include <cstring>

#include "common/host_device.h"

namespace m3ad {
namespace metrics {

using u128 = unsigned __int128;

constexpr int kWeightBits = 96;  // fixed-point scale of the per-region overlap: 2^96 == one region

// Fixed-point 1/s: floor(2^96 / s) for 1 <= s < 2^32, by long division in base 2^32 with 64-bit
// operations only, so host and device compute it the same way without 128-bit division support.
M3AD_HD u128 region_weight(uint32_t s) {
  const uint64_t d = s;
  uint64_t r = 1;  // 2^96 = 1 * B^3 with B = 2^32; start with the top digit
  u128 q = r / d;
  r = r % d;
  for (int i = 0; i < 3; ++i) {
    const uint64_t cur = r << 32;  // r < d < 2^32, so no overflow
    q = (q << 32) | static_cast<u128>(cur / d);
    r = cur % d;
  }
  return q;
}

// Order-preserving integer keys: a < b (as numbers) <=> key(a) < key(b). -0.0 and +0.0 get the same
// key, since they are the same score (the official code groups them: np.diff(scores) != 0).
M3AD_HD uint32_t order_key(float f) {
  uint32_t u;
#if defined(__CUDA_ARCH__)
  u = __float_as_uint(f);
#else
  std::memcpy(&u, &f, sizeof(u));
#endif
  if ((u << 1) == 0) u = 0;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

M3AD_HD uint64_t order_key(double f) {
  uint64_t u;
#if defined(__CUDA_ARCH__)
  u = static_cast<uint64_t>(__double_as_longlong(f));
#else
  std::memcpy(&u, &f, sizeof(u));
#endif
  if ((u << 1) == 0) u = 0;
  return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}

M3AD_HD bool is_finite_bits(float f) {
  uint32_t u;
#if defined(__CUDA_ARCH__)
  u = __float_as_uint(f);
#else
  std::memcpy(&u, &f, sizeof(u));
#endif
  return (u & 0x7f800000u) != 0x7f800000u;
}

M3AD_HD bool is_finite_bits(double f) {
  uint64_t u;
#if defined(__CUDA_ARCH__)
  u = static_cast<uint64_t>(__double_as_longlong(f));
#else
  std::memcpy(&u, &f, sizeof(u));
#endif
  return (u & 0x7ff0000000000000ull) != 0x7ff0000000000000ull;
}

// 256-bit unsigned accumulator (little-endian 64-bit limbs) for the trapezoid sums:
// sum over segments of dC * (S0 + S1) with dC < 2^63 and S0 + S1 < 2^128 stays below 2^256.
struct U256 {
  uint64_t w[4] = {0, 0, 0, 0};

  M3AD_HD void add(const U256& o) {
    uint64_t carry = 0;
    for (int i = 0; i < 4; ++i) {
      const uint64_t a = w[i], b = o.w[i];
      const uint64_t s = a + b;
      const uint64_t c1 = s < a;
      const uint64_t t = s + carry;
      const uint64_t c2 = t < s;
      w[i] = t;
      carry = c1 | c2;
    }
  }

  // this += a * b
  M3AD_HD void add_mul(uint64_t a, u128 b) {
    const u128 lo = static_cast<u128>(a) * static_cast<uint64_t>(b);
    const u128 hi = static_cast<u128>(a) * static_cast<uint64_t>(b >> 64);
    U256 p;
    p.w[0] = static_cast<uint64_t>(lo);
    const u128 mid = (lo >> 64) + static_cast<uint64_t>(hi);
    p.w[1] = static_cast<uint64_t>(mid);
    p.w[2] = static_cast<uint64_t>((hi >> 64) + (mid >> 64));
    p.w[3] = 0;
    add(p);
  }
};

}  // namespace metrics
}  // namespace m3ad
