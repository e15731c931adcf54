# The raw engine: a block device served with O_DIRECT through kernel AIO
# (storage/lib/aio.c: straight system calls, no library).
#
# Included by the top-level CMakeLists.txt (in its scope) in its loop over
# storage/*/engine.cmake. With NP_WITH_RAW off the engine is left out and
# its tests are not registered.

option(NP_WITH_RAW "the raw engine (O_DIRECT block devices)" ON)
if(NOT NP_WITH_RAW)
	return()
endif()

np_add_engine(NAME raw SOURCES ${CMAKE_CURRENT_LIST_DIR}/raw.c ${CMAKE_CURRENT_LIST_DIR}/raw_aio.c)

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
