#!/usr/bin/env bash
# Trains the toy preset for several seeds and prints modes covered / high
# quality per seed: the evidence behind the README's coverage claim.
# Usage: scripts/toy-seeds.sh [DATA] [FIRST_SEED] [COUNT] [extra kiln train flags…]
set -euo pipefail
data=${1:-ring8}; first=${2:-0}; count=${3:-10}; shift $(( $# < 3 ? $# : 3 )) || true
bin=${KILN_BIN:-target/release/kiln}
[ -x "$bin" ] || cargo build --release
for s in $(seq "$first" $((first + count - 1))); do
  line=$("$bin" train --data "$data" --seed "$s" --out "runs/seeds-$data-$s" --quiet "$@" | tail -n 1)
  echo "seed $s: $line"
done
