#include "lumen/ids.h"

#include <sys/random.h>

#include <cstring>
#include <random>

namespace lumen {
namespace internal {

std::string BytesToHex(const uint8_t* data, size_t size) {
  static const char* kDigits = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xf];
  }
  return out;
}

bool HexToBytes(std::string_view hex, uint8_t* out, size_t size) {
  if (hex.size() != size * 2) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < size; ++i) {
    int hi = nibble(hex[2 * i]);
    int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

void FillRandom(uint8_t* data, size_t size) {
  size_t off = 0;
  while (off < size) {
    ssize_t n = ::getrandom(data + off, size - off, 0);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  if (off < size) {  // getrandom unavailable: fall back to a seeded PRNG.
    thread_local std::mt19937_64 rng(std::random_device{}());
    for (; off < size; ++off) data[off] = static_cast<uint8_t>(rng());
  }
}

// 64-bit FNV-1a followed by a splitmix64 finaliser: fast and well-mixed for short IDs.
uint64_t Hash64(const void* data, size_t size, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = 1469598103934665603ull ^ seed;
  for (size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

}  // namespace internal

namespace {

void PutUniqueFromHash(uint8_t* out, size_t n, uint64_t a, uint64_t b) {
  uint8_t buf[16];
  std::memcpy(buf, &a, 8);
  std::memcpy(buf + 8, &b, 8);
  uint64_t h1 = internal::Hash64(buf, 16, 0x9e3779b97f4a7c15ull);
  uint64_t h2 = internal::Hash64(buf, 16, 0x632be59bd9b4e019ull);
  uint8_t mix[16];
  std::memcpy(mix, &h1, 8);
  std::memcpy(mix + 8, &h2, 8);
  std::memcpy(out, mix, n);
}

}  // namespace

JobID JobID::FromInt(uint32_t value) {
  JobID id;
  std::memcpy(id.bytes_.data(), &value, 4);
  return id;
}

uint32_t JobID::ToInt() const {
  uint32_t v;
  std::memcpy(&v, bytes_.data(), 4);
  return v;
}

ActorID ActorID::Of(const JobID& job, const TaskID& parent, uint64_t counter) {
  ActorID id;
  PutUniqueFromHash(id.bytes_.data(), kUniqueBytes, internal::Hash64(parent.Data(), TaskID::kSize),
                    counter ^ 0xac7025ull << 40);
  std::memcpy(id.bytes_.data() + kUniqueBytes, job.Data(), JobID::kSize);
  return id;
}

ActorID ActorID::NilFromJob(const JobID& job) {
  ActorID id;  // unique part stays 0xff
  std::memcpy(id.bytes_.data() + kUniqueBytes, job.Data(), JobID::kSize);
  return id;
}

JobID ActorID::Job() const {
  return JobID::FromBinary(
      std::string_view(reinterpret_cast<const char*>(bytes_.data()) + kUniqueBytes, JobID::kSize));
}

TaskID TaskID::ForDriver(const JobID& job) {
  TaskID id;
  std::memset(id.bytes_.data(), 0, kUniqueBytes);
  ActorID nil = ActorID::NilFromJob(job);
  std::memcpy(id.bytes_.data() + kUniqueBytes, nil.Data(), ActorID::kSize);
  return id;
}

TaskID TaskID::ForNormalTask(const JobID& job, const TaskID& parent, uint64_t counter) {
  TaskID id;
  PutUniqueFromHash(id.bytes_.data(), kUniqueBytes, internal::Hash64(parent.Data(), kSize),
                    counter);
  ActorID nil = ActorID::NilFromJob(job);
  std::memcpy(id.bytes_.data() + kUniqueBytes, nil.Data(), ActorID::kSize);
  return id;
}

TaskID TaskID::ForActorCreation(const ActorID& actor) {
  TaskID id;
  std::memset(id.bytes_.data(), 0, kUniqueBytes);
  std::memcpy(id.bytes_.data() + kUniqueBytes, actor.Data(), ActorID::kSize);
  return id;
}

TaskID TaskID::ForActorTask(const ActorID& actor, const TaskID& parent, uint64_t counter) {
  TaskID id;
  PutUniqueFromHash(id.bytes_.data(), kUniqueBytes, internal::Hash64(parent.Data(), kSize),
                    counter ^ internal::Hash64(actor.Data(), ActorID::kSize));
  std::memcpy(id.bytes_.data() + kUniqueBytes, actor.Data(), ActorID::kSize);
  return id;
}

ActorID TaskID::Actor() const {
  return ActorID::FromBinary(std::string_view(
      reinterpret_cast<const char*>(bytes_.data()) + kUniqueBytes, ActorID::kSize));
}

JobID TaskID::Job() const { return Actor().Job(); }

ObjectID ObjectID::ForReturn(const TaskID& task, uint32_t return_index) {
  ObjectID id;
  std::memcpy(id.bytes_.data(), task.Data(), TaskID::kSize);
  uint32_t idx = return_index + 1;
  std::memcpy(id.bytes_.data() + TaskID::kSize, &idx, 4);
  return id;
}

ObjectID ObjectID::ForPut(const TaskID& task, uint32_t put_index) {
  ObjectID id;
  std::memcpy(id.bytes_.data(), task.Data(), TaskID::kSize);
  uint32_t idx = put_index | kPutBit;
  std::memcpy(id.bytes_.data() + TaskID::kSize, &idx, 4);
  return id;
}

TaskID ObjectID::Task() const {
  return TaskID::FromBinary(
      std::string_view(reinterpret_cast<const char*>(bytes_.data()), TaskID::kSize));
}

uint32_t ObjectID::RawIndex() const {
  uint32_t v;
  std::memcpy(&v, bytes_.data() + TaskID::kSize, 4);
  return v;
}

}  // namespace lumen
