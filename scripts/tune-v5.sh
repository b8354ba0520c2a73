#!/usr/bin/env bash
# Sweeps the AVX-512 kernel's (v5's) cache blocking on this CPU, 1 thread: each blocking
# (mc,kc,nc through KILN_V5_BLOCKING) runs `kiln bench gemm --impls v5` in its own process,
# and the table ranks them by their median fraction of the FMA peak over SIZES. The
# built-in blocking runs first and last, as a check on how much the machine drifted. Then,
# with LAYERS=1 (the default), the GAN's layer GEMMs run with the built-in blocking and with
# the best one of the sweep, alternated LAYER_ROUNDS times, and the script prints the best
# one's speed over the built-in's per layer GEMM.
# Needs a CPU with AVX-512F (v5); says so and exits 1 otherwise.
# KILN_V5_BLOCKING takes mc,kc,nc[,small_m[,long_kc]]; COMPARE=<blocking> compares the layer
# GEMMs with that blocking instead of the sweep's best (small_m and long_kc change only them).
# Usage: [SIZES=1024,2048] [REPEATS=5] [BLOCKINGS="mc,kc,nc …"] [LAYERS=1] [LAYER_ROUNDS=2] [COMPARE=…]
#        [KILN_BIN=target/release/kiln] [PYTHON=python3] scripts/tune-v5.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${KILN_BIN:-target/release/kiln}
py=${PYTHON:-python3}
[ -x "$bin" ] || cargo build --release
sizes=${SIZES:-1024,2048}
repeats=${REPEATS:-5}
# The built-in blocking, as `kiln bench gemm` reports it.
default=$("$bin" bench gemm --threads 1 --sizes 64 --impls v5 --repeats 1 2>/dev/null |
    sed -n 's/.*v5 blocking: mc \([0-9]*\), kc \([0-9]*\), nc \([0-9]*\),.*/\1,\2,\3/p')
blockings=${BLOCKINGS:-"144,256,3072 288,256,3072 480,256,3072 144,192,3072 288,192,3072 480,192,3072 \
288,384,3072 96,512,3072 192,512,3072 144,384,1536 288,384,768 240,320,3072"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -z "$default" ]; then
    echo "tune-v5: kiln reports no v5 blocking: this CPU has no AVX-512F, so no v5 to tune" >&2
    exit 1
fi

i=0
for b in $default $blockings $default; do
    i=$((i + 1))
    KILN_V5_BLOCKING=$b "$bin" bench gemm --threads 1 --sizes "$sizes" --impls v5 --repeats "$repeats" \
        --json "$tmp/gemm-$i-$b.json" >/dev/null 2>&1 || echo "tune-v5: blocking $b failed" >&2
done

best=$("$py" - "$tmp" "$default" <<'PY'
import glob, json, os, statistics, sys
tmp, default = sys.argv[1], sys.argv[2]
rows = []
for path in sorted(glob.glob(f"{tmp}/gemm-*.json"), key=lambda p: int(os.path.basename(p).split("-")[1])):
    blocking = os.path.basename(path)[:-5].split("-", 2)[2]
    ms = [m for m in json.load(open(path))["measurements"] if m["status"] == "ok" and "v5" in m["impl"]]
    if not ms:
        continue
    per_size = {m["case"]: m for m in ms}
    frac = statistics.median(m["frac_of_peak_paired"] for m in ms)
    rows.append((frac, blocking, per_size))
cases = sorted({c for _, _, p in rows for c in p}, key=lambda c: int(c.split("x")[0]))
print("v5 blocking sweep, 1 thread: GFLOP/s (% of the FMA peak at the time) per size", file=sys.stderr)
print("| mc,kc,nc | " + " | ".join(cases) + " | median % |", file=sys.stderr)
print("|---|" + "---|" * (len(cases) + 1), file=sys.stderr)
for frac, blocking, p in sorted(rows, key=lambda r: -r[0]):
    cells = [f"{p[c]['rate']:.1f} ({100 * p[c]['frac_of_peak_paired']:.1f} %)" if c in p else "-" for c in cases]
    tag = " (built in)" if blocking == default else ""
    print(f"| {blocking}{tag} | " + " | ".join(cells) + f" | {100 * frac:.1f} % |", file=sys.stderr)
print(max(rows)[1] if rows else default)
PY
)
echo "tune-v5: best blocking $best"
# COMPARE names the blocking the layer GEMMs are compared with, instead of the sweep's best:
# for what square products cannot tell apart (small_m, long_kc).
best=${COMPARE:-$best}

[ "${LAYERS:-1}" = 1 ] || exit 0
[ "$best" != "$default" ] || { echo "tune-v5: the built-in blocking is the best; no layer comparison"; exit 0; }
for r in $(seq "${LAYER_ROUNDS:-2}"); do
    for b in $default $best; do
        KILN_V5_BLOCKING=$b "$bin" bench layers --threads 1 --impls v5 --repeats "$repeats" \
            --json "$tmp/layers-$r-$b.json" >/dev/null 2>&1 || echo "tune-v5: layers with $b failed" >&2
    done
done
"$py" - "$tmp" "$default" "$best" <<'PY'
import glob, json, statistics, sys
tmp, default, best = sys.argv[1:4]
def times(b):
    out = {}
    for path in glob.glob(f"{tmp}/layers-*-{b}.json"):
        for m in json.load(open(path))["measurements"]:
            if m["status"] == "ok" and "v5" in m["impl"]:
                out.setdefault(m["case"], []).append(m["time_median_s"])
    return {c: statistics.median(ts) for c, ts in out.items()}
d, b = times(default), times(best)
print(f"GAN layer GEMMs, v5 with {best} against {default} (speed ratio, > 1: {best} faster)")
ratios = []
for case in d:
    if case in b:
        ratios.append(d[case] / b[case])
        print(f"| {case} | {d[case] * 1e6:.1f} us | {b[case] * 1e6:.1f} us | {ratios[-1]:.3f}x |")
if ratios:
    print(f"geometric mean {statistics.geometric_mean(ratios):.3f}x, range {min(ratios):.3f}-{max(ratios):.3f}x")
PY
