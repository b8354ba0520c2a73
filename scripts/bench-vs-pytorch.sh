#!/usr/bin/env bash
# Runs `kiln bench gan-step` and the same step in PyTorch on the same machine,
# at 1 and 2 threads, and prints kiln's speed as a ratio of PyTorch's.
#
# Shared machines change speed every few seconds, so the sides take turns
# on the machine (scripts/round_robin.py): the five processes below start
# together and run one at a time for SLICE seconds each (default 1), so all
# of them see the same mix of fast and slow moments. Each times single
# steps and reports their median (the few steps a pause cuts through are
# outliers it ignores). SLICE=0 runs the five one after the other instead,
# each whole: for a dedicated machine with cores to spare (on the H200
# machine's 16-vCPU host, taking turns halved kiln's speed and raised
# PyTorch's). ROUNDS (default 1) repeats that per config and
# thread count; the table gives the median ratio and, with several rounds,
# the range. Four pairings per config:
#   default: kiln's G step (backward into G's parameters only) against the
#            reference PyTorch step (`loss_g.backward()`, which also computes
#            D's weight gradients and throws them away);
#   same work, twice: kiln's default against PyTorch with
#            `loss_g.backward(inputs=G.params)` (both skip D's weight
#            gradients), and kiln --full-g-backward against the reference
#            step (both compute them);
#   fused Adam: kiln's default against the reference step with
#            `torch.optim.Adam(fused=True)`, PyTorch's fastest Adam on the
#            CPU (the reference script in shared/bench times both Adams).
# Then the step's ceiling (`kiln bench gan-step`'s steps/s at peak: its
# products alone at the FMA peak, which kiln's own process probes): kiln's
# speed as a share of it, and the ceiling over PyTorch's steps/s, a ratio no
# f32 implementation of the step could exceed against PyTorch on this
# machine at that moment.
# Needs a Python with torch: PYTHON=/path/to/python (default python3).
# Usage: [ROUNDS=1] [SLICE=1] scripts/bench-vs-pytorch.sh [CONFIGS] [THREADS...]   e.g. seed,article,toy 1 2
set -euo pipefail
cd "$(dirname "$0")/.."
configs=${1:-seed,article,toy}; shift || true
threads=("$@"); [ ${#threads[@]} -gt 0 ] || threads=(1 2)
rounds=${ROUNDS:-1}
slice=${SLICE:-1}
py=${PYTHON:-python3}
"$py" -c 'import torch' 2>/dev/null || { echo "no torch in $py (set PYTHON=…)" >&2; exit 1; }
bin=${KILN_BIN:-target/release/kiln}
[ -x "$bin" ] || cargo build --release
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# Timed single steps per process: about 15 s of each side's own time for the
# article config, with kiln given twice PyTorch's count (it is about twice as
# fast, so all four finish at about the same time).
torch_steps() { case $1 in article) echo 150 ;; *) echo 1500 ;; esac; }
# One table row per config and thread count, printed as soon as its rounds
# are done (a run cut short by a time limit still leaves its finished rows).
row() { # <config> <threads>
  "$py" - "$tmp" "$rounds" "$1" "$2" <<'PY'
import json, statistics, sys
tmp, rounds, c, t = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def kiln(f, key="steps_per_sec"):
    return json.load(open(f))["rows"][0][key]
def torch(f):
    return json.loads(open(f).readline())["steps_per_sec"]
def cell(xs):
    m = statistics.median(xs)
    return f"**{m:.2f}x**" + (f" ({min(xs):.2f}-{max(xs):.2f})" if len(xs) > 1 else "")
f = [f"{tmp}/{c}-{t}-{r}" for r in range(1, rounds + 1)]
k = [kiln(x + "-kiln.json") for x in f]
p = [torch(x + "-torch.jsonl") for x in f]
kf = [kiln(x + "-kilnfull.json") for x in f]
pg = [torch(x + "-torchg.jsonl") for x in f]
pf = [torch(x + "-torchfused.jsonl") for x in f]
# The step's ceiling (kiln bench gan-step's steps/s at peak: the products
# alone at the FMA peak that the kiln process of each round probed).
kb = [kiln(x + "-kiln.json", "steps_per_sec_at_peak") or float("nan") for x in f]
print(f"| {c} | {t} | {statistics.median(k):.1f} | {statistics.median(p):.1f} "
      f"| {cell([a / b for a, b in zip(k, p)])} | {cell([a / b for a, b in zip(k, pg)])} "
      f"| {cell([a / b for a, b in zip(kf, p)])} | {statistics.median(pf):.1f} "
      f"| {cell([a / b for a, b in zip(k, pf)])} "
      f"| {100 * statistics.median([a / b for a, b in zip(k, kb)]):.0f} % "
      f"| {cell([a / b for a, b in zip(kb, p)])} | {cell([a / b for a, b in zip(kb, pf)])} | {rounds} |", flush=True)
PY
}
IFS=, read -ra cfgs <<< "$configs"
echo "| config | threads | kiln steps/s | PyTorch steps/s | kiln / PyTorch | both G-only | both full | PyTorch fused Adam steps/s | kiln / PyTorch fused Adam | kiln % of ceiling | ceiling / PyTorch | ceiling / PyTorch fused Adam | rounds |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for t in "${threads[@]}"; do
  for c in "${cfgs[@]}"; do
    n=$(torch_steps "$c")
    for r in $(seq "$rounds"); do
      f="$tmp/$c-$t-$r"
      kiln="$bin bench gan-step --threads $t --preset $c --steps 1 --repeats $((2 * n))"
      torch="$py scripts/pytorch_gan_step.py --configs $c --threads $t --steps 1 --repeats $n"
      "$py" scripts/round_robin.py --slice "$slice" \
        "$kiln --json $f-kiln.json >/dev/null" \
        "$torch > $f-torch.jsonl" \
        "$kiln --full-g-backward --json $f-kilnfull.json >/dev/null" \
        "$torch --g-backward g-only > $f-torchg.jsonl" \
        "$torch --adam fused > $f-torchfused.jsonl"
    done
    row "$c" "$t"
  done
done
