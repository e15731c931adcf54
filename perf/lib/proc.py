#!/usr/bin/python3
"""Small /proc helpers for perf/bench.sh.

  proc.py cpu PID        CPU ticks (utime+stime+cutime+cstime) of PID and of
                         every live descendant process, summed.  Children that
                         exited and were reaped are already in cutime/cstime.
  proc.py rss PID        VmRSS less RssShmem in KiB of PID plus live
                         descendants (summed): the process's own memory.
                         RssShmem counts the pages of a tmpfs file that the
                         process maps (nbdplex maps the bench's file and
                         moves large requests through the mapping); they are
                         the file's page cache, there whoever serves it, and
                         not counted for a server that uses pread/pwrite.
  proc.py hwm PID        VmHWM (peak RSS, shared memory included) in KiB of
                         PID plus live descendants.
  proc.py children PID   number of live descendant processes.
  proc.py pids PID       PID and its live descendants, comma-separated.
  proc.py listening PORT exit 0 if something LISTENs on TCP PORT (IPv4 or v6).
  proc.py clk            clock ticks per second.
  proc.py machine        "BUSY ALL": ticks of the whole machine (all CPUs)
                         from /proc/stat, busy (not idle, not iowait) and all.
"""
import os
import sys


def children(pid):
    """Direct child process ids of pid (over all its threads)."""
    out = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out.update(int(x) for x in f.read().split())
        except OSError:
            pass
    return sorted(out)


def descendants(pid):
    seen = []
    todo = children(pid)
    while todo:
        c = todo.pop()
        if c in seen:
            continue
        seen.append(c)
        todo.extend(children(c))
    return seen


def own_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return 0
    # the command name may hold spaces and parentheses: split after the last ')'
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14 -> index 11
    return sum(int(fields[i]) for i in (11, 12, 13, 14))


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_ticks():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    # user nice system idle iowait irq softirq steal
    return sum(fields) - fields[3] - fields[4], sum(fields)


def listening(port):
    want = f"{port:04X}"
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, state = parts[1], parts[3]
                    if state == "0A" and local.rsplit(":", 1)[1] == want:
                        return True
        except OSError:
            pass
    return False


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    cmd = argv[1]
    if cmd == "clk":
        print(os.sysconf("SC_CLK_TCK"))
        return 0
    if cmd == "machine":
        print("%d %d" % machine_ticks())
        return 0
    arg = int(argv[2])
    if cmd == "cpu":
        print(sum(own_ticks(p) for p in [arg] + descendants(arg)))
    elif cmd == "rss":
        print(sum(status_kib(p, "VmRSS") - status_kib(p, "RssShmem")
                  for p in [arg] + descendants(arg)))
    elif cmd == "hwm":
        print(sum(status_kib(p, "VmHWM") for p in [arg] + descendants(arg)))
    elif cmd == "children":
        print(len(descendants(arg)))
    elif cmd == "pids":
        print(",".join(str(p) for p in [arg] + descendants(arg)))
    elif cmd == "listening":
        return 0 if listening(arg) else 1
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
