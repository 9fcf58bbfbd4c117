"""The FLOP floor of one online iteration of a Llama-style causal LM, and this machine's matmul rate.

The floor counts only the work an iteration cannot avoid, on real tokens (no padding):
- each distinct prompt once (its n samples share it), each completion token once;
- logits only where they are used: the last prompt position and every completion position fed;
- sampling and every log-prob pass do the same teacher-forced work: prompt, then completion tokens but
  the last (whose successor is not needed);
- an iteration needs sampling, one pi_ref pass and one update (forward + backward); log pi_t is the
  update's own forward;
- the backward of a LoRA model computes activation gradients (one matmul per linear layer), the
  adapter's weight gradients and attention's two matmuls again; full fine-tuning adds every weight's
  gradient (one more matmul per linear layer and for the untied lm_head).
FLOPs are those of the matmuls (2 per multiply-add); norms, activations and softmax are left out, as
they are a few percent at these sizes. The time floor is FLOPs / the measured fp32 matmul rate.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch


def matmul_gflops(repeats: int = 20, shape: tuple[int, int, int] = (1024, 576, 1536)) -> float:
    """Median GFLOP/s of an fp32 (M x K) @ (K x N) matmul on the current torch thread count."""
    m, k, n = shape
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * m * k * n / statistics.median(times) / 1e9


@dataclass
class Shape:
    """What the floor needs of a rollout: each distinct prompt's real length, and the real lengths of its
    completions (tokens up to and including the first EOS)."""

    prompt_lengths: list[int]
    completion_lengths: list[list[int]]

    @classmethod
    def of(cls, rollout, n: int) -> "Shape":
        prompts = rollout.prompt_mask.sum(-1).view(-1, n)[:, 0].tolist()
        completions = rollout.completion_mask.sum(-1).view(-1, n).tolist()
        return cls([int(p) for p in prompts], [[int(c) for c in row] for row in completions])


class LlamaFlops:
    """Matmul FLOPs of a Llama-style decoder (gated MLP, grouped-query attention) with an optional LoRA
    adapter of rank `lora_rank` on every linear layer of the blocks."""

    def __init__(self, config, lora_rank: int = 0) -> None:
        d, inter = config.hidden_size, config.intermediate_size
        head_dim = getattr(config, "head_dim", None) or d // config.num_attention_heads
        kv = config.num_key_value_heads * head_dim
        q = config.num_attention_heads * head_dim
        linears = [(d, q), (d, kv), (d, kv), (q, d), (d, inter), (d, inter), (inter, d)]  # (in, out)
        self.layers = config.num_hidden_layers
        self.linear_params = self.layers * sum(i * o for i, o in linears)
        self.lora_params = self.layers * sum(lora_rank * (i + o) for i, o in linears) if lora_rank else 0
        self.attention_width = q  # QK^T and AV each cost 2 * q * context per token and layer
        self.lm_head = d * config.vocab_size
        self.lora = bool(lora_rank)

    def teacher_forced(self, shape: Shape) -> dict[str, float]:
        """Forward FLOPs of one pass over every prompt (once) and its completions, by kind of matmul."""
        tokens = contexts = logits = 0
        for prompt, completions in zip(shape.prompt_lengths, shape.completion_lengths):
            tokens += prompt
            contexts += prompt * (prompt + 1) // 2
            logits += 1
            for length in completions:
                fed = max(length - 1, 0)
                tokens += fed
                contexts += sum(prompt + 1 + k for k in range(fed))
                logits += fed
        return {"linear": 2 * self.linear_params * tokens, "lora": 2 * self.lora_params * tokens,
                "attention": 4 * self.attention_width * self.layers * contexts, "lm_head": 2 * self.lm_head * logits}

    def iteration(self, shape: Shape) -> dict[str, float]:
        """Floor FLOPs per phase: sampling, log-prob passes (pi_ref alone), update (forward + backward)."""
        forward = self.teacher_forced(shape)
        total = sum(forward.values())
        backward = forward["linear"] + 2 * forward["lora"] + 2 * forward["attention"] + forward["lm_head"]
        if not self.lora:  # weight gradients too (lm_head tied to the embeddings or not: one matmul more)
            backward += forward["linear"] + forward["lm_head"]
        return {"sampling": total, "logprobs": total, "update": total + backward}
