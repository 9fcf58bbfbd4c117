"""Per-phase time of one REBEL iteration against its FLOP floor, and what each speed-up saves.

SmolLM2-135M-Instruct + LoRA r=16 in fp32, 16 prompts x 2 samples, 24 new tokens, temperature 0.7,
KL 0.05, one epoch in one minibatch (one gradient pass per batch); and a tiny random Llama. Each
speed-up is measured on its own against the path without any of them, and all together; the variants
run interleaved, one iteration each per round, so they share the machine's moments. The floor
(benchmarks/flop_floor.py) is the matmul work the iteration cannot avoid, over this machine's measured
fp32 matmul rate. Prints a markdown table and writes it to docs/benchmark_iteration.md.

    .venv/bin/python benchmarks/iteration_breakdown.py [--rounds 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tiny model builders
sys.path.insert(0, str(ROOT / "benchmarks"))

from flop_floor import LlamaFlops, Shape, matmul_gflops  # noqa: E402
from rebel_rl import RebelConfig  # noqa: E402
from rebel_rl.policies.causal_lm import lora_sampling, shared_prompts  # noqa: E402
from rebel_rl.training.online.loop import RebelTrainer  # noqa: E402
from tiny import save_tiny_causal_lm  # noqa: E402

PHASES = ["sampling", "logprobs", "scoring", "update"]
WORKLOAD = dict(prompts_per_iteration=16, minibatch_prompts=16, num_generations=2, max_new_tokens=24, num_epochs=1,
                temperature=0.7, kl_coef=0.05, mixed_precision="no")
# name -> (log pi_t from the update's forward, prompts computed once, LoRA folded for sampling)
VARIANTS = {
    "none of the speed-ups": (False, False, False),
    "log pi_t from the update's forward": (True, False, False),
    "each prompt computed once": (False, True, False),
    "LoRA folded for sampling": (False, False, True),
    "all three (the default)": (True, True, True),
}


class Variant:
    """One trainer run with a fixed set of speed-ups switched on, stepped one iteration at a time."""

    def __init__(self, name: str, switches: tuple[bool, bool, bool], config: RebelConfig) -> None:
        self.name, self.switches = name, switches
        self.trainer = RebelTrainer(config)
        self.reuse_default = self.trainer.update_forward_gives_old_logps
        self.rollouts = []
        sample = self.trainer.policy.sample
        self.trainer.policy.sample = lambda *a, **k: self.rollouts.append(sample(*a, **k)) or self.rollouts[-1]
        self.runs: list[dict] = []

    def step(self, record: bool) -> None:
        reuse, share, fold = self.switches
        self.trainer.update_forward_gives_old_logps = reuse and self.reuse_default
        shared_prompts.ENABLED, lora_sampling.ENABLED = share, fold
        metrics, _ = self.trainer.step()
        if record:
            self.runs.append({**{p: metrics[f"time/{p}"] for p in PHASES}, "rollout": self.rollouts[-1]})
        shared_prompts.ENABLED = lora_sampling.ENABLED = True


def measure(label: str, config_values: dict, rounds: int, workdir: Path, flops: LlamaFlops, gflops: float,
            variants: dict) -> list[dict]:
    print(f"measuring {label} ...", file=sys.stderr)
    runs = [Variant(name, switches, RebelConfig(**config_values, output_dir=str(workdir / f"{label}-{i}")))
            for i, (name, switches) in enumerate(variants.items())]
    for round_ in range(rounds + 1):  # round 0 warms up (first-call allocations, kernel selection)
        for variant in runs:
            variant.step(record=round_ > 0)
    rows = []
    n = config_values["num_generations"]
    for variant in runs:
        row = {"model": label, "variant": variant.name}
        for phase in PHASES:
            row[phase] = statistics.median(r[phase] for r in variant.runs)
        row["total"] = statistics.median(sum(r[p] for p in PHASES) for r in variant.runs)
        floors = [flops.iteration(Shape.of(r["rollout"], n)) for r in variant.runs]
        for phase in ("sampling", "logprobs", "update"):
            row[f"{phase}_floor"] = statistics.median(f[phase] for f in floors) / gflops / 1e9
        row["total_floor"] = statistics.median(sum(f.values()) for f in floors) / gflops / 1e9
        rows.append(row)
    return rows


def table(rows: list[dict], gflops: float, args) -> str:
    lines = [
        f"Median seconds per phase over {args.rounds} rounds (after a warm-up round), each variant stepped once per "
        f"round, interleaved. Workload: {WORKLOAD['prompts_per_iteration']} prompts x {WORKLOAD['num_generations']} "
        f"samples, {WORKLOAD['max_new_tokens']} new tokens, temperature {WORKLOAD['temperature']}, KL "
        f"{WORKLOAD['kl_coef']}, one epoch in one minibatch, fp32. {args.threads} torch threads, torch "
        f"{torch.__version__}, {platform.machine()}, {platform.processor() or _cpu_name()}; load average before the "
        f"run {args.load_before:.1f}, after {os.getloadavg()[0]:.1f}. Measured fp32 matmul rate: {gflops:.0f} GFLOP/s.",
        "",
        "x floor = measured time / the FLOP floor's time (benchmarks/flop_floor.py: real tokens only, each prompt "
        "once, logits only where used; an iteration needs sampling, one pi_ref pass and one update).",
        "",
        "| model | speed-ups | sampling s (x floor) | log-prob passes s (x floor) | scoring s | update s (x floor) "
        "| total s (x floor) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        def cell(phase):
            return f"{r[phase]:.2f} ({r[phase] / r[phase + '_floor']:.2f}x)"
        lines.append(f"| {r['model']} | {r['variant']} | {cell('sampling')} | {cell('logprobs')} | "
                     f"{r['scoring']:.3f} | {cell('update')} | {cell('total')} |")
    smol = [r for r in rows if r["model"].startswith("SmolLM2")]
    if smol:
        base = smol[0]["total"]
        lines += ["", "Saving of each speed-up on SmolLM2 (same run, whole iteration): " + "; ".join(
            f"{r['variant']}: {base / r['total']:.2f}x faster" for r in smol[1:]) + "."]
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmark_iteration.md"))
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    gflops = matmul_gflops()
    common = dict(eval_prompts=0, progress=False, tensorboard=False, save_every=0, **WORKLOAD)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tiny = save_tiny_causal_lm(workdir / "tiny")
        from transformers import AutoConfig

        rows += measure("tiny Llama (2 layers, 32 dims) + LoRA r=4", dict(
            model_name_or_path=str(tiny), rewards=["length"], lora_r=4, **common), args.rounds, workdir,
            LlamaFlops(AutoConfig.from_pretrained(tiny), 4), gflops,
            {k: VARIANTS[k] for k in ("none of the speed-ups", "all three (the default)")})
        smol = RebelConfig(**common)
        from rebel_rl.models.pretrained import resolve_model_path

        smol_config = AutoConfig.from_pretrained(resolve_model_path(smol.model_name_or_path))
        rows += measure("SmolLM2-135M + LoRA r=16", common, args.rounds, workdir,
                        LlamaFlops(smol_config, smol.lora_r), gflops, VARIANTS)
    text = table(rows, gflops, args)
    print(text)
    Path(args.output).write_text("# One REBEL iteration against its FLOP floor\n\nRegenerate: "
                                 "`.venv/bin/python benchmarks/iteration_breakdown.py`\n\n" + text)


if __name__ == "__main__":
    main()
