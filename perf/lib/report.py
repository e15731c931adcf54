#!/usr/bin/python3
"""Turn a perf/bench.sh run directory into perf/RESULTS.md.

  report.py RUNDIR OUTFILE
"""
import json
import os
import re
import statistics
import sys

JOB_DESC = {
    "randread-4k-qd32-c1": "4 KiB random read, QD32, 1 connection",
    "randread-4k-qd32-c4": "4 KiB random read, QD32, 4 connections",
    "randwrite-4k-qd32-c1": "4 KiB random write, QD32, 1 connection",
    "randwrite-4k-qd32-c4": "4 KiB random write, QD32, 4 connections",
    "read-1m-qd8-c1": "1 MiB sequential read, QD8, 1 connection",
    "read-1m-qd8-c4": "1 MiB sequential read, QD8, 4 connections",
    "write-1m-qd8-c1": "1 MiB sequential write, QD8, 1 connection",
    "write-1m-qd8-c4": "1 MiB sequential write, QD8, 4 connections",
    "randread-4k-qd1-c1": "4 KiB random read, QD1, 1 connection (latency)",
    "randwrite-4k-qd1-c1": "4 KiB random write, QD1, 1 connection (latency)",
    "fuawrite-4k-qd1-c1": "4 KiB sequential write with FUA, QD1 (qemu-img bench -t writethrough; mean latency only)",
    "randwrite-4k-new-c1": "4 KiB random write to new space, QD32, 1 connection",
    "randwrite-4k-new-c4": "4 KiB random write to new space, QD32, 4 connections",
    "write-1m-new-c1": "1 MiB sequential write to new space, QD8, 1 connection",
    "randwrite-4k-written-c1": "4 KiB random write to written space, QD32, 1 connection",
    "randread-4k-written-c1": "4 KiB random read of written space, QD32, 1 connection",
    "randwrite-4k-cow-c1": "4 KiB random write after a snapshot (copy on write), QD32, 1 connection",
}


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    if not lines:
        return []
    head = lines[0]
    return [dict(zip(head, l)) for l in lines[1:]]


def load_fio(path):
    """-> dict(ops, iops, mibs, error) summed over the job entries, or None."""
    try:
        with open(path) as f:
            text = f.read()
        data = json.loads(text[text.index("{"):])
    except (OSError, ValueError):
        return None
    ops = iops = bw = cpu = 0.0
    err = 0
    lat = {}
    for job in data.get("jobs", []):
        err = err or job.get("error", 0)
        # usr_cpu/sys_cpu: percent of job_runtime (ms; summed over the
        # jobs of a group)
        cpu += (job.get("usr_cpu", 0.0) + job.get("sys_cpu", 0.0)) / 100 * \
            job.get("job_runtime", 0) / 1000
        for d in ("read", "write"):
            part = job.get(d, {})
            ops += part.get("total_ios", 0)
            iops += part.get("iops", 0.0)
            bw += part.get("bw_bytes", 0)
            # completion latency of a 1-job run (the QD1 jobs), in us
            if part.get("total_ios") and not lat:
                # lat (submission to completion) where fio has its
                # percentiles (--lat_percentiles): with the nbd engine the
                # request goes out during submission, so clat misses most
                # of a round trip
                pct = (part.get("lat_ns", {}).get("percentile")
                       or part.get("clat_ns", {}).get("percentile", {}))
                lat = {"p50": pct.get("50.000000"), "p99": pct.get("99.000000"),
                       "mean": part.get("lat_ns", {}).get("mean")}
                lat = {k: (v / 1000.0 if v else None) for k, v in lat.items()}
    return {"ops": ops, "iops": iops, "mibs": bw / 1048576.0, "error": err, "fio_cpu_s": cpu,
            "lat": lat}


