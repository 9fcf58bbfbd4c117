"""rebel-rl REBEL against TRL's RLOOTrainer on the identical workload: time per training iteration and peak
memory, at a ~10M-parameter Llama (full fine-tuning) and at SmolLM2-135M-Instruct + LoRA r=16, measured side
by side in one invocation. Prints a markdown table and writes it to docs/benchmark_trl.md.

    .venv/bin/python benchmarks/trl_comparison.py [--rounds 3] [--iterations 4] [--sizes llama10m,smollm2]

Run it with rebel-rl's environment (it runs the rebel-rl side). TRL lives in its own environment, .venv-trl/
in the repository root, made here on first use: torch==2.13.0 (the CPU build), trl, and the main environment's
transformers, peft and accelerate versions. Every run is a fresh subprocess with one torch thread; the two
libraries alternate (A B, then B A, ...) for `--rounds` rounds; the table gives medians over rounds of each
run's median seconds per iteration (the first, warm-up iteration and model loading excluded) and each run's
peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRL_ENV = ROOT / ".venv-trl"
# One workload for both libraries (the brief of issue 12).
PROMPTS_PER_ITERATION, GENERATIONS, MAX_NEW_TOKENS, TEMPERATURE, KL_COEF, LEARNING_RATE = 16, 2, 24, 0.7, 0.05, 1e-5
LORA = dict(r=16, alpha=32, targets="all-linear")  # rebel-rl's defaults (lora_r, lora_alpha, lora_target_modules)
LLAMA_10M = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=10, num_attention_heads=8,
                 num_key_value_heads=4, max_position_embeddings=512)
PROMPTS = [
    "Write one sentence about the sea.", "Describe a good book you read.", "Tell me about your weekend.",
    "What makes a movie great?", "Give me a tip for cooking rice.", "Why is the sky blue?",
    "Describe a happy day in the sun.", "Summarize the plot of a fairy tale.", "What is a good name for a cat?",
    "Explain what a river is.", "Write a short greeting for a friend.", "What do you like about music?",
    "Describe the food at a picnic.", "How do birds fly?", "Suggest a game to play in the rain.",
    "Tell me something about trees.",
]


def word_reward(prompts, completions, completion_ids=None, **kwargs):
    """Words in the completion, capped at 20, divided by 20: the same Python reward on both sides. Also counts
    each batch's completion tokens (up to and including EOS), to show that both sides sampled the same work."""
    if completion_ids is not None:
        COMPLETION_TOKENS.append(sum(len(ids) for ids in completion_ids))
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [min(len(text.split()), 20) / 20 for text in texts]


COMPLETION_TOKENS: list[int] = []


# ---------------------------------------------------------------- the TRL environment
def trl_pins(trl_version: str) -> list[str]:
    """torch (CPU build) pinned, and transformers/peft/accelerate at the versions of the running environment."""
    from importlib.metadata import version

    return ["torch==2.13.0", f"trl=={trl_version}"] + [f"{name}=={version(name)}" for name in
                                                       ("transformers", "peft", "accelerate")]


def ensure_trl_env(trl_version: str) -> Path:
    """Create or reuse .venv-trl/; reinstall when the pins change (a stamp file records them)."""
    python, stamp, pins = TRL_ENV / "bin" / "python", TRL_ENV / ".pins", trl_pins(trl_version)
    if python.exists() and stamp.exists() and stamp.read_text().split() == pins:
        return python
    print(f"installing {' '.join(pins)} into {TRL_ENV} ...", file=sys.stderr)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(TRL_ENV)], check=True)
    constraints = TRL_ENV / "constraints.txt"  # torch pinned for every dependency too: no multi-GB CUDA build
    constraints.write_text("\n".join(pins) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(constraints), *pins], check=True)
    stamp.write_text("\n".join(pins) + "\n")
    return python


