#include "data/write_commit.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "lumen/ids.h"

namespace lumen::data::internal {

namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "_lumen_manifest.json";
constexpr const char* kSuccess = "_SUCCESS";
constexpr const char* kLock = ".lumen-write.lock";
constexpr const char* kOverwritePrefix = ".lumen-overwrite-";
constexpr const char* kSwapping = ".lumen-swapping";

// 64-bit hash of bytes, 8 at a time (the content of in-memory blocks: memory speed).
uint64_t Hash64(std::string_view data, uint64_t h = 0x9e3779b97f4a7c15ull) {
  auto mix = [&h](uint64_t w) {
    h ^= w + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
  };
  size_t i = 0;
  for (; i + 8 <= data.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, data.data() + i, 8);
    mix(w);
  }
  uint64_t tail = 0;
  std::memcpy(&tail, data.data() + i, data.size() - i);
  mix(tail ^ (uint64_t{data.size()} << 56));
  return h;
}

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string List(const std::vector<std::string>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
  return s + "]";
}

std::string NodeLine(const LogicalNode& n) {
  std::string s = n.label;
  const Step& st = n.step;
  switch (n.kind) {
    case NodeKind::kRead:
      s += " format=" + n.format + " paths=" + List(n.paths) + " columns=" + List(n.read.columns) +
           " delimiter=" + std::to_string(static_cast<int>(n.read.delimiter)) +
           " target_block_bytes=" + std::to_string(n.read.target_block_bytes) +
           " max_files_per_block=" + std::to_string(n.read.max_files_per_block) +
           " num_blocks=" + std::to_string(n.read.num_blocks) +
           " ignore_missing_files=" + std::to_string(n.read.ignore_missing_files) +
           " null_values=" + List(n.read.null_values) + " n=" + std::to_string(n.range_n);
      for (const Expr& f : n.filters) s += " filter=" + f.ToString();
      if (n.format == "images") {
        s += " size=" + std::to_string(n.image.size.height) + "x" +
             std::to_string(n.image.size.width) +
             " mode=" + std::to_string(static_cast<int>(n.image.mode)) +
             " on_error=" + std::to_string(static_cast<int>(n.image.on_error));
      }
      break;
    case NodeKind::kBlocks: {
      uint64_t h = 0x51ed270b27ull;
      int64_t rows = 0;
      for (const auto& b : n.blocks) {
        Buffer buf = lumen::Get(b.ref);
        h = Hash64(std::string_view(reinterpret_cast<const char*>(buf.data()), buf.size()), h);
        rows += b.meta.rows;
      }
      s += " blocks=" + std::to_string(n.blocks.size()) + " rows=" + std::to_string(rows) +
           " content=" + Hex(h);
      break;
    }
    case NodeKind::kMap:
    case NodeKind::kCallable:
      s += " step=" + std::to_string(st.kind) + " fn=" + st.fn + " expr=" + st.expr.ToString() +
           " batch_size=" + std::to_string(st.batch_size) + " columns=" + List(st.columns) +
           " column=" + st.column;
      if (n.kind == NodeKind::kCallable) {
        s += " class=" + n.callable + " args=" + Hex(Hash64(n.ctor_args));
      }
      break;
    case NodeKind::kLimit:
      s += " limit=" + std::to_string(n.limit);
      break;
    case NodeKind::kExchange: {
      const ExchangeSpec& e = n.exchange;
      s += " kind=" + e.kind + " partitions=" + std::to_string(e.partitions) +
           " keys=" + List(e.keys) + " descending=" + std::to_string(e.descending) +
           " seed=" + std::to_string(e.seed) + " fn=" + e.fn;
      for (const auto& a : e.aggs) {
        s +=
            " agg=" + a.op() + "(" + a.column() + ")/" + std::to_string(a.ddof()) + "->" + a.name();
      }
      break;
    }
    case NodeKind::kJoin: {
      const JoinSpec& j = n.join;
      s += " how=" + std::to_string(j.how) + " left=" + List(j.left_keys) +
           " right=" + List(j.right_keys) + " suffixes=" + j.left_suffix + "," + j.right_suffix +
           " partitions=" + std::to_string(j.partitions);
      break;
    }
    case NodeKind::kUnion:
      s += " inputs=" + std::to_string(n.inputs.size());
      break;
    case NodeKind::kOptions:
      s += " target_max_block_bytes=" + std::to_string(n.options.target_max_block_bytes);
      break;
  }
  return s;
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// What differs between the write recorded (`was`) and this one, in words.
std::string WhatChanged(const WriteRecord& was, const WriteRecord& now) {
  std::vector<std::string> parts;
  if (was.plan != now.plan) {
    size_t i = 0;
    while (i < was.plan.size() && i < now.plan.size() && was.plan[i] == now.plan[i]) ++i;
    if (i < was.plan.size() && i < now.plan.size()) {
      parts.push_back("the plan changed: " + Quote(was.plan[i]) + " is now " + Quote(now.plan[i]));
    } else {
      parts.push_back("the plan changed: it had " + std::to_string(was.plan.size()) +
                      " operators, now " + std::to_string(now.plan.size()));
    }
  }
  std::map<std::string, const InputFile*> before;
  for (const auto& f : was.inputs) before[f.path] = &f;
  std::vector<std::string> added, changed, removed;
  for (const auto& f : now.inputs) {
    auto it = before.find(f.path);
    if (it == before.end()) {
      added.push_back(f.path);
      continue;
    }
    const InputFile& o = *it->second;
    if (o.size != f.size) {
      changed.push_back(f.path + ": " + std::to_string(o.size) + " -> " + std::to_string(f.size) +
                        " bytes");
    } else if (o.mtime_ns != f.mtime_ns || o.etag != f.etag) {
      changed.push_back(f.path + ": modified");
    }
    before.erase(it);
  }
  for (const auto& [path, f] : before) removed.push_back(path);
  auto some = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 3; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > 3) s += ", ...";
    return s;
  };
  auto files = [](size_t n) {
    return std::to_string(n) + (n == 1 ? " input file" : " input files");
  };
  if (!added.empty()) parts.push_back(files(added.size()) + " added (" + some(added) + ")");
  if (!removed.empty()) parts.push_back(files(removed.size()) + " gone (" + some(removed) + ")");
  if (!changed.empty()) parts.push_back(files(changed.size()) + " changed (" + some(changed) + ")");
  if (parts.empty()) return "the same plan and inputs";
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? "; " : "") + parts[i];
  return s;
}

