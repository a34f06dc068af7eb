// Programs stored by content in the control service's key-value store, so that a node that
// lacks a job's binary gets the exact bytes (`lumen job submit`): only the submitting machine
// needs the program.
//
// Layout in the KV namespace kNamespace: "<sha256>/<i>" holds chunk i (kChunkBytes each, the
// last one shorter), then "<sha256>" holds "<size> <chunks>" — written last, so a program is
// visible only once complete. Stored once: an upload of bytes already there sends nothing.
//
//   std::string hash = binaries::Upload(*gcs, bytes).value();                 // a client
//   binaries::Materialize(gcs, hash, session + "/binaries", [](auto path) {});  // a node
//
// Thread safety: Upload blocks (not on a loop thread); Materialize runs on the connection's
// loop thread and calls `done` there.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "common/rpc/connection.h"
#include "common/status.h"

namespace lumen::binaries {

inline constexpr char kNamespace[] = "lumen_binaries";
inline constexpr size_t kChunkBytes = 8u << 20;

// SHA-256 of `bytes`, 64 hex digits.
std::string ContentHash(std::string_view bytes);
// Whether `hash` looks like a ContentHash (a peer's bad message must not become a path).
bool IsContentHash(std::string_view hash);

// Stores `bytes` under their hash unless already there; returns the hash.
StatusOr<std::string> Upload(rpc::Connection& gcs, std::string_view bytes);

// Makes `dir`/<hash> (mode 0755) from the store unless it exists, checking that the bytes
// have that hash, then calls done(path) — or done(error) naming what was missing or wrong.
void Materialize(const rpc::ConnectionPtr& gcs, const std::string& hash, const std::string& dir,
                 std::function<void(StatusOr<std::string>)> done);

}  // namespace lumen::binaries
