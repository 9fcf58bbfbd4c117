"""Sampling seconds with generate's multinomial draw against the inverse-CDF draw
(policies/causal_lm/sampling_draw.py), on SmolLM2-135M-Instruct + LoRA, every completion forced to its full
length (EOS suppressed), interleaved, medians.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sampling_draw.py --lengths 128 512 --repeats 3
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sampling_draw.py --micro   # the draw alone

Prints one markdown row per (length, draw); docs/long_completions.md quotes them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from rebel_rl import RebelConfig
from rebel_rl.policies.causal_lm import sampling_draw
from rebel_rl.policies.factory import load_policy

PROMPTS = [[{"role": "user", "content": f"Write a long story about topic number {i}."}]
           for i in range(8)]


def smollm2_policy(max_new_tokens: int):
    """SmolLM2-135M-Instruct + LoRA r=16 with EOS suppressed, so every completion is full length."""
    config = RebelConfig(max_new_tokens=max_new_tokens, use_lora=True, lora_r=16)
    policy = load_policy(config.model, config.sampling, torch.device("cpu"),
                         config.max_prompt_length)
    policy.eos_token_ids = torch.tensor([-1])  # no token ends a completion: forced length
    return policy


def time_sample(policy, draw: str, n: int) -> tuple[float, float]:
    """(wall, process CPU) seconds of one `policy.sample` of the benchmark prompts with `draw`.
    With one thread, CPU seconds move much less than wall seconds when other jobs share the
    cores, so the table compares those."""
    sampling_draw.DRAW = draw
    start, start_cpu = time.perf_counter(), time.process_time()
    rollout = policy.sample(PROMPTS, n)
    seconds = time.perf_counter() - start, time.process_time() - start_cpu
    assert rollout.completion_mask.sum(-1).eq(policy.max_new_tokens).all()
    return seconds


def micro(draws: int = 200) -> None:
    """Milliseconds per draw of 32 rows x 49,152 fp32 scores: multinomial, Gumbel-max and the
    inverse CDF, each on the same scores."""
    scores = torch.randn(32, 49152, generator=torch.Generator().manual_seed(0)) * 3
    draw = sampling_draw.InverseCDFDraw()
    ways = {"softmax + multinomial": lambda s: torch.multinomial(torch.softmax(s, -1), 1),
            "Gumbel noise + argmax": lambda s: (s - torch.empty_like(s).exponential_().log_())
            .argmax(-1),
            "inverse CDF (InverseCDFDraw)": lambda s: draw(None, s.clone()).argmax(-1)}
    for name, way in ways.items():
        way(scores)
        start = time.perf_counter()
        for _ in range(draws):
            way(scores)
        print(f"{name}: {(time.perf_counter() - start) / draws * 1e3:.1f} ms")


def main() -> None:
    """Parse the arguments, time the two draws interleaved, print the table rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--micro", action="store_true", help="only the draw itself, no model")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.micro:
        return micro()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| new tokens | draw | sampling CPU s (median) | CPU s of each run | wall s of each run |"
          "\n|---|---|---|---|---|")
    for length in args.lengths:
        policy = smollm2_policy(length)
        times: dict[str, list[tuple[float, float]]] = {"multinomial": [], "inverse_cdf": []}
        for _ in range(args.repeats):
            for draw in times:
                times[draw].append(time_sample(policy, draw, args.n))
                print(f"run: {length} tokens, {draw}: wall, CPU s {times[draw][-1]}", flush=True)
        for draw, runs in times.items():
            cpu = [c for _, c in runs]
            print(f"| {length} | {draw} | {statistics.median(cpu):.1f} | "
                  f"{', '.join(f'{c:.1f}' for c in cpu)} | "
                  f"{', '.join(f'{w:.1f}' for w, _ in runs)} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
