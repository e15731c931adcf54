#!/bin/bash
# The whole test suite: installs every dependency (root), builds, and runs
# every test registered with CTest, the kernel-driver VM tests (label vm)
# included; then builds with ASan+UBSan and runs the unit, integration and
# engine tests again against that build. Arguments go to the first ctest run
# (e.g. -L unit, -R qemu, -LE vm); with arguments, the sanitizer pass is
# left out.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --all
scripts/build.sh Release

# ctest in the folder $1 with the other arguments. A test that exits 77
# is skipped (CTest lists it under "did not run"); the suite installs
# everything its tests need, so in CI (CI set) a skip fails the run.
run_ctest() {
	local dir=$1 log rc
	shift
	log=$(mktemp)
	set +e
	(cd "$dir" && ctest "$@") 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	set -e
	if [ -n "${CI:-}" ] && grep -q '(Skipped)' "$log"; then
		echo "test.sh: CI skips nothing, and these tests were skipped:" >&2
		grep '(Skipped)' "$log" >&2
		rc=1
	fi
	rm -f "$log"
	return "$rc"
}

# One test at a time: the VM tests (RUN_SERIAL, each with its own timeout
# in tests/vm/vm.cmake) boot a guest that wants both cores, and the others
# measure the server's memory and timing. The 15 VM tests take about 27
# minutes on a busy 2-core machine (ctest -L vm: 1640 s).
run_ctest build --output-on-failure --timeout 900 "$@"
if [ $# -eq 0 ]; then
	echo "=== again under AddressSanitizer and UndefinedBehaviorSanitizer"
	BUILD_DIR=build-asan scripts/build.sh Sanitize
	# A small quarantine: the tests bound the server's memory, and ASan's
	# default keeps up to 256 MiB of freed blocks on purpose.
	ASAN_OPTIONS=quarantine_size_mb=8 run_ctest build-asan \
		--output-on-failure --timeout 900 -j2 -L 'unit|integration|raw|thin|rbd'
fi
