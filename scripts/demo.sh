#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds Lumen and runs the quickstart demo on an embedded
# local cluster (tasks, actors, large objects, errors).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build --target quickstart lumen_cli
./build/examples/quickstart
