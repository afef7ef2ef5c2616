// CPU parallelism for all kernels (OpenMP underneath; see parallel.cpp for why).
#pragma once
#include <cstdint>
#include <functional>

namespace m3ad {

int get_num_threads();
// n < 1 resets to the number of hardware threads.
void set_num_threads(int n);

// Calls body(begin, end) on disjoint chunks covering [0, n), each at least `grain` long.
// Runs inline when the range is small or when called from inside a parallel region.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

}  // namespace m3ad
