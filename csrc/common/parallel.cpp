#include "common/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace m3ad {
namespace {

thread_local bool t_inside_worker = false;

int default_threads() {
  if (const char* env = std::getenv("MENTOR3AD_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

class Pool {
 public:
  static Pool& instance() {
    static Pool* pool = new Pool();  // leaked on purpose: no join at interpreter exit
    return *pool;
  }

  int size() const { return threads_; }

  void resize(int n) {
    std::lock_guard<std::mutex> job_lock(job_mutex_);
    stop_workers();
    threads_ = n;
  }

  bool try_run(int64_t chunks, const std::function<void(int64_t)>& run_chunk) {
    std::unique_lock<std::mutex> job_lock(job_mutex_, std::try_to_lock);
    if (!job_lock.owns_lock()) return false;
    start_workers();
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &run_chunk;
      chunks_ = chunks;
      next_.store(0);
      pending_ = static_cast<int>(workers_.size());
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    drain();
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
    return true;
  }

 private:
  Pool() : threads_(default_threads()) {}

  void drain() {
    t_inside_worker = true;
    for (int64_t c; (c = next_.fetch_add(1)) < chunks_;) {
      try {
        (*job_)(c);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m_);
        if (!error_) error_ = std::current_exception();
        next_.store(chunks_);
      }
    }
    t_inside_worker = false;
  }

  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      drain();
      std::lock_guard<std::mutex> lk(m_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }

  void start_workers() {
    if (!workers_.empty() || threads_ <= 1) return;
    stop_ = false;
    for (int i = 0; i + 1 < threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  int threads_;
  std::mutex job_mutex_;  // one job at a time
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t chunks_ = 0;
  std::atomic<int64_t> next_{0};
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace

int get_num_threads() { return Pool::instance().size(); }

void set_num_threads(int n) { Pool::instance().resize(n < 1 ? default_threads() : n); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  Pool& pool = Pool::instance();
  const int64_t threads = pool.size();
  if (threads <= 1 || n <= grain || t_inside_worker) {
    body(0, n);
    return;
  }
  // A few chunks per thread balance uneven work (ragged batches) without much overhead.
  const int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, threads * 4);
  const int64_t step = (n + chunks - 1) / chunks;
  std::function<void(int64_t)> run_chunk = [&](int64_t c) {
    const int64_t b = c * step, e = std::min(n, b + step);
    if (b < e) body(b, e);
  };
  if (!pool.try_run(chunks, run_chunk)) body(0, n);
}

}  // namespace m3ad
