#include "common/fp_mode.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace m3ad {

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
// MXCSR: FTZ is bit 15, DAZ bit 6.
constexpr unsigned kFlushBits = 0x8040u;

IeeeFpMode::IeeeFpMode() : saved_(_mm_getcsr()) {
  if (saved_ & kFlushBits) _mm_setcsr(static_cast<unsigned>(saved_) & ~kFlushBits);
}

IeeeFpMode::~IeeeFpMode() {
  if (saved_ & kFlushBits) _mm_setcsr(static_cast<unsigned>(saved_));
}
#elif defined(__aarch64__)
// FPCR: FZ is bit 24 (FZ16, bit 19, only concerns half precision, which the kernels never use).
constexpr unsigned long long kFlushBits = 1ull << 24;

IeeeFpMode::IeeeFpMode() {
  asm volatile("mrs %0, fpcr" : "=r"(saved_));
  if (saved_ & kFlushBits) asm volatile("msr fpcr, %0" : : "r"(saved_ & ~kFlushBits));
}

IeeeFpMode::~IeeeFpMode() {
  if (saved_ & kFlushBits) asm volatile("msr fpcr, %0" : : "r"(saved_));
}
#else
IeeeFpMode::IeeeFpMode() = default;
IeeeFpMode::~IeeeFpMode() = default;
#endif

}  // namespace m3ad