def versions(trl_python: Path) -> dict[str, str]:
    """rebel-rl's version and commit (this environment), and the TRL environment's library versions."""
    def version(python, name):
        code = f"import importlib.metadata as m; print(m.version({name!r}))"
        return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    return {"rebel-rl": f"{version(sys.executable, 'rebel-rl')} (commit {commit})",
            **{name: version(trl_python, name) for name in ("trl", "torch", "transformers", "peft", "accelerate")}}


# ---------------------------------------------------------------- one measured run (in a child process)
def finish(wall: list[float], cpu: list[float]) -> dict:
    """Median wall and CPU (process) seconds per iteration after the warm-up one, the process's peak RSS, the
    completion tokens sampled per batch."""
    import torch

    return {"seconds": statistics.median(wall[1:]), "cpu_seconds": statistics.median(cpu[1:]), "all_seconds": wall,
            "threads": torch.get_num_threads(), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "completion_tokens": statistics.median(COMPLETION_TOKENS[1:])}


def run_rebel(case: dict, iterations: int, workdir: Path) -> dict:
    from rebel_rl import RebelConfig
    from rebel_rl.training.online.loop import RebelTrainer

    config = RebelConfig(
        model_name_or_path=case["model"], dtype="float32", mixed_precision="no", algorithm="rebel",
        dataset=case["prompts"], rewards=[], kl_coef=KL_COEF, num_generations=GENERATIONS,
        prompts_per_iteration=PROMPTS_PER_ITERATION, minibatch_prompts=PROMPTS_PER_ITERATION, num_epochs=1,
        max_new_tokens=MAX_NEW_TOKENS, temperature=TEMPERATURE, learning_rate=LEARNING_RATE, warmup_ratio=0.0,
        lr_scheduler="constant", use_lora=case["lora"], lora_r=LORA["r"], lora_alpha=LORA["alpha"],
        lora_target_modules=LORA["targets"], eval_prompts=0, progress=False, tensorboard=False,
        num_iterations=iterations, output_dir=str(workdir / "rebel"))
    trainer = RebelTrainer(config, reward_funcs=[word_reward])
    wall, cpu, phases = [], [], []
    for _ in range(iterations):
        start, start_cpu = time.perf_counter(), time.process_time()
        metrics, _ = trainer.step()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        phases.append({k[5:]: v for k, v in metrics.items() if k.startswith("time/")})
    return {**finish(wall, cpu), "phases": {k: statistics.median(p[k] for p in phases[1:]) for k in phases[0]}}


def run_trl(case: dict, iterations: int, workdir: Path) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    class StepTimer(TrainerCallback):
        """Seconds from each optimizer step's start to its end (generation, scoring, forward, backward, step)."""

        def __init__(self) -> None:
            self.wall, self.cpu, self.start = [], [], (0.0, 0.0)

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            self.wall.append(time.perf_counter() - self.start[0])
            self.cpu.append(time.process_time() - self.start[1])

    args = RLOOConfig(
        output_dir=str(workdir / "trl"), model_init_kwargs={"dtype": "float32"}, bf16=False,
        gradient_checkpointing=False, use_cpu=True, per_device_train_batch_size=PROMPTS_PER_ITERATION * GENERATIONS,
        gradient_accumulation_steps=1, num_generations=GENERATIONS, num_iterations=1,
        max_completion_length=MAX_NEW_TOKENS, temperature=TEMPERATURE, top_p=1.0, top_k=0, beta=KL_COEF,
        learning_rate=LEARNING_RATE, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        optim="adamw_torch", max_steps=iterations, report_to="none", save_strategy="no", logging_steps=1,
        disable_tqdm=True, dataloader_num_workers=0, seed=0)
    peft_config = None
    if case["lora"]:
        from peft import LoraConfig

        peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=0.0,
                                 target_modules=LORA["targets"], task_type="CAUSAL_LM")
    rows = [json.loads(line) for line in Path(case["prompts"]).read_text().splitlines()]
    timer = StepTimer()
    trainer = RLOOTrainer(model=case["model"], reward_funcs=word_reward, args=args,
                          train_dataset=Dataset.from_list(rows), peft_config=peft_config, callbacks=[timer])
    trainer.train()
    return finish(timer.wall, timer.cpu)


