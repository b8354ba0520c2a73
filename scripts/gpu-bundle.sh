#!/usr/bin/env bash
# Build everything the GPU machine needs into gpu-bin/ (ignored by git, kept < 64 MiB):
#   - the `kiln` CLI (release, --features cuda), if the workspace builds one yet
#   - every kiln-cuda test executable (release)
#   - the CPU-vs-CUDA parity tests of kiln-core ops and of GAN training steps (release)
#   - the kiln-cpu unit tests (release), for the host CPU's own instruction set
#   - scripts/pytorch_gan_step.py, the PyTorch reference for `kiln bench gan-step`, with
#     scripts/bench-vs-pytorch.sh and its turn-taker (gpu-bin/scripts/, as laid out in the repo)
#   - run-all.sh, which runs the tests with KILN_REQUIRE_GPU=1 and then the benchmarks.
#
# The GPU machine has no Rust toolchain and no network; the binaries load libcuda/libnvrtc/
# libcublas at run time from LD_LIBRARY_PATH (/usr/local/cuda/lib64 there).
#
# Usage:  scripts/gpu-bundle.sh            then copy gpu-bin/ and run  gpu-bin/run-all.sh
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
out="$repo_root/gpu-bin"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
max_bytes=$((64 * 1024 * 1024))

warn() { echo "gpu-bundle: warning: $*" >&2; }

rm -rf "$out"
mkdir -p "$out"

echo "gpu-bundle: building kiln (release, --features cuda)" >&2
if cargo build --release --features cuda; then
    if [ -x "$target_dir/release/kiln" ]; then
        cp "$target_dir/release/kiln" "$out/kiln"
    else
        warn "no kiln binary at $target_dir/release/kiln; skipping it"
    fi
else
    warn "cargo build --release --features cuda failed; bundling the kiln-cuda tests only"
fi

echo "gpu-bundle: building kiln-cuda test executables" >&2
cargo test --release -p kiln-cuda --no-run --message-format=json >"$out/.cargo-test.json"
# Each test target yields one executable: name it kiln_cuda_<target>.
python3 - "$out/.cargo-test.json" "$out" <<'PY'
import json, shutil, sys, os
log, out = sys.argv[1], sys.argv[2]
for line in open(log):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    if not msg.get("profile", {}).get("test"):
        continue
    target = msg["target"]["name"].replace("-", "_")
    kind = msg["target"]["kind"][0]
    name = "kiln_cuda_" + ("lib" if kind == "lib" else target)
    dest = os.path.join(out, name)
    shutil.copy2(msg["executable"], dest)
    print("gpu-bundle: copied", name, file=sys.stderr)
PY
rm -f "$out/.cargo-test.json"

# CPU-vs-CUDA parity of every kiln-core op (kiln-core/tests/cuda_parity.rs) and of whole GAN
# training steps (tests/cuda_gan_parity.rs): named kiln_cuda_* so run-all.sh runs them too.
echo "gpu-bundle: building the CPU-vs-CUDA parity tests" >&2
bundle_test() { # <cargo args…> -- <bundle name>
    local name="${*: -1}"
    local args=("${@:1:$#-1}")
    local exe
    exe="$(cargo test --release "${args[@]}" --no-run --message-format=json \
        | python3 -c 'import json,sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m.get("profile", {}).get("test"):
        print(m["executable"])' | tail -n 1)"
    if [ -n "$exe" ]; then
        cp "$exe" "$out/$name"
        echo "gpu-bundle: copied $name" >&2
    else
        warn "no test executable for ${args[*]}"
    fi
}
bundle_test --features cuda -p kiln-core --test cuda_parity kiln_cuda_core_parity
bundle_test --features cuda -p kiln --test cuda_gan_parity kiln_cuda_gan_parity
# The CPU kernels' unit tests: the GPU machine's host CPU may have what the development box
# lacks (full-width AVX-512 for v5), so run-all.sh runs them there too.
bundle_test -p kiln-cpu --lib kiln_cpu_lib
# The PyTorch side of the GAN-step comparison (the GPU machine has torch), and the CPU
# comparison scripts (GAN step, layer GEMMs) with their turn-taker, and the v5 blocking sweep,
# laid out as in the repo (scripts/ beside kiln).
mkdir -p "$out/scripts"
cp scripts/bench-vs-pytorch.sh scripts/round_robin.py scripts/pytorch_gan_step.py \
    scripts/bench-layers-vs-pytorch.sh scripts/pytorch_layers.py scripts/tune-v5.sh "$out/scripts/"

