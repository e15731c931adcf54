#!/bin/bash
# The systemd notify protocol, with this test in systemd's place: READY=1
# arrives only once the listener accepts, RELOADING=1 then READY=1 on
# SIGHUP, STOPPING=1 on SIGTERM.
. "$NP_SRC/tests/functions.sh"
requires nbdinfo
PORT=$(free_port)
python3 - "$TMP/notify.sock" "$NBDPLEX" "$PORT" <<'PY' || fail "notify protocol"
import os, signal, socket, subprocess, sys, time
path, binary, port = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(10)
env = dict(os.environ, NOTIFY_SOCKET=path)
p = subprocess.Popen([binary, "serve", "-l", "127.0.0.1:" + port, "-e", "d=mem:1M"], env=env,
                     stderr=subprocess.DEVNULL)
try:
    msg = s.recv(4096).decode()
    assert "READY=1" in msg and f"MAINPID={p.pid}" in msg, msg
    # Ready means accepting: a client connects at once.
    c = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    assert c.recv(8) == b"NBDMAGIC"
    c.close()
    # systemctl reload: RELOADING=1, then READY=1 once the reload is done.
    p.send_signal(signal.SIGHUP)
    msg = s.recv(4096).decode()
    assert "RELOADING=1" in msg, msg
    msg = s.recv(4096).decode()
    assert "READY=1" in msg, msg
    p.terminate()
    msg = s.recv(4096).decode()
    assert "STOPPING=1" in msg, msg
    assert p.wait(timeout=20) == 0
finally:
    if p.poll() is None:
        p.kill()
        p.wait()
print("1 passed, 0 failed")
PY
pass
