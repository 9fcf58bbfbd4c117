"""`merge_adapter`: final/merged is a plain model equal to base + the trained adapter in final/."""
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from rebel_rl import RebelConfig
from rebel_rl.policies.causal_lm.policy import sequence_logps
from rebel_rl.training.online.loop import RebelTrainer
from tiny import save_tiny_causal_lm


def test_merged_model_matches_base_plus_adapter(tmp_path):
    base = save_tiny_causal_lm(tmp_path / "tiny")
    run_dir = tmp_path / "run"
    config = RebelConfig(model_name_or_path=str(base), rewards=["length"], num_iterations=2, prompts_per_iteration=2,
                         minibatch_prompts=2, max_new_tokens=6, eval_prompts=2, lora_r=4, learning_rate=1e-2,
                         merge_adapter=True, output_dir=str(run_dir), progress=False, tensorboard=False,
                         mixed_precision="no")
    trainer = RebelTrainer(config)
    rollout = trainer.policy.sample([[{"role": "user", "content": "hi"}]], 2)
    trainer.train()
    args = (rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids, rollout.completion_mask, 0.7)
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "final" / "merged").eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), run_dir / "final").eval()
    plain = AutoModelForCausalLM.from_pretrained(base).eval()
    with torch.no_grad():
        merged_logps, adapted_logps, base_logps = (sequence_logps(m, *args) for m in (merged, adapted, plain))
    assert torch.allclose(merged_logps, adapted_logps, atol=1e-4)
    assert not torch.allclose(merged_logps, base_logps, atol=1e-3)  # training changed the model
    assert not any("lora" in name for name, _ in merged.named_parameters())
