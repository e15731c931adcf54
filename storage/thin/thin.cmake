# The thin engine (RocksDB). Included by the top-level CMakeLists.txt after
# npcore exists; adds to npcore and registers the tests. tools/tools.cmake
# adds `nbdplex volume` where this engine is built.
find_library(NP_ROCKSDB_LIB rocksdb)
find_path(NP_ROCKSDB_INC rocksdb/c.h)
if(NOT NP_ROCKSDB_LIB OR NOT NP_ROCKSDB_INC)
  message(STATUS "thin engine: librocksdb-dev not found, skipped")
  return()
endif()

list(APPEND NP_EXTRA_SOURCES
  ${CMAKE_SOURCE_DIR}/storage/thin/thin.c
  ${CMAKE_SOURCE_DIR}/storage/thin/pool.c
  ${CMAKE_SOURCE_DIR}/storage/thin/alloc.c
  ${CMAKE_SOURCE_DIR}/storage/thin/admin.c
  ${CMAKE_SOURCE_DIR}/storage/thin/control.c
)
list(APPEND NP_EXTRA_LIBS ${NP_ROCKSDB_LIB})
list(APPEND NP_EXTRA_DEFS NP_HAVE_THIN)

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
foreach(t serve protocol import grow enospc)
  add_test(NAME thin_${t} COMMAND bash ${CMAKE_SOURCE_DIR}/tests/thin/${t}.sh)
  set_tests_properties(thin_${t} PROPERTIES LABELS "thin" TIMEOUT 300
    ENVIRONMENT "NBDPLEX=$<TARGET_FILE:nbdplex>;NP_SRC=${CMAKE_SOURCE_DIR};PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")
endforeach()
