#!/bin/bash
# The whole test suite: installs every dependency (root), builds, and runs
# every test registered with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --all
scripts/build.sh Release
cd build
ctest --output-on-failure --timeout 900 "$@"