nlohmann::json ToJson(const WriteRecord& r) {
  nlohmann::json inputs = nlohmann::json::array();
  for (const auto& f : r.inputs) {
    nlohmann::json one = {f.path, f.size, f.mtime_ns};
    if (!f.etag.empty()) one.push_back(f.etag);  // S3 objects
    inputs.push_back(std::move(one));
  }
  return {{"id", r.id},
          {"mode", r.mode},
          {"plan", r.plan},
          {"inputs", inputs},
          {"complete", r.complete}};
}

WriteRecord FromJson(const nlohmann::json& j) {
  WriteRecord r;
  r.id = j.at("id").get<std::string>();
  r.mode = j.at("mode").get<std::string>();
  r.plan = j.at("plan").get<std::vector<std::string>>();
  for (const auto& f : j.at("inputs")) {
    r.inputs.push_back({f.at(0).get<std::string>(), f.at(1).get<int64_t>(), f.at(2).get<int64_t>(),
                        f.size() > 3 ? f.at(3).get<std::string>() : ""});
  }
  r.complete = j.at("complete").get<bool>();
  return r;
}

const char* ModeName(WriteMode m) {
  switch (m) {
    case WriteMode::kResume:
      return "resume";
    case WriteMode::kError:
      return "error";
    case WriteMode::kOverwrite:
      return "overwrite";
    case WriteMode::kAppend:
      return "append";
    case WriteMode::kIgnore:
      return "ignore";
  }
  return "?";
}

}  // namespace

