#!/usr/bin/env bash
# Sets up, builds and runs every test: the normal build (warnings as errors, with LibTorch's
# lumen::lumen_torch), the same suite (without LibTorch, which is not built with sanitizers)
# under AddressSanitizer + UndefinedBehaviorSanitizer, then under ThreadSanitizer with clang
# (whose -Wthread-safety -Werror also proves the lock annotations), then each libFuzzer target
# for a bounded time (scripts/fuzz.sh).
#   scripts/test.sh            all four
#   scripts/test.sh --fast     normal build only
#   scripts/test.sh --sanitize ASan + UBSan build only
#   scripts/test.sh --tsan     TSan (clang) build only
#   scripts/test.sh --fuzz     fuzz targets only (LUMEN_FUZZ_SECONDS each, default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
./scripts/setup.sh

run_suite() {  # run_suite <build-dir> <cmake args...>
  local dir="$1"; shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLUMEN_WERROR=ON "$@"
  cmake --build "$dir"
  rm -rf "$dir/test-sessions"
  # Most tests wait on processes and sockets rather than compute: one per core halves the time.
  ctest --test-dir "$dir" --output-on-failure --timeout 600 -j "$(nproc)"
}

if [ "$mode" = "all" ] || [ "$mode" = "--fast" ]; then
  echo "== tests (RelWithDebInfo) =="
  run_suite build
  ./scripts/check_install.sh build
fi
if [ "$mode" = "all" ] || [ "$mode" = "--sanitize" ]; then
  echo "== tests under ASan + UBSan =="
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build-asan -DLUMEN_SANITIZE=address -DLUMEN_BUILD_BENCH=OFF -DLUMEN_TORCH=OFF
fi
if [ "$mode" = "all" ] || [ "$mode" = "--tsan" ]; then
  echo "== tests under ThreadSanitizer (clang, -Wthread-safety) =="
  # Worker processes run the test binaries too: every process writes its reports to one
  # folder, and a report from any of them fails the run (a worker's would otherwise only
  # show up as a retried task).
  reports="$PWD/build-tsan/tsan-reports"
  rm -rf "$reports" && mkdir -p "$reports"
  # Fault tests crash workers on purpose (SIGSEGV, abort): those signals kill, not report.
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 log_path=$reports/tsan handle_segv=0 handle_abort=0 handle_sigbus=0 handle_sigfpe=0 handle_sigill=0" \
    CC=clang-14 CXX=clang++-14 \
    run_suite build-tsan -DLUMEN_SANITIZE=thread -DLUMEN_BUILD_BENCH=OFF -DLUMEN_TORCH=OFF
  if compgen -G "$reports/tsan*" >/dev/null; then
    echo "ThreadSanitizer reported:"
    cat "$reports"/tsan*
    exit 1
  fi
fi
if [ "$mode" = "all" ] || [ "$mode" = "--fuzz" ]; then
  echo "== fuzzing =="
  ./scripts/fuzz.sh
fi
echo "all tests passed"
