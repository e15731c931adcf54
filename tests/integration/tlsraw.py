"""STARTTLS for nbdraw's raw client, for tests that must choose how their
bytes fall into TLS records (libnbd sends each request in a record of its
own). X.509 through Python's ssl; PSK, which Python's ssl lacks, through
GnuTLS itself by ctypes. Not a library for anything else."""
import ctypes
import socket
import ssl

import nbdraw as n

GNUTLS_CLIENT = 2
GNUTLS_CRD_PSK = 4
GNUTLS_PSK_KEY_HEX = 1
GNUTLS_E_AGAIN, GNUTLS_E_INTERRUPTED, GNUTLS_E_PREMATURE_TERMINATION = -28, -52, -110


class _Datum(ctypes.Structure):
    _fields_ = [("data", ctypes.c_char_p), ("size", ctypes.c_uint)]


class PskSocket:
    """The few socket methods nbdraw.Client uses, over a GnuTLS session
    on a blocking socket whose receive timeout bounds every wait."""

    def __init__(self, sock, user, hexkey, timeout):
        g = self.g = ctypes.CDLL("libgnutls.so.30")
        g.gnutls_record_send.restype = ctypes.c_ssize_t
        g.gnutls_record_send.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        g.gnutls_record_recv.restype = ctypes.c_ssize_t
        g.gnutls_record_recv.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        g.gnutls_strerror.restype = ctypes.c_char_p
        self.sock = sock
        self.settimeout(timeout)
        self.session, self.cred = ctypes.c_void_p(), ctypes.c_void_p()
        self._ok(g.gnutls_init(ctypes.byref(self.session), GNUTLS_CLIENT))
        self._ok(g.gnutls_priority_set_direct(
            self.session, b"NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK", None))
        self._ok(g.gnutls_psk_allocate_client_credentials(ctypes.byref(self.cred)))
        key = _Datum(hexkey, len(hexkey))
        self._ok(g.gnutls_psk_set_client_credentials(self.cred, user, ctypes.byref(key),
                                                     GNUTLS_PSK_KEY_HEX))
        self._ok(g.gnutls_credentials_set(self.session, GNUTLS_CRD_PSK, self.cred))
        g.gnutls_transport_set_int2(self.session, sock.fileno(), sock.fileno())
        self._ok(g.gnutls_handshake(self.session))

    def _ok(self, r):
        if r < 0:
            raise OSError(f"GnuTLS: {self.g.gnutls_strerror(int(r)).decode()}")
        return r

    def settimeout(self, timeout):
        sec = int(timeout)
        tv = (sec).to_bytes(8, "little") + int((timeout - sec) * 1e6).to_bytes(8, "little")
        self.sock.settimeout(None)  # a blocking descriptor, for GnuTLS
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)

    def sendall(self, data):
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        done = 0
        while done < len(data):
            done += self._ok(self.g.gnutls_record_send(
                self.session, ctypes.addressof(buf) + done, len(data) - done))

    def recv_into(self, view, n):
        buf = (ctypes.c_char * len(view)).from_buffer(view)
        r = self.g.gnutls_record_recv(self.session, ctypes.addressof(buf), n)
        if r in (GNUTLS_E_AGAIN, GNUTLS_E_INTERRUPTED):
            raise socket.timeout("timed out")
        if r == GNUTLS_E_PREMATURE_TERMINATION:
            return 0  # closed without close_notify: an end, as Python's ssl takes it
        return self._ok(r)

    def recv(self, n):
        b = bytearray(n)
        return bytes(b[:self.recv_into(memoryview(b), n)])

    def close(self):
        self.g.gnutls_deinit(self.session)
        self.g.gnutls_psk_free_client_credentials(self.cred)
        self.sock.close()


def starttls(c, cafile=None, psk=None, timeout=30):
    """Upgrades nbdraw Client c after its greeting: with X.509, trusting
    the CA in cafile; or with psk, (user, hex key) as bytes."""
    r = c.replies(n.OPT_STARTTLS)
    assert r[-1][0] == n.REP_ACK, r
    if psk:
        c.s = PskSocket(c.s, psk[0], psk[1], timeout)
    else:
        ctx = ssl.create_default_context(cafile=cafile)
        c.s = ctx.wrap_socket(c.s, server_hostname="localhost")
        c.s.settimeout(timeout)
