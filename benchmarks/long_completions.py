"""One REBEL iteration at long completion lengths, against TRL's GRPOTrainer on the same workload.

SmolLM2-135M-Instruct + LoRA r=16, 8 prompts x 4 samples, every completion forced to exactly the
length of its row (EOS cannot end it: the benchmark only), at 128, 512, 1,024 and 2,048 new tokens.
Each (length, side) is one iteration in a fresh process, so peak RSS is that run's own. Writes
docs/benchmark_long.md: per-phase seconds (time/sampling, time/logprobs, time/update), whole
iteration seconds per completion token, peak RSS, and the issue's targets marked met / not met
from the measured rows; a row not measured says so.

    .venv/bin/python benchmarks/long_completions.py                      # hf, every length
    .venv/bin/python benchmarks/long_completions.py --lengths 128 --no-trl    # a smoke row
    .venv/bin/python benchmarks/long_completions.py --vllm               # + .venv-vllm's backend

TRL runs in .venv-trl/ (made on first use by benchmarks/trl_comparison.py's `ensure_trl_env`),
with the same prompts, reward, LoRA, temperature and KL coefficient as trl_comparison.py.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import trl_comparison as shared  # the TRL environment, the prompts, the reward, the hyperparameters

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = [128, 512, 1024, 2048]
PROMPTS_PER_ITERATION, GENERATIONS = 8, 4
PHASES = ["sampling", "logprobs", "update"]
SIDES = {"hf": ROOT / ".venv" / "bin" / "python", "vllm": ROOT / ".venv-vllm" / "bin" / "python"}
# Issue 20's targets: peak RSS per length (GB); s/token at 1024 against 128; against TRL.
RSS_TARGET_GB = {1024: 4.0, 2048: 6.0}
SCALING_TARGET, TRL_TIME_TARGET, TRL_MEMORY_TARGET = 1.5, 0.6, 0.5
# rebel-rl's settings for long completions (docs/long_completions.md): the LM head in chunks of 128
# positions, recomputed layers, at most 8,192 real tokens per forward+backward, and freed
# tensors given back to the system.
LONG_SETTINGS = {"logprob_chunk_size": 128, "gradient_checkpointing": True,
                 "max_tokens_per_microbatch": 8192, "release_freed_memory": True}


def peak_rss_gb() -> float:
    """This process's peak resident memory (ru_maxrss is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def run_rebel(backend: str, length: int, workdir: Path) -> dict:
    """Child: one REBEL iteration with every completion `length` tokens long."""
    import torch

    from rebel_rl import RebelConfig
    from rebel_rl.training.online.loop import RebelTrainer

    prompts = workdir / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": p}]}) + "\n"
                               for p in shared.PROMPTS[:PROMPTS_PER_ITERATION]))
    config = RebelConfig(
        generation_backend="hf" if backend == "hf-nosample" else backend,
        dataset=str(prompts), rewards=[], kl_coef=shared.KL_COEF,
        num_generations=GENERATIONS, prompts_per_iteration=PROMPTS_PER_ITERATION,
        minibatch_prompts=PROMPTS_PER_ITERATION, max_new_tokens=length,
        temperature=shared.TEMPERATURE, learning_rate=shared.LEARNING_RATE,
        use_lora=True, lora_r=shared.LORA["r"], lora_alpha=shared.LORA["alpha"],
        lora_target_modules=shared.LORA["targets"], mixed_precision="no",
        eval_prompts=0, progress=False, tensorboard=False, num_iterations=1, save_every=0,
        missing_eos_penalty=0.0,  # every completion is cut here by design: no penalty
        output_dir=str(workdir / "run"), **LONG_SETTINGS)
    trainer = RebelTrainer(config, reward_funcs=[shared.word_reward])
    # No token ends a completion: each one runs to `length` (benchmark only; generate warns once).
    trainer.policy.eos_token_ids = torch.tensor([-1])
    if backend == "hf-nosample":
        trainer.policy.sample = random_completions(trainer.policy, length)
    start = time.perf_counter()
    metrics = trainer.step()[0]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, **{p: metrics[f"time/{p}"] for p in PHASES},
            "mean_length": metrics["completions/mean_length"], "peak_rss_gb": peak_rss_gb()}


def random_completions(policy, length: int):
    """A stand-in for `policy.sample` (side `hf-nosample`: the log-prob passes and the update's
    memory and time without the sampling phase): uniform random tokens, every row `length` long."""
    import torch

    from rebel_rl.policies.causal_lm.text import TextRollout

    def sample(prompts: list, n: int, **_: object) -> TextRollout:
        ids, mask = policy.encode_prompts(prompts)
        ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        vocab = policy.model.get_output_embeddings().weight.shape[0]
        completion = torch.randint(0, vocab, (len(ids), length), generator=torch.Generator()
                                   .manual_seed(0))
        texts = policy.tokenizer.batch_decode(completion, skip_special_tokens=True)
        return TextRollout(ids, mask, completion, torch.ones_like(completion),
                           torch.zeros(len(ids), dtype=torch.bool), texts)
    return sample


