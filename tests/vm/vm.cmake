# VM tests of the kernel client and of the server through the stock nbd.ko.
# Each boots Debian's kernel under qemu TCG with the host root shared over
# 9p (tests/vm/run.sh) and fails on a guest BUG, Oops, WARNING or hung task.
# Needs: linux-image-amd64, linux-headers-amd64, qemu-system-x86,
# busybox-static, cpio, nbdkit, nbd-server, nbd-client, e2fsprogs, mdadm.
# Label "vm"; they run one at a time (each VM wants both cores).
set(NP_VM_RUN ${CMAKE_SOURCE_DIR}/tests/vm/run.sh)

function(np_vm_test name timeout)
	math(EXPR vm_timeout "${timeout} - 60")
	add_test(NAME ${name} COMMAND ${NP_VM_RUN} ${ARGN})
	set_tests_properties(${name} PROPERTIES
		LABELS vm
		RUN_SERIAL TRUE
		TIMEOUT ${timeout}
		ENVIRONMENT "NPVM_BUILD=${CMAKE_BINARY_DIR};NPVM_TIMEOUT=${vm_timeout}")
endfunction()

np_vm_test(vm_attach_fs 900 attach-fs.sh nbdkit)
np_vm_test(vm_detach 600 detach.sh)
np_vm_test(vm_stock_nbdkit 900 stock-nbd.sh nbdkit)
np_vm_test(vm_stock_nbdplex 900 stock-nbd.sh nbdplex)
np_vm_test(vm_stock_nbd_server 900 stock-nbd.sh nbd-server)
np_vm_test(vm_attach_raw_nbdkit 600 attach-raw.sh nbdkit)
np_vm_test(vm_attach_raw_nbd_server 600 attach-raw.sh nbd-server)
np_vm_test(vm_attach_raw_nbdplex 600 attach-raw.sh nbdplex)
np_vm_test(vm_reconnect 600 reconnect.sh nbdkit)
np_vm_test(vm_attach_fs_nbdplex 900 attach-fs.sh nbdplex)
np_vm_test(vm_raid1 600 raid1.sh)
# The served file grows and shrinks; attach follows it with NPK_IOC_RESIZE.
np_vm_test(vm_resize 600 resize.sh)
# Two veth paths, one taken down in the middle of a write: failover.
np_vm_test(vm_multipath 600 multipath.sh)
# bond.sh: two tbf-shaped veth paths between a client and a server namespace,
# and a balance-rr bond beside them. Prints the speeds (perf/bench-bond.sh
# records them; never asserted), then checks attach --status and a write and
# a read that lose one path midway: no I/O error, equal data, both paths used
# once the path is back.
np_vm_test(vm_bond 1500 bond.sh test)
# attach-tls.sh: attach over TLS with the record layer in kernel TLS: X.509
# and PSK, every cipher through --check, a restarted server; the refusals
# (no tls module, wrong PSK, no TLS, unknown CA) leave no device.
np_vm_test(vm_attach_tls 900 attach-tls.sh)
# Where the rbd engine is built: two gateways of one rbd image and attach
# over both, one killed mid-write (tests/rbd/vm-failover.sh), with a
# cluster of its own inside the guest. Ceph's daemons use instructions
# that qemu's default TCG CPU lacks.
get_property(NP_VM_ENGINES GLOBAL PROPERTY NP_ENGINES)
if("rbd" IN_LIST NP_VM_ENGINES)
	np_vm_test(vm_rbd_failover 900 ${CMAKE_SOURCE_DIR}/tests/rbd/vm-failover.sh)
	set_property(TEST vm_rbd_failover APPEND PROPERTY ENVIRONMENT NPVM_CPU=max)
endif()
# takeover.sh: the stock nbd.ko and nbdplex.ko, ext4 with two writers each,
# while serve --takeover replaces the server 10 times.
np_vm_test(vm_takeover 1500 takeover.sh nbdplex 10)
