# Builds kmod/nbdplex.ko with Kbuild against the newest supported kernel
# headers installed (/lib/modules/*/build; the running kernel may have none), into
# ${CMAKE_BINARY_DIR}/kmod/nbdplex.ko where the VM tests look for it.
# Needs linux-headers-amd64. Without headers the module is left out.
file(GLOB NP_KBUILD_DIRS LIST_DIRECTORIES true /lib/modules/*/build)
list(SORT NP_KBUILD_DIRS COMPARE NATURAL ORDER DESCENDING)
if(NOT NP_KBUILD_DIRS)
	message(WARNING "nbdplex.ko left out: no /lib/modules/*/build (install linux-headers-amd64)")
	return()
endif()
# The newest headers of a kernel the driver supports (kmod/npk.h: 6.1.191
# up to 6.9), read from their version.h; the directory's name does not
# carry the sublevel.
set(NP_KBUILD_DIR)
foreach(d ${NP_KBUILD_DIRS})
	set(vh ${d}/include/generated/uapi/linux/version.h)
	if(NOT EXISTS ${vh})
		continue()
	endif()
	file(STRINGS ${vh} code REGEX "^#define LINUX_VERSION_CODE ")
	string(REGEX REPLACE ".* ([0-9]+)$" "\\1" code "${code}")
	# KERNEL_VERSION(6,1,191) = 393663, KERNEL_VERSION(6,9,0) = 395520
	if(code GREATER_EQUAL 393663 AND code LESS 395520)
		set(NP_KBUILD_DIR ${d})
		break()
	endif()
endforeach()
if(NOT NP_KBUILD_DIR)
	message(WARNING "nbdplex.ko left out: no installed headers of Linux 6.1.191 to 6.8 "
		"(found ${NP_KBUILD_DIRS}; see kmod/README.md)")
	return()
endif()
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
