"""Peak memory and update time of one REBEL iteration with and without `gradient_checkpointing`, on the
SmolLM2-135M-Instruct demo (LoRA r=16, fp32, 16 prompts x 2) at long completions. Each measurement is a
fresh process (peak resident memory is per process), the two settings alternate, and the table gives
medians over the repeats. Prints a markdown table and writes it to docs/benchmark_memory.md.

    .venv/bin/python benchmarks/gradient_checkpointing.py [--repeats 2] [--max-new-tokens 128]
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ["sampling", "logprobs", "update"]


def one_iteration(checkpointing: bool, max_new_tokens: int, output_dir: str) -> dict[str, float]:
    """Run in the child process: one iteration, its phase times and the process's peak resident memory."""
    import torch

    from rebel_rl import RebelConfig
    from rebel_rl.training.online.loop import RebelTrainer

    torch.manual_seed(0)
    config = RebelConfig(gradient_checkpointing=checkpointing, max_new_tokens=max_new_tokens, prompts_per_iteration=16,
                         num_generations=2, num_iterations=1, eval_prompts=0, progress=False, tensorboard=False,
                         mixed_precision="no", save_every=0, output_dir=output_dir)
    metrics = RebelTrainer(config).step()[0]
    return {**{phase: metrics[f"time/{phase}"] for phase in PHASES},
            "mean_length": metrics["completions/mean_length"],
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def measure(checkpointing: bool, max_new_tokens: int, workdir: Path) -> dict[str, float]:
    out = workdir / f"{'ckpt' if checkpointing else 'plain'}-{len(list(workdir.iterdir()))}"
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); from gradient_checkpointing import "
            f"one_iteration; print('RESULT', json.dumps(one_iteration({checkpointing}, {max_new_tokens}, {str(out)!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmark_memory.md"))
    args = parser.parse_args()
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for checkpointing in (False, True):  # alternating, so a change in the machine's load hits both
                result = measure(checkpointing, args.max_new_tokens, Path(tmp))
                runs[checkpointing].append(result)
                print(f"repeat {repeat}, gradient_checkpointing {checkpointing}: {result}", file=sys.stderr, flush=True)
    med = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in runs.items()}
    rows = ["| gradient_checkpointing | peak resident memory (GB) | update s | sampling s | log-prob pass s | "
            "mean completion length |", "|---|---|---|---|---|---|"]
    for checkpointing in (False, True):
        m = med[checkpointing]
        rows.append(f"| {str(checkpointing).lower()} | {m['peak_gb']:.2f} | {m['update']:.1f} | {m['sampling']:.1f} | "
                    f"{m['logprobs']:.1f} | {m['mean_length']:.1f} |")
    plain, ckpt = med[False], med[True]
    text = (f"SmolLM2-135M-Instruct, LoRA r=16, fp32, 16 prompts x 2 completions of up to {args.max_new_tokens} "
            f"tokens, one iteration per fresh process, medians of {args.repeats} (the two settings alternate); "
            f"{platform.machine()}; `.venv/bin/python benchmarks/gradient_checkpointing.py`.\n\n" + "\n".join(rows) +
            f"\n\nPeak memory with checkpointing: {ckpt['peak_gb'] / plain['peak_gb']:.2f}x; update time: "
            f"{ckpt['update'] / plain['update']:.2f}x.\n")
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
