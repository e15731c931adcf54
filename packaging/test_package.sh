#!/bin/bash
# Builds the Debian package with cpack and checks it: control fields and
# Depends against what the binary links, the files it ships, the systemd
# unit, the man pages, the example configuration (served for real and
# queried with nbdinfo), and dkms.conf (a DKMS-style module build when kernel
# headers are installed). Also checks `cmake --install` into a scratch prefix.
#
# Env: NBDPLEX (the built binary), NP_SRC (source tree), NP_BUILD (its build
# directory). The package is staged and written under a scratch folder; in
# the build directory cpack only runs its preinstall step (a no-op make
# when the build is current) and leaves install_manifest.txt.
. "$NP_SRC/tests/functions.sh"

BUILD=${NP_BUILD:?NP_BUILD must name the build directory}
requires cpack cmake dpkg-deb dpkg groff man nbdinfo readelf ldd gzip

step() { echo "--- $*"; }
# (Pipes into grep -q can fail under pipefail when grep exits first, so
# output is captured and fed with <<<.)

# The version the binary reports is the project's version.
VERSION=$("$NBDPLEX" --version | awk '{print $2}')
HELP=$("$NBDPLEX" --help)
[ -n "$VERSION" ] || fail "nbdplex --version printed no version"

# ---------------------------------------------------------------- the .deb
step "cpack -G DEB"
(cd "$BUILD" && cpack -G DEB -B "$TMP/pkg") >"$TMP/cpack.log" 2>&1 ||
	fail "cpack failed: $(tail -n 20 "$TMP/cpack.log")"
shopt -s nullglob
debs=("$TMP"/pkg/*.deb)
shopt -u nullglob
[ ${#debs[@]} = 1 ] || fail "expected one .deb, cpack made ${#debs[@]}"
DEB=${debs[0]}
echo "package: $(basename "$DEB")"

field() { dpkg-deb -f "$DEB" "$1"; }
ARCH=$(dpkg --print-architecture)
[ "$(field Package)" = nbdplex ] || fail "Package is '$(field Package)', not nbdplex"
case "$(field Version)" in
"$VERSION" | "$VERSION"-*) ;;
*) fail "Version '$(field Version)' is not the project's $VERSION" ;;
esac
[ "$(field Architecture)" = "$ARCH" ] || fail "Architecture '$(field Architecture)', want $ARCH"
[ "$(basename "$DEB")" = "nbdplex_$(field Version)_$ARCH.deb" ] ||
	fail "file name $(basename "$DEB") does not follow NAME_VERSION_ARCH.deb"
grep -Eq '^[^<]+ <[^@> ]+@[^> ]+>$' <<<"$(field Maintainer)" ||
	fail "Maintainer '$(field Maintainer)' is not 'Name <address>'"
desc=$(field Description)
[ "$(printf '%s\n' "$desc" | wc -l)" -ge 3 ] || fail "Description has no long description"
grep -qi nbd <<<"${desc%%$'\n'*}" || fail "Description summary does not mention NBD"

# Depends: every library the binary needs comes from a package named there,
# and every package named there is a real, installed runtime package.
step "Depends"
DEPENDS=$(field Depends)
echo "Depends: $DEPENDS"
dep_names=$(printf '%s\n' "$DEPENDS" | tr ',' '\n' | sed -E 's/\(.*\)//; s/\|.*//; s/^ +//; s/ +$//' | grep .)
for d in $dep_names; do
	case "$d" in
	*-dev | *-dbg) fail "Depends names a development package: $d" ;;
	esac
	[ "$(dpkg-query -W -f='${Status}' "$d" 2>/dev/null)" = "install ok installed" ] ||
		fail "Depends names '$d', which is not an installed package here"
