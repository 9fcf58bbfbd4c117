"""The stages before and beside RL: SFT (from scratch and from a checkpoint), reward model, offline DPO,
their `rebel` subcommands, and dataset completions scored exactly like sampled ones.

Everything trains the small scratch model on a few dozen in-memory rows, so each stage takes seconds.
"""
import json
import random
import re

import datasets
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rebel_rl import ConfigError, DPOConfig, RewardModelConfig, SFTConfig, dpo, sft, train_reward_model
from rebel_rl.cli import field_help, main
from rebel_rl.config import config_fields
from rebel_rl.policies.causal_lm.policy import CausalLMPolicy
from rebel_rl.policies.causal_lm.offline import rollout_from_text
from rebel_rl.models.scratch import build_scratch_model, train_word_tokenizer
from rebel_rl.rewards.reward_model import RewardModel
from rebel_rl.training.offline.sft import SFTExamples, load_sft_policy
from tiny import save_tiny_causal_lm, write_jsonl

THINGS = ["movie", "book", "song", "meal", "trip", "game", "show", "park", "cafe", "hotel"]
QUIET = {"progress": False, "mixed_precision": "no"}


def sft_rows() -> list[dict]:
    """Prompt-completion pairs whose completion repeats the prompt's noun: learnable in a few epochs."""
    rng = random.Random(0)
    return [{"prompt": f"tell me about the {thing} you saw .",
             "completion": f" the {thing} was {rng.choice(['good', 'bad'])} ."} for thing in THINGS for _ in range(5)]


def preference_rows(seed: int) -> list[dict]:
    """chosen says "good", rejected says "bad"; every fourth label is flipped (judge_prefers_chosen False)."""
    rng = random.Random(seed)
    rows = []
    for index in range(40):
        thing = rng.choice(THINGS)
        good, bad = f" the {thing} was good .", f" the {thing} was bad ."
        flipped = index % 4 == 3
        rows.append({"prompt": f"tell me about the {thing} you saw .", "chosen": bad if flipped else good,
                     "rejected": good if flipped else bad, "judge_prefers_chosen": not flipped})
    return rows


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    return {
        "root": root,
        "sft": write_jsonl(root / "sft.jsonl", sft_rows()),
        "prefs": write_jsonl(root / "prefs.jsonl", preference_rows(1)),
        "prefs_eval": write_jsonl(root / "prefs_eval.jsonl", preference_rows(2)),
    }


@pytest.fixture(scope="module")
def sft_run(data):
    """SFT of scratch:small on the toy rows (the start model of the reward-model and DPO tests)."""
    config = SFTConfig(model_name_or_path="scratch:small", dataset=data["sft"], num_epochs=20, batch_size=8,
                       output_dir=str(data["root"] / "sft"), **QUIET)
    return sft(config)


def metrics(run: dict) -> list[dict]:
    return [json.loads(line) for line in open(f"{run['output_dir']}/metrics.jsonl")]


