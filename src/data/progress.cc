#include "data/progress.h"

#include <unistd.h>

#include <cstdio>

#include "data/executor.h"

namespace lumen::data::internal {

std::string HumanBytes(int64_t bytes) {
  char buf[32];
  double b = static_cast<double>(bytes);
  if (b >= 1e9) {
    std::snprintf(buf, sizeof(buf), "%.2f GB", b / 1e9);
  } else if (b >= 1e6) {
    std::snprintf(buf, sizeof(buf), "%.1f MB", b / 1e6);
  } else if (b >= 1e3) {
    std::snprintf(buf, sizeof(buf), "%.1f KB", b / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%lld B", static_cast<long long>(bytes));
  }
  return buf;
}

std::string Plural(int64_t n, const std::string& what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

ProgressReporter::ProgressReporter(std::vector<PhysicalOp*> ops, bool enabled, int64_t interval_ms)
    : ops_(std::move(ops)),
      enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) != 0),
      every_(interval_ms > 0 ? std::chrono::milliseconds(interval_ms)
             : tty_          ? std::chrono::milliseconds(200)
                             : std::chrono::milliseconds(10000)),
      start_(std::chrono::steady_clock::now()) {}

std::chrono::milliseconds ProgressReporter::TickEvery() const {
  return std::min(every_, std::chrono::milliseconds(200));
}

std::string ProgressReporter::Line(const PhysicalOp* op, bool final) const {
  const int64_t total = op->TotalBlocks();
  const int64_t done = op->blocks_done;
  std::string bar;
  if (total > 0) {
    const int width = 20;
    int filled = static_cast<int>(width * std::min<int64_t>(done, total) / total);
    bar = "[" + std::string(static_cast<size_t>(filled), '=') +
          std::string(static_cast<size_t>(width - filled), ' ') + "] ";
  }
  const OperatorStats& s = op->stats();
  std::string name = op->name();
  if (name.size() > 40) name = name.substr(0, 37) + "...";
  char buf[512];
  // Throughput in rows consumed (a writer's output is one summary row per block), over the
  // time the operator has been running: it stays what it was once the operator is done.
  double active_s = 0;
  if (op->started) {
    const auto end = op->Finished() ? op->last_end : std::chrono::steady_clock::now();
    active_s = std::chrono::duration<double>(end - op->first_start).count();
  }
  // Rows of running tasks count as their progress records arrive (batch by batch).
  const int64_t rows_in = s.rows_in + (final ? 0 : op->live_rows_in);
  double rate = active_s > 0 ? static_cast<double>(rows_in) / active_s : 0;
  std::string blocks =
      (total >= 0 ? std::to_string(done) + "/" + std::to_string(total) : std::to_string(done)) +
      " blocks";
  std::vector<std::string> notes;
  if (const auto* src = dynamic_cast<const SourceOp*>(op); src && src->input_files > 0) {
    notes.push_back(std::to_string(src->input_files) + " files, " + HumanBytes(src->input_bytes));
  }
  if (!s.ignored_files.empty()) {
    notes.push_back(std::to_string(s.ignored_files.size()) + " skipped as missing");
  }
  if (!s.skipped_inputs.empty()) {
    notes.push_back(std::to_string(s.skipped_inputs.size()) + " skipped as undecodable");
  }
  if (const auto* pool = dynamic_cast<const ActorPoolOp*>(op); pool && !final) {
    // "actors: 1 starting, 2 ready, 3 busy of 6 (1 to 8)"
    std::string actors = "actors:";
    const char* sep = " ";
    const ActorPoolOp::ActorCounts c = pool->CountActors();
    for (const auto& [n, what] : {std::pair{c.starting, "starting"}, std::pair{c.ready, "ready"},
                                  std::pair{c.busy, "busy"}}) {
      if (n == 0) continue;
      actors += sep + std::to_string(n) + " " + what;
      sep = ", ";
    }
    actors += " of " + std::to_string(pool->actor_count());
    if (pool->autoscaling()) {
      actors += " (" + std::to_string(std::max(1, pool->concurrency().min())) + " to " +
                std::to_string(pool->concurrency().max()) + ")";
    }
    notes.push_back(actors);
  }
  if (s.actor_restarts > 0) {
    notes.push_back(Plural(s.actor_restarts, "actor restart") + ", " +
                    Plural(s.blocks_retried, "block") + " re-run");
  }
  if (!notes.empty()) {
    blocks += " (";
    for (size_t i = 0; i < notes.size(); ++i) blocks += (i ? ", " : "") + notes[i];
    blocks += ")";
  }
  std::snprintf(buf, sizeof(buf), "%-40s %s%s, in %lld rows %s, out %lld rows %s, %.0f rows/s",
                name.c_str(), bar.c_str(), blocks.c_str(), static_cast<long long>(rows_in),
                HumanBytes(s.bytes_in).c_str(), static_cast<long long>(s.rows_out),
                HumanBytes(s.bytes_out).c_str(), rate);
  std::string line = buf;
  if (!final) {
    std::snprintf(buf, sizeof(buf), ", %d active, %zu queued", op->running(),
                  const_cast<PhysicalOp*>(op)->inputs().size());
    line += buf;
  }
  return line;
}

void ProgressReporter::Draw(int64_t held_bytes, int64_t budget, bool final) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string out;
  if (tty_ && lines_drawn_ > 0) out += "\x1b[" + std::to_string(lines_drawn_) + "A";
  int lines = 0;
  for (const PhysicalOp* op : ops_) {
    out += (tty_ ? "\x1b[2K" : "") + Line(op, final) + "\n";
    ++lines;
  }
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%s%.1f s, memory %s of %s budget%s\n", tty_ ? "\x1b[2K" : "",
                elapsed, HumanBytes(held_bytes).c_str(), HumanBytes(budget).c_str(),
                final ? ", done" : "");
  out += buf;
  ++lines;
  if (!tty_) out = "lumen::data progress\n" + out;
  lines_drawn_ = lines;
  std::fwrite(out.data(), 1, out.size(), stderr);
  std::fflush(stderr);
}

void ProgressReporter::Tick(int64_t held_bytes, int64_t budget, bool force) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (!force && now - last_draw_ < every_) return;
  if (!tty_ && !force && now - start_ < every_) return;  // short jobs: only the final line
  last_draw_ = now;
  Draw(held_bytes, budget, false);
}

void ProgressReporter::Finish(int64_t held_bytes, int64_t budget) {
  if (!enabled_) return;
  // A terminal gets its bars completed; a log gets a last line only if it got earlier ones.
  if (tty_ || lines_drawn_ > 0) Draw(held_bytes, budget, true);
}

}  // namespace lumen::data::internal