def parse_perf_stat(path):
    """perf stat -x, output -> (total_calls, [(name, calls), ...] sorted by
    calls) or None."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    total = None
    rows = []
    for line in lines:
        fields = line.split(",")
        if line.startswith("#") or len(fields) < 3:
            continue
        try:
            calls = int(fields[0])
        except ValueError:
            continue
        event = fields[2]
        if event == "raw_syscalls:sys_enter":
            total = calls
        elif event.startswith("syscalls:sys_enter_") and calls:
            rows.append((event[len("syscalls:sys_enter_"):], calls))
    if total is None:
        return None
    rows.sort(key=lambda r: -r[1])
    return total, rows


def load_syscalls(rundir):
    """syscalls.tsv rows, each with reqs, total and calls ([(name, count)],
    most first) added; the three are None where fio or perf stat failed."""
    out = []
    for r in read_tsv(os.path.join(rundir, "syscalls.tsv")):
        res = load_fio(r["fio_json"])
        st = parse_perf_stat(r["perf_file"])
        r["reqs"] = r["total"] = r["calls"] = None
        if res is not None and st is not None and res["ops"]:
            r["reqs"] = res["ops"]
            r["total"], r["calls"] = st
        out.append(r)
    return out


def load_rss(rundir):
    """rss.tsv rows, each with idle_mib and peak_mib added (None if not a
    number: the measurement failed)."""
    out = []
    for r in read_tsv(os.path.join(rundir, "rss.tsv")):
        for key in ("idle", "peak"):
            try:
                r[key + "_mib"] = int(r[key + "_rss_kib"]) / 1024
            except ValueError:
                r[key + "_mib"] = None
        out.append(r)
    return out


def fmt(v, digits=None):
    if v is None:
        return "-"
    if digits is None:
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return f"{v:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


# The file engine's performance targets: IOPS against nbdkit's in the same
# run, at least IOPS_4K for 4 KiB and MIBS_1M for 1 MiB jobs; server
# CPU per 4 KiB request at most CPU_4K of nbdkit's; fewer than one syscall per
# request at QD32; RSS under IDLE_RSS_MIB with 1,000 idle connections, and
# under load no more above it than --max-inflight-total (INFLIGHT_TOTAL_MIB
# by default) allows.
TARGET_PEER = "nbdkit"
IOPS_4K = 1.25
MIBS_1M = 1.2
CPU_4K = 0.5
IDLE_RSS_MIB = 64
INFLIGHT_TOTAL_MIB = 256


def targets(w, base, job_order, summary, paired, sysc, rss):
    peer = TARGET_PEER
    w(f"## Targets against {peer}\n")
    w("`figure`: for a ratio, the ratio of the medians, as in the summary (a target is "
      f"met when it meets the target), otherwise {base}'s own figure; `paired`: the median "
      "of the ratios round by round; `rounds`: rounds whose own ratio meets the target.\n")
    w("| target | job | figure | paired | rounds | met |")
    w("|---|---|---:|---:|---:|---|")

    meets = {">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t, "<": lambda v, t: v < t}

    def row(label, job, value, want, rs=None, op=">="):
        if value is None:
            w(f"| {label} | {job} | - | - | - | no run |")
            return
        ok = meets[op](value, want)
        rounds = "-"
        pm = "-"
        if rs:
            n = sum(1 for r in rs if meets[op](r, want))
            rounds = f"{n} of {len(rs)}"
            pm = fmt(med(rs), 2)
        w(f"| {label} | {job} | {fmt(value, 2)} | {pm} | {rounds} | {'yes' if ok else 'no'} |")

    def iops_ratio(job):
        b, s = summary(job, base), summary(job, peer)
        return ratio(b and b["iops"], s and s["iops"])

    small = [j for j in job_order if "-4k-" in j]
    large = [j for j in job_order if "-1m-" in j]
    for j in small:
        row(f"IOPS at least {IOPS_4K}x", j, iops_ratio(j), IOPS_4K, paired(j, peer))
    for j in large:
        row(f"MiB/s at least {MIBS_1M}x", j, iops_ratio(j), MIBS_1M, paired(j, peer))
    for j in small:
        b, s = summary(j, base), summary(j, peer)
        row(f"CPU/op at most {CPU_4K}x", j, ratio(b and b["cpu"], s and s["cpu"]), CPU_4K,
            op="<=")
    for j in job_order:
        if not j.endswith("-c4") or j[:-1] + "1" not in job_order:
            continue
        c1, c4 = iops_ratio(j[:-1] + "1"), iops_ratio(j)
        gain = None if c1 is None or c4 is None else c4 / c1
        row("gain with 4 connections at least the gain with 1 (IOPS ratio c4 / c1)",
            j, gain, 1.0)

    for r in sysc:
        if r["server"] != base or "-qd32-" not in r["job"]:
            continue
        per = r["total"] / r["reqs"] if r["reqs"] else None
        row("syscalls per request below 1", r["job"], per, 1.0, op="<")
    for r in rss:
        if r["server"] != base:
            continue
        idle, peak = r["idle_mib"], r["peak_mib"]
        if idle is None or peak is None:
            row(f"RSS ({r['test']})", r["test"], None, 0)
            continue
        if r["test"] == "idle":
            row(f"RSS with {r['connections']} idle connections below {IDLE_RSS_MIB} MiB (MiB)",
                "idle", peak, IDLE_RSS_MIB, op="<")
        else:
            row(f"RSS under {r['connections']} writers at most {INFLIGHT_TOTAL_MIB} MiB "
                "(--max-inflight-total) above the start (MiB)", r["test"], peak - idle,
                INFLIGHT_TOTAL_MIB, op="<=")
    w("")


def main(rundir, out):
    meta = {}
    with open(os.path.join(rundir, "meta.txt")) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    servers = meta["servers"].split(",")
    base = servers[0]
    peers = servers[1:]
    runs = read_tsv(os.path.join(rundir, "runs.tsv"))

    # results[job][server] = list of per-round dicts
    results = {}
    job_order = []
    failures = []
    for r in runs:
        job = r["job"]
        if job not in job_order:
            job_order.append(job)
        res = load_fio(r["json"])
        if r["rc"] != "0" or res is None or res["ops"] == 0 or res["error"]:
            failures.append(f"round {r['round']} {r['server']} {job}: fio rc={r['rc']}"
                            + ("" if res is None else f", error={res['error']}, ops={res['ops']:.0f}"))
            continue
        ticks = int(r["cpu_ticks"])
        clk = int(r["clk_tck"])
        res["cpu_us_op"] = ticks / clk * 1e6 / res["ops"]
        res["fio_us_op"] = res["fio_cpu_s"] * 1e6 / res["ops"]
        res["fio_cpus"] = res["fio_cpu_s"] / float(meta.get("runtime", 0) or 1)
        res["mach_us_op"] = res["idle"] = None
        if r.get("busy_ticks") and r.get("all_ticks") and int(r["all_ticks"]) > 0:
            res["mach_us_op"] = int(r["busy_ticks"]) / clk * 1e6 / res["ops"]
            res["idle"] = 100.0 * (1 - int(r["busy_ticks"]) / int(r["all_ticks"]))
        res["round"] = int(r["round"])
        results.setdefault(job, {}).setdefault(r["server"], []).append(res)

    def summary(job, srv):
        rs = results.get(job, {}).get(srv, [])
        if not rs:
            return None
        return {
            "iops": med([x["iops"] for x in rs]),
            "mibs": med([x["mibs"] for x in rs]),
            "cpu": med([x["cpu_us_op"] for x in rs]),
            "mach": med([x["mach_us_op"] for x in rs]),
            "fio": med([x["fio_us_op"] for x in rs]),
            "fio_cpus": med([x["fio_cpus"] for x in rs]),
            "idle": med([x["idle"] for x in rs]),
            "n": len(rs),
            "iops_all": [x["iops"] for x in sorted(rs, key=lambda x: x["round"])],
            "p50": med([x["lat"].get("p50") for x in rs]),
            "p99": med([x["lat"].get("p99") for x in rs]),
            "mean": med([x["lat"].get("mean") for x in rs]),
            "p50_all": [x["lat"].get("p50") for x in sorted(rs, key=lambda x: x["round"])],
            "p99_all": [x["lat"].get("p99") for x in sorted(rs, key=lambda x: x["round"])],
        }

    def paired(job, peer):
        """IOPS ratios base/peer of the rounds both ran, in round order."""
        mine = {x["round"]: x["iops"] for x in results.get(job, {}).get(base, [])}
        theirs = {x["round"]: x["iops"] for x in results.get(job, {}).get(peer, [])}
        return [mine[r] / theirs[r] for r in sorted(mine) if theirs.get(r)]

    o = []
    w = o.append
    case = meta.get("case", "tmpfs")
    w(f"# {base} against its peers: side-by-side benchmark, case `{case}`\n")
    w(f"- Date: {meta.get('date')}")
    w(f"- Machine: {meta.get('nproc')} CPUs ({meta.get('cpu')}), {meta.get('mem')} RAM, "
      f"kernel {meta.get('kernel')}; load average (1, 5, 15 min) {meta.get('load')}"
      + (f"; at the start of each round: {meta['load_rounds']}" if meta.get("load_rounds") else "")
      + ". "
      "A shared machine where others compile: figures are noisy, read the ratios.")
    w(f"- Command: `{meta.get('command')}` (from the repository root)")
    w(f"- Versions: {meta.get('fio')}, {meta.get('nbdkit')}, nbd-server {meta.get('nbd-server')}, "
      f"{meta.get('qemu-nbd')}, nbdplex at commit {meta.get('nbdplex')}")
    w(f"- Method: {meta.get('rounds')} rounds; in each round every server in turn "
      f"({', '.join(servers)}; the order rotates each round) is started on a fresh port, serves "
      + meta.get("case_desc", "the same 1 GiB file on /dev/shm (filled with random data first: no holes, "
                 "and no zeroes to send as hole chunks)") + ", takes every fio "
      f"job for {meta.get('runtime')} s, and is stopped. fio `--ioengine=nbd` (libnbd), "
      "`uri=nbd://127.0.0.1:PORT/bench`; 4 connections = `numjobs=4` + `group_reporting` (one "
      "connection per job; sequential jobs on 4 connections each take their own quarter of the "
      "disk). Figures are medians over the rounds. CPU/op is the server's utime+stime "
      "(+ reaped children, for nbd-server's per-client processes) from /proc/PID/stat across "
      "the fio run, divided by the requests fio completed. fio runs on the same 2 CPUs as the "
      "server. fio CPU/op is fio's own usr+sys time (from its JSON) per request, and fio "
      "CPUs that time over the run's length: near 1.0 with 1 connection, fio's one thread is "
      "busy all the time and the client, not the server, sets the pace. Machine CPU/op is the "
      "busy time of all CPUs (/proc/stat: not idle, not iowait) across the fio run, divided by "
      "the requests: server, fio and the kernel's loopback TCP work together (and anything "
      "else running on the machine at the time). Where the CPUs are saturated (idle near 0), "
      "throughput is bound by it, whichever process the kernel charges the work to.")
    w("")

    if peers:
        w(f"## Summary: ratios {base} / peer\n")
        w(f"IOPS ratio above 1: {base} is faster (for 1 MiB jobs the MiB/s ratio is the same). "
          f"CPU/op ratio below 1: {base} spends less CPU per request; `machine`: the CPU "
          "time of the whole machine per request (server, fio and kernel; see Method).\n")
        head = "| job | " + " | ".join(f"IOPS vs {p} | CPU/op vs {p} | machine vs {p}"
                                      for p in peers) + " |"
        w(head)
        w("|---|" + "---:|---:|---:|" * len(peers))
        for job in job_order:
            b = summary(job, base)
            cells = []
            for p in peers:
                s = summary(job, p)
                cells.append(fmt(ratio(b and b["iops"], s and s["iops"]), 2))
                cells.append(fmt(ratio(b and b["cpu"], s and s["cpu"]), 2))
                cells.append(fmt(ratio(b and b["mach"], s and s["mach"]), 2))
            w(f"| {job} | " + " | ".join(cells) + " |")
        cells = []
        for p in peers:
            for key in ("iops", "cpu", "mach"):
                rs = [ratio(summary(j, base) and summary(j, base)[key],
                            summary(j, p) and summary(j, p)[key]) for j in job_order]
                rs = [r for r in rs if r]
                cells.append(fmt(statistics.geometric_mean(rs), 2) if rs else "-")
        w("| **geometric mean** | " + " | ".join(cells) + " |")
        w("")

        w("### Round by round\n")
        w(f"The IOPS ratio within each round: {base}'s figure over the peer's in the same "
          "round, whose runs are minutes apart rather than the whole bench apart. The "
          "machine's speed drifts from minute to minute (perf/README.md), and so do these. "
          "Median (lowest-highest), then each round's ratio in order.\n")
        w("| job | " + " | ".join(f"vs {p}" for p in peers) + " |")
        w("|---|" + "---|" * len(peers))
        for job in job_order:
            cells = []
            for p in peers:
                rs = paired(job, p)
                cells.append(f"{fmt(med(rs), 2)} ({fmt(min(rs), 2)}-{fmt(max(rs), 2)}): "
                             + ", ".join(fmt(r, 2) for r in rs) if rs else "-")
            w(f"| {job} | " + " | ".join(cells) + " |")
        w("")

    qd1 = [j for j in job_order if "-qd1-" in j]
    if qd1:
        w("## Latency at QD1\n")
        w("One request in flight, 1 connection: latency from fio's JSON (lat with "
          "`--lat_percentiles=1`: from the request's submission to its completion as the client "
          "sees it), p50 and p99 in µs, "
          "medians over the rounds, and each round's figure in order. The FUA job is "
          "qemu-img bench's wall time over its requests: the mean, with no percentiles; "
          "where one side has only the mean, the p50 ratio is the ratio of the means. "
          f"Ratio {base}/peer below 1: {base} answers sooner.\n")
        w("| job | server | p50 µs | p99 µs | mean µs | p50 per round | p99 per round |"
          + "".join(f" p50 vs {p} | p99 vs {p} |" for p in peers))
        w("|---|---|---:|---:|---:|---|---|" + "---:|---:|" * len(peers))
        for job in qd1:
            b = summary(job, base)
            for srv in servers:
                s_ = summary(job, srv)
                if s_ is None:
                    continue
                line = (f"| {job} | {srv} | {fmt(s_['p50'], 1)} | {fmt(s_['p99'], 1)} | "
                        f"{fmt(s_['mean'], 1)} | "
                        + ", ".join(fmt(v, 1) for v in s_["p50_all"]) + " | "
                        + ", ".join(fmt(v, 1) for v in s_["p99_all"]) + " |")
                if srv == base:
                    for p in peers:
                        sp = summary(job, p)
                        # qemu-img bench's FUA runs have a mean only
                        key = "p50" if b and b["p50"] and sp and sp["p50"] else "mean"
                        line += (f" {fmt(ratio(b and b[key], sp and sp[key]), 2)} |"
                                 f" {fmt(ratio(b and b['p99'], sp and sp['p99']), 2)} |")
                else:
                    line += " |  |" * len(peers)
                w(line)
        w("")

    sysc = load_syscalls(rundir)
    rss = load_rss(rundir)
    if TARGET_PEER in peers:
        targets(w, base, job_order, summary, paired, sysc, rss)

    w("## Per job\n")
    for job in job_order:
        w(f"### {job}: {JOB_DESC.get(job, '')}\n")
        cols = ("| server | IOPS | MiB/s | CPU µs/op | fio CPU µs/op | fio CPUs | machine CPU µs/op "
                "| CPUs idle | IOPS per round |")
        if peers:
            cols += f" {base}/this IOPS | {base}/this CPU/op | {base}/this machine CPU/op |"
        w(cols)
        w("|---|---:|---:|---:|---:|---:|---:|---:|---|" + ("---:|---:|---:|" if peers else ""))
        b = summary(job, base)
        for srv in servers:
            s = summary(job, srv)
            if s is None:
                w(f"| {srv} | - | - | - | - | - | - | - | (no successful run) |"
                  + (" - | - | - |" if peers else ""))
                continue
            idle = "-" if s["idle"] is None else f"{s['idle']:.0f}%"
            line = (f"| {srv} | {fmt(s['iops'], 0)} | {fmt(s['mibs'], 1)} | {fmt(s['cpu'], 2)} | "
                    f"{fmt(s['fio'], 2)} | {fmt(s['fio_cpus'], 2)} | {fmt(s['mach'], 2)} | {idle} | "
                    + ", ".join(f"{v:.0f}" for v in s["iops_all"]) + " |")
            if peers:
                line += (f" {fmt(ratio(b and b['iops'], s['iops']), 2)} |"
                         f" {fmt(ratio(b and b['cpu'], s['cpu']), 2)} |"
                         f" {fmt(ratio(b and b['mach'], s['mach']), 2)} |")
            w(line)
        w("")

    if sysc:
        w("## Syscalls per request\n")
        w(f"A fixed count of requests per connection ({meta.get('syscall_ios')} for 4 KiB at "
          f"QD32, {meta.get('syscall_ios_1m')} for 1 MiB at QD8; fio `--number_ios`), at full "
          "speed: `perf stat -e raw_syscalls:sys_enter` (and one tracepoint per common call) "
          "is attached to the server's threads before fio connects, and the threads and "
          "processes it starts for clients inherit the counters; the handshakes and "
          "connection setup are included (a few dozen calls). Not `strace`: under it a server "
          "runs so slowly that requests pile up between its reads, and one that batches "
          "shows batches it never forms at full speed.\n")
        w("| server | job | requests | syscalls | syscalls/request | top calls per request |")
        w("|---|---|---:|---:|---:|---|")
        for r in sysc:
            reqs, total = r["reqs"], r["total"]
            if not reqs:
                w(f"| {r['server']} | {r['job']} | - | - | - | (failed: fio rc={r['fio_rc']}) |")
                continue
            top = ", ".join(f"{n} {c / reqs:.2f}" for n, c in r["calls"][:5])
            w(f"| {r['server']} | {r['job']} | {reqs:.0f} | {total} | "
              f"{total / reqs:.2f} | {top} |")
        w("")

    if rss:
        w("## Memory (RSS)\n")
        w("VmRSS less RssShmem from /proc/PID/status (for nbd-server summed over its per-client "
          "processes): RssShmem counts the pages of the bench's tmpfs file that a server maps "
          "(nbdplex sends large READs from its mapping and receives large WRITEs into it); "
          "they are the file's page cache, there whichever server fills it, and uncounted "
          "for a server that uses pread and pwrite. VmHWM in the note includes them. "
          "`idle`: N connections opened by perf/lib/idle_conns.py, each through a minimal "
          "handshake (NBD_OPT_GO) and then left idle; RSS read once all are open. "
          f"`write-1m-qd32-c64`: fio with 64 connections (numjobs=64), iodepth 32, 1 MiB writes "
          f"for {meta.get('rss_runtime')} s (`--zero_buffers`, so that fio does not spend the CPUs "
          "filling 2 GiB of buffers; none of the servers is told to detect zeroes); peak of RSS "
          "sampled every 0.2 s while fio runs. Throughput in this test is not reported: 64 fio "
          "threads on 2 CPUs starve the servers.\n")
        w("| server | test | connections | RSS before (MiB) | RSS with load (MiB) | note |")
        w("|---|---|---:|---:|---:|---|")
        for r in rss:
            w(f"| {r['server']} | {r['test']} | {r['connections']} | {fmt(r['idle_mib'], 1)} | "
              f"{fmt(r['peak_mib'], 1)} | {r['note']} |")
        w("")

    w("## How each server was started\n")
    seen = set()
    cmdfile = os.path.join(rundir, "commands.txt")
    if os.path.exists(cmdfile):
        with open(cmdfile) as f:
            for line in f:
                srv, cmd = line.rstrip("\n").split(": ", 1)
                if srv in seen:
                    continue
                seen.add(srv)
                cmd = re.sub(r"\S*/perf/tmp/run-[^/\s]*/", "RUNDIR/", cmd)
                cmd = re.sub(r"RUNDIR/nbdplex\b|\S*/build/nbdplex", "build/nbdplex", cmd)
                cmd = re.sub(r"/dev/shm/\S+\.img", "/dev/shm/FILE.img", cmd)
                cmd = re.sub(r"\b2\d{4}\b", "PORT", cmd)
                w(f"- {srv}: `{cmd}`")
    if "nbd-server" in servers:
        w("- nbd-server's config file: `[generic]` with `listenaddr = 127.0.0.1`, "
          "`port = PORT`, `allowlist = false`; `[bench]` with `exportname = /dev/shm/FILE.img` "
          "and nothing else (defaults: no splice, no flush/fua). It daemonises and forks a "
          "process per client; its PID comes from its pidfile.")
    w("- Every server runs with its defaults otherwise: no cache-mode or sync flags; "
      "qemu-nbd's `--shared=128` only lifts its connection limit (the 64-connection test needs it).")
    w("")
    if failures:
        w("## Failed runs\n")
        for f_ in failures:
            w(f"- {f_}")
        w("")
    w(f"Raw data (fio JSON, perf stat counts, server logs) was in `{os.path.relpath(rundir, meta.get('root', '.'))}` "
      "on the machine that ran it (gitignored).")

    with open(out, "w") as f:
        f.write("\n".join(o) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
