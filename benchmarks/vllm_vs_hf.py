"""The two generation backends side by side in one run: sampling tokens/s and whole-iteration time of the
SmolLM2-135M-Instruct demo (LoRA r=16, 16 prompts x 2) with transformers' `generate` (hf) and a colocated
vLLM engine (vllm), at 24 and 128 new tokens. Prints a markdown table and writes it to docs/benchmark_vllm.md.

    .venv-vllm/bin/python benchmarks/vllm_vs_hf.py [--repeats 2]      # needs vLLM: scripts/setup.sh
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from rebel_rl import RebelConfig
from rebel_rl.training.online.loop import RebelTrainer

ROOT = Path(__file__).resolve().parents[1]
PHASES = ["sampling", "logprobs", "scoring", "update"]


def measure(backend: str, max_new_tokens: int, repeats: int, workdir: Path) -> dict[str, float]:
    """Medians over `repeats` iterations after one warm-up iteration (the engine is already up then)."""
    config = RebelConfig(generation_backend=backend, max_new_tokens=max_new_tokens, prompts_per_iteration=16,
                         num_generations=2, eval_prompts=0, progress=False, tensorboard=False, mixed_precision="no",
                         num_iterations=repeats + 1, vllm_kv_cache_gb=1,
                         output_dir=str(workdir / f"{backend}-{max_new_tokens}-{time.time_ns()}"))
    start = time.perf_counter()
    trainer = RebelTrainer(config)
    setup = time.perf_counter() - start
    runs = []
    for index in range(repeats + 1):  # each iteration's phases as they finish: a run cut short still tells
        metrics = trainer.step()[0]
        print(f"  {'warm-up' if index == 0 else 'iteration'}: " + ", ".join(
            f"{phase} {metrics[f'time/{phase}']:.1f} s" for phase in PHASES), file=sys.stderr, flush=True)
        runs.append(metrics)
    runs = runs[1:]
    del trainer
    result = {phase: statistics.median(m[f"time/{phase}"] for m in runs) for phase in PHASES}
    return {"setup": setup, "tokens_per_second": statistics.median(m["tokens_per_second"] for m in runs),
            "mean_length": statistics.median(m["completions/mean_length"] for m in runs),
            "iteration": sum(result.values()), **result,
            "logprob_diff": statistics.median(m.get("vllm/logprob_diff", float("nan")) for m in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, nargs="+", default=[24, 128])
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmark_vllm.md"))
    args = parser.parse_args()
    rows = ["| new tokens | backend | sampling tokens/s | sampling s | whole iteration s | mean length | "
            "engine start + load s | vllm/logprob_diff | load average (1 min) before, after |",
            "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for max_new_tokens in args.max_new_tokens:
            for backend in ("hf", "vllm"):
                print(f"measuring {backend}, {max_new_tokens} new tokens ...", file=sys.stderr, flush=True)
                load_before = os.getloadavg()[0]  # the machine may be shared: the contention each row saw
                r = measure(backend, max_new_tokens, args.repeats, Path(tmp))
                rows.append(f"| {max_new_tokens} | {backend} | {r['tokens_per_second']:.0f} | {r['sampling']:.1f} | "
                            f"{r['iteration']:.1f} | {r['mean_length']:.1f} | {r['setup']:.1f} | "
                            f"{r['logprob_diff']:.1e} | {load_before:.1f}, {os.getloadavg()[0]:.1f} |".replace("nan", "-"))
                print(rows[-1], file=sys.stderr, flush=True)
    table = "\n".join(rows[:2] + sorted(rows[2:], key=lambda row: int(row.split("|")[1])))  # by new tokens
    text = (f"SmolLM2-135M-Instruct, LoRA r=16, fp32, 16 prompts x 2 completions, medians of {args.repeats} "
            f"iterations after a warm-up one; {platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; "
            "`.venv-vllm/bin/python benchmarks/vllm_vs_hf.py`.\n\n" + table + "\n")
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
