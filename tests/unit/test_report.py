#!/usr/bin/python3
"""perf/lib/report.py on a made-up bench run: the round-by-round ratios and
the verdicts of the targets table (ratios of medians, strict and inclusive
bounds, the gain with 4 connections, syscalls, RSS)."""
import json
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("NP_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")
REPORT = os.path.join(SRC, "perf", "lib", "report.py")
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
from nbdraw import check, finish  # noqa: E402  (the tests' shared tally)
RUNTIME = 8

# IOPS per round, and server CPU ticks (at 100 per second) per run
RUNS = {
    "randread-4k-qd32-c1": {"nbdplex": [130, 100, 140], "nbdkit": [100, 100, 100]},
    "randread-4k-qd32-c4": {"nbdplex": [120, 120, 120], "nbdkit": [100, 100, 100]},
    "read-1m-qd8-c1": {"nbdplex": [125, 119, 130], "nbdkit": [100, 100, 100]},
}
TICKS = {"randread-4k-qd32-c1": {"nbdplex": 40, "nbdkit": 130},
         "randread-4k-qd32-c4": {"nbdplex": 61, "nbdkit": 100},
         "read-1m-qd8-c1": {"nbdplex": 100, "nbdkit": 100}}
SYSCALLS = {"randread-4k-qd32-c1": 900, "randread-4k-qd32-c4": 1000}  # per 1000 requests

def fio_json(path, iops, ops):
    with open(path, "w") as f:
        f.write("note: fio prints this before its JSON\n")
        json.dump({"jobs": [{"error": 0, "usr_cpu": 10.0, "sys_cpu": 5.0,
                             "job_runtime": RUNTIME * 1000,
                             "read": {"iops": iops, "total_ios": ops, "bw_bytes": iops * 4096},
                             "write": {"iops": 0, "total_ios": 0, "bw_bytes": 0}}]}, f)


def make_run(d):
    with open(os.path.join(d, "meta.txt"), "w") as f:
        f.write(f"servers=nbdplex,nbdkit\nruntime={RUNTIME}\nrounds=3\nroot={d}\n")
    with open(os.path.join(d, "runs.tsv"), "w") as f:
        f.write("round\tserver\tjob\trc\tcpu_ticks\tclk_tck\tjson\tbusy_ticks\tall_ticks\n")
        for job, by in RUNS.items():
            for srv, rounds in by.items():
                for rnd, iops in enumerate(rounds, 1):
                    path = os.path.join(d, f"r{rnd}-{srv}-{job}.json")
                    fio_json(path, iops, iops * RUNTIME)
                    f.write(f"{rnd}\t{srv}\t{job}\t0\t{TICKS[job][srv]}\t100\t{path}\t800\t1600\n")
    with open(os.path.join(d, "syscalls.tsv"), "w") as f:
        f.write("server\tjob\tfio_json\tperf_file\tfio_rc\n")
        for job, calls in SYSCALLS.items():
            js = os.path.join(d, f"sc-{job}.json")
            fio_json(js, 100, 1000)
            pf = os.path.join(d, f"sc-{job}.csv")
            with open(pf, "w") as p:
                p.write(f"{calls},,raw_syscalls:sys_enter,5000000,100.00,,\n")
                p.write(f"{calls // 2},,syscalls:sys_enter_recvfrom,5000000,100.00,,\n")
            f.write(f"nbdplex\t{job}\t{js}\t{pf}\t0\n")
    with open(os.path.join(d, "rss.tsv"), "w") as f:
        f.write("server\ttest\tconnections\tidle_rss_kib\tpeak_rss_kib\tnote\n")
        f.write(f"nbdplex\tidle\t1000\t{16 * 1024}\t{30 * 1024}\tOK\n")
        f.write(f"nbdplex\twrite-1m-qd32-c64\t64\t{16 * 1024}\t{316 * 1024}\tfio rc=0\n")
        f.write(f"nbdkit\tidle\t1000\t{16 * 1024}\t{900 * 1024}\tOK\n")


def rows_of(text, heading):
    part = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in part.splitlines() if line.startswith("| ") and "---" not in line]


with tempfile.TemporaryDirectory() as d:
    make_run(d)
    out = os.path.join(d, "RESULTS.md")
    rc = subprocess.run([sys.executable, REPORT, d, out]).returncode
    check(rc == 0, f"report.py exits 0 (got {rc})")
    text = open(out).read() if os.path.exists(out) else ""

    paired = {r[0]: r[1] for r in rows_of(text, "### Round by round")[1:]}
    check(paired.get("randread-4k-qd32-c1") == "1.30 (1.00-1.40): 1.30, 1.00, 1.40",
          f"round-by-round ratios in round order: {paired.get('randread-4k-qd32-c1')}")
    check(paired.get("read-1m-qd8-c1") == "1.25 (1.19-1.30): 1.25, 1.19, 1.30",
          f"round-by-round ratios, 1 MiB: {paired.get('read-1m-qd8-c1')}")

    got = {(r[0].split(" (")[0].split(" at ")[0].split(" below ")[0], r[1]): r[2:]
           for r in rows_of(text, "## Targets against nbdkit")[1:]}
    want = {
        # target, job: figure, paired, rounds, met
        ("IOPS", "randread-4k-qd32-c1"): ["1.30", "1.30", "2 of 3", "yes"],
        ("IOPS", "randread-4k-qd32-c4"): ["1.20", "1.20", "0 of 3", "no"],
        ("MiB/s", "read-1m-qd8-c1"): ["1.25", "1.25", "2 of 3", "yes"],
        ("CPU/op", "randread-4k-qd32-c1"): ["0.24", "-", "-", "yes"],
        ("CPU/op", "randread-4k-qd32-c4"): ["0.51", "-", "-", "no"],
        ("gain with 4 connections", "randread-4k-qd32-c4"): ["0.92", "-", "-", "no"],
        ("syscalls per request", "randread-4k-qd32-c1"): ["0.90", "-", "-", "yes"],
        ("syscalls per request", "randread-4k-qd32-c4"): ["1.00", "-", "-", "no"],
        ("RSS with 1000 idle connections", "idle"): ["30.00", "-", "-", "yes"],
        ("RSS under 64 writers", "write-1m-qd32-c64"): ["300.00", "-", "-", "no"],
    }
    for key, cells in want.items():
        check(got.get(key) == cells, f"target {key}: {got.get(key)} (want {cells})")
    check(len(got) == len(want), f"one row per target and job ({len(got)} rows, want {len(want)})")

    # without nbdkit in the run there is nothing to hold the targets against
    with open(os.path.join(d, "meta.txt"), "a") as f:
        f.write("servers=nbdplex\n")
    rc = subprocess.run([sys.executable, REPORT, d, out]).returncode
    text = open(out).read()
    check(rc == 0 and "## Targets" not in text and "### Round by round" not in text,
          "a run of nbdplex alone has no targets table and no round-by-round ratios")

finish()
