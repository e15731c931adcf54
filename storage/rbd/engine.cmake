# The rbd engine: an image of a Ceph cluster, through librbd.
#
# Included by the top-level CMakeLists.txt (in its scope) in its loop over
# storage/*/engine.cmake. With NP_WITH_RBD off, or without librbd, the
# engine is left out and its tests are not registered. Debian 12 ships no
# pkg-config file for librbd or librados: the libraries are found by name.

option(NP_WITH_RBD "the rbd engine (Ceph, librbd) and its test cluster" ON)
if(NOT NP_WITH_RBD)
	return()
endif()
find_library(NP_RBD_LIBRARY rbd)
find_library(NP_RADOS_LIBRARY rados)
find_path(NP_RBD_INCLUDE_DIR rbd/librbd.h)
if(NOT NP_RBD_LIBRARY OR NOT NP_RADOS_LIBRARY OR NOT NP_RBD_INCLUDE_DIR)
	message(WARNING "rbd engine left out: librbd not found (install librbd-dev librados-dev)")
	return()
endif()

np_add_engine(NAME rbd
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/rbd.c ${CMAKE_CURRENT_LIST_DIR}/rbd_aio.c
	LIBS ${NP_RBD_LIBRARY} ${NP_RADOS_LIBRARY})

# One throwaway cluster per ctest run (tests/rbd/cluster.sh): started by a
# setup test before the first rbd test and stopped after the last one.
set(NP_CEPH_DIR ${CMAKE_BINARY_DIR}/ceph)
add_test(NAME rbd_cluster_start COMMAND bash ${CMAKE_SOURCE_DIR}/tests/rbd/cluster.sh start ${NP_CEPH_DIR})
add_test(NAME rbd_cluster_stop COMMAND bash ${CMAKE_SOURCE_DIR}/tests/rbd/cluster.sh stop ${NP_CEPH_DIR})
set_tests_properties(rbd_cluster_start PROPERTIES FIXTURES_SETUP rbd_cluster LABELS rbd TIMEOUT 120
	ENVIRONMENT "PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")
set_tests_properties(rbd_cluster_stop PROPERTIES FIXTURES_CLEANUP rbd_cluster LABELS rbd TIMEOUT 120
	ENVIRONMENT "PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")

file(GLOB NP_RBD_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/rbd/test_*.sh)
foreach(script ${NP_RBD_TESTS})
	get_filename_component(name ${script} NAME_WE)
	string(REGEX REPLACE "^test_" "rbd_" name ${name})
	add_test(NAME ${name} COMMAND bash ${script})
	set_tests_properties(${name} PROPERTIES LABELS rbd TIMEOUT 300 FIXTURES_REQUIRED rbd_cluster
		ENVIRONMENT "NBDPLEX=$<TARGET_FILE:nbdplex>;NP_SRC=${CMAKE_SOURCE_DIR};NP_CEPH_DIR=${NP_CEPH_DIR};PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")
endforeach()
# Stops and restarts the cluster's only OSD: nothing else may use it then.
if(TEST rbd_faults)
	set_tests_properties(rbd_faults PROPERTIES RUN_SERIAL TRUE)
endif()
