// Typed, fixed-size identifiers, printed as hex. The layout nests (see docs/design/ids.md):
//
//   JobID    (4 bytes)
//   ActorID  (16) = 12 unique bytes + JobID
//   TaskID   (24) =  8 unique bytes + ActorID   (normal tasks: nil actor part + JobID)
//   ObjectID (28) = TaskID + 4-byte index       (return i: index i+1; put k: 0x80000000|k)
//   NodeID, WorkerID (16 random bytes)
//
// Task and object IDs are deterministic functions of (parent task, submission counter), which
// is what makes lineage re-execution possible. Value types; thread-compatible.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

namespace lumen {

namespace internal {
std::string BytesToHex(const uint8_t* data, size_t size);
bool HexToBytes(std::string_view hex, uint8_t* out, size_t size);
void FillRandom(uint8_t* data, size_t size);
uint64_t Hash64(const void* data, size_t size, uint64_t seed = 0);
}  // namespace internal

template <class Derived, size_t N>
class BaseID {
 public:
  static constexpr size_t kSize = N;

  BaseID() { bytes_.fill(0xff); }  // nil

  static Derived Nil() { return Derived(); }
  static Derived FromRandom() {
    Derived id;
    internal::FillRandom(id.bytes_.data(), N);
    return id;
  }
  // `binary` must be exactly kSize bytes; otherwise the nil ID is returned.
  static Derived FromBinary(std::string_view binary) {
    Derived id;
    if (binary.size() == N) std::memcpy(id.bytes_.data(), binary.data(), N);
    return id;
  }
  static Derived FromHex(std::string_view hex) {
    Derived id;
    if (!internal::HexToBytes(hex, id.bytes_.data(), N)) return Derived();
    return id;
  }

  bool IsNil() const {
    for (uint8_t b : bytes_) {
      if (b != 0xff) return false;
    }
    return true;
  }
  std::string Binary() const {
    return std::string(reinterpret_cast<const char*>(bytes_.data()), N);
  }
  std::string Hex() const { return internal::BytesToHex(bytes_.data(), N); }
  const uint8_t* Data() const { return bytes_.data(); }
  uint8_t* MutableData() { return bytes_.data(); }
  size_t Hash() const { return static_cast<size_t>(internal::Hash64(bytes_.data(), N)); }

  bool operator==(const BaseID& o) const { return bytes_ == o.bytes_; }
  bool operator!=(const BaseID& o) const { return bytes_ != o.bytes_; }
  bool operator<(const BaseID& o) const { return bytes_ < o.bytes_; }

 protected:
  std::array<uint8_t, N> bytes_;
};

class NodeID : public BaseID<NodeID, 16> {};
class WorkerID : public BaseID<WorkerID, 16> {};
class PlacementGroupID : public BaseID<PlacementGroupID, 16> {};  // random

class JobID : public BaseID<JobID, 4> {
 public:
  static JobID FromInt(uint32_t value);
  uint32_t ToInt() const;
};

class ActorID : public BaseID<ActorID, 16> {
 public:
  static constexpr size_t kUniqueBytes = 12;
  // Deterministic: derived from the creating task and its submission counter.
  static ActorID Of(const JobID& job, const class TaskID& parent, uint64_t counter);
  static ActorID NilFromJob(const JobID& job);
  JobID Job() const;
};

class TaskID : public BaseID<TaskID, 24> {
 public:
  static constexpr size_t kUniqueBytes = 8;
  // The root task of a driver: all its submissions derive from it.
  static TaskID ForDriver(const JobID& job);
  static TaskID ForNormalTask(const JobID& job, const TaskID& parent, uint64_t counter);
  static TaskID ForActorCreation(const ActorID& actor);
  static TaskID ForActorTask(const ActorID& actor, const TaskID& parent, uint64_t counter);
  ActorID Actor() const;
  JobID Job() const;
};

class ObjectID : public BaseID<ObjectID, 28> {
 public:
  static constexpr uint32_t kPutBit = 0x80000000u;
  static ObjectID ForReturn(const TaskID& task, uint32_t return_index);  // index from 0
  static ObjectID ForPut(const TaskID& task, uint32_t put_index);
  TaskID Task() const;
  uint32_t RawIndex() const;
  bool IsPut() const { return (RawIndex() & kPutBit) != 0; }
};

}  // namespace lumen

namespace std {
template <>
struct hash<lumen::NodeID> {
  size_t operator()(const lumen::NodeID& id) const { return id.Hash(); }
};
template <>
struct hash<lumen::WorkerID> {
  size_t operator()(const lumen::WorkerID& id) const { return id.Hash(); }
};
template <>
struct hash<lumen::JobID> {
  size_t operator()(const lumen::JobID& id) const { return id.Hash(); }
};
template <>
struct hash<lumen::ActorID> {
  size_t operator()(const lumen::ActorID& id) const { return id.Hash(); }
};
template <>
struct hash<lumen::TaskID> {
  size_t operator()(const lumen::TaskID& id) const { return id.Hash(); }
};
template <>
struct hash<lumen::PlacementGroupID> {
  size_t operator()(const lumen::PlacementGroupID& id) const { return id.Hash(); }
};
template <>
struct hash<lumen::ObjectID> {
  size_t operator()(const lumen::ObjectID& id) const { return id.Hash(); }
};
}  // namespace std
