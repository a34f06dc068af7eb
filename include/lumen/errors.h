// Typed exceptions thrown by Lumen's API. Every message says what happened, where, and what to
// do. All derive from lumen::Error (a std::runtime_error).
#pragma once

#include <stdexcept>
#include <string>

namespace lumen {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// User code threw inside a task or actor method. Carries the remote exception's type and
// message and the remote function's name.
class TaskError : public Error {
 public:
  TaskError(const std::string& message, std::string function_name, std::string remote_type,
            std::string remote_message)
      : Error(message),
        function_name_(std::move(function_name)),
        remote_type_(std::move(remote_type)),
        remote_message_(std::move(remote_message)) {}
  const std::string& function_name() const { return function_name_; }
  const std::string& remote_type() const { return remote_type_; }
  const std::string& remote_message() const { return remote_message_; }

 private:
  std::string function_name_;
  std::string remote_type_;
  std::string remote_message_;
};

// The process executing a task died (segfault, abort, kill -9, ...) on every allowed attempt.
class WorkerCrashedError : public Error {
 public:
  using Error::Error;
};

// The task's worker was killed by its node's memory monitor (the node's memory use passed
// LUMEN_MEMORY_USAGE_THRESHOLD) on every allowed attempt; the message says how much memory the
// node used. Retries wait longer after each such kill (LUMEN_MEMORY_KILL_RETRY_DELAY_MS).
class OutOfMemoryError : public WorkerCrashedError {
 public:
  using WorkerCrashedError::WorkerCrashedError;
};

// The actor is dead (killed, restarts exhausted, constructor failed) or died during the call.
class ActorDiedError : public Error {
 public:
  using Error::Error;
};

// The object's value is gone and cannot be recovered.
class ObjectLostError : public Error {
 public:
  using Error::Error;
};

// The process that owned the object died.
class OwnerDiedError : public ObjectLostError {
 public:
  using ObjectLostError::ObjectLostError;
};

// Every copy of the object was lost and re-running the task that made it (lineage
// reconstruction) failed: its retries ran out, its lineage was evicted
// (LUMEN_MAX_LINEAGE_BYTES), or an argument could not be re-created. The message says which.
class ObjectReconstructionFailedError : public ObjectLostError {
 public:
  using ObjectLostError::ObjectLostError;
};

// The object store could not make room for an object (the message names the sizes).
class ObjectStoreFullError : public Error {
 public:
  using Error::Error;
};

// The task that makes the object was cancelled with lumen::Cancel before it finished.
class TaskCancelledError : public Error {
 public:
  using Error::Error;
};

// Get/Wait with a timeout: the object was not ready in time.
class GetTimeoutError : public Error {
 public:
  using Error::Error;
};

// A value could not be converted to the requested type, or caller and callee disagree on a
// remote function's signature.
class TypeError : public Error {
 public:
  using Error::Error;
};

// A function or actor method was called that the executing process has not registered with
// LUMEN_REMOTE.
class FunctionNotFoundError : public Error {
 public:
  using Error::Error;
};

}  // namespace lumen
