#include "comm/async_worker.h"

#include <chrono>
#include <exception>
#include <new>

#include "core/result.h"

namespace attnccl {

AsyncWorker::AsyncWorker(std::function<void(attncclResult_t, const char*)> onError)
    : onError_(std::move(onError)), thread_([this] { loop(); }) {}

AsyncWorker::~AsyncWorker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void AsyncWorker::push(Task t) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(t));
  }
  cv_.notify_all();
}

bool AsyncWorker::idle() {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.empty() && !running_;
}

bool AsyncWorker::drain(int timeoutMs) {
  std::unique_lock<std::mutex> lock(mutex_);
  return cv_.wait_for(lock, std::chrono::milliseconds(timeoutMs), [&] { return queue_.empty() && !running_; });
}

void AsyncWorker::cancelQueued() {
  std::deque<Task> dropped;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    dropped.swap(queue_);
  }
  cv_.notify_all();
  // Destroyed outside the lock: a task's captures may have destructors that take other locks.
}

void AsyncWorker::loop() {
  for (;;) {
    Task t;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop requested and nothing left
      t = std::move(queue_.front());
      queue_.pop_front();
      running_ = true;
    }
    if (!failed_) {
      clearLastError();
      // A task that throws would end the process (std::terminate on this thread): its exception
      // becomes the communicator's async error instead, as any failed task's result does.
      attncclResult_t r;
      try {
        r = t();
      } catch (const std::bad_alloc&) {
        r = fail(attncclSystemError, "non-blocking call: out of memory (std::bad_alloc)");
      } catch (const std::exception& e) {
        r = fail(attncclInternalError, "non-blocking call: unexpected exception: %s", e.what());
      } catch (...) {
        r = fail(attncclInternalError, "non-blocking call: unexpected exception of unknown type");
      }
      if (r != attncclSuccess) {
        failed_ = true;
        onError_(r, lastError());
      }
    }
    t = nullptr;  // captures die before the task counts as finished
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_ = false;
    }
    cv_.notify_all();
  }
}

}  // namespace attnccl