std::vector<std::string> DescribeWrite(const std::shared_ptr<LogicalNode>& root,
                                       const std::string& sink_line) {
  std::vector<std::string> lines;
  std::function<void(const LogicalNode&, int)> walk = [&](const LogicalNode& n, int depth) {
    lines.push_back(std::string(static_cast<size_t>(depth) * 2, ' ') + NodeLine(n));
    for (const auto& in : n.inputs) walk(*in, depth + 1);
  };
  walk(*root, 1);
  lines.insert(lines.begin(), sink_line);
  return lines;
}

std::vector<InputFile> ListedInputs(const std::vector<std::unique_ptr<PhysicalOp>>& ops) {
  std::vector<InputFile> out;
  for (const auto& op : ops) {
    if (const auto* src = dynamic_cast<const SourceOp*>(op.get())) {
      for (const auto& f : src->listed_files) out.push_back({f.path, f.size, f.mtime_ns, f.etag});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const InputFile& a, const InputFile& b) { return a.path < b.path; });
  return out;
}

// ---- OutputDir -------------------------------------------------------------------------------

struct OutputDir::Manifest {
  bool present = false;
  std::vector<WriteRecord> writes;

  static Manifest Load(const OutputStore& store, const std::string& dir, const std::string& label) {
    Manifest m;
    const std::string path = dir + "/" + kManifest;
    std::optional<std::string> text = store.Read(path);
    if (!text) return m;
    try {
      nlohmann::json j = nlohmann::json::parse(*text);
      for (const auto& w : j.at("writes")) m.writes.push_back(FromJson(w));
    } catch (const std::exception& e) {
      throw DataError(label + ": " + path + " is not a write manifest Lumen can read (" + e.what() +
                      "); WriteMode::kOverwrite replaces the directory's output");
    }
    m.present = true;
    return m;
  }

  void Save(const OutputStore& store, const std::string& dir, const std::string& label) const {
    nlohmann::json writes_json = nlohmann::json::array();
    for (const auto& w : writes) writes_json.push_back(ToJson(w));
    nlohmann::json j = {
        {"format", "lumen-write-manifest"}, {"version", 1}, {"writes", writes_json}};
    try {
      store.Replace(dir + "/" + kManifest, j.dump(1) + "\n");
    } catch (const DataError& e) {
      throw DataError(label + ": cannot write the manifest: " + e.what());
    }
  }

  WriteRecord* Find(const std::string& id) {
    for (auto& w : writes) {
      if (w.id == id) return &w;
    }
    return nullptr;
  }
};

namespace {

// The entries of `dir` that are output (anything but Lumen's hidden .lumen-* entries), sorted.
std::vector<std::string> OutputEntries(const OutputStore& store, const std::string& dir) {
  std::vector<std::string> names;
  for (auto& name : store.Entries(dir)) {
    if (!name.starts_with(".lumen-")) names.push_back(std::move(name));
  }
  return names;
}

std::string Entries(const std::vector<std::string>& names) {
  std::string s = std::to_string(names.size()) + (names.size() == 1 ? " entry" : " entries") +
                  " (" + names.front();
  if (names.size() > 1) s += ", ...";
  return s + ")";
}

void Touch(const OutputStore& store, const std::string& path, const std::string& label) {
  try {
    store.Replace(path, "");
  } catch (const DataError& e) {
    throw DataError(label + ": " + e.what());
  }
}

void RemoveAll(const OutputStore& store, const std::string& path, const std::string& label) {
  try {
    store.RemoveAll(path);
  } catch (const DataError& e) {
    throw DataError(label + ": " + e.what());
  }
}

// Replaces `dir`'s output with what `staging` holds (a complete overwrite). Re-entrant: an
// interrupted swap is finished by calling it again (the marker says the old files are gone).
void Swap(const OutputStore& store, const std::string& dir, const std::string& staging,
          const std::string& label) {
  const std::string marker = staging + "/" + kSwapping;
  if (!store.Exists(marker)) {
    for (const auto& name : OutputEntries(store, dir)) RemoveAll(store, dir + "/" + name, label);
    RemoveAll(store, dir + "/.lumen-staging", label);
    Touch(store, marker, label);
  }
  for (const auto& name : store.Entries(staging)) {
    if (name == kSwapping || name == ".lumen-staging") continue;
    const std::string to = dir + "/" + name;
    RemoveAll(store, to, label);  // only ever a half-moved leftover
    try {
      store.Move(staging + "/" + name, to);
    } catch (const DataError& e) {
      throw DataError(label + ": " + e.what());
    }
  }
  RemoveAll(store, staging, label);
}

}  // namespace

