#!/usr/bin/env bash
# Installs Lumen into a temporary prefix and builds a separate CMake project against it with
# find_package(lumen): the path a user's own project takes.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
prefix="$(mktemp -d)"
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cmake -S examples/standalone -B "$prefix/app-build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/app-build" >/dev/null
LUMEN_SESSION_ROOT="$prefix/sessions" "$prefix/app-build/standalone_app"
echo "install check: a find_package(lumen) project builds and runs"
