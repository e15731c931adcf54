# Fuzzing and stress tests (included from the top-level CMakeLists.txt).
#
# With clang as the C compiler: one libFuzzer target per parser, built with
# ASan and UBSan, each compiling the parser's own sources so that libFuzzer
# sees their coverage (the rest comes from npcore):
#   fuzz_handshake  net/handshake.c, the option negotiation
#   fuzz_codec      net/codec.c, request and reply headers
#   fuzz_config     engine/config.c, INI files (and access.c, allow lists,
#                   and util/size.c, sizes)
#   fuzz_reply      engine/reply.c, reply building
# `cmake --build DIR --target fuzz` builds all four; fuzz/README.md says how
# to run them.
#
# With any compiler, the CTest test fuzz_smoke configures a clang build of
# these targets in build-fuzz/ under this build directory and runs each for a
# bounded time on its seed corpus (fuzz/corpus/NAME); any crash, leak or
# broken invariant fails it.

if(CMAKE_C_COMPILER_ID STREQUAL "Clang")
  set(NP_FUZZ_FLAGS -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=undefined)
  set(NP_FUZZ_SOURCES_handshake net/handshake.c net/codec.c)
  set(NP_FUZZ_SOURCES_codec net/codec.c)
  set(NP_FUZZ_SOURCES_config engine/config.c engine/access.c util/size.c)
  set(NP_FUZZ_SOURCES_reply engine/reply.c net/codec.c)
  foreach(t handshake codec config reply)
    add_executable(fuzz_${t} fuzz/fuzz_${t}.c ${NP_FUZZ_SOURCES_${t}})
    target_compile_options(fuzz_${t} PRIVATE ${NP_FUZZ_FLAGS})
    target_link_options(fuzz_${t} PRIVATE ${NP_FUZZ_FLAGS})
    target_link_libraries(fuzz_${t} PRIVATE npcore)
  endforeach()
  add_custom_target(fuzz DEPENDS fuzz_handshake fuzz_codec fuzz_config fuzz_reply)
endif()

add_test(NAME fuzz_smoke COMMAND bash ${CMAKE_SOURCE_DIR}/fuzz/smoke.sh ${CMAKE_BINARY_DIR}/build-fuzz)
set_tests_properties(fuzz_smoke PROPERTIES
  LABELS fuzz TIMEOUT 600
  ENVIRONMENT "NP_SRC=${CMAKE_SOURCE_DIR};PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")

include(${CMAKE_SOURCE_DIR}/tests/stress/stress.cmake)
