# Builds kmod/nbdplex.ko with Kbuild against the newest kernel headers
# installed (/lib/modules/*/build; the running kernel may have none), into
# ${CMAKE_BINARY_DIR}/kmod/nbdplex.ko where the VM tests look for it.
# Needs linux-headers-amd64. Without headers the module is left out.
file(GLOB NP_KBUILD_DIRS LIST_DIRECTORIES true /lib/modules/*/build)
list(SORT NP_KBUILD_DIRS COMPARE NATURAL)
list(LENGTH NP_KBUILD_DIRS NP_KBUILD_N)
if(NP_KBUILD_N EQUAL 0)
	message(WARNING "nbdplex.ko left out: no /lib/modules/*/build (install linux-headers-amd64)")
	return()
endif()
list(GET NP_KBUILD_DIRS -1 NP_KBUILD_DIR)
get_filename_component(NP_KVER_DIR ${NP_KBUILD_DIR} DIRECTORY)
get_filename_component(NP_KVER ${NP_KVER_DIR} NAME)
message(STATUS "nbdplex.ko: building against ${NP_KVER}")

set(NP_KMOD_SRCS nbdplex_uapi.h npk.h npk_main.c npk_io.c npk_sysfs.c Makefile)
set(NP_KMOD_OUT ${CMAKE_BINARY_DIR}/kmod)
set(NP_KMOD_DEPS)
foreach(f ${NP_KMOD_SRCS})
	list(APPEND NP_KMOD_DEPS ${CMAKE_SOURCE_DIR}/kmod/${f})
endforeach()
# Kbuild writes next to its sources, so it builds a copy in the build tree.
add_custom_command(
	OUTPUT ${NP_KMOD_OUT}/nbdplex.ko
	COMMAND ${CMAKE_COMMAND} -E make_directory ${NP_KMOD_OUT}
	COMMAND ${CMAKE_COMMAND} -E copy ${NP_KMOD_DEPS} ${NP_KMOD_OUT}
	COMMAND make -C ${NP_KBUILD_DIR} M=${NP_KMOD_OUT} modules
	DEPENDS ${NP_KMOD_DEPS}
	COMMENT "Building nbdplex.ko for ${NP_KVER}"
	VERBATIM)
add_custom_target(kmod ALL DEPENDS ${NP_KMOD_OUT}/nbdplex.ko)
set(NP_KMOD_KO ${NP_KMOD_OUT}/nbdplex.ko)
