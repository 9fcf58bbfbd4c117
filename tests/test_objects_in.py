"""Objects in, from Python: a model (a PeftModel with its own adapter), a tokenizer, datasets and a reward
model passed to `train` straight from memory, TRL-style reward functions (completion_ids, trainer_state,
None for "not applicable"), and the one-line errors for objects that do not fit."""
import json
import warnings

import pytest
import torch
from datasets import Dataset, DatasetDict
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM, LlamaForSequenceClassification

import rebel_rl
from rebel_rl import ModelError, RebelConfig, RewardError
from rebel_rl.rewards import RewardSet
from tiny import _config, tiny_tokenizer

PROMPTS = ["the movie was", "tell me about your weekend", "i feel", "write one sentence about the sea"]


def tiny_objects(seed: int = 0):
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    model = LlamaForCausalLM(_config(tokenizer))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def fast_config(run_dir, **overrides) -> RebelConfig:
    values = dict(rewards=[], num_iterations=1, prompts_per_iteration=4, minibatch_prompts=2, num_generations=2,
                  max_new_tokens=4, eval_prompts=2, eval_batch_size=4, learning_rate=1e-2, warmup_ratio=0.0,
                  mixed_precision="no", progress=False, tensorboard=False, save_every=0, output_dir=str(run_dir))
    values.update(overrides)
    return RebelConfig(**values)


def length_reward(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]


def test_dataset_peft_model_and_tokenizer_objects_train(tmp_path):
    """The Done-when test: a Dataset, a PeftModel (the user's adapter trains; adapter off = pi_ref) and a
    tokenizer object straight into `train`; the run folder says what was passed."""
    base, tokenizer = tiny_objects()
    base_weights = {k: v.clone() for k, v in base.state_dict().items()}
    peft_model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                       task_type="CAUSAL_LM"))
    lora_before = {k: v.clone() for k, v in peft_model.named_parameters() if "lora_B" in k}
    dataset = Dataset.from_dict({"prompt": PROMPTS, "topic": ["a", "b", "c", "d"]})
    held_out = Dataset.from_dict({"prompt": ["describe a good book", "the food was"]})
    # use_lora stays at its default (true): a PeftModel is not given a second adapter.
    config = fast_config(tmp_path / "run", model_name_or_path=None)
    summary = rebel_rl.train(config, model=peft_model, tokenizer=tokenizer, train_dataset=dataset,
                             eval_dataset=held_out, reward_funcs=[length_reward])
    assert summary["iterations"] == 1 and "after" in summary
    trained = dict(peft_model.named_parameters())
    assert any(not torch.equal(trained[k], v) for k, v in lora_before.items())  # the user's adapter moved
    frozen = {k.replace(".base_layer", ""): v for k, v in peft_model.get_base_model().state_dict().items()
              if "lora_" not in k}
    assert frozen.keys() == base_weights.keys()
    assert all(torch.equal(frozen[k], v) for k, v in base_weights.items())  # pi_ref = the untouched base
    assert (tmp_path / "run" / "final" / "adapter_config.json").is_file()
    inputs = json.loads((tmp_path / "run" / "inputs.json").read_text())
    assert inputs["model"]["class"].endswith("PeftModelForCausalLM") and len(inputs["model"]["config_sha256"]) == 64
    assert "adapter_sha256" in inputs["model"]
    assert inputs["tokenizer"]["class"].endswith(type(tokenizer).__name__) and inputs["tokenizer"]["chat_template_sha256"]
    assert inputs["train_dataset"]["fingerprint"] == dataset._fingerprint
    assert inputs["train_dataset"]["num_rows"] == 4 and inputs["train_dataset"]["columns"] == ["prompt", "topic"]
    assert inputs["reward_funcs"] == [{"class": "builtins.function", "name": "length_reward"}]


def test_plain_model_gets_lora_and_dataset_dict_gives_the_eval_split(tmp_path):
    """A plain PreTrainedModel object is given the config's LoRA adapter (the object's weights are not
    touched); a DatasetDict gives `dataset_split` for training and `eval_split` held out."""
    model, tokenizer = tiny_objects()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = DatasetDict(train=Dataset.from_dict({"question": PROMPTS}),
                       test=Dataset.from_dict({"question": ["describe a good book", "the food was"]}))
    config = fast_config(tmp_path / "run", prompt_column="question", lora_r=2)
    rebel_rl.train(config, model=model, tokenizer=tokenizer, train_dataset=data, reward_funcs=[length_reward])
    assert "2 held-out prompts" in (tmp_path / "run" / "eval.md").read_text()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items() if k in model.state_dict())
    inputs = json.loads((tmp_path / "run" / "inputs.json").read_text())
    assert set(inputs["train_dataset"]["splits"]) == {"train", "test"}


