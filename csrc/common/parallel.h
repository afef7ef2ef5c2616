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

// Runs body(t, team) once on each thread of a team of at most `threads` threads that all run at
// the same time, so that they may wait for one another (parallel_for's chunks may not). `team`
// is the size actually granted: 1 (inline) when called from inside a parallel region. The
// first exception thrown by any member is rethrown after all of them returned; members that
// wait for others must therefore also stop when told (see fps_cpu.cpp).
void parallel_team(int threads, const std::function<void(int, int)>& body);

}  // namespace m3ad