def child(library: str, spec_path: str) -> None:
    import torch

    torch.set_num_threads(1)
    spec = json.loads(Path(spec_path).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        run = run_rebel if library == "rebel-rl" else run_trl
        result = run(spec["case"], spec["iterations"], Path(tmp))
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------- the comparison (parent process)
def build_cases(sizes: list[str], workdir: Path) -> dict[str, dict]:
    """The models and the prompt file ({"prompt": [user message]} per line, so both apply the chat template)."""
    prompts = workdir / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": p}]}) + "\n" for p in PROMPTS))
    cases = {}
    if "llama10m" in sizes:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny import save_tiny_causal_lm
        from transformers import AutoModelForCausalLM

        path = save_tiny_causal_lm(workdir / "llama10m", **LLAMA_10M)
        params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())
        cases["llama10m"] = {"name": f"Llama {params / 1e6:.1f}M params (random, full fine-tuning)",
                             "model": str(path), "lora": False, "prompts": str(prompts)}
    if "smollm2" in sizes:
        from rebel_rl.models.pretrained import resolve_model_path  # the plain checkpoint rebel-rl converts once

        smollm2 = resolve_model_path("builtin:smollm2-135m-instruct")
        cases["smollm2"] = {"name": f"SmolLM2-135M-Instruct + LoRA r={LORA['r']}", "model": smollm2,
                            "lora": True, "prompts": str(prompts)}
    return cases


