# Unit tests (C) and integration tests that drive real NBD clients.

foreach(t codec handshake access)
  add_executable(test_${t} tests/unit/test_${t}.c)
  target_link_libraries(test_${t} PRIVATE npcore)
  add_test(NAME unit_${t} COMMAND test_${t})
  set_tests_properties(unit_${t} PROPERTIES LABELS unit TIMEOUT 60)
endforeach()

# Each integration script gets the binary's path and runs alone: they
# start servers on ports of their own and measure nothing.
file(GLOB NP_INTEGRATION_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/integration/*.sh)
foreach(script ${NP_INTEGRATION_TESTS})
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME ${name} COMMAND bash ${script})
  set_tests_properties(${name} PROPERTIES
    LABELS integration TIMEOUT 300
    ENVIRONMENT "NBDPLEX=$<TARGET_FILE:nbdplex>;NP_SRC=${CMAKE_SOURCE_DIR};PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")
endforeach()
