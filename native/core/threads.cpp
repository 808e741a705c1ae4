#include "medic/threads.h"

#include <sched.h>

#include <algorithm>

namespace medic {

int default_thread_count() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

ThreadPool::ThreadPool(int nthreads) : nthreads_(std::max(1, nthreads)) {
  for (int t = 1; t < nthreads_; ++t) threads_.emplace_back([this, t] { worker(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& th : threads_) th.join();
}

namespace {
// About 50 microseconds of polling before a thread blocks.
constexpr int kSpinIters = 20000;
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
}  // namespace

void ThreadPool::worker(int tid) {
  int64_t seen = 0;
  for (;;) {
    for (int i = 0; i < kSpinIters && generation_.load(std::memory_order_acquire) == seen; ++i) cpu_relax();
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      ++sleeping_;
      cv_start_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_relaxed) != seen; });
      --sleeping_;
      if (stop_) return;
    }
    seen = generation_.load(std::memory_order_acquire);
    (*task_)(tid, nthreads_);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);
      if (caller_sleeping_) cv_done_.notify_one();
    }
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (nthreads_ == 1) {
    fn(0, 1);
    return;
  }
  std::lock_guard<std::mutex> serial(run_mu_);
  task_ = &fn;
  pending_.store(nthreads_ - 1, std::memory_order_relaxed);
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
    wake = sleeping_ > 0;
  }
  if (wake) cv_start_.notify_all();
  fn(0, nthreads_);
  for (int i = 0; i < kSpinIters && pending_.load(std::memory_order_acquire) != 0; ++i) cpu_relax();
  if (pending_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lock(mu_);
    caller_sleeping_ = true;
    cv_done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    caller_sleeping_ = false;
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t parts = std::min<int64_t>(nthreads_, (n + grain - 1) / grain);
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  run([&](int tid, int) {
    if (tid >= parts) return;
    int64_t begin = n * tid / parts, end = n * (tid + 1) / parts;
    if (begin < end) fn(begin, end);
  });
}

}  // namespace medic