OutputDir::OutputDir(std::string dir, std::string label, const S3Options& s3)
    : label_(std::move(label)), dir_(std::move(dir)), store_(OutputStore::For(dir_, s3)) {
  try {
    store_->MakeDir(dir_);
  } catch (const DataError& e) {
    throw DataError(label_ + ": " + e.what());
  }
  if (!store_->is_s3()) {  // S3 has no locks: one write at a time is the user's to keep
    const std::string lock = dir_ + "/" + kLock;
    lock_fd_ = ::open(lock.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (lock_fd_ < 0)
      throw DataError(label_ + ": cannot create " + lock + ": " + std::strerror(errno));
    // A process being spawned by this one (a worker) holds a copy of the descriptor, and with
    // it an earlier write's lock, until it has exec'd: a moment, so the lock is tried for a
    // second before another write is taken to hold it.
    bool locked = false;
    for (int attempt = 0; attempt < 50 && !locked; ++attempt) {
      locked = ::flock(lock_fd_, LOCK_EX | LOCK_NB) == 0;
      if (!locked) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!locked) {
      ::close(lock_fd_);
      lock_fd_ = -1;
      throw DataError(label_ + ": another write to " + dir_ +
                      " is running (it holds .lumen-write.lock); one write at a time per "
                      "directory");
    }
  }
  // An overwrite that completed its output but was interrupted while replacing the old files.
  for (const auto& name : store_->Entries(dir_)) {
    if (!name.starts_with(kOverwritePrefix)) continue;
    const std::string staged = dir_ + "/" + name;
    Manifest m = Manifest::Load(*store_, staged, label_);
    if (m.present && !m.writes.empty() && m.writes[0].complete) {
      Swap(*store_, dir_, staged, label_);
    }
  }
}

OutputDir::~OutputDir() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
}

