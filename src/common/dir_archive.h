// A directory tree as one byte string (runtime_env's working_dir: packed by the submitter,
// stored by content with common/binary_store.h, unpacked on every node that runs its workers).
//
// Format: "LUMENDIR1\n", then per entry a kind byte ('d' directory, 'f' file), the relative
// path's length (u32, little-endian) and bytes, the mode (u32), and for files the size (u64)
// and contents. Regular files and directories only: symbolic links and special files are
// skipped (a link could point outside the tree on the node that unpacks it).
//
// Thread safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace lumen::dir_archive {

// Packs the tree under `dir`. Fails naming the path when it is not a directory, cannot be read,
// or holds more than `max_bytes` of file contents.
StatusOr<std::string> Pack(const std::string& dir, uint64_t max_bytes);

// Unpacks `archive` into `dest` (created, mode 0700), atomically: the tree is written beside it
// and renamed into place, so `dest` either does not exist or is complete. Rejects (without
// writing outside `dest`) archives that are malformed or name absolute or ".." paths.
Status Unpack(const std::string& archive, const std::string& dest);

}  // namespace lumen::dir_archive
