# The thin engine (RocksDB) and `nbdplex volume`. Included by the top-level
# CMakeLists.txt (in its scope) through storage/engines.cmake's loop; adds
# the engine and its subcommand (built into nptools by tools/tools.cmake)
# and registers the tests. Without RocksDB,
# or with NP_WITH_THIN off, it is left out.
option(NP_WITH_THIN "the thin engine (RocksDB) and nbdplex volume" ON)
if(NOT NP_WITH_THIN)
  return()
endif()
find_library(NP_ROCKSDB_LIB rocksdb)
find_path(NP_ROCKSDB_INC rocksdb/c.h)
if(NOT NP_ROCKSDB_LIB OR NOT NP_ROCKSDB_INC)
  message(STATUS "thin engine: librocksdb-dev not found, skipped")
  return()
endif()

np_add_engine(NAME thin
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/thin.c
    ${CMAKE_CURRENT_LIST_DIR}/pool.c
    ${CMAKE_CURRENT_LIST_DIR}/alloc.c
    ${CMAKE_CURRENT_LIST_DIR}/admin.c
    ${CMAKE_CURRENT_LIST_DIR}/control.c
    ${CMAKE_CURRENT_LIST_DIR}/diff.c
  LIBS ${NP_ROCKSDB_LIB}
  COMMAND volume np_cmd_volume "manage thin pools: init, create, snapshot, clone, list, ...")

add_executable(test_thin ${CMAKE_SOURCE_DIR}/tests/thin/test_thin.c)
target_link_libraries(test_thin PRIVATE nptools)
# test_thin counts the engine's hole punches (__wrap_fallocate).
target_link_options(test_thin PRIVATE "-Wl,--wrap=fallocate")
add_test(NAME thin_unit COMMAND test_thin)
set_tests_properties(thin_unit PROPERTIES LABELS "thin" TIMEOUT 300)

add_executable(thin_crash ${CMAKE_SOURCE_DIR}/tests/thin/crash.c)
target_link_libraries(thin_crash PRIVATE nptools)
add_test(NAME thin_crash COMMAND thin_crash 12)
set_tests_properties(thin_crash PROPERTIES LABELS "thin" TIMEOUT 300)

# Real clients against `nbdplex serve` with thin exports.
foreach(t serve protocol import grow enospc dirty backup contexts)
  add_test(NAME thin_${t} COMMAND bash ${CMAKE_SOURCE_DIR}/tests/thin/${t}.sh)
  set_tests_properties(thin_${t} PROPERTIES LABELS "thin" TIMEOUT 300
    ENVIRONMENT "NBDPLEX=$<TARGET_FILE:nbdplex>;NP_SRC=${CMAKE_SOURCE_DIR};PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")
endforeach()

# perf/bench-diff.sh: the cost of the dirty-map walk on generated maps.
add_executable(diff_walk ${CMAKE_SOURCE_DIR}/perf/diff_walk.c)
target_link_libraries(diff_walk PRIVATE nptools)
