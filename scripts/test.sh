#!/usr/bin/env bash
# Sets up, builds and runs every test: the normal build (warnings as errors), then the same
# suite under AddressSanitizer + UndefinedBehaviorSanitizer.
#   scripts/test.sh            both
#   scripts/test.sh --fast     normal build only
#   scripts/test.sh --sanitize sanitizer build only
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
./scripts/setup.sh
jobs=$(nproc)

run_suite() {  # run_suite <build-dir> <cmake args...>
  local dir="$1"; shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLUMEN_WERROR=ON "$@"
  cmake --build "$dir"
  rm -rf "$dir/test-sessions"
  ctest --test-dir "$dir" --output-on-failure --timeout 600
}

if [ "$mode" = "all" ] || [ "$mode" = "--fast" ]; then
  echo "== tests (RelWithDebInfo) =="
  run_suite build
  ./scripts/check_install.sh build
fi
if [ "$mode" = "all" ] || [ "$mode" = "--sanitize" ]; then
  echo "== tests under ASan + UBSan =="
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build-asan -DLUMEN_SANITIZE=ON -DLUMEN_BUILD_BENCH=OFF
fi
echo "all tests passed"