def run_trl(length: int, workdir: Path) -> dict:
    """Child, in .venv-trl: one GRPOTrainer step, min_new_tokens = max_completion_length."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        output_dir=str(workdir / "trl"), model_init_kwargs={"dtype": "float32"}, bf16=False,
        use_cpu=True, per_device_train_batch_size=PROMPTS_PER_ITERATION * GENERATIONS,
        gradient_accumulation_steps=1, num_generations=GENERATIONS, num_iterations=1,
        max_completion_length=length, generation_kwargs={"min_new_tokens": length},
        temperature=shared.TEMPERATURE, top_p=1.0, top_k=0, beta=shared.KL_COEF,
        learning_rate=shared.LEARNING_RATE, lr_scheduler_type="constant", max_steps=1,
        report_to="none", save_strategy="no", disable_tqdm=True, seed=0)
    rows = [{"prompt": [{"role": "user", "content": p}]}
            for p in shared.PROMPTS[:PROMPTS_PER_ITERATION]]
    peft = LoraConfig(r=shared.LORA["r"], lora_alpha=shared.LORA["alpha"], lora_dropout=0.0,
                      target_modules=shared.LORA["targets"], task_type="CAUSAL_LM")
    model = os.environ["LONG_COMPLETIONS_MODEL"]
    trainer = GRPOTrainer(model=model, reward_funcs=shared.word_reward, args=args,
                          train_dataset=Dataset.from_list(rows), peft_config=peft)
    start = time.perf_counter()
    trainer.train()
    rows_sampled = PROMPTS_PER_ITERATION * GENERATIONS
    tokens = shared.COMPLETION_TOKENS[-1] / rows_sampled if shared.COMPLETION_TOKENS else length
    return {"seconds": time.perf_counter() - start, "mean_length": tokens,
            "peak_rss_gb": peak_rss_gb()}


def measure(side: str, length: int, python: Path, model: str) -> dict:
    """One fresh process of `side` ("hf", "vllm" or "trl") at `length`; its result dict."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "LONG_COMPLETIONS_MODEL": model,
           # torch maps tensors of 2 MiB and more on huge pages: 512x fewer page faults for what
           # release_freed_memory maps afresh (docs/long_completions.md); read at torch's start
           "THP_MEM_ALLOC_ENABLE": "1"}
    if side == "trl":
        env.pop("PYTHONPATH", None)  # nothing of rebel-rl's on TRL's side
    load = os.getloadavg()[0]
    done = subprocess.run([str(python), __file__, "--child", side, str(length)], env=env,
                          capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{side} at {length} tokens failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["load"] = (load, os.getloadavg()[0])
    print(f"  {side} {length}: {result}", file=sys.stderr, flush=True)
    return result


def child(side: str, length: int) -> None:
    """Run in the fresh process: one measured iteration, printed as a RESULT line."""
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        result = (run_trl(length, Path(tmp)) if side == "trl"
                  else run_rebel(side, length, Path(tmp)))
    print("RESULT " + json.dumps(result), flush=True)


def verdict(value: float | None, limit: float) -> str:
    """'met' / 'not met' for a measured value against an upper limit; 'not measured' for None."""
    return "not measured" if value is None else ("met" if value <= limit else "not met")


def per_token(result: dict) -> float:
    """Whole-iteration seconds per completion token sampled."""
    return result["seconds"] / (result["mean_length"] * PROMPTS_PER_ITERATION * GENERATIONS)


def report(results: dict, smoke: bool) -> str:
    """The markdown page: every (length, side) row, measured or marked not measured; targets."""
    lines = ["| new tokens | side | sampling s | logprobs s | update s | whole iteration s | "
             "s per completion token | mean length | peak RSS GB | load avg before, after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (length, side), r in sorted(results.items()):
        if r is None:
            lines.append(f"| {length} | {side} | not yet measured |  |  |  |  |  |  |  |")
            continue
        phases = " | ".join(f"{r[p]:.1f}" if p in r else "-" for p in PHASES)
        lines.append(f"| {length} | {side} | {phases} | {r['seconds']:.1f} | "
                     f"{per_token(r) * 1e3:.2f} ms | {r['mean_length']:.0f} | "
                     f"{r['peak_rss_gb']:.2f} | {r['load'][0]:.1f}, {r['load'][1]:.1f} |")
    get = results.get
    targets = [f"peak RSS <= {gb:.0f} GB at {n} tokens (hf): "
               + verdict(get((n, "hf")) and get((n, "hf"))["peak_rss_gb"], gb)
               for n, gb in RSS_TARGET_GB.items()]
    short, long_ = get((128, "hf")), get((1024, "hf"))
    ratio = per_token(long_) / per_token(short) if short and long_ else None
    targets.append(f"s/token at 1024 <= {SCALING_TARGET}x that at 128 (hf): "
                   + verdict(ratio, SCALING_TARGET))
    for n in (512, 1024):
        ours, theirs = get((n, "hf")), get((n, "trl"))
        both = ours and theirs
        targets.append(f"<= {TRL_TIME_TARGET}x TRL's time at {n}: " + verdict(
            both and ours["seconds"] / theirs["seconds"], TRL_TIME_TARGET))
        targets.append(f"<= {TRL_MEMORY_TARGET}x TRL's peak RSS at {n}: " + verdict(
            both and ours["peak_rss_gb"] / theirs["peak_rss_gb"], TRL_MEMORY_TARGET))
    measured = [f"{n} tokens {side}" for (n, side), r in sorted(results.items()) if r]
    note = ("**Partial run.** Measured rows: " + (", ".join(measured) or "none yet") + "; every "
            "other row is not measured yet. Each row's load averages (1-minute, before and after "
            "it) say how quiet the 2-core machine was: above 1.5, other jobs shared it and its "
            "seconds are not a measurement of speed." if smoke else "")
    trl_note = ("" if any(r for (_, side), r in results.items() if side == "trl") else
                " TRL's side has not run yet (its .venv-trl/ is made on first use).")
    workload = (f"Workload: SmolLM2-135M-Instruct + LoRA r={shared.LORA['r']}, "
                f"{PROMPTS_PER_ITERATION} prompts x {GENERATIONS} samples, temperature "
                f"{shared.TEMPERATURE}, KL {shared.KL_COEF}, fp32, rebel-rl with "
                + ", ".join(f"{k} {v}" for k, v in LONG_SETTINGS.items())
                + ", one iteration per fresh process "
                f"(model loading excluded from the seconds, included in peak RSS), one torch "
                f"thread, THP_MEM_ALLOC_ENABLE=1 on both sides. "
                f"rebel-rl: EOS replaced by no token, so every completion has exactly the row's "
                f"length; "
                f"TRL GRPOTrainer: min_new_tokens = max_completion_length." + trl_note)
    return (textwrap.fill(note, 100) + "\n\n" + "\n".join(lines)
            + "\n\nTargets (issue 20):\n\n" + "".join(f"- {t}\n" for t in targets)
            + "\n" + textwrap.fill(workload, 100) + "\n")


def main() -> None:
    """Parse arguments, run each (length, side) in a fresh process, write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    parser.add_argument("--no-trl", action="store_true", help="skip TRL's side")
    parser.add_argument("--vllm", action="store_true", help="also .venv-vllm's vllm backend")
    parser.add_argument("--sides", nargs="+", help="only these sides (hf, hf-nosample: random "
                        "tokens in place of sampling, vllm, trl)")
    parser.add_argument("--trl-version", default="1.16.0")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmark_long.md"))
    parser.add_argument("--fresh", action="store_true",
                        help="forget the rows an earlier run saved next to --output")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]))
    from rebel_rl.models.pretrained import resolve_model_path

    model = resolve_model_path("builtin:smollm2-135m-instruct")
    sides = args.sides or (["hf"] + (["vllm"] if args.vllm else [])
                           + ([] if args.no_trl else ["trl"]))
    pythons = {**SIDES, "hf": Path(sys.executable), "hf-nosample": Path(sys.executable)}
    if "trl" in sides:
        pythons["trl"] = shared.ensure_trl_env(args.trl_version)
    results = {(n, side): None for n in LENGTHS for side in ["hf", "vllm", "trl"]}
    results.update({(n, side): None for n in args.lengths for side in sides})
    saved = Path(args.output).with_suffix(".json")  # rows measured by earlier runs, kept
    if saved.is_file() and not args.fresh:
        for row in json.loads(saved.read_text()):
            results[(row["length"], row["side"])] = row
    for length in args.lengths:
        for side in sides:  # interleaved per length: load changes hit every side
            row = measure(side, length, pythons[side], model)
            results[(length, side)] = {**row, "length": length, "side": side,
                                       "date": time.strftime("%Y-%m-%d")}
            saved.write_text(json.dumps([r for r in results.values() if r], indent=1) + "\n")
    smoke = not all(results.values())
    page = report(results, smoke)
    command = " ".join(["benchmarks/long_completions.py", *sys.argv[1:]])
    Path(args.output).write_text("# Long completions: one iteration at 128 to 2,048 tokens\n\n"
                                 f"Regenerate: `.venv/bin/python {command}`\n\n" + page)
    print(page)


if __name__ == "__main__":
    main()
