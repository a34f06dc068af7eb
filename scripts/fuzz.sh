#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang + ASan + UBSan, in build-fuzz) and runs each
# for a bounded time from a copy of its checked-in corpus, after replaying its regression
# inputs. Exits non-zero if any target crashed (or hung, or ran out of memory).
#   scripts/fuzz.sh                 every target, LUMEN_FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh block csv       only these targets
#   LUMEN_FUZZ_SECONDS=0 scripts/fuzz.sh   build and replay the regressions only
# Crash inputs are left in build-fuzz/fuzz-work/<target>/; see tests/fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

seconds="${LUMEN_FUZZ_SECONDS:-60}"
build="${LUMEN_FUZZ_BUILD_DIR:-build-fuzz}"
jobs="${LUMEN_FUZZ_JOBS:-$(nproc)}"
cxx="${LUMEN_FUZZ_CXX:-clang++-14}"
all_targets=(frame handlers block csv json)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

if ! command -v "$cxx" >/dev/null; then
  echo "fuzz: $cxx not found; install clang-14 libclang-rt-14-dev llvm-14 (apt-get)" >&2
  exit 2
fi

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
  -DLUMEN_FUZZ=ON -DLUMEN_BUILD_TESTS=OFF -DLUMEN_BUILD_BENCH=OFF -DLUMEN_BUILD_EXAMPLES=OFF \
  >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]/#/fuzz_}"

# Symbolized reports; UBSan findings already abort (-fno-sanitize-recover).
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export ASAN_SYMBOLIZER_PATH="${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer-14 || true)}"

# Options per target. The transport targets run an event loop thread whose scheduling makes
# coverage noisy; the entropic schedule then spends most of the time ranking features.
options_for() {
  case "$1" in
    frame | handlers) echo "-entropic=0" ;;
    *) echo "" ;;
  esac
}

# Runs "$@" without bash's "Aborted (core dumped)" notice when it crashes (the log has the
# report): the command's stderr goes to the caller's (fd 3), the subshell's to /dev/null.
quietly() {
  {
    (
      "$@" 2>&3 3>&-
      status=$?
      exit $status
    ) 2>/dev/null
  } 3>&2
}

failed=0
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  work="$build/fuzz-work/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  crashes=0

  # Every kept crash input must now pass.
  for f in tests/fuzz/regressions/"$t"/*; do
    [ -f "$f" ] || continue
    if ! quietly "$bin" -runs=1 "$f" >"$work/regression-$(basename "$f").log" 2>&1; then
      echo "fuzz_$t: regression $(basename "$f") crashes again; see $work/regression-$(basename "$f").log"
      crashes=$((crashes + 1))
    fi
  done

  execs=0
  if [ "$seconds" -gt 0 ]; then
    cp tests/fuzz/corpus/"$t"/* "$work/corpus/"  # a copy: the checked-in corpus stays small
    # shellcheck disable=SC2046
    quietly "$bin" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$work/artifacts/" $(options_for "$t") "$work/corpus" \
      >"$work/fuzz.log" 2>&1 || true
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log" | tail -1)
    found=$(find "$work/artifacts" -type f | wc -l)
    if [ "$found" -gt 0 ]; then
      echo "fuzz_$t: found $(ls "$work/artifacts" | tr '\n' ' ')— report:"
      grep -E -m 12 "ERROR|SUMMARY|runtime error|fuzz:|^    #[0-9] " "$work/fuzz.log" || tail -20 "$work/fuzz.log"
      echo "  (full log: $work/fuzz.log; keep the input under tests/fuzz/regressions/$t/ once fixed)"
    elif ! grep -q "^Done [0-9]* runs" "$work/fuzz.log"; then
      echo "fuzz_$t: the fuzzer stopped without finishing; see $work/fuzz.log"
      found=1
    fi
    crashes=$((crashes + found))
  fi
  echo "fuzz_$t ${execs:-0} execs, crashes found $crashes"
  [ "$crashes" -eq 0 ] || failed=1
done
exit "$failed"
