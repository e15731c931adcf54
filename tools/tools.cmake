# The subcommands that are not the server, as the static library nptools:
# `stats` always, `volume` where the thin engine is built (np_add_engine), `attach` and
# `detach` where tools/attach.cmake added them. Included by the top-level
# CMakeLists.txt once npcore is complete; cmd/main.c links both.
set(NP_TOOLS_ALL ${CMAKE_SOURCE_DIR}/tools/stats.c ${NP_TOOLS_SOURCES})
set(NP_TOOLS_ALL_LIBS ${NP_TOOLS_LIBS})
get_property(NP_BUILT_ENGINES GLOBAL PROPERTY NP_ENGINES)
if("thin" IN_LIST NP_BUILT_ENGINES)
  list(APPEND NP_TOOLS_ALL
    ${CMAKE_SOURCE_DIR}/tools/volume.c
    ${CMAKE_SOURCE_DIR}/tools/volume_copy.c
    ${CMAKE_SOURCE_DIR}/tools/volume_since.c
    ${CMAKE_SOURCE_DIR}/tools/progress.c)
  # volume import/export speak NBD through libnbd; without it they copy
  # files only.
  pkg_check_modules(LIBNBD IMPORTED_TARGET libnbd)
  if(LIBNBD_FOUND)
    list(APPEND NP_TOOLS_ALL ${CMAKE_SOURCE_DIR}/tools/volume_nbd.c)
    list(APPEND NP_TOOLS_ALL_LIBS PkgConfig::LIBNBD)
  else()
    message(STATUS "nbdplex volume: libnbd-dev not found, import/export without NBD")
    list(APPEND NP_TOOLS_ALL ${CMAKE_SOURCE_DIR}/tools/volume_nbd_none.c)
  endif()
endif()
add_library(nptools STATIC ${NP_TOOLS_ALL})
target_link_libraries(nptools PUBLIC npcore ${NP_TOOLS_ALL_LIBS})
target_compile_definitions(nptools PUBLIC ${NP_TOOLS_DEFS})
