#!/usr/bin/env bash
# Installs every Debian package Lumen's build, tests, examples and benchmarks need.
# Safe to re-run: apt-get skips what is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git clang-format
  libprotobuf-dev protobuf-compiler        # wire protocol
  libmsgpack-cxx-dev                       # task argument / value serialisation
  libcli11-dev                             # the `lumen` command line
  nlohmann-json3-dev                       # lumen::data JSON lines
  libhiredis-dev redis-server              # control service state in Redis (+ its tests)
  libssl-dev                               # SHA-256 of programs stored by content
  libcurl4-openssl-dev libtinyxml2-dev     # lumen::data's S3 client
  awscli                                   # the independent S3 client of the S3 tests
  libturbojpeg0-dev libpng-dev             # lumen::data's image decoders and encoders
  python3-pil                              # Pillow: the independent codec of the image tests
  python3-torch python3-torchvision        # PyTorch DataLoader baseline of lumen_bench_infer
  libtorch-dev                             # LibTorch: lumen::lumen_torch, the inference example
  libgtest-dev libgmock-dev                # tests
  libbenchmark-dev                         # micro-benchmarks
  python3 python3-distributed python3-dask # Dask: the peer baseline in bench/
  python3-pandas                           # Dask's dataframe (lumen_bench_dataframe)
  procps psmisc                            # ps/pkill used by fault tests
  iproute2 util-linux                      # ip netns + unshare: the three-host test
  clang-14 libclang-rt-14-dev llvm-14      # TSan + -Wthread-safety build, libFuzzer targets
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "lumen setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # redis-server is here for the tests, which start their own on a Unix socket. Its system
  # service, started by the package on systemd machines, would hold port 6379 — the default
  # port of `lumen start --head` — so a service this script brought in is stopped again.
  if [[ " ${missing[*]} " == *" redis-server "* ]] && command -v systemctl >/dev/null &&
    systemctl is-active --quiet redis-server 2>/dev/null; then
    echo "lumen setup: disabling the redis-server system service (port 6379 is Lumen's default)"
    $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
  fi
else
  echo "lumen setup: all packages present"
fi
# Node.js and npm: lumen_bench_dataframe installs DuckDB (@duckdb/node-api) with npm into its
# own work folder. Only when no npm is there: a Node.js from elsewhere brings its own.
if ! command -v npm >/dev/null; then
  echo "lumen setup: installing nodejs npm"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
# s3rver, the S3 server the S3 tests and lumen_bench_s3 start on loopback, from the npm
# registry into the project's .tools/ (not committed). Pinned: its answers are what the tests
# were written against.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
S3RVER_VERSION=3.7.1
if [ ! -x "$ROOT/.tools/s3rver/node_modules/.bin/s3rver" ] ||
  ! grep -q "\"version\": \"$S3RVER_VERSION\"" "$ROOT/.tools/s3rver/node_modules/s3rver/package.json"; then
  echo "lumen setup: installing s3rver $S3RVER_VERSION (npm) into .tools/s3rver"
  mkdir -p "$ROOT/.tools/s3rver"
  npm install --prefix "$ROOT/.tools/s3rver" --no-audit --no-fund --loglevel=error \
    "s3rver@$S3RVER_VERSION" >/dev/null
fi
