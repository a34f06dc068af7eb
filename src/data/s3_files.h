// lumen::data's sources and sinks on S3: listing URIs as the local Lister lists paths,
// reading objects, and committing output objects. Internal to src/data; runs in tasks.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "data/chain.h"
#include "lumen/data/s3.h"

namespace lumen::data::internal {

// Lists `pattern` — s3://bucket/key (one object; a key that names no object but is a prefix
// of some is listed as the folder it is), s3://bucket/prefix/ (every object under it, except
// names starting with '_' or '.' as local listings skip them) or a glob over keys (*, ?, [..];
// '*' does not cross '/') — sorted by relative name. Errors as ListFiles.
// With `split`, a folder that has sub-folders is not listed here: its sub-folders (one level
// down; a lone one is descended into) become the cuts of a split listing (Listing::cuts) that
// the caller lists range by range in parallel tasks. The cuts only divide the key space, so a
// server that leaves folders out of its answer (s3rver does, for a folder of folders) makes
// fewer ranges, never loses keys. `after` / `until` (keys, "" for no bound): only the objects
// whose keys lie in (after, until] — one range of a split listing; an empty range is no error.
Listing ListS3(const std::string& pattern, const std::string& source, bool ignore_missing,
               const S3Options& options, bool split = false, const std::string& after = "",
               const std::string& until = "");

// What a listing of `pattern` that found nothing does: with `ignore_missing` it records
// "pattern: why" in `ignored`, else it throws the DataError naming `source` and the option.
void MissingS3Input(const std::string& source, const std::string& pattern, const std::string& why,
                    bool ignore_missing, std::vector<std::string>* ignored);

// The whole object at `uri` (`size`: as listed, or -1). Throws DataError naming it.
std::string ReadS3Object(const std::string& uri, const S3Options& options, int64_t size = -1);
// The object at `uri`, `size` bytes as listed, straight into `dst`.
void ReadS3ObjectInto(const std::string& uri, const S3Options& options, int64_t size, char* dst);

}  // namespace lumen::data::internal
