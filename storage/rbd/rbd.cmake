# The rbd engine: an image of a Ceph cluster, through librbd.
#
# Included by the top-level CMakeLists.txt (in its scope) once the npcore
# library exists and before the nbdplex executable is defined. Adds the
# engine to NP_EXTRA_SOURCES, NP_EXTRA_LIBS and NP_EXTRA_DEFS (NP_HAVE_RBD,
# which makes storage/registry.c list it), and registers the tests (label
# "rbd"). Without librbd the engine is left out with a warning. Debian 12
# ships no pkg-config file for librbd or librados: the libraries are found
# by name.

find_library(NP_RBD_LIBRARY rbd)
find_library(NP_RADOS_LIBRARY rados)
find_path(NP_RBD_INCLUDE_DIR rbd/librbd.h)
if(NOT NP_RBD_LIBRARY OR NOT NP_RADOS_LIBRARY OR NOT NP_RBD_INCLUDE_DIR)
	message(WARNING "rbd engine left out: librbd not found (install librbd-dev librados-dev)")
	return()
endif()

list(APPEND NP_EXTRA_SOURCES ${CMAKE_SOURCE_DIR}/storage/rbd/rbd.c ${CMAKE_SOURCE_DIR}/storage/rbd/rbd_aio.c)
list(APPEND NP_EXTRA_LIBS ${NP_RBD_LIBRARY} ${NP_RADOS_LIBRARY})
list(APPEND NP_EXTRA_DEFS NP_HAVE_RBD)

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

# Two gateways of one image and attach over both, one killed mid-write: a
# guest scenario (tests/vm/run.sh), with its own cluster inside the guest.
# Ceph's daemons use instructions that qemu's default TCG CPU lacks.
if(COMMAND np_vm_test)
	np_vm_test(vm_rbd_failover 900 ${CMAKE_SOURCE_DIR}/tests/rbd/vm-failover.sh)
	set_property(TEST vm_rbd_failover APPEND PROPERTY ENVIRONMENT NPVM_CPU=max)
endif()
