// The shared body of fuzz_csv and fuzz_json: the input becomes a file (a memfd, read through
// /proc/self/fd like any path) and the real reader, internal::ReadFiles, reads it in-process,
// as a read task does. DataError (lumen::Error) is the expected answer to malformed text;
// a block that comes back is read end to end. Test-only code.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "batch_check.h"
#include "data/chain.h"
#include "fuzz_util.h"
#include "lumen/errors.h"

namespace lumen::fuzz {

// Holds the input as a file for the readers. One per process.
class InputFile {
 public:
  InputFile() : fd_(::memfd_create("lumen-fuzz-input", MFD_CLOEXEC)) {
    if (fd_ < 0) std::abort();
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  const std::string& Write(std::string_view content) {
    if (::ftruncate(fd_, 0) != 0) std::abort();
    size_t off = 0;
    while (off < content.size()) {
      ssize_t n =
          ::pwrite(fd_, content.data() + off, content.size() - off, static_cast<off_t>(off));
      if (n <= 0) std::abort();
      off += static_cast<size_t>(n);
    }
    return path_;
  }

 private:
  const int fd_;
  std::string path_;
};

// Reads `content` with `spec` (whose `files` the caller leaves empty: `copies` times the
// input file is added) and checks the block.
inline void ReadAndCheck(data::internal::ReadSpec spec, std::string_view content, int copies) {
  static InputFile* file = new InputFile();
  const std::string& path = file->Write(content);
  for (int i = 0; i < copies; ++i) spec.files.push_back(path);
  data::Batch b;
  try {
    b = data::internal::ReadFiles(spec);
  } catch (const Error&) {
    return;  // DataError: refused with a message
  }
  TouchEveryColumn(b);
}

}  // namespace lumen::fuzz
