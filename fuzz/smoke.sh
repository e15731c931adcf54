#!/bin/bash
# fuzz_smoke: builds the libFuzzer targets with clang in BUILD_DIR (its own
# configuration, whatever compiler the main build uses) and runs each for
# FUZZ_TIME seconds (15) on its seed corpus. Fails on any crash, leak,
# timeout or broken invariant, and when a target runs no inputs at all.
#   fuzz/smoke.sh BUILD_DIR
. "$NP_SRC/tests/functions.sh"

build=${1:?usage: smoke.sh BUILD_DIR}
secs=${FUZZ_TIME:-15}
targets=(handshake codec config reply)
requires clang cmake
[ -f "$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a)" ] ||
	fail "clang has no libFuzzer runtime (Debian: libclang-rt-14-dev, only recommended by clang)"

cmake -S "$NP_SRC" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Sanitize \
	-DNP_WITH_RAW=OFF -DNP_WITH_THIN=OFF -DNP_WITH_KMOD=OFF >"$TMP/configure.log" 2>&1 ||
	fail "configuring the clang build: $(tail -n 20 "$TMP/configure.log")"
cmake --build "$build" -j2 --target "${targets[@]/#/fuzz_}" >"$TMP/build.log" 2>&1 ||
	fail "building the fuzzers: $(grep -m 20 -E 'error|warning' "$TMP/build.log")"
# The harnesses themselves build clean (the server's files have their own checks).
if grep -q '^[^ ]*fuzz/[^ ]*: warning:' "$TMP/build.log"; then
	fail "warnings: $(grep -m 20 '^[^ ]*fuzz/[^ ]*: warning:' "$TMP/build.log")"
fi

for t in "${targets[@]}"; do
	seeds=$NP_SRC/fuzz/corpus/$t
	[ -n "$(ls -A "$seeds")" ] || fail "no seed corpus in $seeds"
	# New inputs go to a scratch corpus; the checked-in seeds are read only.
	mkdir -p "$TMP/corpus-$t" "$TMP/crash-$t"
	rc=0
	"$build/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$TMP/crash-$t/" -print_final_stats=1 \
		"$TMP/corpus-$t" "$seeds" >"$TMP/fuzz-$t.log" 2>&1 || rc=$?
	if [ "$rc" != 0 ] || [ -n "$(ls -A "$TMP/crash-$t")" ]; then
		tail -n 60 "$TMP/fuzz-$t.log" >&2
		for f in "$TMP/crash-$t"/*; do
			[ -f "$f" ] && echo "--- $(basename "$f"): $(od -An -tx1 "$f" | head -n 8)" >&2
		done
		fail "fuzz_$t exited $rc"
	fi
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMP/fuzz-$t.log")
	[ "${runs:-0}" -gt 0 ] || fail "fuzz_$t ran no inputs: $(tail -n 5 "$TMP/fuzz-$t.log")"
	echo "fuzz_$t: $runs inputs in ${secs}s, $(grep -c . <(ls "$TMP/corpus-$t")) new corpus entries"
done
pass