def test_sft_from_scratch_learns_and_saves_a_loadable_model(sft_run):
    evals = [m["eval_loss"] for m in metrics(sft_run) if "eval_loss" in m]
    assert evals[-1] < 0.5 * evals[0]
    assert {"step", "epoch", "loss", "learning_rate"} <= set(metrics(sft_run)[1])
    tokenizer = AutoTokenizer.from_pretrained(sft_run["final"])
    model = AutoModelForCausalLM.from_pretrained(sft_run["final"])
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    prompt = tokenizer("tell me about the book you saw .", return_tensors="pt")
    output = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    text = tokenizer.decode(output[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text.startswith(" the book was"), text


def test_word_tokenizer_round_trips_text():
    text = "SUBREDDIT: r/pets\nPOST: My cat , Tom , hides .\nTL;DR: my cat hides"
    tokenizer = train_word_tokenizer([text], vocab_size=100, context_length=64)
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_sft_loss_counts_completion_tokens_and_eos_only(tmp_path):
    """Our loss equals transformers' own shifted cross-entropy with prompt positions labelled -100:
    a mask shifted by one position (or a forgotten EOS) would change it."""
    config = SFTConfig(model_name_or_path=str(save_tiny_causal_lm(tmp_path / "tiny")), dataset="unused").validate()
    policy = load_sft_policy(config, None, torch.device("cpu"))
    rows = datasets.Dataset.from_list([{"prompt": "the movie was", "completion": " great and i loved it"},
                                       {"prompt": "tell me about your weekend please", "completion": " sad"},
                                       {"prompt": "i feel", "completion": " the food was terrible"}])
    examples = SFTExamples(policy, rows, 128, "training")
    with torch.no_grad():
        ours = examples.loss([0, 1, 2]).item()
        total = count = 0.0
        for prompt, completion in zip(examples.prompt_ids, examples.completion_ids):
            assert completion[-1] == policy.tokenizer.eos_token_id
            labels = torch.tensor([[-100] * len(prompt) + completion])
            loss = policy.model(input_ids=torch.tensor([prompt + completion]), labels=labels).loss.item()
            total, count = total + loss * len(completion), count + len(completion)
    assert ours == pytest.approx(total / count, rel=1e-5)


def test_sft_from_a_checkpoint(tmp_path, data):
    run = sft(SFTConfig(model_name_or_path=str(save_tiny_causal_lm(tmp_path / "tiny")), dataset=data["sft"],
                        num_epochs=3, learning_rate=3e-3, batch_size=8, output_dir=str(tmp_path / "run"), **QUIET))
    evals = [m["eval_loss"] for m in metrics(run) if "eval_loss" in m]
    assert evals[-1] < evals[0]
    assert AutoModelForCausalLM.from_pretrained(run["final"]).config.hidden_size == 32


def test_dataset_completion_scores_like_the_sampled_one():
    """A sampled completion, rebuilt from its decoded text, gets the same log-prob (for a tokenizer where
    decode/encode round-trips: every word carries its leading space)."""
    torch.manual_seed(0)
    tokenizer = train_word_tokenizer([" " + " ".join(THINGS + ["the", "was", "good", "bad"])], 100, 64)
    tokenizer.padding_side = "left"
    model = build_scratch_model("small", tokenizer, 64).eval()
    # Special tokens other than EOS vanish from decoded text: make them unsampleable, and EOS likely.
    model.lm_head = torch.nn.Linear(64, len(tokenizer), bias=True)
    with torch.no_grad():
        model.lm_head.bias[[tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id]] = -1e4
        model.lm_head.bias[tokenizer.eos_token_id] = 2.0
    policy = CausalLMPolicy(model, tokenizer, max_new_tokens=12, temperature=0.8)
    prompts = [" the movie", " good song was", " the"]
    sampled = policy.sample(prompts, 4)
    keep = sampled.has_eos.nonzero().flatten()
    assert len(keep) >= 6
    rebuilt = rollout_from_text(policy, [prompts[i // 4] for i in keep.tolist()],
                                [sampled.completions[i] for i in keep.tolist()])
    with torch.no_grad():
        expected = policy.log_probs(sampled.select(keep))
        assert torch.allclose(policy.log_probs(rebuilt), expected, atol=1e-4)
    assert torch.equal(rebuilt.lengths, sampled.lengths[keep])
    assert rebuilt.has_eos.all()


def test_reward_model_learns_and_loads_as_a_reward(sft_run, data, tmp_path):
    run = train_reward_model(RewardModelConfig(
        model_name_or_path=sft_run["final"], dataset=data["prefs"], eval_dataset=data["prefs_eval"],
        num_epochs=4, batch_size=8, learning_rate=3e-3, output_dir=str(tmp_path / "rm"), **QUIET))
    losses = [m["loss"] for m in metrics(run) if "loss" in m]
    assert losses[-1] < losses[0]
    saved = json.loads(open(f"{run['output_dir']}/eval.json").read())
    assert saved["accuracy"] == run["eval"]["eval_accuracy"] == pytest.approx(0.75)  # every flipped label is missed
    assert saved["judge_accuracy"] == 1.0 and saved["label_judge_agreement"] == 0.75
    assert {"accuracy_stderr", "judge_accuracy_stderr", "train_mean_reward"} <= set(saved)
    rows = preference_rows(2)
    rm = RewardModel(run["final"])
    prompts = [r["prompt"] for r in rows]
    chosen, rejected = rm(prompts, [r["chosen"] for r in rows]), rm(prompts, [r["rejected"] for r in rows])
    margins = torch.tensor(chosen) - torch.tensor(rejected)
    assert (margins > 0).float().mean().item() == saved["accuracy"]
    assert margins.mean().item() == pytest.approx(saved["margin"], abs=1e-4)


def test_dpo_moves_the_implicit_reward_margin(sft_run, data, tmp_path):
    run = dpo(DPOConfig(model_name_or_path=sft_run["final"], dataset=data["prefs"], eval_dataset=data["prefs_eval"],
                        num_epochs=3, batch_size=8, learning_rate=1e-3, beta=0.5, output_dir=str(tmp_path / "dpo"),
                        **QUIET))
    train = [m for m in metrics(run) if "loss" in m]
    assert train[-1]["loss"] < train[0]["loss"]
    assert train[-1]["rewards/margins"] > train[0]["rewards/margins"]
    assert run["eval"]["eval_margin"] > 0 and run["eval"]["eval_judge_accuracy"] > 0.9
    # final/ holds the trained weights, not the SFT start: same tensors, some changed, all finite
    trained = AutoModelForCausalLM.from_pretrained(run["final"]).state_dict()
    start = AutoModelForCausalLM.from_pretrained(sft_run["final"]).state_dict()
    assert trained.keys() == start.keys()
    assert any(not torch.equal(trained[k], start[k]) for k in trained)
    assert all(torch.isfinite(v).all() for v in trained.values())


def test_cli_pipeline_end_to_end(data, tmp_path):
    quiet = ["--progress", "false", "--mixed_precision", "no"]
    assert main(["sft", "--model_name_or_path", "scratch:small", "--dataset", data["sft"], "--num_epochs", "2",
                 "--output_dir", str(tmp_path / "sft"), *quiet]) == 0
    final = str(tmp_path / "sft" / "final")
    assert main(["reward-model", "--model_name_or_path", final, "--dataset", data["prefs"], "--eval_fraction", "0.25",
                 "--output_dir", str(tmp_path / "rm"), *quiet]) == 0
    assert main(["dpo", "--model_name_or_path", final, "--dataset", data["prefs"], "--eval_split", "none",
                 "--output_dir", str(tmp_path / "dpo"), *quiet]) == 0
    assert main(["train", "--model_name_or_path", final, "--rewards", f"model:{tmp_path / 'rm' / 'final'}",
                 "--num_iterations", "1", "--prompts_per_iteration", "2", "--minibatch_prompts", "2",
                 "--max_new_tokens", "4", "--eval_prompts", "0", "--dataset", data["sft"], "--tensorboard", "false",
                 "--output_dir", str(tmp_path / "rl"), *quiet]) == 0
    for run in ["sft", "rm", "dpo"]:
        assert (tmp_path / run / "final" / "config.json").is_file()
    assert (tmp_path / "rl" / "final").is_dir()
    assert json.loads((tmp_path / "rm" / "eval.json").read_text())["num_pairs"] == 10


@pytest.mark.parametrize("argv, message", [
    (["sft", "--model_name_or_path", "scratch:huge"], "unknown scratch model size 'huge'"),
    (["sft", "--dataset", "{text}"], "has no column 'completion'"),
    (["sft", "--dataset", "{empty}"], "has no rows"),
    (["sft"], "dataset is required"),
    (["reward-model", "--model_name_or_path", "{garbage}", "--dataset", "{prefs}"], "cannot load"),
    (["dpo", "--model_name_or_path", "{folder}", "--dataset", "{prefs}"], "no config.json"),
    (["dpo", "--model_name_or_path", "{missing}", "--dataset", "{prefs}"], "does not exist"),
    (["reward-model", "--model_name_or_path", "{garbage}", "--dataset", "{sft}"],
     "has no columns 'chosen', 'rejected'"),
])
def test_cli_bad_input_is_one_error_line_and_nothing_written(argv, message, data, tmp_path, capfd):
    root = data["root"]
    garbage = root / "garbage"
    garbage.mkdir(exist_ok=True)
    (garbage / "config.json").write_text("{not json")
    paths = {"text": write_jsonl(root / "text.jsonl", [{"prompt": "a", "text": "b"}]),
             "empty": str(root / "empty.csv"), "garbage": str(garbage), "prefs": data["prefs"],
             "sft": data["sft"], "folder": str(root), "missing": str(root / "missing")}
    (root / "empty.csv").write_text("prompt,completion\n")
    argv = [arg.format(**paths) for arg in argv]
    if "--dataset" not in argv and argv != ["sft"]:  # bare `rebel sft` checks the missing dataset
        argv += ["--dataset", data["sft"]]
    output = tmp_path / "out"
    assert main([*argv, "--output_dir", str(output), "--progress", "false"]) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not output.exists()


@pytest.mark.parametrize("cls", [SFTConfig, RewardModelConfig, DPOConfig])
def test_every_stage_field_is_documented(cls):
    helps = field_help(cls)
    assert [f.name for f in config_fields(cls) if not helps.get(f.name)] == []


@pytest.mark.parametrize("config, message", [
    (SFTConfig(dataset="d", learning_rate=0.0), "learning_rate must be > 0"),
    (SFTConfig(dataset="d", num_epochs=0), "num_epochs must be >= 1"),
    (SFTConfig(dataset="d", eval_fraction=1.0), "eval_fraction must be in [0, 1)"),
    (RewardModelConfig(dataset="d"), "model_name_or_path is required"),
    (RewardModelConfig(dataset="d", model_name_or_path="m", center_rewards_coefficient=-1), "must be >= 0"),
    (DPOConfig(dataset="d", model_name_or_path="m", beta=0), "beta must be > 0"),
    (DPOConfig(dataset="d", model_name_or_path="m", lr_scheduler="step"), "lr_scheduler must be one of"),
])
def test_stage_config_validation(config, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.validate()


def test_learning_rate_default_depends_on_the_start():
    assert SFTConfig(dataset="d").validate().learning_rate == 3e-3
    assert SFTConfig(dataset="d", model_name_or_path="some/model").validate().learning_rate == 5e-5


def test_sft_medium_size_builds_the_larger_model(data, tmp_path):
    """Both comparison sizes train: scratch:medium is the 4-layer, 128-wide Llama."""
    run = sft(SFTConfig(model_name_or_path="scratch:medium", dataset=data["sft"], num_epochs=1, batch_size=8,
                        output_dir=str(tmp_path / "medium"), **QUIET))
    config = AutoModelForCausalLM.from_pretrained(run["final"]).config
    assert (config.num_hidden_layers, config.hidden_size) == (4, 128)
