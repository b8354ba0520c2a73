#!/usr/bin/env python3
"""Runs several benchmark commands so that they share the machine's good and
bad moments: all start at once, and only one runs at a time, in turn, for
SLICE seconds each (the others are held with SIGSTOP).

Shared hosts change speed every few seconds (other tenants' load), so two
benchmarks run one after the other can land in different phases and their
ratio says more about the host than about them. Taking turns every fraction
of a second gives each command the same mix of phases. Each command should
time many short repeats and report their median: the few repeats that a
pause cuts through are slow outliers the median ignores.

When a command ends, the rest go on taking turns. Exits with the first
non-zero exit status of a command, after all have ended.

--slice 0 runs the commands one after the other instead, each whole, in
the order given: for a machine with cores to spare and no other tenants,
where stopping and resuming a process can cost it more than the host's
phases do (on one 16-vCPU guest, taking turns halved one command's speed).

Usage: round_robin.py [--slice SECONDS] CMD [CMD ...]   (each CMD one shell
string, run in its own process group so that a pause holds its children too)
"""
import argparse
import os
import signal
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slice", type=float, default=0.25, help="seconds each command runs per turn (0: one after the other)")
    ap.add_argument("commands", nargs="+", help="shell command lines")
    a = ap.parse_args()
    if a.slice <= 0:
        status = 0
        for c in a.commands:
            rc = subprocess.run(c, shell=True).returncode
            status = status or rc
        sys.exit(status)
    procs = [subprocess.Popen(c, shell=True, start_new_session=True) for c in a.commands]
    for p in procs[1:]:
        os.killpg(p.pid, signal.SIGSTOP)
    status = 0
    try:
        turn = 0
        while any(p.poll() is None for p in procs):
            p = procs[turn % len(procs)]
            turn += 1
            if p.poll() is not None:
                continue
            os.killpg(p.pid, signal.SIGCONT)
            end = time.monotonic() + a.slice
            while p.poll() is None and time.monotonic() < end:
                time.sleep(0.005)
            if p.poll() is None and sum(q.poll() is None for q in procs) > 1:
                os.killpg(p.pid, signal.SIGSTOP)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGCONT)
                os.killpg(p.pid, signal.SIGTERM)
            status = status or p.wait()
    sys.exit(status)


if __name__ == "__main__":
    main()