cat >"$out/run-all.sh" <<'RUN'
#!/usr/bin/env bash
# Runs on the GPU machine: every kiln-cuda test with a GPU required, then the benchmarks, each
# step under its own timeout; no new step starts once BUDGET seconds have passed (GPU time is
# scarce). Everything goes to $OUT/log.txt (OUT defaults to ./out), JSON results to $OUT/res/.
# Knobs (environment): BUDGET (s, default 480), TESTS, BENCHES (default: gemm layers
# elementwise reduce adam gan-step train cpu vs-pytorch), GEMM_SIZES (1024,2048,4096,8192),
# GEMM_REPEATS (5), PRESETS for the short training runs (toy seed mlp:shapes64). `cpu` times
# the host CPU's GEMMs on 1 thread (every packed variant and matrixmultiply, square and the
# GAN's layers); `vs-pytorch` runs scripts/bench-vs-pytorch.sh on the host CPU (VS_CONFIGS,
# default seed,article,toy; VS_THREADS, default "1 2"; VS_ROUNDS, default 1; VS_SLICE, default 0).
# `tune-v5` sweeps v5's cache blocking on the host CPU (scripts/tune-v5.sh; TUNE_SIZES, default
# 1024,2048) and keeps the best in $OUT/res/v5-blocking.txt; `layers-vs-pytorch` times the GAN's
# layer GEMMs against torch.mm on the host CPU, 1 thread, with that blocking when there is one.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export KILN_REQUIRE_GPU=1 KILN_REQUIRE_NVRTC=1 PYTHONUNBUFFERED=1
OUT=${OUT:-$here/out}
res="$OUT/res"
mkdir -p "$res"
log="$OUT/log.txt"
BUDGET=${BUDGET:-480}
start=$(date +%s)
status=0
step() { # <timeout s> <command…>
    local t=$1; shift
    local now=$(( $(date +%s) - start ))
    if [ "$now" -gt "$BUDGET" ]; then echo "=== skipped (over the ${BUDGET} s budget): $*" | tee -a "$log"; status=1; return; fi
    echo "=== [${now} s] $*" | tee -a "$log"
    timeout "$t" "$@" >>"$log" 2>&1
    local rc=$?
    [ $rc -eq 0 ] || status=1
    echo "=== rc=$rc after $(( $(date +%s) - start )) s" | tee -a "$log"
}
step 20 nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
# The host CPU, always: machines of one GPU kind come with different CPUs, and the CPU numbers
# below mean little without the model.
step 20 bash -c 'lscpu | grep -E "Model name|^CPU\(s\)|Thread\(s\) per core|L1d|L2|L3"'
for t in ${TESTS:-$(ls kiln_cuda_* kiln_cpu_* 2>/dev/null | sort)}; do
    step 120 "./$t" --test-threads=4
done
if [ ! -x ./kiln ]; then
    echo "no kiln binary in the bundle; benchmarks skipped" | tee -a "$log"
    exit 1