done
grep -qx libc6 <<<"$dep_names" || fail "Depends lacks libc6"
needed=$(readelf -d "$NBDPLEX" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[ -n "$needed" ] || fail "readelf found no NEEDED libraries in $NBDPLEX"
for lib in $needed; do
	path=$(ldd "$NBDPLEX" | awk -v l="$lib" '$1 == l && $3 ~ /^\// {print $3}')
	[ -n "$path" ] || fail "ldd does not resolve $lib"
	real=$(readlink -f "$path")
	owner=""
	for p in "$path" "$real" "${path#/usr}" "/usr$path" "${real#/usr}" "/usr$real"; do
		owner=$(dpkg -S "$p" 2>/dev/null | sed -n '1s/:.*//p') && [ -n "$owner" ] && break
	done
	[ -n "$owner" ] || fail "no installed package owns $path ($lib)"
	grep -qx "$owner" <<<"$dep_names" ||
		fail "the binary needs $lib from $owner, which Depends does not name"
done

# The files it ships.
step "contents"
dpkg-deb -c "$DEB" >"$TMP/contents" || fail "dpkg-deb -c failed"
has() {
	grep -Eq "^$1 +[^ ]+ +[0-9]+ [0-9-]+ [0-9:]+ \./${2#/}\$" "$TMP/contents" ||
		fail "the package lacks $2 (mode $1)"
}
has -rwxr-xr-x usr/bin/nbdplex
has -rw-r--r-- usr/lib/systemd/system/nbdplex.service
has -rw-r--r-- usr/lib/systemd/system/nbdplex.socket
has -rw-r--r-- usr/share/man/man1/nbdplex.1.gz
has -rw-r--r-- usr/share/man/man5/nbdplex.conf.5.gz
has -rw-r--r-- usr/share/doc/nbdplex/nbdplex.conf.example
has -rw-r--r-- etc/nbdplex/nbdplex.conf
SRCDIR=usr/src/nbdplex-$VERSION
has -rw-r--r-- "$SRCDIR/dkms.conf"
has -rw-r--r-- "$SRCDIR/Makefile"
[ -z "$(awk '$2 != "root/root"' "$TMP/contents")" ] || fail "files not owned by root/root"
grep -q '/usr/local' "$TMP/contents" && fail "the package installs under /usr/local"

dpkg-deb -x "$DEB" "$TMP/root" || fail "dpkg-deb -x failed"
dpkg-deb -e "$DEB" "$TMP/control" || fail "dpkg-deb -e failed"
R=$TMP/root
[ "$("$R/usr/bin/nbdplex" --version)" = "nbdplex $VERSION" ] ||
	fail "the packaged binary does not report version $VERSION"
cmp -s "$R/etc/nbdplex/nbdplex.conf" "$R/usr/share/doc/nbdplex/nbdplex.conf.example" ||
	fail "/etc/nbdplex/nbdplex.conf differs from the example"
grep -qx /etc/nbdplex/nbdplex.conf "$TMP/control/conffiles" ||
	fail "/etc/nbdplex/nbdplex.conf is not a conffile"
for s in postinst prerm postrm; do
	[ -x "$TMP/control/$s" ] || fail "maintainer script $s missing or not executable"
	sh -n "$TMP/control/$s" || fail "maintainer script $s has a syntax error"
	grep -q '@[A-Z_]*@' "$TMP/control/$s" && fail "maintainer script $s has an unsubstituted @VAR@"
done
grep -q "VERSION=$VERSION\$" "$TMP/control/postinst" || fail "postinst does not name version $VERSION"

# ------------------------------------------------------------- the module
step "dkms.conf and the module sources"
S=$R/$SRCDIR
# Every source the Kbuild Makefile names, and every local header they
# include, is shipped.
objs=$(sed -n 's/^nbdplex-y *:= *//p' "$S/Makefile")
[ -n "$objs" ] || fail "the shipped Makefile names no nbdplex-y objects"
for o in $objs; do
	[ -f "$S/${o%.o}.c" ] || fail "$SRCDIR lacks ${o%.o}.c, named in its Makefile"
done
for h in $(cat "$S"/*.c "$S"/*.h | sed -n 's/^#include "\(.*\)"/\1/p' | sort -u); do
	[ -f "$S/$h" ] || fail "$SRCDIR lacks $h, which its sources include"
done
obj_m=$(sed -n 's/^obj-m *:= *\(.*\)\.o$/\1/p' "$S/Makefile")
(
	# dkms.conf is a shell fragment that DKMS sources with these set.
	kernelver=KVER kernel_source_dir=KDIR
	. "$S/dkms.conf"
	[ "$PACKAGE_NAME" = nbdplex ] || fail "dkms.conf: PACKAGE_NAME='$PACKAGE_NAME'"
	[ "$PACKAGE_VERSION" = "$VERSION" ] ||
		fail "dkms.conf: PACKAGE_VERSION='$PACKAGE_VERSION', the package is $VERSION"
	[ "${BUILT_MODULE_NAME[0]}" = "$obj_m" ] ||
		fail "dkms.conf: BUILT_MODULE_NAME[0]='${BUILT_MODULE_NAME[0]}', the Makefile builds '$obj_m'"
	case "${DEST_MODULE_LOCATION[0]}" in
	/updates* | /extra* | /kernel/*) ;;
	*) fail "dkms.conf: DEST_MODULE_LOCATION[0]='${DEST_MODULE_LOCATION[0]}'" ;;
	esac
	[ "$AUTOINSTALL" = yes ] || fail "dkms.conf: AUTOINSTALL is not yes"
	[[ "${MAKE[0]}" == *KVER* ]] || fail "dkms.conf: MAKE[0] does not pass the kernel version"
) || exit 1

# Build the module the way DKMS does (a copy of the sources, MAKE[0] and
# CLEAN with kernelver and kernel_source_dir set) for the newest kernel with
# headers.
kbuild=$(ls -d /lib/modules/*/build 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$kbuild" ] && [ -d "$kbuild" ]; then
	kver=$(basename "$(dirname "$kbuild")")
	step "DKMS-style build of ${obj_m}.ko for $kver"
	cp -r "$S" "$TMP/dkms-build"
	(
		kernelver=$kver kernel_source_dir=$kbuild
		. "$TMP/dkms-build/dkms.conf"
		cd "$TMP/dkms-build"
		eval "${MAKE[0]}" >"$TMP/dkms-make.log" 2>&1 ||
			fail "MAKE[0] failed: $(tail -n 20 "$TMP/dkms-make.log")"
		[ -f "${BUILT_MODULE_NAME[0]}.ko" ] || fail "MAKE[0] did not build ${BUILT_MODULE_NAME[0]}.ko"
		if command -v modinfo >/dev/null; then
			vm=$(modinfo -F vermagic "${BUILT_MODULE_NAME[0]}.ko")
			[ "${vm%% *}" = "$kver" ] || fail "the module's vermagic '$vm' is not for $kver"
		fi
		eval "$CLEAN" >>"$TMP/dkms-make.log" 2>&1 || fail "CLEAN failed"
		[ ! -f "${BUILT_MODULE_NAME[0]}.ko" ] || fail "CLEAN left ${BUILT_MODULE_NAME[0]}.ko"
	) || exit 1
else
	echo "note: no kernel headers under /lib/modules/*/build; module build not tried"
fi

# --------------------------------------------------------------- the unit
step "systemd unit"
U=$R/usr/lib/systemd/system/nbdplex.service
key() { grep -qx "$1" "$U" || fail "the unit lacks '$1'"; }
UNIT_TYPE=$(sed -n 's/^Type=//p' "$U")
case "$UNIT_TYPE" in
notify) ;;
exec)
	# packaging.cmake's fallback for a build without libsystemd.
	grep -q 'libsystemd' <<<"$(readelf -d "$R/usr/bin/nbdplex")" &&
		fail "the unit is Type=exec although the binary links libsystemd"
	echo "note: built without libsystemd, so the unit is Type=exec, not notify"
	;;
