"""Peak resident memory of one REBEL iteration with `logprob_chunk_size` 0 and 128.

`--model tiny` (default): a tiny random Llama (hidden 64, 2 layers) with SmolLM2's 49,152-token
vocabulary, so that the logits dominate; 8 prompts x 4 samples of up to 256 new tokens.
`--model smollm2`: SmolLM2-135M-Instruct at the demo's 16 prompts x 2, with and without
`gradient_checkpointing`. LoRA, fp32; each run is a fresh process (peak resident memory is per
process) and the settings alternate. Prints a markdown table.

    .venv/bin/python benchmarks/chunked_head_memory.py [--repeats 1] [--max-new-tokens 256]
    .venv/bin/python benchmarks/chunked_head_memory.py --model smollm2 --max-new-tokens 128
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (logprob_chunk_size, gradient_checkpointing) per model; the 14 GB SmolLM2 setting without either
# is docs/benchmark_memory.md's first row.
SETTINGS = {"tiny": [(0, False), (128, False)],
            "smollm2": [(0, True), (128, True), (128, False)]}


def one_iteration(model_name: str, chunk: int, checkpointing: bool, max_new_tokens: int,
                  workdir: str) -> dict[str, float]:
    """Run in the child process: one iteration; its update seconds, mean length and peak RSS."""
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from tiny import save_tiny_causal_lm

    from rebel_rl import RebelConfig
    from rebel_rl.training.online.loop import RebelTrainer

    if model_name == "tiny":
        model = save_tiny_causal_lm(Path(workdir) / "model", vocab_size=49152, hidden_size=64,
                                    intermediate_size=128, max_position_embeddings=1024)
        shape = dict(model_name_or_path=str(model), prompts_per_iteration=8, num_generations=4,
                     minibatch_prompts=8, rewards=["length"])
    else:  # the demo's model, prompts and reward
        shape = dict(prompts_per_iteration=16, num_generations=2)
    torch.manual_seed(0)
    config = RebelConfig(**shape, logprob_chunk_size=chunk, gradient_checkpointing=checkpointing,
                         max_new_tokens=max_new_tokens, num_iterations=1, eval_prompts=0,
                         progress=False, tensorboard=False, mixed_precision="no", save_every=0,
                         output_dir=str(Path(workdir) / "run"))
    metrics = RebelTrainer(config).step()[0]
    return {"update": metrics["time/update"], "mean_length": metrics["completions/mean_length"],
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def measure(model_name: str, chunk: int, checkpointing: bool, max_new_tokens: int
            ) -> dict[str, float]:
    """`one_iteration` in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); "
                "from chunked_head_memory import one_iteration; "
                f"print('RESULT', json.dumps(one_iteration({model_name!r}, {chunk}, {checkpointing}, "
                f"{max_new_tokens}, {tmp!r})))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--model", choices=sorted(SETTINGS), default="tiny")
    args = parser.parse_args()
    rows = ["| logprob_chunk_size | gradient_checkpointing | peak resident memory (GB) | update s "
            "| mean completion length |",
            "|---|---|---|---|---|"]
    for _ in range(args.repeats):
        for chunk, checkpointing in SETTINGS[args.model]:  # alternating: load changes hit all
            r = measure(args.model, chunk, checkpointing, args.max_new_tokens)
            rows.append(f"| {chunk} | {str(checkpointing).lower()} | {r['peak_gb']:.2f} | "
                        f"{r['update']:.1f} | {r['mean_length']:.1f} |")
            print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(rows) + f"\n\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
