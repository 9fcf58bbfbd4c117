"""The paper's GPU recipes (builtin:tldr_pythia, builtin:chat_llama3): each file read field by field into the
config, and one full iteration of each on tiny random stand-ins of the same architectures (GPT-NeoX for
Pythia, Llama for Llama-3, their sequence-classification heads) with prompt sets of the same columns."""
import json

import pytest
import torch
import yaml
from datasets import Dataset, DatasetDict
from transformers import (GPTNeoXConfig, GPTNeoXForCausalLM, GPTNeoXForSequenceClassification, LlamaForCausalLM,
                          LlamaForSequenceClassification)

from rebel_rl import RebelConfig
from rebel_rl.cli import main
from rebel_rl.config import packaged_accelerate_config, packaged_config
from rebel_rl.training.online.loop import RebelTrainer
from tiny import _config, tiny_tokenizer

POSTS = ["i feel sad and tired today", "the food was terrible", "tell me about your weekend", "the movie was great"]


def tldr_rows(n: int) -> dict:
    """The columns of the filtered TL;DR prompt set (cleanrl/summarize_from_feedback_tldr_3_...)."""
    posts = [POSTS[i % len(POSTS)] for i in range(n)]
    return {"id": [f"t3_{i}" for i in range(n)], "subreddit": ["relationships"] * n, "title": ["a title"] * n,
            "post": posts, "summary": ["a summary"] * n, "reference_response": [" a summary<|endoftext|>"] * n,
            "query": [f"SUBREDDIT: r/relationships\n\nTITLE: a title\n\nPOST: {p}\n\nTL;DR:" for p in posts]}


def chat_rows(n: int) -> dict:
    """The layout of TRL's prompt-only UltraFeedback (trl-lib/ultrafeedback-prompt): `prompt` as messages."""
    return {"prompt": [[{"role": "user", "content": POSTS[i % len(POSTS)]}] for i in range(n)]}


def neox_config(tokenizer, **extra) -> GPTNeoXConfig:
    return GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **extra)


STAND_INS = {  # recipe -> (causal LM class, reward model class, config builder, prompt rows, splits)
    "tldr_pythia": (GPTNeoXForCausalLM, GPTNeoXForSequenceClassification, neox_config, tldr_rows, ("train", "validation")),
    "chat_llama3": (LlamaForCausalLM, LlamaForSequenceClassification,
                    lambda tok, **extra: _config(tok, max_position_embeddings=256, **extra), chat_rows, ("train", "test")),
}


def recipe_values(name: str) -> dict:
    return yaml.safe_load(packaged_config(name).read_text())


@pytest.mark.parametrize("name", sorted(STAND_INS))
def test_recipe_file_is_read_field_by_field(name):
    values = recipe_values(name)
    config = RebelConfig.from_yaml(f"builtin:{name}")
    for key, value in values.items():
        assert getattr(config, key) == value, key
    config.validate()


def test_recipes_hold_the_papers_settings():
    tldr, chat = recipe_values("tldr_pythia"), recipe_values("chat_llama3")
    assert (tldr["max_new_tokens"], tldr["temperature"], tldr["kl_coef"], tldr["missing_eos_penalty"]) == (53, 0.7, 0.05, 1.0)
    assert (tldr["lora_r"], tldr["lora_alpha"], tldr["learning_rate"]) == (1024, 2048, 3e-6)
    assert (chat["num_generations"], chat["pairing"], chat["temperature"]) == (5, "best_worst", 0.5)
    assert chat["generation_backend"] == "vllm" and tldr.get("generation_backend", "hf") == "hf"
    for accelerate in ("fsdp2", "deepspeed_zero2"):
        text = yaml.safe_load(packaged_accelerate_config(accelerate).read_text())
        assert text["num_processes"] == 8


@pytest.mark.parametrize("name", sorted(STAND_INS))
def test_recipe_runs_one_iteration_on_tiny_stand_ins(name, tmp_path):
    causal, classifier, build, rows, splits = STAND_INS[name]
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    policy = causal(build(tokenizer))
    policy.generation_config.eos_token_id = tokenizer.eos_token_id
    policy.save_pretrained(tmp_path / "policy")
    tokenizer.save_pretrained(tmp_path / "policy")
    reward = classifier(build(tokenizer, num_labels=1))
    reward.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    DatasetDict({split: Dataset.from_dict(rows(8)) for split in splits}).save_to_disk(str(tmp_path / "prompts"))
    # The recipe as shipped, but for where its weights and prompts come from and the sizes one CPU can take.
    config = RebelConfig.from_yaml(f"builtin:{name}").with_overrides({
        "model_name_or_path": str(tmp_path / "policy"), "rewards": [f"model:{tmp_path / 'rm'}"],
        "dataset": str(tmp_path / "prompts"), "dtype": "float32", "mixed_precision": "no", "num_iterations": 1,
        "prompts_per_iteration": 4, "minibatch_prompts": 2, "gradient_accumulation_steps": 2,
        "max_new_tokens": 8, "eval_prompts": 2, "eval_batch_size": 8, "progress": False,
        "output_dir": str(tmp_path / "run"),
        # This environment has no vLLM: the chat recipe's backend runs in tests/test_vllm_backend.py instead.
        "generation_backend": "hf"})
    summary = RebelTrainer(config.validate()).train()
    assert summary["iterations"] == 1 and "after" in summary
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["rewards/reward_model"] == metrics[0]["rewards/reward_model"]  # scored (not NaN)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["sampling"]["temperature"] == recipe_values(name)["temperature"]


def test_rebel_recipes_lists_them(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "builtin:tldr_pythia" in out and "builtin:chat_llama3" in out and "builtin:lcm_aesthetic" in out
    assert main(["recipes", "--accelerate", "fsdp2"]) == 0
    assert capsys.readouterr().out.strip().endswith("fsdp2_8gpu.yaml")
    assert main(["recipes", "--accelerate", "zero9"]) == 2
