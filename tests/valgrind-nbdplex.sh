#!/bin/bash
# Runs nbdplex under valgrind's memcheck for the integration tests' second
# pass: any invalid access or definite leak makes the server exit 99, which
# the tests' stop_server turns into a failure. jemalloc's allocator is
# intercepted as malloc.
exec valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	--show-leak-kinds=definite --soname-synonyms='somalloc=*jemalloc*' \
	--log-file="${NP_VALGRIND_LOG:-/dev/stderr}" "$NP_REAL_NBDPLEX" "$@"
