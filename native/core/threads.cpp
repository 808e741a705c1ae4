#include "medic/threads.h"

#include <sched.h>

#include <algorithm>
#include <chrono>

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
  try {
    for (int t = 1; t < nthreads_; ++t) threads_.emplace_back([this, t] { worker(t); });
  } catch (...) {
    stop_workers();  // the destructor does not run for a constructor that throws
    throw;
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& th : threads_) th.join();
}

namespace {

// How long a thread polls before it blocks: about the gap between the back-to-back ops of a step, so
// those do not pay a futex wake-up each, and short enough not to hold a core another thread (or
// process) needs. Bounded in time, not in iterations: one pause costs ~4 ns on some x86 cores and
// ~40 ns on others (Zen, Skylake and later).
constexpr auto kSpin = std::chrono::microseconds(50);

// True while this thread runs a pool task (workers: always): a nested run() goes inline.
thread_local bool t_in_task = false;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Polls done() for about kSpin; returns its last value.
template <class F>
bool spin_until(F done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return done();
  }
}

}  // namespace

void ThreadPool::worker(int tid) {
  t_in_task = true;
  int64_t seen = 0;
  for (;;) {
    if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
      std::unique_lock<std::mutex> lock(mu_);
      ++sleeping_;
      cv_start_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_relaxed) != seen; });
      --sleeping_;
      if (stop_) return;
    }
    seen = generation_.load(std::memory_order_acquire);
    try {
      (*task_)(tid, nthreads_);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
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
  if (t_in_task) {  // nested: every share on this thread, in order (tasks never wait for each other)
    for (int t = 0; t < nthreads_; ++t) fn(t, nthreads_);
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
  // Thread 0's share. Whatever it throws, the workers still use fn: wait for them before leaving.
  std::exception_ptr error;
  t_in_task = true;
  try {
    fn(0, nthreads_);
  } catch (...) {
    error = std::current_exception();
  }
  t_in_task = false;
  if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
    std::unique_lock<std::mutex> lock(mu_);
    caller_sleeping_ = true;
    cv_done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    caller_sleeping_ = false;
  }
  // pending_ == 0 (acquire) orders every worker's write of error_ before this read.
  if (!error) error = error_;
  error_ = nullptr;
  if (error) std::rethrow_exception(error);
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
