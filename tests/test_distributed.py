"""Two CPU processes (DDP over gloo, as accelerate sets it up): the same loop, no rewrite."""
import json
import os
import subprocess
import sys
from pathlib import Path

from tiny import save_tiny_causal_lm


def test_two_process_run_through_accelerate_launch(tmp_path):
    model = save_tiny_causal_lm(tmp_path / "tiny")
    run_dir = tmp_path / "run"
    # torchrun starts the processes; ACCELERATE_USE_CPU makes accelerate join them over gloo on the CPU.
    launcher = Path(sys.executable).with_name("torchrun")
    command = [str(launcher), "--nproc_per_node", "2", "-m", "rebel_rl.cli", "train",
               "--model_name_or_path", str(model), "--rewards", "length", "--num_iterations", "2",
               "--prompts_per_iteration", "2", "--minibatch_prompts", "1", "--max_new_tokens", "6",
               "--eval_prompts", "2", "--output_dir", str(run_dir), "--progress", "false", "--mixed_precision", "no"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # Written once (by the main process), counting both processes' samples: 2 processes x 2 prompts x 2.
    assert [m["iteration"] for m in metrics] == [1, 2]
    assert [m["reward_queries"] for m in metrics] == [8, 16]
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()
