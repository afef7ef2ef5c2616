#include "common/cpu_simd.h"

#include <cstdlib>
#include <cstring>

namespace m3ad {
namespace {

CpuSimd detected() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return CpuSimd::kAvx512;
  if (__builtin_cpu_supports("avx2")) return CpuSimd::kAvx2;
#endif
  return CpuSimd::kBaseline;
}

}  // namespace

CpuSimd cpu_simd() {
  static const CpuSimd cpu = detected();
  const char* env = std::getenv("MENTOR3AD_CPU_SIMD");
  CpuSimd asked = cpu;
  if (env && std::strcmp(env, "baseline") == 0) asked = CpuSimd::kBaseline;
  if (env && std::strcmp(env, "avx2") == 0) asked = CpuSimd::kAvx2;
  return static_cast<int>(asked) < static_cast<int>(cpu) ? asked : cpu;
}

const char* cpu_simd_name(CpuSimd level) {
  switch (level) {
    case CpuSimd::kAvx512: return "avx512";
    case CpuSimd::kAvx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace m3ad
