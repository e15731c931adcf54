#!/bin/bash
# Configures and builds into build/ (or $BUILD_DIR) with CMake.
#   scripts/build.sh [Release|Sanitize|Debug]
set -euo pipefail
cd "$(dirname "$0")/.."
type=${1:-Release}
dir=${BUILD_DIR:-build}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" >/dev/null
cmake --build "$dir" -j"$(nproc)"
