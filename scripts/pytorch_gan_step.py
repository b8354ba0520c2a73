#!/usr/bin/env python3
"""PyTorch side of `scripts/bench-vs-pytorch.sh`: times the same GAN training
step as `kiln bench gan-step` (same models, batch, losses, Adam) and prints one
JSON object per config.

One step: noise, fake = G(z); D step on a real batch and fake.detach() (two D
forwards, one backward, Adam); G step through D on the same fake (one D
forward, backward, Adam). Real data is random (timing does not depend on it).
With --device cuda everything lives on the GPU and each step ends with a
synchronize, as `kiln bench gan-step --device cuda` ends each step by reading
the G loss.

--g-backward full (the default, as the reference `pytorch_gan_step.py`):
`loss_g.backward()` also computes D's weight gradients, which the G step then
throws away (`kiln bench gan-step --full-g-backward` does the same work).
--g-backward g-only: `loss_g.backward(inputs=G's parameters)`, PyTorch's way
to skip them, the work of kiln's default G step (`backward_to`).
--adam default (PyTorch's default Adam: on the CPU, one op per tensor per
update term) or fused (`torch.optim.Adam(fused=True)`: one kernel per
parameter group, like kiln's update). The reference script in shared/bench
times both.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn

CONFIGS = {
    # name: (G widths, D widths, G output, D ends in sigmoid, loss, batch)
    "seed": ([100, 128, 784], [784, 128, 1], nn.Sigmoid, True, "bce", 64),
    "article": ([100, 128, 12288], [12288, 128, 1], nn.Sigmoid, True, "lsgan", 100),
    "toy": ([2, 128, 128, 2], [2, 128, 128, 1], None, False, "bce", 256),
}


def mlp(widths, out_act):
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i + 2 < len(widths):
            layers.append(nn.ReLU())
    if out_act is not None:
        layers.append(out_act())
    return nn.Sequential(*layers)


def bench(name, steps, repeats, warmup, device, g_only, adam):
    g_w, d_w, g_out, d_sig, loss, batch = CONFIGS[name]
    torch.manual_seed(0)
    torch.set_default_device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    G = mlp(g_w, g_out)
    D = mlp(d_w, nn.Sigmoid if d_sig else None)
    kw = {"fused": True} if adam == "fused" else {}
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, **kw)
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, **kw)
    if loss == "lsgan":
        crit = lambda out, t: torch.mean((out - t) ** 2)
    else:
        crit = nn.BCELoss() if d_sig else nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)
    pool = torch.rand(4 * batch, d_w[0])

    def step(i):
        real = pool[(i % 4) * batch:(i % 4 + 1) * batch]
        fake = G(torch.randn(batch, g_w[0]))
        opt_d.zero_grad(set_to_none=True)
        ld = crit(D(real), ones) + crit(D(fake.detach()), zeros)
        ld.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        lg = crit(D(fake), ones)
        if g_only:
            lg.backward(inputs=list(G.parameters()))
        else:
            lg.backward()
        opt_g.step()
        sync()

    for i in range(warmup):
        step(i)
    meds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            step(i)
        meds.append((time.perf_counter() - t0) / steps)
    med = statistics.median(meds)
    return {"config": name, "batch": batch, "median_ms": med * 1e3, "steps_per_sec": 1.0 / med,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(device),
            "g_backward": "g-only" if g_only else "full", "adam": adam}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--configs", default="seed,article,toy")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--g-backward", choices=["full", "g-only"], default="full",
                    help="G step: backward into every parameter (full) or into G's only (g-only)")
    ap.add_argument("--adam", choices=["default", "fused"], default="default",
                    help="PyTorch's default Adam or torch.optim.Adam(fused=True)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for name in a.configs.split(","):
        print(json.dumps(bench(name, a.steps, a.repeats, a.warmup, torch.device(a.device), a.g_backward == "g-only",
                               a.adam)), flush=True)


if __name__ == "__main__":
    main()
