# Unit tests (C) and integration tests that drive real NBD clients.

foreach(t codec handshake access fairq coalesce mapcopy fullio ctl reply)
  add_executable(test_${t} tests/unit/test_${t}.c)
  target_link_libraries(test_${t} PRIVATE npcore)
  add_test(NAME unit_${t} COMMAND test_${t})
  set_tests_properties(unit_${t} PROPERTIES LABELS unit TIMEOUT 60)
endforeach()

# Each integration script gets the binary's path and runs alone: they
# start servers on ports of their own and measure nothing.
file(GLOB NP_INTEGRATION_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/integration/*.sh)
# attach_tls drives `nbdplex attach --check`: registered only where attach
# is built, so that no test passes without its feature.
if(NOT "NP_HAVE_ATTACH" IN_LIST NP_TOOLS_DEFS)
  list(FILTER NP_INTEGRATION_TESTS EXCLUDE REGEX "/attach_tls\\.sh$")
endif()
foreach(script ${NP_INTEGRATION_TESTS})
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME ${name} COMMAND bash ${script})
  set_tests_properties(${name} PROPERTIES
    LABELS integration TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "NBDPLEX=$<TARGET_FILE:nbdplex>;NP_SRC=${CMAKE_SOURCE_DIR};PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")
endforeach()

# The same integration tests once more with the server under valgrind
# (label "valgrind"); the slower start is covered by start_server's wait.
# qos_rate is left out: it measures rates, which mean nothing under
# memcheck (valgrind_qos runs the limits' code paths there).
set(NP_VALGRIND_TESTS ${NP_INTEGRATION_TESTS})
list(FILTER NP_VALGRIND_TESTS EXCLUDE REGEX "/qos_rate\\.sh$")
foreach(script ${NP_VALGRIND_TESTS})
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME valgrind_${name} COMMAND bash ${script})
  set_tests_properties(valgrind_${name} PROPERTIES
    LABELS valgrind TIMEOUT 900 SKIP_RETURN_CODE 77
    ENVIRONMENT "NBDPLEX=${CMAKE_SOURCE_DIR}/tests/valgrind-nbdplex.sh;NP_REAL_NBDPLEX=$<TARGET_FILE:nbdplex>;NP_SRC=${CMAKE_SOURCE_DIR};PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")
endforeach()

# perf/lib/report.py, the bench's report, on a made-up run.
add_test(NAME unit_report COMMAND python3 ${CMAKE_SOURCE_DIR}/tests/unit/test_report.py)
set_tests_properties(unit_report PROPERTIES LABELS unit TIMEOUT 60
  ENVIRONMENT "NP_SRC=${CMAKE_SOURCE_DIR}")

# The files of engine/ call downward only (tests/unit/layers.sh).
add_test(NAME unit_layers COMMAND bash ${CMAKE_SOURCE_DIR}/tests/unit/layers.sh "$<TARGET_OBJECTS:npcore>")
set_tests_properties(unit_layers PROPERTIES LABELS unit TIMEOUT 60
  ENVIRONMENT "NP_SRC=${CMAKE_SOURCE_DIR};PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")