*) fail "the unit's Type is '$UNIT_TYPE', not notify" ;;
esac
key 'ExecStart=/usr/bin/nbdplex serve -c /etc/nbdplex/nbdplex.conf'
key 'Restart=on-failure'
key 'ProtectSystem=strict'
key 'NoNewPrivileges=yes'
key 'PrivateTmp=yes'
key 'LimitNOFILE=65536'
key 'WantedBy=multi-user.target'
grep -Eq '^ReadWritePaths=.*/var/lib/nbdplex' "$U" || fail "the unit lacks ReadWritePaths=/var/lib/nbdplex"
# The example's control socket goes where the unit lets the server write.
if grep -q '^#\{0,1\}control = /run/nbdplex/' "$R/etc/nbdplex/nbdplex.conf"; then
	key 'RuntimeDirectory=nbdplex'
fi
key 'ExecReload=/bin/kill -HUP $MAINPID'
# The example's file export lives where the unit lets the server write.
grep -Eq '^spec = file:/var/lib/nbdplex/' "$R/etc/nbdplex/nbdplex.conf" ||
	fail "the default config's export is not under /var/lib/nbdplex"
# The socket unit: one server for every connection, on the default port and
# a Unix socket outside the service's RuntimeDirectory (removed at its stop).
SU=$R/usr/lib/systemd/system/nbdplex.socket
for k in ListenStream=10809 ListenStream=/run/nbdplex.sock SocketMode=0660 Accept=no \
	WantedBy=sockets.target; do
	grep -qx "$k" "$SU" || fail "nbdplex.socket lacks '$k'"
