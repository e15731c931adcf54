# nbdplex attach/detach, the userspace half of the kernel client (kmod/).
# Included by the top-level CMakeLists.txt before tools/tools.cmake, which
# builds these into nptools; cmd/main.c dispatches to np_cmd_attach() and
# np_cmd_detach() when NP_HAVE_ATTACH is defined.
list(APPEND NP_TOOLS_SOURCES
	${CMAKE_SOURCE_DIR}/tools/attach.c
	${CMAKE_SOURCE_DIR}/tools/attach_status.c
	${CMAKE_SOURCE_DIR}/tools/attach_nbd.c
	${CMAKE_SOURCE_DIR}/tools/attach_tls.c)
list(APPEND NP_TOOLS_DEFS NP_HAVE_ATTACH)
