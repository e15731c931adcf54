"""A libnbd client for the takeover tests of exclusive exports
(takeover_thin.sh, takeover_raw.sh): writes a 4 KiB block and reads it back
every 10 ms, each at its own offset (block i * STRIDE modulo BLOCKS), until
the file STOP exists; then flushes and reads back every block it wrote.
With EXPECT, it writes there "OFFSET BYTE" for each block, for a check of
the storage itself. Prints "N rounds" at the end.
Usage: takeover_writer.py URI STOP STRIDE BLOCKS [EXPECT]"""
import os
import sys
import time

import nbd

uri, stop, stride, blocks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
h = nbd.NBD()
h.connect_uri(uri)
i, last = 0, {}
while not os.path.exists(stop):
    off = (i * stride % blocks) * 4096
    b = bytes([i % 251 + 1]) * 4096
    h.pwrite(b, off)
    assert h.pread(4096, off) == b, f"round {i}: read back differs"
    last[off] = b
    i += 1
    time.sleep(0.01)
h.flush()
for off, b in last.items():
    assert h.pread(4096, off) == b, f"block at {off} differs at the end"
if len(sys.argv) > 5:
    with open(sys.argv[5], "w") as f:
        for off, b in sorted(last.items()):
            f.write(f"{off} {b[0]}\n")
h.shutdown()
print(i, "rounds", flush=True)