done
grep -q '^ListenStream=/run/nbdplex/' "$SU" && fail "nbdplex.socket's Unix socket is under /run/nbdplex"
if command -v systemd-analyze >/dev/null; then
	# Verify a copy that runs the extracted binary (nothing is installed in
	# /usr/bin here). verify reports problems on stderr and may still exit
	# 0, so any output is a failure; a copy with a misspelt key proves
	# that the check sees problems.
	mkdir -p "$TMP/unit" "$TMP/unit-bad"
	sed "s|^ExecStart=/usr/bin/nbdplex|ExecStart=$R/usr/bin/nbdplex|" "$U" >"$TMP/unit/nbdplex.service"
	cp "$SU" "$TMP/unit/nbdplex.socket"
	sed 's/^Restart=/Restrat=/' "$TMP/unit/nbdplex.service" >"$TMP/unit-bad/nbdplex.service"
	out=$(systemd-analyze verify --man=no "$TMP/unit/nbdplex.service" "$TMP/unit/nbdplex.socket" 2>&1) ||
		fail "systemd-analyze verify: $out"
	[ -z "$out" ] || fail "systemd-analyze verify complains: $out"
	bad=$(systemd-analyze verify --man=no "$TMP/unit-bad/nbdplex.service" 2>&1 || true)
	[ -n "$bad" ] || fail "systemd-analyze verify does not report a misspelt key"
	# Hardening: systemd's own exposure score stays at OK or better.
	out=$(systemd-analyze security --offline=yes --threshold=50 "$TMP/unit/nbdplex.service" 2>&1) ||
		fail "systemd-analyze security rates the unit above 5.0: $(printf '%s\n' "$out" | tail -n 1)"
	echo "$(printf '%s\n' "$out" | tail -n 1)"
else
	echo "note: systemd-analyze not installed; the unit's keys were checked with grep"
fi

