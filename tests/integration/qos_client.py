#!/usr/bin/env python3
"""qos_client.py SOURCE PORT EXPORT SECONDS: reads 4 KiB at random, 16 at
a time, over one connection from the address SOURCE to 127.0.0.1:PORT, for
SECONDS; prints the requests per second. fio cannot choose its source
address, so qos_rate.sh uses this for its second client address."""
import random
import socket
import sys
import time

import nbd

source, port, export, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket()
s.bind((source, 0))
s.connect(("127.0.0.1", port))
h = nbd.NBD()
h.set_export_name(export)
h.connect_socket(s.detach())
size = h.get_size()
done = 0


def completed(*_):
    global done
    done += 1
    return 1


end = time.monotonic() + secs
bufs = [nbd.Buffer(4096) for _ in range(16)]
while time.monotonic() < end:
    for b in bufs:
        if h.aio_in_flight() < 16:
            h.aio_pread(b, random.randrange(size // 4096) * 4096, completion=completed)
    h.poll(1)
while h.aio_in_flight() > 0:
    h.poll(1)
h.shutdown()
print(round(done / secs, 1))
