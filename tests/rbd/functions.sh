# Shared by the rbd tests, after tests/functions.sh: the cluster that the
# rbd_cluster_start fixture started in $NP_CEPH_DIR, and images that go away
# with the test.
: "${NP_CEPH_DIR:?run through ctest, whose rbd_cluster_start starts the cluster}"
export CEPH_CONF=$NP_CEPH_DIR/ceph.conf
[ -f "$CEPH_CONF" ] || fail "no test cluster in $NP_CEPH_DIR (ctest's rbd_cluster_start makes it)"
requires rbd ceph
RBD_PREFIX=np-$(basename "$0" .sh)-$$
trap 'rbd_cleanup; np_cleanup' EXIT

# rbd_cleanup: removes this test's images (memstore holds them in memory).
# An image a killed server still watches may refuse until its watch times
# out: the cluster goes at the end of the run anyway.
rbd_cleanup() {
	local img
	for img in $(rbd ls rbd 2>/dev/null | grep "^$RBD_PREFIX-" || true); do
		rbd snap purge "rbd/$img" >/dev/null 2>&1 || true
		rbd rm "rbd/$img" >/dev/null 2>&1 || true
	done
}

# rbd_image NAME SIZE [rbd create options...]: creates an image of this
# test and prints its export spec.
rbd_image() {
	rbd create --size "$2" "${@:3}" "rbd/$RBD_PREFIX-$1" || fail "rbd create $1"
	echo "rbd:rbd/$RBD_PREFIX-$1,conf=$CEPH_CONF"
}

# rbd_name NAME: the image's POOL/IMAGE for the rbd CLI
rbd_name() {
	echo "rbd/$RBD_PREFIX-$1"
}
