// A fork-join pool of compute threads for one rank. The calling thread is thread 0 and takes
// part; items are handed out dynamically (an atomic counter), so uneven items (causal tiles)
// balance. Between its own items thread 0 may run a hook: the executors use it to progress
// transfers while the other threads compute.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace attnccl {

class ThreadPool {
 public:
  // threads >= 1. cpus, when given, lists one OS cpu index per worker thread (1..threads-1) to
  // bind it to; the caller's thread is never rebound.
  explicit ThreadPool(int threads, const std::vector<int>& cpus = {});
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  using ItemFn = std::function<void(int64_t item, int thread)>;
  // Runs fn(item, thread) for every item in [0, n) and returns when all are done. betweenItems,
  // if set, runs on thread 0 after each item it completes (and while it waits for the others).
  void run(int64_t n, const ItemFn& fn, const std::function<void()>& betweenItems = nullptr);

 private:
  void workerLoop(int thread);
  void drain(int thread);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const ItemFn* fn_ = nullptr;
  int64_t total_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> finished_{0};
  uint64_t generation_ = 0;
  int busyWorkers_ = 0;
  bool stop_ = false;
};

}  // namespace attnccl
