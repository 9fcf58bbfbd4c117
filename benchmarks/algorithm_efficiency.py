"""Time per iteration and peak memory of REBEL, PPO, RLOO and REINFORCE at equal batch and model,
measured side by side in one run; ratios to REBEL. Prints a markdown table and writes it to
docs/benchmark_algorithms.md.

Each measurement runs in a fresh process (so peak memory is its own): load the model, one warm-up
iteration, then `--iterations` timed ones. Algorithms are interleaved within each repeat so machine
noise hits them alike; the table reports medians over repeats.

    .venv/bin/python benchmarks/algorithm_efficiency.py [--repeats 3] [--model builtin:smollm2-135m-instruct]
    .venv/bin/python benchmarks/algorithm_efficiency.py --model runs/compare-small/sft/final --dataset builtin:tldr \
        --reward model:runs/compare-small/reward_model/final --full_finetuning      # the comparison's setup
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALGORITHMS = ["rebel", "ppo", "rloo", "reinforce"]


def _memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(algorithm: str, args: argparse.Namespace) -> dict[str, float]:
    """In this process: one warm-up and `args.iterations` timed iterations of `algorithm`."""
    from rebel_rl import RebelConfig
    from rebel_rl.training.online.loop import RebelTrainer

    iterations = args.iterations
    config = RebelConfig(model_name_or_path=args.model, dataset=args.dataset, rewards=[args.reward],
                         use_lora=not args.full_finetuning, algorithm=algorithm, eval_prompts=0, progress=False,
                         tensorboard=False, num_iterations=iterations + 1, num_epochs=1, save_every=0,
                         output_dir=f"{args.workdir}/{algorithm}", overwrite=True)
    trainer = RebelTrainer(config)
    loaded = _memory_mb("VmRSS")
    trainer.step()  # warm-up: first-call allocations and kernel selection
    steps, cpu = [], []
    for _ in range(iterations):
        start = time.process_time()
        steps.append(trainer.step()[0])
        cpu.append(time.process_time() - start)
    return {
        "seconds": statistics.median(sum(m[f"time/{p}"] for p in ("sampling", "logprobs", "scoring", "update"))
                                     for m in steps),
        "cpu_seconds": statistics.median(cpu),
        "update_seconds": statistics.median(m["time/update"] for m in steps),
        "peak_mb": _memory_mb("VmHWM"),
        "training_mb": _memory_mb("VmHWM") - loaded,
        "trainable_params": sum(p.numel() for p in trainer.trainable_params),
    }


def run_isolated(algorithm: str, args: argparse.Namespace, workdir: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", algorithm, "--model", args.model, "--dataset", args.dataset,
               "--reward", args.reward, "--iterations", str(args.iterations), "--workdir", workdir]
    out = subprocess.run(command + (["--full_finetuning"] if args.full_finetuning else []),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    median = {a: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for a, runs in results.items()}
    base = median["rebel"]
    lines = [
        f"Model `{args.model}` ({'full fine-tuning' if args.full_finetuning else 'LoRA policy'}, "
        f"mixed_precision auto), dataset `{args.dataset}`, reward `{args.reward}`, 16 prompts x 2 samples, "
        f"24 new tokens, 1 epoch of 2 minibatches per iteration, the same for every algorithm. Median over "
        f"{args.repeats} repeats of the median of {args.iterations} iterations, each algorithm in a fresh process; "
        f"algorithms interleaved within a repeat; one torch thread per process. CPU time (process time) is the "
        f"ratio's basis: on a shared machine it is far less noisy than wall time. "
        f"{platform.processor() or platform.machine()}, "
        f"torch {__import__('torch').__version__}.",
        "",
        "| algorithm | CPU s / iteration | ratio to REBEL | wall s / iteration | update phase (wall s) | peak RSS (MB) "
        "| RSS growth in training (MB) | trainable parameters |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for algorithm, m in median.items():
        lines.append(f"| {algorithm} | {m['cpu_seconds']:.2f} | {m['cpu_seconds'] / base['cpu_seconds']:.2f} | "
                     f"{m['seconds']:.2f} | "
                     f"{m['update_seconds']:.2f} | {m['peak_mb']:.0f} ({m['peak_mb'] / base['peak_mb']:.2f}x) | "
                     f"{m['training_mb']:.0f} | {m['trainable_params'] / 1e6:.2f} M |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--model", default="builtin:smollm2-135m-instruct")
    parser.add_argument("--dataset", default="builtin:positive_sentiment")
    parser.add_argument("--reward", default="sentiment")
    parser.add_argument("--full_finetuning", action="store_true", help="no LoRA: the whole policy is trained")
    parser.add_argument("--child")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(1)
        from rebel_rl.logs import quiet_libraries

        quiet_libraries()
        print(json.dumps(measure(args.child, args)))
        return
    results: dict[str, list[dict[str, float]]] = {a: [] for a in ALGORITHMS}
    with tempfile.TemporaryDirectory() as workdir:
        for repeat in range(args.repeats):
            for algorithm in ALGORITHMS:
                results[algorithm].append(run_isolated(algorithm, args, workdir))
                print(f"repeat {repeat + 1}/{args.repeats} {algorithm}: {results[algorithm][-1]}", file=sys.stderr)
    text = table(results, args)
    print(text)
    doc = ROOT / "docs" / "benchmark_algorithms.md"
    doc.write_text("# Time and memory per iteration: REBEL, PPO, RLOO, REINFORCE\n\n"
                   "Generated by `.venv/bin/python benchmarks/algorithm_efficiency.py`.\n\n" + text)


if __name__ == "__main__":
    main()
