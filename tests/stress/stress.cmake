# Stress tests against `nbdplex serve` (included from fuzz/fuzz.cmake), label
# "stress". Each starts its own server on a free loopback port, bounds every
# loop in count and time, and runs alone (RUN_SERIAL): they count
# descriptors and RSS. tests/stress/README.md says what each asserts.
#   garbage   hundreds of hostile connections at once beside a good client
#   hs_flood  a client that floods the negotiation and never reads
#   idle      1,000 idle connections past the handshake
#   churn     10,000 connect/disconnect cycles
#   valgrind  the server under memcheck: clients, hostile clients, SIGTERM
#   fairness  a good client's p99 and IOPS beside 200 hostile clients
set(NP_STRESS_garbage -e m=mem:64M --max-inflight 32M --handshake-timeout 5)
set(NP_STRESS_hs_flood -e m=mem:64M --max-inflight 32M)
set(NP_STRESS_idle -e m=mem:64M)
set(NP_STRESS_churn -e m=mem:64M)
# The flooders hold the total budget: 120 of them, at most 32M each, against 64M.
set(NP_STRESS_fairness -e m=mem:256M --max-inflight 32M --max-inflight-total 64M)
foreach(name garbage hs_flood idle churn valgrind fairness)
  if(name STREQUAL "valgrind")
    add_test(NAME stress_${name} COMMAND bash ${CMAKE_SOURCE_DIR}/tests/stress/valgrind.sh)
  else()
    add_test(NAME stress_${name}
      COMMAND bash ${CMAKE_SOURCE_DIR}/tests/stress/run.sh ${name} ${NP_STRESS_${name}})
  endif()
  set_tests_properties(stress_${name} PROPERTIES
    LABELS stress TIMEOUT 300 RUN_SERIAL TRUE
    ENVIRONMENT "NBDPLEX=$<TARGET_FILE:nbdplex>;NP_SRC=${CMAKE_SOURCE_DIR};PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")
endforeach()
