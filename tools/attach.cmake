# nbdplex attach/detach, the userspace half of the kernel client (kmod/).
# Included by the top-level CMakeLists.txt after npcore exists and before the
# nbdplex executable is defined; engine/main.c dispatches to np_cmd_attach()
# and np_cmd_detach() when NP_HAVE_ATTACH is defined.
list(APPEND NP_EXTRA_SOURCES
	${CMAKE_SOURCE_DIR}/tools/attach.c
	${CMAKE_SOURCE_DIR}/tools/attach_status.c
	${CMAKE_SOURCE_DIR}/tools/attach_nbd.c
	${CMAKE_SOURCE_DIR}/tools/attach_tls.c)
list(APPEND NP_EXTRA_DEFS NP_HAVE_ATTACH)
