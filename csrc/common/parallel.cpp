// CPU parallelism on OpenMP. The extension links the same libgomp.so.1 that torch loads, so our
// parallel regions run on torch's own OpenMP team: no second pool whose threads would compete
// with torch's spin-waiting workers for the same cores (with a private std::thread pool, a kernel
// launched right after any torch op ran several times slower on a 2-core machine).
#include "common/parallel.h"

#include "common/fp_mode.h"
#include "common/launch.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>

namespace m3ad {
namespace {

int default_threads() {
  if (const char* env = std::getenv("MENTOR3AD_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1, omp_get_num_procs());
}

std::atomic<int> g_threads{default_threads()};

}  // namespace

int get_num_threads() { return g_threads.load(); }

void set_num_threads(int n) { g_threads.store(n < 1 ? default_threads() : n); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = static_cast<int>(std::min<int64_t>(g_threads.load(), (n + grain - 1) / grain));
  if (threads <= 1 || omp_in_parallel()) {
    body(0, n);
    return;
  }
  // A few chunks per thread balance uneven work (ragged batches) at little cost.
  const int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, int64_t{threads} * 4);
  const int64_t step = (n + chunks - 1) / chunks;
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t b = c * step, e = std::min(n, b + step);
    if (b >= e) continue;
    try {
      const IeeeFpMode fp;  // (a worker's own mode may differ from the caller's)
      body(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lk(error_mutex);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

void for_clouds(int64_t B, int64_t P, const int64_t* lengths, const std::function<void(int64_t, int64_t)>& body) {
  if (B <= 0) return;
  int64_t total = 0, largest = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = clamp_len(lengths, b, P);
    total += n, largest = std::max(largest, n);
  }
  const bool by_cloud = B >= 2 * int64_t{g_threads.load()} && largest * B <= 2 * total;
  if (by_cloud) parallel_for(B, 1, body);
  else body(0, B);
}

void parallel_team(int threads, const std::function<void(int, int)>& body) {
  threads = std::max(1, threads);
  if (threads == 1 || omp_in_parallel()) {
    body(0, 1);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(threads)
  {
    try {
      const IeeeFpMode fp;
      body(omp_get_thread_num(), omp_get_num_threads());
    } catch (...) {
      std::lock_guard<std::mutex> lk(error_mutex);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace m3ad
