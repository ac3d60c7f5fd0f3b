// The worker thread of a non-blocking communicator: calls are queued and run in order; the
// first failure becomes the communicator's async error and later queued calls are skipped.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "attnccl.h"

namespace attnccl {

class AsyncWorker {
 public:
  using Task = std::function<attncclResult_t()>;
  // onError(result, message) runs on the worker when a task fails.
  explicit AsyncWorker(std::function<void(attncclResult_t, const char*)> onError);
  ~AsyncWorker();
  void push(Task t);
  // True when nothing is queued or running.
  bool idle();
  // Waits until idle (bounded by timeoutMs); false on timeout.
  bool drain(int timeoutMs);
  // Drops the queued tasks (abort): they never run. The running one, if any, finishes.
  void cancelQueued();

 private:
  void loop();
  std::function<void(attncclResult_t, const char*)> onError_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  bool running_ = false;
  bool stop_ = false;
  bool failed_ = false;
  std::thread thread_;
};

}  // namespace attnccl
