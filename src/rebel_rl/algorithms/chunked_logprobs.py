"""Per-token log-probs from final hidden states without a full (tokens x vocab) logits tensor.

The LM head and log-softmax run chunk by chunk over positions; only each chunk's selected
log-prob is kept, and the backward recomputes each chunk's logits, so peak memory holds one
chunk's logits instead of all of them. Pure torch; policies/causal_lm/policy.py calls it when
`logprob_chunk_size` > 0.
"""

from __future__ import annotations

import torch


class _ChunkedLogProbs(torch.autograd.Function):
    """Forward keeps only selected log-probs; backward recomputes each chunk's logits."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature, chunk):  # type: ignore[override]
        flat = hidden.reshape(-1, hidden.shape[-1])
        tgt = targets.reshape(-1)
        # Log-softmax in at least float32 (as the full path's `.float()`), float64 kept as is.
        acc = torch.promote_types(flat.dtype, torch.float32)
        out = flat.new_empty(flat.shape[0], dtype=acc)
        for start in range(0, flat.shape[0], chunk):
            h = flat[start:start + chunk]
            logits = torch.nn.functional.linear(h, weight, bias).to(acc) / temperature
            lse = torch.logsumexp(logits, dim=-1)
            sel = logits.gather(-1, tgt[start:start + chunk, None]).squeeze(-1)
            out[start:start + chunk] = sel - lse
        ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.temperature, ctx.chunk, ctx.acc = temperature, chunk, acc
        # The backward recomputes the logits under the forward's autocast state, so both agree.
        device = hidden.device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        return out.reshape(targets.shape)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        hidden, weight, bias, targets = ctx.saved_tensors
        flat = hidden.reshape(-1, hidden.shape[-1])
        tgt, g = targets.reshape(-1), grad_out.reshape(-1)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        # A frozen head (LoRA) needs no (vocab x hidden) gradient: skip allocating and computing it.
        gh = torch.zeros_like(flat) if need_h else None
        gw = torch.zeros_like(weight) if need_w else None
        gb = torch.zeros_like(bias) if need_b and bias is not None else None
        device, enabled, dtype = ctx.autocast
        with torch.autocast(device, dtype=dtype, enabled=enabled):
            for start in range(0, flat.shape[0], ctx.chunk):
                _backward_chunk(ctx, slice(start, start + ctx.chunk), flat, weight, bias, tgt, g,
                                (gh, gw, gb))
        gh = None if gh is None else gh.reshape(hidden.shape)
        return gh, gw, gb, None, None, None


def _backward_chunk(ctx, sl: slice, flat: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor | None, tgt: torch.Tensor, g: torch.Tensor,
                    grads: tuple[torch.Tensor | None, ...]) -> None:
    """Add one chunk's contribution to the gradients that are wanted (None: not wanted)."""
    gh, gw, gb = grads
    logits = torch.nn.functional.linear(flat[sl], weight, bias).to(ctx.acc) / ctx.temperature
    # d(sel - lse)/dlogits = onehot - softmax, scaled by the upstream gradient.
    dlog = -torch.softmax(logits, dim=-1)
    dlog.scatter_add_(-1, tgt[sl, None], torch.ones_like(dlog[:, :1]))
    dlog = (dlog * (g[sl, None] / ctx.temperature)).to(weight.dtype)
    if gh is not None:
        gh[sl] = dlog @ weight
    if gw is not None:
        gw += dlog.transpose(0, 1) @ flat[sl].to(weight.dtype)
    if gb is not None:
        gb += dlog.sum(0)


def chunked_token_log_probs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float = 1.0,
    chunk_size: int = 256,
) -> torch.Tensor:
    """Log-probs (B, T) of `targets` under softmax((hidden @ weight.T + bias) / temperature).

    `hidden` is (B, T, H) at the positions that predict `targets` (B, T); the head runs over
    `chunk_size` positions at a time in forward and backward, so no (B*T, vocab) tensor is
    ever alive. Gradients flow to `hidden`, `weight` and `bias`.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive; use the full path for 0")
    return _ChunkedLogProbs.apply(hidden, weight, bias, targets, float(temperature), chunk_size)
