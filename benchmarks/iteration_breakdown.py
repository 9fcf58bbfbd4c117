"""Per-phase time of one REBEL iteration (sampling, log-prob passes, scoring, update) for a tiny
random model and for SmolLM2-135M-Instruct, in fp32 and with bf16 autocast, measured side by side in
one run. Prints a markdown table and writes it to docs/benchmark_iteration.md.

    .venv/bin/python benchmarks/iteration_breakdown.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tiny model builders

from rebel_rl import RebelConfig  # noqa: E402
from rebel_rl.training.online.loop import RebelTrainer  # noqa: E402
from tiny import save_tiny_causal_lm  # noqa: E402

PHASES = ["sampling", "logprobs", "scoring", "update"]


def measure(model: str, mixed_precision: str, repeats: int, workdir: Path, **overrides) -> dict[str, float]:
    """Median per-phase seconds over `repeats` iterations, after one warm-up iteration."""
    config = RebelConfig(model_name_or_path=model, mixed_precision=mixed_precision, eval_prompts=0, progress=False,
                         tensorboard=False, num_iterations=repeats + 1, output_dir=str(workdir / f"run-{time.time_ns()}"),
                         **overrides)
    trainer = RebelTrainer(config)
    trainer.step()  # warm-up: first-call allocations and kernel selection
    runs = [trainer.step()[0] for _ in range(repeats)]
    result = {phase: statistics.median(m[f"time/{phase}"] for m in runs) for phase in PHASES}
    result["total"] = sum(result[p] for p in PHASES)
    result["tokens_per_second"] = statistics.median(m["tokens_per_second"] for m in runs)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmark_iteration.md"))
    args = parser.parse_args()
    batch = dict(prompts_per_iteration=16, minibatch_prompts=8, num_generations=2, max_new_tokens=24, num_epochs=2,
                 temperature=0.7)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tiny = str(save_tiny_causal_lm(workdir / "tiny"))
        cases = [
            ("tiny Llama (2 layers, 32 dims)", tiny, "no", dict(rewards=["length"], lora_r=4)),
            ("SmolLM2-135M + LoRA r=16", "builtin:smollm2-135m-instruct", "no", {}),
            ("SmolLM2-135M + LoRA r=16", "builtin:smollm2-135m-instruct", "bf16", {}),
        ]
        for name, model, precision, extra in cases:
            print(f"measuring {name}, mixed_precision={precision} ...", file=sys.stderr)
            rows.append((name, precision, measure(model, precision, args.repeats, workdir, **batch, **extra)))
    fp32, bf16 = rows[1][2], rows[2][2]
    lines = [
        f"Median seconds per phase of one REBEL iteration over {args.repeats} iterations (after one warm-up), "
        f"{batch['prompts_per_iteration']} prompts x {batch['num_generations']} samples, "
        f"{batch['max_new_tokens']} new tokens, {batch['num_epochs']} epochs of {batch['minibatch_prompts']}-prompt "
        f"minibatches; {torch.get_num_threads()} CPU threads, torch {torch.__version__}, {platform.machine()}.",
        "",
        "| model | precision | sampling | log-prob passes | scoring | update | total | sampled tokens/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, precision, r in rows:
        lines.append(f"| {name} | {'fp32' if precision == 'no' else 'bf16 autocast'} | {r['sampling']:.2f} | "
                     f"{r['logprobs']:.2f} | {r['scoring']:.3f} | {r['update']:.2f} | {r['total']:.2f} | "
                     f"{r['tokens_per_second']:.0f} |")
    lines += ["", f"SmolLM2 fp32 / bf16-autocast time ratio (same run): total {fp32['total'] / bf16['total']:.2f}x, "
                  f"update {fp32['update'] / bf16['update']:.2f}x, log-prob passes {fp32['logprobs'] / bf16['logprobs']:.2f}x."]
    table = "\n".join(lines) + "\n"
    print(table)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("# One REBEL iteration, phase by phase\n\nRegenerate: "
                                 "`.venv/bin/python benchmarks/iteration_breakdown.py`\n\n" + table)


if __name__ == "__main__":
    main()
