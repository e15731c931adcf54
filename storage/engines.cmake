# Storage engines: what every engine shares, the function by which an engine
# adds itself, and the registry generated from the engines added.
#
# Included by the top-level CMakeLists.txt once npcore exists. Each folder
# storage/NAME/ with an engine.cmake is an engine: its engine.cmake decides
# whether it can be built (an optional library missing, an option off) and
# if so calls np_add_engine once. np_engines_generate() then writes the
# registry, so an engine is one folder and one call, and neither the server
# core nor this file names it.

target_sources(npcore PRIVATE
  ${CMAKE_SOURCE_DIR}/storage/registry.c
  ${CMAKE_SOURCE_DIR}/storage/dispatch.c
  ${CMAKE_SOURCE_DIR}/storage/lib/aio.c
  ${CMAKE_SOURCE_DIR}/storage/lib/mapcopy.c
  ${CMAKE_SOURCE_DIR}/storage/lib/memfile.c
)

# np_add_engine(NAME name [SOURCES file...] [LIBS lib...]
#               [COMMAND name function "help text"])
#
# Builds SOURCES into npcore, links LIBS, and registers the engine, whose
# sources define `const struct np_storage_ops np_storage_NAME`, in the order
# of the calls. COMMAND adds a subcommand `nbdplex name` that the engine
# contributes (an admin tool), run as `int function(int argc, char **argv)`
# and listed with its help text; the function must be linked into the
# nbdplex executable.
function(np_add_engine)
  cmake_parse_arguments(E "" "NAME" "SOURCES;LIBS;COMMAND" ${ARGN})
  if(NOT E_NAME MATCHES "^[a-z][a-z0-9_]*$")
    message(FATAL_ERROR "np_add_engine: NAME '${E_NAME}' is not a C identifier in lower case")
  endif()
  get_property(engines GLOBAL PROPERTY NP_ENGINES)
  if(E_NAME IN_LIST engines)
    message(FATAL_ERROR "np_add_engine: engine '${E_NAME}' added twice")
  endif()
  target_sources(npcore PRIVATE ${E_SOURCES})
  if(E_LIBS)
    target_link_libraries(npcore PUBLIC ${E_LIBS})
  endif()
  set_property(GLOBAL APPEND PROPERTY NP_ENGINES ${E_NAME})
  if(E_COMMAND)
    list(LENGTH E_COMMAND n)
    if(NOT n EQUAL 3)
      message(FATAL_ERROR "np_add_engine(${E_NAME}): COMMAND takes a name, a function and a help text")
    endif()
    list(GET E_COMMAND 0 cmd)
    list(GET E_COMMAND 1 fn)
    list(GET E_COMMAND 2 help)
    set_property(GLOBAL APPEND PROPERTY NP_ENGINE_COMMANDS "${cmd}|${fn}|${help}")
  endif()
endfunction()

# Writes the registry of the engines added: ${CMAKE_BINARY_DIR}/storage/
# engines.c, the table that storage/registry.c searches (built into npcore),
# and engine_cmds.c, the engines' subcommands, which name functions of the
# tools and so are built into the nbdplex executable alone (its path is left
# in NP_ENGINE_CMDS_SOURCE).
function(np_engines_generate)
  get_property(engines GLOBAL PROPERTY NP_ENGINES)
  get_property(commands GLOBAL PROPERTY NP_ENGINE_COMMANDS)
  set(NP_ENGINE_EXTERNS "")
  set(NP_ENGINE_TABLE "")
  foreach(e ${engines})
    string(APPEND NP_ENGINE_EXTERNS "extern const struct np_storage_ops np_storage_${e};\n")
    string(APPEND NP_ENGINE_TABLE "\t&np_storage_${e},\n")
  endforeach()
  configure_file(${CMAKE_SOURCE_DIR}/storage/engines.c.in
    ${CMAKE_BINARY_DIR}/storage/engines.c @ONLY)
  target_sources(npcore PRIVATE ${CMAKE_BINARY_DIR}/storage/engines.c)

  set(NP_ENGINE_CMD_EXTERNS "")
  set(NP_ENGINE_CMD_TABLE "")
  foreach(c ${commands})
    string(REPLACE "|" ";" parts "${c}")
    list(GET parts 0 cmd)
    list(GET parts 1 fn)
    list(GET parts 2 help)
    string(REPLACE "\"" "\\\"" help "${help}")
    string(APPEND NP_ENGINE_CMD_EXTERNS "int ${fn}(int argc, char **argv);\n")
    string(APPEND NP_ENGINE_CMD_TABLE "\t{\"${cmd}\", ${fn}, \"${help}\"},\n")
  endforeach()
  configure_file(${CMAKE_SOURCE_DIR}/storage/engine_cmds.c.in
    ${CMAKE_BINARY_DIR}/storage/engine_cmds.c @ONLY)
  set(NP_ENGINE_CMDS_SOURCE ${CMAKE_BINARY_DIR}/storage/engine_cmds.c PARENT_SCOPE)
endfunction()
