"""Asynchronous rollouts (`training.async_rollouts: 1`): batch t+1 is drawn from the weights of
iteration t, before update t, so samples are one policy version stale (docs/scaling.md).

The loop starts the draw of batch t+1 (`Policy.start_sample`), runs update t, then joins it.
`generation_backend: vllm_server` overlaps them: the server process samples while this one trains,
keeps the weights of version t until the draw is in (its weight push waits for draws in flight),
and records the drawing log-probs, which the trainer can no longer compute once its weights moved.
hf draws in line, before the update (a finished handle): a thread sharing the model object would
see the weights change under it (a race), on CPU both would compete for the same torch threads,
and a snapshot copy of the weights is not built; it gets the staleness semantics with no speed-up.
PPO, GRPO and RLOO may weight each stale sample by min(pi_t / pi_sampler, tis_cap)
(algorithms/importance.py; the loop puts `Drawn.sampler_logps` in the batch as
extra["sampler_logps"]). REBEL needs no correction: it regresses on log pi_t computed on the weights
it trains from, for any sampling distribution (tests/test_mirror_descent_oracle.py). The in-flight
batch is joined and saved in the checkpoint, so a resumed run continues exactly.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ...errors import ConfigError
from ...policies.base import Policy, SampleHandle


# vllm_server draws in the background while the trainer updates; hf draws in line (one model
# object); colocated vllm would share this process's cores and GPU with the update.
ASYNC_BACKENDS = ("hf", "vllm_server")


@dataclass
class Drawn:
    """A rollout, the policy version that drew it (the number of updates its weights had seen)
    and, for a prefetched one, the drawing weights' sequence log-probs (N,)."""

    version: int
    rollout: Any
    sampler_logps: torch.Tensor | None = None


def check_async(async_rollouts: int, *, episodes: bool, backend: str, images: bool,
                processes: int, algorithm: str = "", options: Any = None) -> None:
    """Refuse, in one line each, the combinations async rollouts do not support (FSDP2 is
    refused by check_sharding, from setup.sharding_needs), and a `tis_cap` in the `options` of
    `algorithm` without async rollouts, where every sample is drawn by pi_t: nothing to correct."""
    if async_rollouts not in (0, 1):
        raise ConfigError(f"async_rollouts={async_rollouts} is not supported: use 0 or 1")
    if not async_rollouts:
        cap = getattr(options, "tis_cap", 0)
        if cap > 0:
            raise ConfigError(f"{algorithm}.tis_cap={cap} corrects samples drawn by "
                              "other weights than pi_t, and async_rollouts 0 draws every sample "
                              "from pi_t: set tis_cap 0 or async_rollouts 1")
        return
    if episodes:
        raise ConfigError("async_rollouts does not support environments (multi-turn episodes): "
                          "set async_rollouts 0")
    if backend not in ASYNC_BACKENDS:
        raise ConfigError(f"async_rollouts does not support generation_backend {backend}: use "
                          "vllm_server (sampling overlaps the update), hf (in line) or "
                          "async_rollouts 0")
    if images:  # diffusion rollouts record the sampler's log-probs, which are pi_t only in sync
        raise ConfigError("async_rollouts does not support diffusion policies: set "
                          "async_rollouts 0")
    if processes > 1:  # the checkpoint would hold only the main process's in-flight batch
        raise ConfigError(f"async_rollouts runs on one process, not {processes}: launch one "
                          "process or set async_rollouts 0")


class Prefetcher:
    """Holds the batch drawn one iteration ahead. `draw(iteration)` samples the rollout of that
    iteration (seeded by it) from the current weights, `start(iteration)` starts that draw (a
    `SampleHandle`, policies/base.py); `take(iteration)` returns the batch for `iteration`: the
    prefetched one if there is one, else a fresh draw (the first iteration). `policy` gives the
    drawing weights' log-probs (recorded by the sampler, or recomputed while they are current)."""

    def __init__(self, draw: Callable[[int], Any], start: Callable[[int], SampleHandle],
                 policy: Policy, device: torch.device) -> None:
        self._draw, self._start, self._policy = draw, start, policy
        self._device = device
        self._devices = [device] if device.type == "cuda" else []
        self.pending: Drawn | None = None
        self._in_flight: tuple[int, SampleHandle] | None = None  # (version, the draw)

    def take(self, iteration: int) -> Drawn:
        """The batch of `iteration`, drawn now if none was prefetched for it."""
        self.join()
        pending, self.pending = self.pending, None
        if pending is not None and pending.version + 1 == iteration:
            return pending
        return Drawn(iteration, self._draw(iteration))

    def prefetch(self, iteration: int) -> None:
        """Start drawing the batch of `iteration` from the current weights. The RNG state is
        restored after, so the update that follows sees the RNG a synchronous run would. A draw
        done at once (hf, in line) gets its drawing log-probs now, before the weights change; one
        still in flight (a vLLM server's) runs during the update and is finished by `join`."""
        with torch.random.fork_rng(devices=self._devices):
            handle = self._start(iteration)
        self._in_flight = (iteration - 1, handle)
        if handle.done():
            self._finish(in_line=True)

    def join(self) -> None:
        """Wait for the draw in flight, if any (after the update, before a checkpoint), and keep
        it as `pending`; a server that died raises its one-line error here."""
        if self._in_flight is not None:
            self._finish(in_line=False)

    def _finish(self, in_line: bool) -> None:
        (version, handle), self._in_flight = self._in_flight, None
        rollout = handle.result()
        token_logps = self._policy.drawing_token_log_probs(rollout)
        if token_logps is not None:
            logps = token_logps.sum(-1)
        elif in_line:  # one forward: what the gap metric and TIS compare log pi_t with
            with torch.no_grad():
                logps = self._policy.token_log_probs(rollout).sum(-1)
        else:  # the drawing weights are gone: a policy that overlaps must record its log-probs
            raise RuntimeError(f"{self._policy.supports.description} drew in the background "
                               "without recording its log-probs (drawing_token_log_probs)")
        self.pending = Drawn(version, rollout, logps)

    def state_dict(self) -> dict:
        """The in-flight batch, for the checkpoint (empty when none); a draw still running is
        waited for."""
        self.join()
        if self.pending is None:
            return {}
        pending = self.pending
        return {"version": pending.version, "rollout": pending.rollout,
                "sampler_logps": pending.sampler_logps}

    def load_state_dict(self, state: dict) -> None:
        """Restore the in-flight batch saved by `state_dict` onto the run's device (checkpoints
        load on the CPU)."""
        self.pending = (Drawn(state["version"], _to_device(state["rollout"], self._device),
                              state["sampler_logps"].to(self._device)) if state else None)


def _to_device(rollout: Any, device: torch.device) -> Any:
    """A rollout dataclass with its tensor fields moved to `device`."""
    moved = {f.name: getattr(rollout, f.name).to(device) for f in dataclasses.fields(rollout)
             if f.init and isinstance(getattr(rollout, f.name), torch.Tensor)}
    return dataclasses.replace(rollout, **moved)


def logprob_gap(drawn: Drawn, trained_logps: torch.Tensor) -> dict[str, float]:
    """Mean |log pi_sampler - log pi_t| per sequence of a prefetched batch (none for a batch drawn
    by the weights it trains from, where it is 0 by construction)."""
    if drawn.sampler_logps is None:
        return {}
    gap = (drawn.sampler_logps.to(trained_logps.device) - trained_logps).abs().mean()
    return {"async/logprob_gap": float(gap)}
