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

// Calls body(b0, b1) over the clouds [0, B) of a batch: split over the threads, one cloud per
// task, when there are at least two clouds per thread of about equal size (none above twice the
// mean of the `lengths`, or all P when null); else inline, in one call, so that each cloud's own
// parallel loops use every thread. Per-cloud setup (a grid, a sort) is serial: done by cloud, a
// batch of 4 organized clouds of ~49k points searched 13 % faster on 2 cores; a lone large cloud
// among small ones would leave the other threads idle.
void for_clouds(int64_t B, int64_t P, const int64_t* lengths, const std::function<void(int64_t, int64_t)>& body);

// Runs body(t, team) once on each thread of a team of at most `threads` threads that all run at
// the same time, so that they may wait for one another (parallel_for's chunks may not). `team`
// is the size actually granted: 1 (inline) when called from inside a parallel region. The
// first exception thrown by any member is rethrown after all of them returned; members that
// wait for others must therefore also stop when told (see fps_cpu.cpp).
void parallel_team(int threads, const std::function<void(int, int)>& body);

}  // namespace m3ad
