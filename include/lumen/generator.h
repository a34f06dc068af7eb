// Streaming generators (Ray's num_returns="streaming"): a remote function whose first
// parameter is a lumen::Yield<T>& hands out values while it runs, each its own object, and the
// caller iterates them as they are produced.
//
// @code
//   void Squares(lumen::Yield<int>& out, int n) {
//     for (int i = 0; i < n; ++i) out(i * i);
//   }
//   LUMEN_REMOTE(Squares);
//
//   lumen::ObjectRefStream<int> squares = lumen::Task(Squares).Remote(5);
//   for (lumen::ObjectRef<int> ref : squares) std::cout << lumen::Get(ref) << "\n";
// @endcode
//
// Back-pressure: with TaskOptions::generator_backpressure_num_objects = k, the generator waits
// in Yield while k of its values are produced and not yet taken by the caller. An exception in
// the generator ends the stream with one more ref whose Get throws it (after the values yielded
// before it). Dropping the stream before its end cancels the task: its next Yield stops it.
#pragma once

#include <chrono>
#include <cstdint>
#include <iterator>
#include <optional>
#include <utility>

#include "lumen/errors.h"
#include "lumen/ids.h"
#include "lumen/internal/runtime.h"
#include "lumen/internal/timeout.h"
#include "lumen/object_ref.h"
#include "lumen/serialization.h"

namespace lumen {

// Inside a streaming task: out(value) makes `value` the stream's next object. May block for
// back-pressure; when the stream was dropped or cancelled, it throws to stop the task.
template <class T>
class Yield {
 public:
  using value_type = T;
  Yield() = default;
  Yield(const Yield&) = delete;
  Yield& operator=(const Yield&) = delete;

  void operator()(const T& value) { internal::YieldValue(internal::Serialize<T>(value)); }
};

// The caller's side of a streaming task: its values as ObjectRef<T>, in the order yielded, each
// available as soon as it is produced. Move-only; dropping it before the end cancels the task.
template <class T>
class ObjectRefStream {
 public:
  // Internal: a stream over streaming task `task` (its handle is the caller's to release).
  explicit ObjectRefStream(const TaskID& task) : task_(task), valid_(true) {}
  ObjectRefStream(ObjectRefStream&& o) noexcept : task_(o.task_), valid_(o.valid_) {
    o.valid_ = false;
  }
  ObjectRefStream& operator=(ObjectRefStream&& o) noexcept {
    if (this != &o) {
      Release();
      task_ = o.task_;
      valid_ = o.valid_;
      o.valid_ = false;
    }
    return *this;
  }
  ObjectRefStream(const ObjectRefStream&) = delete;
  ObjectRefStream& operator=(const ObjectRefStream&) = delete;
  ~ObjectRefStream() { Release(); }

  // The next value's ref, waiting until it is produced; std::nullopt once the stream ended.
  // With a timeout, throws GetTimeoutError when none came in time.
  std::optional<ObjectRef<T>> Next() { return NextWithin(-1); }
  std::optional<ObjectRef<T>> Next(std::chrono::nanoseconds timeout) {
    return NextWithin(internal::TimeoutMs(timeout));
  }

  // The task making the values (for lumen::Cancel-like tools and logs).
  const TaskID& task_id() const { return task_; }

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = ObjectRef<T>;
    using difference_type = std::ptrdiff_t;
    using pointer = const ObjectRef<T>*;
    using reference = const ObjectRef<T>&;

    iterator() = default;
    explicit iterator(ObjectRefStream* s) : stream_(s) { Advance(); }
    reference operator*() const { return *current_; }
    pointer operator->() const { return &*current_; }
    iterator& operator++() {
      Advance();
      return *this;
    }
    void operator++(int) { Advance(); }
    bool operator==(const iterator& o) const { return stream_ == o.stream_; }
    bool operator!=(const iterator& o) const { return stream_ != o.stream_; }

   private:
    void Advance() {
      current_ = stream_->Next();
      if (!current_) stream_ = nullptr;  // the end
    }
    ObjectRefStream* stream_ = nullptr;
    std::optional<ObjectRef<T>> current_;
  };
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  std::optional<ObjectRef<T>> NextWithin(int64_t timeout_ms) {
    if (!valid_) throw Error("lumen::ObjectRefStream: the stream was moved from");
    ObjectID id = internal::NextStreamItem(task_, timeout_ms);
    if (id.IsNil()) return std::nullopt;
    return ObjectRef<T>::FromAdopted(id);
  }
  void Release() {
    if (valid_) internal::ReleaseStream(task_);
    valid_ = false;
  }

  TaskID task_;
  bool valid_ = false;
};

}  // namespace lumen