# ------------------------------------------------------------ man pages
step "man pages"
for page in man1/nbdplex.1.gz man5/nbdplex.conf.5.gz; do
	f=$R/usr/share/man/$page
	gzip -t "$f" || fail "$page is not valid gzip"
	warn=$(zcat "$f" | groff -man -ww -z -Tutf8 2>&1) || fail "groff failed on $page: $warn"
	[ -z "$warn" ] || fail "groff warns on $page: $warn"
	text=$(LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$f" 2>"$TMP/man.err") || fail "man -l $page failed"
	[ ! -s "$TMP/man.err" ] || fail "man -l $page: $(cat "$TMP/man.err")"
	th=$(zcat "$f" | grep '^\.TH ') || fail "$page has no .TH line"
	[[ "$th" == *" \"nbdplex $VERSION\""* ]] || fail "$page's .TH line does not name nbdplex $VERSION: $th"
	for section in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do
		grep -q "^$section\$" <<<"$text" || fail "$page has no $section section"
	done
done
M1=$(zcat "$R/usr/share/man/man1/nbdplex.1.gz" | sed 's/\\-/-/g')
M5=$(zcat "$R/usr/share/man/man5/nbdplex.conf.5.gz" | sed 's/\\-/-/g')
# Every option and command the binary's help lists is documented.
opts=$("$NBDPLEX" serve --help | grep -o -- '--[a-z][a-z-]*' | sort -u)
if grep -q '^  attach' <<<"$HELP"; then
	opts+=" $("$NBDPLEX" attach --help | grep -o -- '--[a-z][a-z-]*' | sort -u)"
fi
if grep -q '^  volume' <<<"$HELP"; then
	opts+=" $("$NBDPLEX" volume --help | grep -o -- '--[a-z][a-z-]*' | sort -u)"
fi
for o in $opts; do
	grep -q -- "$o" <<<"$M1" || fail "nbdplex(1) does not document $o (packaging/nbdplex.1)"
done
for c in $("$NBDPLEX" --help | sed -n 's/^  \([a-z]*\) .*/\1/p'); do
	grep -qi "^\.SH.*$c\|nbdplex $c" <<<"$M1" || fail "nbdplex(1) does not document '$c' (packaging/nbdplex.1)"
done
if grep -q '^  volume' <<<"$HELP"; then
	for c in $("$NBDPLEX" volume --help | sed -n 's/^  \([a-z]*\) POOLDIR.*/\1/p'); do
		grep -q "^\.BI* \"$c " <<<"$M1" || fail "nbdplex(1) does not document 'volume $c' (packaging/nbdplex.1)"
	done
fi
grep -q '^\.SH EXIT STATUS' <<<"$M1" || fail "nbdplex(1) has no EXIT STATUS"
grep -q '^\.SH SIGNALS' <<<"$M1" || fail "nbdplex(1) has no SIGNALS"
# Every key the example configuration shows is documented in nbdplex.conf(5).
for k in $(sed -n 's/^#\{0,1\}\([a-z-]*\) = .*/\1/p' "$R/usr/share/doc/nbdplex/nbdplex.conf.example" | sort -u); do
	grep -q "^\.B[IR] \"$k = " <<<"$M5" || fail "nbdplex.conf(5) does not document '$k' (packaging/nbdplex.conf.5)"
done

# ------------------------------------------- the example, served for real
step "the example configuration, served by the packaged binary"
# The servers below run the binary from the package, as the unit would.
NBDPLEX=$R/usr/bin/nbdplex
STATE=$TMP/state
mkdir -p "$STATE"
PORT2=$(free_port)
MPORT=$(free_port)
mkdir -p "$TMP/run"
# The example as shipped, moved to scratch paths and a free port, with its
# commented [server] settings switched on (all but pidfile, which
# start_server sets).
sed -e "s|/var/lib/nbdplex|$STATE|g" \
	-e "s|/run/nbdplex|$TMP/run|g" \
	-e "s|^listen = .*|listen = 127.0.0.1:$PORT2|" \
	-e 's/^#\(listen = unix:\)/\1/' \
	-e '/^#listen = /d' \
	-e '/^\[server\]$/,/^\[/s/^#\(socket-mode\|threads\|loops\|read-only\|handshake-timeout\|max-inflight\|max-request\|sendfile\|allow\|max-connections\|max-connections-per-client\|metrics\|control\|log-level\) = /\1 = /' \
	-e "s|^metrics = .*|metrics = 127.0.0.1:$MPORT|" \
	"$R/usr/share/doc/nbdplex/nbdplex.conf.example" >"$TMP/example.conf"
for k in socket-mode threads loops read-only handshake-timeout max-inflight max-request sendfile allow max-connections max-connections-per-client metrics control log-level; do
	grep -q "^$k = " "$TMP/example.conf" || fail "the example shows no '$k' setting"
done
# Play systemd's side of NOTIFY_SOCKET: the Type=notify unit starts only
# once the server says READY=1.
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
open(sys.argv[1] + ".bound", "w").close()
s.settimeout(60)
while True:
    msg = s.recv(4096).decode()
    print(msg.replace("\n", " "), flush=True)
    if "READY=1" in msg.split("\n"):
        break
' "$TMP/notify.sock" >"$TMP/notify.log" 2>&1 &
NP_PIDS+=($!)
for i in $(seq 1 100); do
	[ -e "$TMP/notify.sock.bound" ] && break
	sleep 0.05
done
[ -e "$TMP/notify.sock.bound" ] || fail "the NOTIFY_SOCKET listener did not start"
NOTIFY_SOCKET=$TMP/notify.sock start_server -c "$TMP/example.conf"
size=$(nbdinfo --size "nbd://127.0.0.1:$PORT2/default") || fail "nbdinfo on the config's listen address failed"
[ "$size" = 1073741824 ] || fail "export default is $size bytes, the example says 1G"
size=$(nbdinfo --size "$(uri)") || fail "nbdinfo on the default (empty) export name failed"
[ "$size" = 1073741824 ] || fail "the default export is $size bytes"
json=$(nbdinfo --json "$(uri default)") || fail "nbdinfo --json failed"
grep -q '"description": "sparse file on the server"' <<<"$json" ||
	fail "nbdinfo does not show the example's description"
nbdinfo --can write "$(uri default)" || fail "the example's export is read-only"
# Its Unix socket too, with the mode it says, under what stands for /run/nbdplex.
USOCK=$(sed -n 's/^listen = unix://p' "$TMP/example.conf")
[ "$USOCK" = "$TMP/run/nbdplex.sock" ] || fail "the example's Unix socket is '$USOCK', not under /run/nbdplex"
[ "$(stat -c %a "$USOCK")" = "$(sed -n 's/^socket-mode = 0*//p' "$TMP/example.conf")" ] ||
	fail "the example's Unix socket has mode $(stat -c %a "$USOCK")"
size=$(nbdinfo --size "nbd+unix:///default?socket=$USOCK") || fail "nbdinfo on the example's Unix socket failed"
[ "$size" = 1073741824 ] || fail "the default export is $size bytes over the Unix socket"
[ "$(stat -c %s "$STATE/default.img")" = 1073741824 ] || fail "the server did not create default.img of 1G"
[ "$(stat -c %b "$STATE/default.img")" -lt 1024 ] || fail "default.img is not sparse"
# The example's statistics endpoints answer.
CTL=$(sed -n 's/^control = //p' "$TMP/example.conf")
[ "$CTL" = "$TMP/run/control.sock" ] || fail "the example's control socket is not under /run/nbdplex"
stats=$("$NBDPLEX" stats --control "$CTL") || fail "nbdplex stats --control $CTL failed"
grep -qx 'nbdplex_export_size_bytes{export="default"} 1073741824' <<<"$stats" ||
	fail "nbdplex stats does not report the example's export: $(head -n 20 <<<"$stats")"
metrics=$(python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
	"http://127.0.0.1:$MPORT/metrics") || fail "GET http://127.0.0.1:$MPORT/metrics failed"
grep -q '^nbdplex_requests_total{export="default"' <<<"$metrics" ||
	fail "/metrics has no request counts for the example's export"
if [ "$UNIT_TYPE" = notify ]; then
	for i in $(seq 1 100); do
		grep -q 'READY=1' "$TMP/notify.log" && break
		sleep 0.1
	done
	grep -q 'READY=1' "$TMP/notify.log" || fail "the server never sent READY=1 to NOTIFY_SOCKET"
	grep -q "MAINPID=$SERVER_PID\b" "$TMP/notify.log" ||
		echo "note: READY=1 came without MAINPID=$SERVER_PID: $(cat "$TMP/notify.log")"
fi
stop_server

# The commented thin sections work too, once the pool exists.
if grep -q '^  volume' <<<"$HELP"; then
	step "the example's thin exports"
	"$NBDPLEX" volume init "$STATE/pool" --size 64M >/dev/null || fail "volume init failed"
	"$NBDPLEX" volume create "$STATE/pool" vm1 20G >/dev/null || fail "volume create failed"
	"$NBDPLEX" volume snapshot "$STATE/pool" vm1 vm1-monday >/dev/null || fail "volume snapshot failed"
	sed -E -e '/^#\[export vm1(-monday)?\]$/,/^$/s/^#//' "$TMP/example.conf" >"$TMP/thin.conf"
	[ "$(grep -c '^spec = thin:' "$TMP/thin.conf")" = 2 ] || fail "the example has no two thin sections"
	start_server -c "$TMP/thin.conf"
	[ "$(nbdinfo --size "$(uri vm1)")" = 21474836480 ] || fail "thin export vm1 is not 20G"
	nbdinfo --is readonly "$(uri vm1-monday)" || fail "the snapshot export is not read-only"
	stop_server
fi

# --------------------------------------------------------- cmake --install
step "cmake --install into a scratch prefix"
P=$TMP/prefix
cmake --install "$BUILD" --prefix "$P" >"$TMP/install.log" 2>&1 ||
	fail "cmake --install failed: $(tail -n 20 "$TMP/install.log")"
for f in bin/nbdplex lib/systemd/system/nbdplex.service lib/systemd/system/nbdplex.socket \
	share/man/man1/nbdplex.1.gz \
	share/man/man5/nbdplex.conf.5.gz share/doc/nbdplex/nbdplex.conf.example \
	etc/nbdplex/nbdplex.conf "src/nbdplex-$VERSION/dkms.conf"; do
	[ -f "$P/$f" ] || fail "cmake --install did not install $f"
done
grep -qx "ExecStart=$P/bin/nbdplex serve -c $P/etc/nbdplex/nbdplex.conf" "$P/lib/systemd/system/nbdplex.service" ||
	fail "the installed unit does not run $P/bin/nbdplex with $P/etc/nbdplex/nbdplex.conf"
echo "# edited" >>"$P/etc/nbdplex/nbdplex.conf"
cmake --install "$BUILD" --prefix "$P" >>"$TMP/install.log" 2>&1 || fail "second cmake --install failed"
[ "$(tail -n 1 "$P/etc/nbdplex/nbdplex.conf")" = "# edited" ] ||
	fail "cmake --install overwrote an edited nbdplex.conf"

pass
