// Runtime choice of vector width for the CPU kernels that come in SIMD variants (the package is
// built for the baseline x86-64, SSE2, so that its wheel runs anywhere). A variant is the same
// source compiled with a target attribute: the same operations in wider lanes, hence the same
// bits (no FMA contraction: -ffp-contract=off for every variant).
#pragma once

namespace m3ad {

enum class CpuSimd { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

// The widest level this CPU runs, lowered to MENTOR3AD_CPU_SIMD when that is "baseline" or
// "avx2" (any other value leaves the widest): for comparisons, and for the tests that check that
// every variant gives the same bits. Read at every call (a getenv), not cached.
CpuSimd cpu_simd();
const char* cpu_simd_name(CpuSimd level);

}  // namespace m3ad

#if defined(__x86_64__) || defined(__i386__)
#define M3AD_TARGET_AVX2 __attribute__((target("avx2")))
#define M3AD_TARGET_AVX512 __attribute__((target("avx512f")))
#else  // elsewhere the variants compile as the baseline, and cpu_simd() is kBaseline
#define M3AD_TARGET_AVX2
#define M3AD_TARGET_AVX512
#endif
