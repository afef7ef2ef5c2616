// Input validation on the CPU with the library's own threads: a torch op here would wake torch's
// OpenMP team, whose spin-waiting threads then compete with our pool for the same cores.
#pragma once
#include <cstdint>

#include "common/dtype.h"

namespace m3ad {

// Index of the first NaN/Inf among n contiguous values, or -1 when all are finite.
int64_t first_non_finite(const void* data, int64_t n, DType dtype);

}  // namespace m3ad
