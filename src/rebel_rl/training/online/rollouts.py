"""Asynchronous rollouts (`training.async_rollouts: 1`): batch t+1 is drawn from the weights of
iteration t, before update t, so samples are one policy version stale (docs/scaling.md).

On one process the draw runs in line, before the update, not in a background thread: a thread
sharing the model object would see the weights change under it (a race), and on CPU both would
compete for the same torch threads; a thread with a snapshot copy of the weights costs one more
copy of the model and is not built yet. So this mode gives the staleness semantics an overlapped
sampler has (what its algorithms must tolerate), with no speed-up yet. PPO, GRPO and RLOO may
weight each stale sample by min(pi_t / pi_sampler, tis_cap) (algorithms/importance.py; the loop
puts `Drawn.sampler_logps` in the batch as extra["sampler_logps"]). REBEL needs no correction:
it regresses on log pi_t computed on the weights it trains from, for any sampling distribution
(tests/test_mirror_descent_oracle.py). The in-flight batch is saved in the checkpoint, so a resumed
run continues exactly.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ...errors import ConfigError


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
    if backend != "hf":
        raise ConfigError(f"async_rollouts does not support generation_backend {backend} yet: "
                          "use generation_backend hf or async_rollouts 0")
    if images:  # diffusion rollouts record the sampler's log-probs, which are pi_t only in sync
        raise ConfigError("async_rollouts does not support diffusion policies: set "
                          "async_rollouts 0")
    if processes > 1:  # the checkpoint would hold only the main process's in-flight batch
        raise ConfigError(f"async_rollouts runs on one process, not {processes}: launch one "
                          "process or set async_rollouts 0")


class Prefetcher:
    """Holds the batch drawn one iteration ahead. `draw(iteration)` samples the rollout of that
    iteration (seeded by it) from the current weights; `take(iteration)` returns the batch for
    `iteration`: the prefetched one if there is one, else a fresh draw (the first iteration)."""

    def __init__(self, draw: Callable[[int], Any], sequence_logps: Callable[[Any], torch.Tensor],
                 device: torch.device) -> None:
        self._draw = draw
        self._sequence_logps = sequence_logps
        self._device = device
        self._devices = [device] if device.type == "cuda" else []
        self.pending: Drawn | None = None

    def take(self, iteration: int) -> Drawn:
        """The batch of `iteration`, drawn now if none was prefetched for it."""
        pending, self.pending = self.pending, None
        if pending is not None and pending.version + 1 == iteration:
            return pending
        return Drawn(iteration, self._draw(iteration))

    def prefetch(self, iteration: int) -> None:
        """Draw the batch of `iteration` now (from the current weights) and keep it. The RNG state
        is restored after, so the update that follows sees the RNG a synchronous run would."""
        with torch.random.fork_rng(devices=self._devices):
            rollout = self._draw(iteration)
        with torch.no_grad():  # one forward: what the gap metric compares log pi_t with
            self.pending = Drawn(iteration - 1, rollout, self._sequence_logps(rollout))

    def state_dict(self) -> dict:
        """The in-flight batch, for the checkpoint (empty when none)."""
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
