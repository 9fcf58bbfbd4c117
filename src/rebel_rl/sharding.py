"""What a run needs under sharded data parallelism (accelerate's FSDP2) that a plain or DDP module
does not.

Under FSDP2 every process holds a shard of each parameter (a DTensor); a module's forward hooks
gather its parameters and free them again. Three places in the loop see the difference:

* `generate()` runs the wrapped model's forward, not the FSDP root's, so the root's hooks never
  fire: the root's own parameters must be gathered around it, and processes must keep stepping
  together until all are done (`synced_gpus`), since each forward is a collective.
* checkpoints need whole tensors: the model's and the optimizer's state dicts are gathered (a
  collective on every process) and written by the main process.
* resuming scatters them back.

Everything else (log-prob passes, backward, clipping, the optimizer step) goes through accelerate
and the root module unchanged. FSDP1 and DeepSpeed ZeRO-3 are refused with a one-line error.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from .errors import ConfigError


def is_fsdp(module: torch.nn.Module) -> bool:
    """Whether `module` was sharded by FSDP2's `fully_shard` (accelerate's fsdp_version 2)."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without distributed
        return False
    return isinstance(module, FSDPModule)


def make_accelerator(mixed_precision: str):
    """An Accelerator; in a single process, several trainers may run one after another with
    different precision (accelerate's state is a process-wide singleton otherwise fixed by the
    first)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    if AcceleratorState._shared_state and PartialState().num_processes == 1:
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=mixed_precision)


def check_sharding(accelerator, unsupported: dict[str, bool]) -> None:
    """Refuse set-ups the loop does not support, with the fix, before any model is prepared.
    `unsupported`: what the run uses (as an error names it) -> whether it cannot train under FSDP2,
    as the policy kind and the algorithm registry declare."""
    from accelerate.utils import DistributedType

    state = accelerator.state
    if state.distributed_type == DistributedType.DEEPSPEED:
        plugin = state.deepspeed_plugin
        if plugin is not None and plugin.zero_stage == 3:
            raise ConfigError(
                "DeepSpeed ZeRO-3 is not supported (sampling needs whole weights): use ZeRO-2, "
                "or FSDP2 (accelerate launch --use_fsdp --fsdp_version 2)"
            )
        return
    if state.distributed_type != DistributedType.FSDP:
        return
    if state.fsdp_plugin.fsdp_version != 2:
        raise ConfigError(
            "FSDP1 is not supported: use FSDP2 (fsdp_version: 2 in the accelerate config, or "
            "accelerate launch --fsdp_version 2)"
        )
    for what, used in unsupported.items():
        if used:
            raise ConfigError(
                f"{what} is not supported under FSDP yet: run it with DDP (accelerate launch "
                "without --use_fsdp)"
                + ("; merge the saved final/ adapter afterwards" if what == "merge_adapter" else "")
            )


@contextlib.contextmanager
def ready_to_generate(model: torch.nn.Module) -> Iterator[dict[str, Any]]:
    """Around `model.generate(..., **kwargs)`: yields the extra generate() arguments. A no-op unless
    `model` is an FSDP2 root, whose own parameters are gathered for the duration."""
    if not is_fsdp(model):
        yield {}
        return
    if not getattr(model, "_rebel_root_initialised", False):
        # FSDP sets itself up on the first forward through the root; generate() would start below
        # it.
        with torch.no_grad():
            model(
                input_ids=torch.zeros(
                    1, 1, dtype=torch.long, device=next(model.parameters()).device
                )
            )
        model._rebel_root_initialised = True
    model.unshard()
    try:
        yield {"synced_gpus": torch.distributed.get_world_size() > 1}
    finally:
        model.reshard()


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # Whole tensors, on the CPU, on the main process only (the others get an empty dict).
    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def gathered_model_state(model: torch.nn.Module) -> dict | None:
    """The model's state dict with whole tensors (on the main process) under FSDP2, a collective
    every process must call; None otherwise: the model saves its own weights."""
    if not is_fsdp(model):
        return None
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options())


def gathered_optimizer_state(model: torch.nn.Module, optimizer) -> dict:
    """The optimizer's state dict; whole tensors (on the main process) under FSDP2, a collective."""
    if not is_fsdp(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it
    return get_optimizer_state_dict(model, inner, options=_options())


def load_optimizer_state(model: torch.nn.Module, optimizer, state: dict) -> None:
    """Restore an optimizer state saved by `gathered_optimizer_state`, re-sharding it under
    FSDP2."""
    if not is_fsdp(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    inner = getattr(optimizer, "optimizer", optimizer)
    set_optimizer_state_dict(model, inner, state, options=StateDictOptions(full_state_dict=True))