WriteTarget OutputDir::Prepare(WriteMode mode, WriteRecord now) {
  mode_ = mode;
  now.mode = ModeName(mode);
  now.complete = false;
  record_ = now;
  WriteTarget target;
  target.dir = dir_;
  Manifest m = Manifest::Load(*store_, dir_, label_);
  const std::vector<std::string> entries = OutputEntries(*store_, dir_);
  const std::string modes =
      "Pick WriteOptions::mode = WriteMode::kOverwrite to replace it, kAppend to add to it or "
      "kIgnore to keep it, or write to another directory";
  // This same write (plan and inputs) started here before and did not finish: go on with it.
  const bool own_unfinished = m.present && m.writes.size() == 1 && m.writes[0].id.empty() &&
                              m.writes[0].SameWork(now) && !m.writes[0].complete;
  auto fresh = [&] {
    target.fresh = true;
    Manifest fresh_m;
    fresh_m.writes.push_back(record_);
    fresh_m.Save(*store_, dir_, label_);
  };
  switch (mode) {
    case WriteMode::kResume:
      if (!m.present) {
        if (!entries.empty()) {
          throw DataError(label_ + ": " + dir_ + " holds " + Entries(entries) +
                          " that no Lumen write recorded (no " + kManifest +
                          "), so resuming could mix them with this write's output. " + modes);
        }
        fresh();
      } else if (m.writes.size() == 1 && m.writes[0].id.empty() && m.writes[0].SameWork(now)) {
        RemoveAll(*store_, dir_ + "/" + kSuccess, label_);  // back once this run completes
      } else {
        const std::string what =
            m.writes.size() == 1 && m.writes[0].id.empty()
                ? WhatChanged(m.writes[0], now)
                : "it holds the output of " + std::to_string(m.writes.size()) + " writes, appended";
        throw DataError(label_ + ": " + dir_ + " holds the output of another write (" + what +
                        "), so resuming would mix that output with this write's. " + modes);
      }
      break;
    case WriteMode::kError:
      if (!entries.empty()) {
        throw DataError(label_ + ": " + dir_ + " holds " + Entries(entries) +
                        " and WriteMode::kError writes only to an empty directory");
      }
      fresh();
      break;
    case WriteMode::kIgnore:
      if (own_unfinished) break;
      if (!entries.empty()) {
        target.ignore = true;
        return target;
      }
      fresh();
      break;
    case WriteMode::kAppend: {
      WriteRecord* again = nullptr;
      for (auto& w : m.writes) {
        if (!w.id.empty() && !w.complete && w.SameWork(now)) again = &w;
      }
      if (again != nullptr) {
        record_.id = again->id;  // an interrupted append, resumed under its names
      } else {
        uint8_t rnd[4];
        lumen::internal::FillRandom(rnd, sizeof(rnd));
        record_.id = lumen::internal::BytesToHex(rnd, sizeof(rnd));
        m.writes.push_back(record_);
      }
      m.Save(*store_, dir_, label_);
      RemoveAll(*store_, dir_ + "/" + kSuccess, label_);
      target.run_id = record_.id;
      break;
    }
    case WriteMode::kOverwrite: {
      std::string plan_text;
      for (const auto& l : now.plan) plan_text += l + "\n";
      for (const auto& f : now.inputs) {
        plan_text += f.path + " " + std::to_string(f.size) + " " + std::to_string(f.mtime_ns) +
                     " " + f.etag + "\n";
      }
      const std::string name = kOverwritePrefix + Hex(Hash64(plan_text));
      staging_ = dir_ + "/" + name;
      // Other overwrites' unfinished output is never going to be used.
      for (const auto& n : store_->Entries(dir_)) {
        if (n.starts_with(kOverwritePrefix) && n != name)
          RemoveAll(*store_, dir_ + "/" + n, label_);
      }
      Manifest staged = Manifest::Load(*store_, staging_, label_);
      if (!(staged.present && staged.writes.size() == 1 && staged.writes[0].SameWork(now))) {
        RemoveAll(*store_, staging_, label_);
        try {
          store_->MakeDir(staging_);
        } catch (const DataError& e) {
          throw DataError(label_ + ": " + e.what());
        }
        Manifest fresh_m;
        fresh_m.writes.push_back(record_);
        fresh_m.Save(*store_, staging_, label_);
        target.fresh = true;
      }
      target.dir = staging_;
      break;
    }
  }
  return target;
}

void OutputDir::Commit() {
  record_.complete = true;
  if (mode_ == WriteMode::kOverwrite) {
    Manifest m;
    m.present = true;
    m.writes.push_back(record_);
    m.Save(*store_, staging_, label_);  // from here on the new output is the directory's
    Touch(*store_, staging_ + "/" + kSuccess, label_);
    Swap(*store_, dir_, staging_, label_);
    return;
  }
  Manifest m = Manifest::Load(*store_, dir_, label_);
  if (WriteRecord* w = m.Find(record_.id)) {
    w->complete = true;
  } else {
    m.writes.push_back(record_);
  }
  m.Save(*store_, dir_, label_);
  if (std::all_of(m.writes.begin(), m.writes.end(), [](const auto& w) { return w.complete; })) {
    Touch(*store_, dir_ + "/" + kSuccess, label_);
  }
}

}  // namespace lumen::data::internal