fi
for what in ${BENCHES:-gemm layers elementwise reduce adam gan-step train cpu vs-pytorch}; do
    case $what in
        gemm) step 240 ./kiln bench gemm --device cuda --sizes "${GEMM_SIZES:-1024,2048,4096,8192}" \
                  --repeats "${GEMM_REPEATS:-5}" --json "$res/bench-gemm.json" ;;
        gan-step)
            step 120 ./kiln bench gan-step --device cuda --repeats 5 --steps 50 --json "$res/bench-gan-step.json"
            # The same GAN steps in PyTorch eager on the same GPU (the reference).
            if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
                step 120 python3 ./scripts/pytorch_gan_step.py --device cuda --configs seed,article,toy --repeats 5
            fi ;;
        train)
            # Every preset trains on the GPU (short runs; the summary line shows the speed).
            # PRESETS items are preset[:dataset]; mlp's own Fashion-MNIST needs a download.
            for item in ${PRESETS:-toy seed mlp:shapes64}; do
                preset=${item%%:*}
                data=()
                [ "$item" = "$preset" ] || data=(--data "${item#*:}")
                step 120 ./kiln train --device cuda --preset "$preset" "${data[@]}" --steps 300 --quiet \
                    --out "$res/runs-$preset"
            done ;;
        cpu)
            step 20 bash -c 'lscpu | grep -E "Flags" | cut -c1-200'
            step 90 ./kiln bench gemm --threads 1 --sizes 512,1024 --impls v3,v4,v5,mm --repeats 9 \
                --json "$res/bench-cpu-gemm.json"
            step 180 ./kiln bench layers --threads 1 --impls dispatch,v4,v5,mm --repeats 5 \
                --json "$res/bench-cpu-layers.json" ;;
        vs-pytorch)
            # kiln's GAN step against PyTorch's on this machine's CPU, at 1 and 2 threads.
            if python3 -c 'import torch' 2>/dev/null; then
                # SLICE=0: the sides run one after the other, whole. Taking turns (SLICE>0, as
                # on the shared development box) halved kiln's speed on the H200 machine's
                # 16-vCPU host.
                # shellcheck disable=SC2086
                step 420 env KILN_BIN=./kiln PYTHON=python3 ROUNDS="${VS_ROUNDS:-1}" SLICE="${VS_SLICE:-0}" \
                    bash scripts/bench-vs-pytorch.sh "${VS_CONFIGS:-seed,article,toy}" ${VS_THREADS:-1 2}
            else
                echo "no torch here: vs-pytorch skipped" | tee -a "$log"
            fi ;;
        tune-v5)
            step 300 bash -c 'set -o pipefail; KILN_BIN=./kiln PYTHON=python3 SIZES="${TUNE_SIZES:-1024,2048}" \
                LAYER_ROUNDS=1 bash scripts/tune-v5.sh | tee "$0/tune-v5.txt"' "$res"
            best=$(sed -n 's/^tune-v5: best blocking //p' "$res/tune-v5.txt" 2>/dev/null)
            [ -z "$best" ] || echo "$best" >"$res/v5-blocking.txt" ;;
        layers-vs-pytorch)
            if python3 -c 'import torch' 2>/dev/null; then
                blocking=$(cat "$res/v5-blocking.txt" 2>/dev/null || true)
                echo "layers-vs-pytorch: KILN_V5_BLOCKING=${blocking:-(built in)}" | tee -a "$log"
                step 240 env ${blocking:+KILN_V5_BLOCKING=$blocking} KILN_BIN=./kiln PYTHON=python3 SLICE=0 \
                    bash scripts/bench-layers-vs-pytorch.sh 1
            else
                echo "no torch here: layers-vs-pytorch skipped" | tee -a "$log"
            fi ;;
        *) step 120 ./kiln bench "$what" --device cuda --repeats 5 --json "$res/bench-$what.json" ;;
    esac
done
echo "=== done after $(( $(date +%s) - start )) s, status $status" | tee -a "$log"
exit $status
RUN
chmod +x "$out/run-all.sh"

total=$(du -sb "$out" | cut -f1)
echo "gpu-bundle: $(ls "$out" | wc -l) files, $((total / 1024 / 1024)) MiB in $out" >&2
if [ "$total" -ge "$max_bytes" ]; then
    echo "gpu-bundle: error: bundle is $total bytes, over the 64 MiB limit" >&2
    exit 1
fi