def test_reward_model_object_scores_completions(tmp_path):
    model, tokenizer = tiny_objects()
    torch.manual_seed(3)
    reward = LlamaForSequenceClassification(_config(tokenizer, num_labels=1))
    config = fast_config(tmp_path / "run", eval_prompts=0)
    rebel_rl.train(config, model=model, tokenizer=tokenizer, train_dataset=Dataset.from_dict({"prompt": PROMPTS}),
                   reward_model=(reward, tokenizer))
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "rewards/reward_model" in metrics[0] and metrics[0]["reward"] != 0.0
    fresh, _ = tiny_objects()
    with pytest.raises(RewardError, match="num_labels=1"):
        rebel_rl.train(fast_config(tmp_path / "bad", eval_prompts=0), model=fresh, tokenizer=tokenizer,
                       train_dataset=Dataset.from_dict({"prompt": PROMPTS}), reward_model=(fresh, tokenizer))


def test_objects_that_do_not_fit_are_one_line_errors(tmp_path):
    _, tokenizer = tiny_objects()
    classifier = LlamaForSequenceClassification(_config(tokenizer, num_labels=1))
    with pytest.raises(ModelError, match="LlamaForSequenceClassification, not a causal LM"):
        rebel_rl.train(fast_config(tmp_path / "a"), model=classifier, tokenizer=tokenizer,
                       train_dataset=Dataset.from_dict({"prompt": PROMPTS}), reward_funcs=[length_reward])
    with pytest.raises(rebel_rl.DataError, match="no column 'text'"):
        rebel_rl.train(fast_config(tmp_path / "b", prompt_column="text"), reward_funcs=[length_reward],
                       train_dataset=Dataset.from_dict({"prompt": PROMPTS}))


# ------------------------------------------------------------------ TRL reward functions
def test_trl_reward_keywords_and_none_are_handled_as_trl_does():
    """`completion_ids` and `trainer_state` reach the functions that name them (or take **kwargs); None
    means "not applicable": the weighted sum skips it, a sample no reward scores gets 0 (with a warning),
    and per-reward values keep NaN there (their logged means skip it)."""
    seen = {}

    def with_ids(prompts, completions, completion_ids, trainer_state, **kwargs):
        seen.update(ids=completion_ids, step=trainer_state.global_step)
        return [float(len(ids)) for ids in completion_ids]

    def only_first_two(prompts, completions):  # no **kwargs: receives no extras, and no columns here
        return [1.0, 2.0, None, None]

    def odd_only(prompts, completions, **kwargs):
        return [None, 10.0, None, 10.0]

    rewards = RewardSet([with_ids, only_first_two, odd_only], weights=[1.0, 2.0, 1.0])
    rewards.trainer_state = type("State", (), {"global_step": 7})()
    ids = [[1, 2], [3], [4, 5, 6], []]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        total, named = rewards(["p"] * 4, ["a", "b", "c", "d"], None, {"completion_ids": ids})
    assert seen == {"ids": ids, "step": 7}
    assert total.tolist() == [2.0 + 2.0, 1.0 + 4.0 + 10.0, 3.0, 0.0 + 10.0]
    assert torch.isnan(named["only_first_two"][2:]).all()
    assert not caught  # every sample had at least one reward

    nothing = RewardSet([lambda prompts, completions, **kw: [None, 1.0]])
    with pytest.warns(UserWarning, match="every reward returned None for 1 completion"):
        total, _ = nothing(["p", "p"], ["a", "b"])
    assert total.tolist() == [0.0, 1.0]


def test_tokenizer_object_with_its_own_chat_template_and_the_configs_model(tmp_path):
    """A tokenizer object alone (here with a custom chat template) goes with the model the config names."""
    from tiny import save_tiny_causal_lm

    path = save_tiny_causal_lm(tmp_path / "tiny")
    _, tokenizer = tiny_objects()
    tokenizer.chat_template = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}{% if add_generation_prompt %}>{% endif %}"
    seen = []

    def record(prompts, completions, **kwargs):
        seen.extend(prompts)
        return [0.0] * len(completions)

    side = tokenizer.padding_side
    chats = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in PROMPTS]})
    trainer = rebel_rl.RebelTrainer(fast_config(tmp_path / "run", model_name_or_path=str(path), eval_prompts=0),
                                    tokenizer=tokenizer, train_dataset=chats, reward_funcs=[record])
    assert trainer.policy.tokenizer.chat_template == tokenizer.chat_template
    assert trainer.policy.prompt_token_ids([chats[0]["prompt"]])[0] == tokenizer(f"[{PROMPTS[0]}]>",
                                                                                 add_special_tokens=False)["input_ids"]
    trainer.train()
    assert tokenizer.padding_side == side and trainer.policy.tokenizer.padding_side == "left"  # the user's is a copy
