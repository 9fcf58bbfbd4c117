"""`python -m rebel_rl.cli ...` under accelerate's FSDP2 on CPU processes (run it with torchrun).

accelerate turns FSDP on only for GPU process groups; this switches the run's accelerator to FSDP2
before the model is prepared, so the run gets the real thing on gloo: parameters sharded as DTensors
by accelerate's `fsdp2_prepare_model`, all-gathers in the forward hooks, reduce-scattered gradients.
Prints "sharded: FSDP2" once the policy is sharded. Test-only: on GPUs, `accelerate launch --use_fsdp
--fsdp_version 2` does this.
"""
import sys

from accelerate import FullyShardedDataParallelPlugin
from accelerate.utils import DistributedType

import rebel_rl.training.online.loop as loop
from rebel_rl.sharding import is_fsdp


def fsdp_accelerator(mixed_precision: str, make=loop._make_accelerator):
    accelerator = make(mixed_precision)
    accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin(fsdp_version=2,
                                                                   auto_wrap_policy="transformer_based_wrap")
    return accelerator


def build_and_report(trainer, build=loop.RebelTrainer._build_optimizer):
    build(trainer)
    if is_fsdp(trainer.policy.model) and trainer.is_main:
        print("sharded: FSDP2", flush=True)


if __name__ == "__main__":
    loop._make_accelerator = fsdp_accelerator
    loop.RebelTrainer._build_optimizer = build_and_report
    from rebel_rl.cli import main

    sys.exit(main(sys.argv[1:]))
