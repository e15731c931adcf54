# The raw engine: a block device served with O_DIRECT through libaio.
#
# Included by the top-level CMakeLists.txt (in its scope) through
# storage/engines.cmake's loop. Without libaio, or with NP_WITH_RAW off, the
# engine is left out (with a warning for the missing library) and its tests
# are not registered.

option(NP_WITH_RAW "the raw engine (libaio)" ON)
if(NOT NP_WITH_RAW)
	return()
endif()
find_library(NP_AIO_LIBRARY aio)
find_path(NP_AIO_INCLUDE_DIR libaio.h)
if(NOT NP_AIO_LIBRARY OR NOT NP_AIO_INCLUDE_DIR)
	message(WARNING "raw engine left out: libaio not found (install libaio-dev)")
	return()
endif()

np_add_engine(NAME raw
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/raw.c ${CMAKE_CURRENT_LIST_DIR}/raw_aio.c
	LIBS ${NP_AIO_LIBRARY})

# The unit test links npcore alone, exactly the code the server runs.
add_executable(test_raw ${CMAKE_SOURCE_DIR}/tests/raw/test_raw.c)
target_link_libraries(test_raw PRIVATE npcore)
add_test(NAME raw_unit COMMAND bash ${CMAKE_SOURCE_DIR}/tests/raw/test_raw.sh $<TARGET_FILE:test_raw>)
set_tests_properties(raw_unit PROPERTIES LABELS raw TIMEOUT 600)

# Drives qemu-io, nbdcopy, libnbd and fio against nbdplex serving a loop
# device; it attaches loop devices, so it runs alone.
add_test(NAME raw_clients COMMAND bash ${CMAKE_SOURCE_DIR}/tests/raw/raw_clients.sh)
set_tests_properties(raw_clients PROPERTIES LABELS raw TIMEOUT 600 RUN_SERIAL TRUE
	ENVIRONMENT "NBDPLEX=$<TARGET_FILE:nbdplex>;NP_SRC=${CMAKE_SOURCE_DIR};PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")
