# The raw engine: a block device served with O_DIRECT through libaio.
#
# Included by the top-level CMakeLists.txt (in its scope) once the npcore
# library exists and before the nbdplex executable is defined. Adds the
# engine to NP_EXTRA_SOURCES, NP_EXTRA_LIBS and NP_EXTRA_DEFS (NP_HAVE_RAW,
# which makes storage/registry.c list it), and registers the tests (label
# "raw"). Without libaio the engine is left out with a warning.

find_library(NP_AIO_LIBRARY aio)
find_path(NP_AIO_INCLUDE_DIR libaio.h)
if(NOT NP_AIO_LIBRARY OR NOT NP_AIO_INCLUDE_DIR)
	message(WARNING "raw engine left out: libaio not found (install libaio-dev)")
	return()
endif()

set(NP_RAW_SOURCES ${CMAKE_SOURCE_DIR}/storage/raw.c ${CMAKE_SOURCE_DIR}/storage/raw_aio.c)
list(APPEND NP_EXTRA_SOURCES ${NP_RAW_SOURCES})
list(APPEND NP_EXTRA_LIBS ${NP_AIO_LIBRARY})
list(APPEND NP_EXTRA_DEFS NP_HAVE_RAW)

# The top-level CMakeLists builds the extra sources into npcore, so the unit
# test links npcore alone, exactly the code the server runs.
add_executable(test_raw ${CMAKE_SOURCE_DIR}/tests/raw/test_raw.c)
target_link_libraries(test_raw PRIVATE npcore)
add_test(NAME raw_unit COMMAND bash ${CMAKE_SOURCE_DIR}/tests/raw/test_raw.sh $<TARGET_FILE:test_raw>)
set_tests_properties(raw_unit PROPERTIES LABELS raw TIMEOUT 600)

# Drives qemu-io, nbdcopy, libnbd and fio against nbdplex serving a loop
# device; it attaches loop devices, so it runs alone.
add_test(NAME raw_clients COMMAND bash ${CMAKE_SOURCE_DIR}/tests/raw/raw_clients.sh)
set_tests_properties(raw_clients PROPERTIES LABELS raw TIMEOUT 600 RUN_SERIAL TRUE
	ENVIRONMENT "NBDPLEX=$<TARGET_FILE:nbdplex>;NP_SRC=${CMAKE_SOURCE_DIR};PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")
