#!/usr/bin/env bash
# One-GPU check without internet: install rebel-rl from this checkout and the wheels in wheels/,
# then measure the demo shape and the 1,024-token shape in bf16 with hf (and vllm when its wheel
# is in wheels/), writing docs/benchmark_gpu.md. Under 10 minutes on one recent GPU.
#
#   scripts/gpu_check.sh              # on the GPU machine (docs/benchmark_gpu.md: filling wheels/)
#   scripts/gpu_check.sh --dry-run    # or REBEL_GPU_CHECK_CPU=1: no install, CPU, tiny shapes
#
# PYTHON (default: python) is the interpreter that already has torch, transformers, peft and
# accelerate; WHEELS (default: wheels) the folder of the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
WHEELS=${WHEELS:-wheels}
CPU=${REBEL_GPU_CHECK_CPU:-0}
[[ "${1:-}" == "--dry-run" ]] && CPU=1

if [[ "$CPU" == 1 ]]; then
    # The same measuring code on the CPU, with a tiny model; the page is not touched.
    out=$(mktemp --suffix=.md)
    OMP_NUM_THREADS=1 timeout 300 "$PYTHON" benchmarks/gpu_check.py --cpu --output "$out"
    echo "dry run: wrote $out"
    exit 0
fi

if [[ ! -d "$WHEELS" ]]; then
    echo "gpu_check: no $WHEELS/ folder: fill it on a connected machine (docs/benchmark_gpu.md)" >&2
    exit 2
fi
# --no-build-isolation: the build backend (setuptools) comes from the environment or wheels/.
"$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" setuptools wheel || true
"$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" --no-build-isolation -e .
backends=hf
if compgen -G "$WHEELS/vllm-*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" vllm && backends=hf,vllm
fi
timeout 600 "$PYTHON" benchmarks/gpu_check.py --backends "$backends"
