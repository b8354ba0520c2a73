#!/usr/bin/env python3
"""PyTorch's side of `kiln bench layers`: the three GEMMs of each GAN linear
layer (forward x·Wᵀ, grad-input dy·W, grad-weight dyᵀ·x, with W [out, in] as
in nn.Linear and the transposes as views), timed with torch.mm into a
preallocated output, as kiln times its GEMM into a reused C.

The layer list and the case names are kiln's (src/bench/gemm.rs, GAN_LAYERS),
so scripts/bench-layers-vs-pytorch.sh can pair the rows.

Timing: per case, a warm-up, then --repeats loops of enough calls to last
--min-time seconds each, the median of them per call. --sweeps runs the whole
list that many times (to last as long as kiln's run when the two take turns
on the machine, see bench-layers-vs-pytorch.sh); one JSON line per case with
the median over the sweeps.
Threads are set before torch loads (the environment variables) and again with
torch.set_num_threads.

Usage: pytorch_layers.py [--threads N] [--repeats R] [--min-time S] [--sweeps K] [--only SUBSTRING]
"""
import argparse
import json
import os
import statistics
import sys
import time

LAYERS = [
    ("seed", 64, 100, 128),
    ("seed", 64, 128, 784),
    ("seed", 64, 784, 128),
    ("article", 100, 128, 12288),
    ("article", 100, 12288, 128),
    ("mlp-large", 256, 100, 256),
    ("mlp-large", 256, 256, 512),
    ("mlp-large", 256, 512, 1024),
    ("mlp-large", 256, 1024, 784),
    ("mlp-large", 256, 784, 512),
    ("mlp-large", 256, 512, 256),
    ("toy2d", 256, 2, 128),
    ("toy2d", 256, 128, 128),
]


def cases(torch):
    """(case name, m·n·k, the call) for every GEMM of every layer."""
    g = torch.Generator().manual_seed(0)
    rand = lambda *s: torch.rand(*s, generator=g, dtype=torch.float32)
    for name, batch, d_in, d_out in LAYERS:
        x, w, dy = rand(batch, d_in), rand(d_out, d_in), rand(batch, d_out)
        y, dx, dw = torch.empty(batch, d_out), torch.empty(batch, d_in), torch.empty(d_out, d_in)
        yield (f"{name} fwd x[{batch}x{d_in}]@W^T[{d_in}x{d_out}]", batch * d_out * d_in,
               lambda x=x, w=w, y=y: torch.mm(x, w.t(), out=y))
        yield (f"{name} bwd-in dy[{batch}x{d_out}]@W[{d_out}x{d_in}]", batch * d_in * d_out,
               lambda dy=dy, w=w, dx=dx: torch.mm(dy, w, out=dx))
        yield (f"{name} bwd-w dy^T[{d_out}x{batch}]@x[{batch}x{d_in}]", d_out * d_in * batch,
               lambda dy=dy, x=x, dw=dw: torch.mm(dy.t(), x, out=dw))


def time_case(call, repeats, min_time):
    for _ in range(3):
        call()
    calls, t = 1, 0.0
    while t < min_time:
        calls *= 2
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        t = time.perf_counter() - t0
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        per_call.append((time.perf_counter() - t0) / calls)
    return statistics.median(per_call), min(per_call), max(per_call)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.05)
    ap.add_argument("--only", default="", help="only cases whose name contains this")
    ap.add_argument("--sweeps", type=int, default=1, help="times to run the whole list (median over them)")
    a = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(a.threads)
    import torch

    torch.set_num_threads(a.threads)
    todo = [c for c in cases(torch) if a.only in c[0]]
    times = {case: [] for case, _, _ in todo}
    for _ in range(a.sweeps):
        for case, _, call in todo:
            times[case].append(time_case(call, a.repeats, a.min_time)[0])
    for case, mnk, _ in todo:
        med = statistics.median(times[case])
        print(json.dumps({"case": case, "impl": "torch.mm", "threads": a.threads, "time_median_s": med,
                          "time_min_s": min(times[case]), "time_max_s": max(times[case]),
                          "gflops": 2 * mnk / med / 1e9, "sweeps": a.sweeps, "torch": torch.__version__}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
