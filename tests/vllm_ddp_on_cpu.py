"""REBEL with `generation_backend: vllm` on DDP processes, each driving its own colocated vLLM engine (run it
with torchrun; tests/test_vllm_backend.py does, on 2 CPU processes).

    torchrun --nproc_per_node 2 tests/vllm_ddp_on_cpu.py MODEL DATASET OUTPUT_DIR [--skip-sync-on-rank R]

Trains a few iterations (full fine-tuning, so every weight the engine serves changes), then each process
checks its own engine against its own training model and writes a JSON report, OUTPUT_DIR-rank{R}.json
(one file per process: two processes printing to one pipe can interleave their lines): its rank, the world size,
the greedy completions of the engine, of the training model and of pi_ref (the starting weights), the
diagnostic `vllm/logprob_diff` on fresh samples, and how far the training model's sequence log-probs of
those samples moved from pi_ref's (what the diagnostic would show if that engine had kept the start's
weights). `--skip-sync-on-rank R` leaves rank R's engine unsynced: the test's negative control.
"""
import argparse
import json
from pathlib import Path

import torch

from rebel_rl import RebelConfig
from rebel_rl.training.online.loop import RebelTrainer
from test_vllm_backend import PROMPTS, _greedy


def greedy(policy, backend: str) -> list[list[int]]:
    """Greedy completions of PROMPTS, ids up to EOS: by the engine (vllm), the trained model (hf) or pi_ref (ref)."""
    rollout = _greedy(policy, backend)
    return [ids[:length].tolist() for ids, length in zip(rollout.completion_ids, rollout.completion_mask.sum(-1))]


@torch.no_grad()
def check_engine(policy, rank: int) -> dict:
    torch.manual_seed(rank)
    rollout = policy.sample(PROMPTS, 2)
    logps = policy.sampling_token_log_probs(rollout).sum(-1)
    diff = policy.sampling_metrics()["vllm/logprob_diff"]
    moved = (logps - policy.token_log_probs(rollout, reference=True).sum(-1)).abs().mean()
    return {"logprob_diff": diff, "moved": float(moved), "greedy_engine": greedy(policy, "vllm"),
            "greedy_trainer": greedy(policy, "hf"), "greedy_ref": greedy(policy, "ref")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("dataset")
    parser.add_argument("output_dir")
    parser.add_argument("--skip-sync-on-rank", type=int, default=-1)
    args = parser.parse_args()
    config = RebelConfig(model_name_or_path=args.model, dataset=args.dataset, rewards=["length"], num_iterations=2,
                         prompts_per_iteration=2, minibatch_prompts=1, num_generations=2, max_new_tokens=8,
                         num_epochs=1, use_lora=False, learning_rate=1e-2, warmup_ratio=0.0, lr_scheduler="constant",
                         kl_coef=0.0, eval_prompts=0, mixed_precision="no", progress=False, tensorboard=False,
                         save_every=0, seed=0, output_dir=args.output_dir, generation_backend="vllm",
                         vllm_kv_cache_gb=0.25)
    trainer = RebelTrainer(config)
    rank = trainer.accelerator.process_index
    if rank == args.skip_sync_on_rank:
        trainer.policy.weights_updated = lambda: None
    trainer.train()
    report = {"rank": rank, "world": trainer.accelerator.num_processes, **check_engine(trainer.policy, rank)}
    Path(f"{args.output_dir}-rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
