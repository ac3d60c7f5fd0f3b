#include "core/thread_pool.h"

#include <pthread.h>
#include <sched.h>

namespace attnccl {

ThreadPool::ThreadPool(int threads, const std::vector<int>& cpus) {
  for (int t = 1; t < threads; ++t) {
    workers_.emplace_back([this, t] { workerLoop(t); });
    if (static_cast<int>(cpus.size()) >= t && cpus[t - 1] >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpus[t - 1], &set);
      pthread_setaffinity_np(workers_.back().native_handle(), sizeof(set), &set);
    }
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::drain(int thread) {
  for (;;) {
    int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= total_) return;
    (*fn_)(i, thread);
    finished_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::workerLoop(int thread) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      ++busyWorkers_;
    }
    drain(thread);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --busyWorkers_;
    }
    done_.notify_one();
  }
}

void ThreadPool::run(int64_t n, const ItemFn& fn, const std::function<void()>& betweenItems) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1) {
    for (int64_t i = 0; i < n; ++i) {
      fn(i, 0);
      if (betweenItems) betweenItems();
    }
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &fn;
    total_ = n;
    next_.store(0, std::memory_order_relaxed);
    finished_.store(0, std::memory_order_relaxed);
    ++generation_;
  }
  wake_.notify_all();
  for (;;) {
    int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= total_) break;
    fn(i, 0);
    finished_.fetch_add(1, std::memory_order_acq_rel);
    if (betweenItems) betweenItems();
  }
  // Wait for the other threads' last items; keep the hook running meanwhile.
  if (betweenItems) {
    while (finished_.load(std::memory_order_acquire) < total_) {
      betweenItems();
      sched_yield();
    }
  }
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return busyWorkers_ == 0 && finished_.load() >= total_; });
  fn_ = nullptr;
}

}  // namespace attnccl
