#!/bin/bash
# The whole test suite: installs every dependency (root), builds, and runs
# every test registered with CTest but the VM ones (below); then builds with
# ASan+UBSan and runs the unit, integration and engine tests again against
# that build. Arguments go
# to the first ctest run (e.g. -L unit, -R qemu); with arguments, the
# sanitizer pass is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --all
scripts/build.sh Release
if [ $# -eq 0 ]; then
	# The kernel-driver VM tests (label vm) are left out of the default run
	# until a driver hang and an Oops in failover are fixed (see
	# kmod/README.md); run them with: scripts/test.sh -L vm
	(cd build && ctest --output-on-failure --timeout 900 -LE vm)
else
	(cd build && ctest --output-on-failure --timeout 900 "$@")
fi
if [ $# -eq 0 ]; then
	echo "=== again under AddressSanitizer and UndefinedBehaviorSanitizer"
	BUILD_DIR=build-asan scripts/build.sh Sanitize
	# A small quarantine: the tests bound the server's memory, and ASan's
	# default keeps up to 256 MiB of freed blocks on purpose.
	(cd build-asan && ASAN_OPTIONS=quarantine_size_mb=8 \
		ctest --output-on-failure --timeout 900 -j2 -L 'unit|integration|raw|thin')
fi
