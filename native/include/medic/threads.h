// A fixed pool of worker threads for CPU kernels.
//
// Kernels split work with parallel_for (contiguous ranges, one per thread) or run(fn(tid, nthreads))
// when they need a stable thread id (per-thread packing buffers in GEMM, per-thread partial sums).
// The calling thread takes part as thread 0, so a pool of size 1 runs everything inline.
// A call made from inside a task (of any pool) runs every share fn(0..n-1, n) in turn on that thread:
// nesting is safe (the same split, so per-thread buffers stay valid), never parallel. An exception thrown by a task
// reaches the caller of run() once every thread has finished (the first one wins; the pool stays usable).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace medic {

class ThreadPool {
 public:
  explicit ThreadPool(int nthreads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return nthreads_; }

  // fn(tid, nthreads) on every thread; returns when all are done.
  void run(const std::function<void(int, int)>& fn);

  // fn(begin, end) over [0, n) split into at most size() contiguous ranges of at least `grain` items.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker(int tid);
  void stop_workers();

  int nthreads_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::mutex run_mu_;  // serialises callers (eager ops on the JS thread vs a program on a worker)
  std::condition_variable cv_start_, cv_done_;
  const std::function<void(int, int)>* task_ = nullptr;
  // Workers spin briefly on generation_ before sleeping, so the back-to-back ops of a step do not pay
  // a futex wake-up each (which also let a spinning BLAS or another process take the core meanwhile).
  std::atomic<int64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::exception_ptr error_;  // a worker task's first exception in this run: written under mu_, read once pending_ is 0
  int sleeping_ = 0;          // workers blocked on cv_start_ (guarded by mu_)
  bool caller_sleeping_ = false;
  bool stop_ = false;
};

// Number of threads to use by default: the cores this process may run on.
int default_thread_count();

}  // namespace medic