def measure(python: Path, library: str, case: dict, iterations: int, workdir: Path) -> dict:
    spec = workdir / f"spec-{time.time_ns()}.json"
    spec.write_text(json.dumps({"case": case, "iterations": iterations + 1}))  # + the warm-up iteration
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    if library == "trl":
        env.pop("PYTHONPATH", None)  # nothing of rebel-rl's on TRL's side
    load = os.getloadavg()[0]
    done = subprocess.run([str(python), __file__, "--child", library, str(spec)], env=env, capture_output=True,
                          text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{library} run failed ({case['name']}):\n{done.stderr[-4000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["load"] = (load + os.getloadavg()[0]) / 2
    print(f"  {library:8s} {case['name']}: {result['seconds']:.2f} s/iteration "
          f"({result['cpu_seconds']:.2f} s CPU), {result['peak_rss_mb']:.0f} MB, "
          f"{result['threads']} thread(s), iterations {[round(s, 2) for s in result['all_seconds']]}"
          + (f", phases {({k: round(v, 2) for k, v in result['phases'].items()})}" if "phases" in result else ""),
          file=sys.stderr)
    return result


def report(cases: dict, results: dict, args, versions: dict, loads: list[float]) -> str:
    # (field, label, format, target on rebel-rl / TRL or None)
    measures = [("seconds", "wall seconds per iteration", ".2f", 0.6), ("cpu_seconds", "CPU seconds per iteration",
                ".2f", None), ("peak_rss_mb", "peak RSS, MB", ".0f", 1.0),
                ("completion_tokens", "completion tokens per batch", ".0f", None)]
    lines = ["| model | measure | rebel-rl | TRL | rebel-rl / TRL | target |", "|---|---|---|---|---|---|"]
    met_all = True
    for key, case in cases.items():
        for field, label, fmt, target in measures:
            rebel, trl = (statistics.median(r[field] for r in results[key][lib]) for lib in ("rebel-rl", "trl"))
            ratio = rebel / trl
            verdict = "" if target is None else f"<= {target}: {'met' if ratio <= target else 'not met'}"
            met_all &= target is None or ratio <= target
            lines.append(f"| {case['name']} | {label} | {rebel:{fmt}} | {trl:{fmt}} | {ratio:.2f} | {verdict} |")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags)
    lines += [
        "",
        f"Targets (issue 12): rebel-rl at most 0.6x TRL's time per iteration at both sizes, at equal or lower peak "
        f"memory: **{'met' if met_all else 'not met'}**.",
        "",
        f"Medians over {args.rounds} round(s) of each run's median over {args.iterations} iteration(s) after one "
        f"warm-up iteration (model loading excluded); the libraries alternate within a round, each run a fresh "
        f"process. CPU seconds (the process's, over the same span) are given because the machine may be shared: with one "
        f"torch thread they move less than wall time under other load. Peak RSS: the run's whole process "
        f"(ru_maxrss), loading included.",
        "",
        f"Environment: {cpu} ({os.cpu_count()} cores; {isa}), {platform.platform()}, Python "
        f"{platform.python_version()}; one torch thread per run (OMP_NUM_THREADS=1, torch.set_num_threads(1)); "
        f"load average (1 min) during the runs {min(loads):.2f}-{max(loads):.2f}"
        + (" (above the core count: other jobs shared the CPU, so wall times are inflated; CPU seconds are the "
           "steadier comparison)" if max(loads) > (os.cpu_count() or 1) else "") + ". "
        + "; ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        f"Workload, the same on both sides: the {len(PROMPTS)} chat prompts of the script (one user message each, "
        f"through the model's chat template), {PROMPTS_PER_ITERATION} prompts x {GENERATIONS} samples per "
        f"iteration, {MAX_NEW_TOKENS} new tokens at most, temperature {TEMPERATURE} (top-k/top-p off), KL "
        f"coefficient {KL_COEF} (TRL's beta), one gradient pass over the whole batch per iteration (rebel-rl: "
        f"algorithm rebel, num_epochs 1, minibatch_prompts {PROMPTS_PER_ITERATION}; TRL: RLOOTrainer with "
        f"per_device_train_batch_size {PROMPTS_PER_ITERATION * GENERATIONS}, gradient_accumulation_steps 1, "
        f"num_iterations 1), AdamW at learning rate {LEARNING_RATE} (constant, no warm-up, gradient clipping at "
        f"1.0), fp32 weights and no autocast, no gradient checkpointing. Reward: the script's `word_reward` (words "
        f"in the completion, capped at 20, / 20). LoRA (SmolLM2): r={LORA['r']}, alpha={LORA['alpha']}, "
        f"target_modules={LORA['targets']}, dropout 0; pi_ref is the model with the adapter disabled on both sides. "
        f"The 10M Llama: {LLAMA_10M}, tokenizer and chat template of tests/tiny.py; pi_ref a frozen copy on both "
        f"sides. rebel-rl's time is each `RebelTrainer.step()`; TRL's is on_step_begin to on_step_end of a "
        f"TrainerCallback (generation, log-prob passes, reward, forward/backward and optimizer step; not logging).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=4, help="measured iterations per run (after a warm-up)")
    parser.add_argument("--sizes", default="llama10m,smollm2")
    parser.add_argument("--trl-version", default="1.16.0")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmark_trl.md"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    trl_python = ensure_trl_env(args.trl_version)
    pythons = {"rebel-rl": Path(sys.executable), "trl": trl_python}
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cases = build_cases(args.sizes.split(","), workdir)
        results = {key: {"rebel-rl": [], "trl": []} for key in cases}
        loads = []
        for round_ in range(args.rounds):
            order = ["rebel-rl", "trl"] if round_ % 2 == 0 else ["trl", "rebel-rl"]
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr)
            for key, case in cases.items():
                for library in order:
                    result = measure(pythons[library], library, case, args.iterations, workdir)
                    results[key][library].append(result)
                    loads.append(result["load"])
    table = report(cases, results, args, versions(trl_python), loads)
    table += f"\nThe whole comparison took {(time.time() - started) / 60:.0f} minutes.\n"
    print(table)
    command = f".venv/bin/python benchmarks/trl_comparison.py --rounds {args.rounds} --iterations {args.iterations}"
    Path(args.output).write_text(f"# rebel-rl against TRL on the identical workload\n\nRegenerate: `{command}` (it "
                                 "makes .venv-trl/ on first use)\n\n" + table)


if __name__ == "__main__":
    main()
