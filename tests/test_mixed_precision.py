"""bf16 autocast must not freeze the policy: autocast caches cast weights for the span of a region,
so a region spanning optimizer steps would keep sampling from the pre-update weights."""
import json

import torch

from rebel_rl import RebelConfig
from rebel_rl.training.online.loop import RebelTrainer
from tiny import save_tiny_causal_lm


def test_updates_reach_the_policy_under_bf16_and_fp32(tmp_path):
    path = save_tiny_causal_lm(tmp_path / "tiny")
    for mixed_precision in ["bf16", "no"]:  # two trainers in one process: the accelerate state is reset
        torch.manual_seed(0)
        run_dir = tmp_path / mixed_precision
        config = RebelConfig(model_name_or_path=str(path), rewards=["length"], num_iterations=3, prompts_per_iteration=4,
                             minibatch_prompts=2, max_new_tokens=8, eval_prompts=0, output_dir=str(run_dir), lora_r=4,
                             learning_rate=1e-2, mixed_precision=mixed_precision, progress=False, tensorboard=False)
        trainer = RebelTrainer(config)
        trainer.train()
        kls = [json.loads(line)["kl"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert abs(kls[0]) < 1e-6  # the LoRA adapter starts at zero: pi_t = pi_ref
        assert all(abs(kl) > 1e-3 for kl in kls[1:]), f"{mixed_precision}: updates did not reach the sampler: {kls}"
        rollout = trainer.policy.sample([[{"role": "user", "content": "hi"}]], 2)
        with torch.no_grad():
            policy = trainer.policy.log_probs(rollout)
            reference = trainer.policy.log_probs(rollout, reference=True)
        assert (policy - reference).abs().max() > 1e-2


def test_chunked_head_keeps_pi_t_equal_to_pi_ref_under_bf16(tmp_path, monkeypatch):
    """The chunked LM head runs after the prepared module's autocast region: the pi_t pass must
    enter the same autocast as the pi_ref pass, or a zero adapter gives a nonzero first KL."""
    from rebel_rl.policies.causal_lm import policy as causal_lm
    calls, real = [], causal_lm.chunked_completion_logps

    def spy(*args, **kwargs):
        calls.append(torch.is_autocast_enabled("cpu"))
        return real(*args, **kwargs)
    monkeypatch.setattr(causal_lm, "chunked_completion_logps", spy)
    path = save_tiny_causal_lm(tmp_path / "tiny")
    torch.manual_seed(0)
    config = RebelConfig(model_name_or_path=str(path), rewards=["length"], num_iterations=1,
                         prompts_per_iteration=4, minibatch_prompts=2, max_new_tokens=8,
                         eval_prompts=0,
                         output_dir=str(tmp_path / "run"), lora_r=4, mixed_precision="bf16",
                         logprob_chunk_size=4, progress=False, tensorboard=False)
    RebelTrainer(config).train()
    (line,) = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert calls and all(calls)  # every chunked pass ran under bf16 autocast
    assert json.loads(line)["kl"] == 0.0
