"""The Hub: the folder exactly as `push_to_hub`/`rebel push` upload it (model, tokenizer, card, plot) loads
back with transformers/peft and its card shows the run's held-out table; the upload itself goes through
huggingface_hub's create_repo/upload_folder (replaced here: no network)."""
from pathlib import Path

import huggingface_hub
import pytest
import torch
from peft import AutoPeftModelForCausalLM
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from rebel_rl import ConfigError, RebelConfig, push
from rebel_rl.cli import main
from rebel_rl.training.online.loop import RebelTrainer
from rebel_rl.training.run.hub import model_card
from tiny import save_tiny_causal_lm, write_jsonl

PROMPTS = ["the movie was", "tell me about your weekend", "i feel", "write one sentence about the sea"]


def count_e(prompts, completions, **kwargs):
    return [float(c.count("e")) for c in completions]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs: a LoRA adapter, and one that also saved the merged model."""
    root = tmp_path_factory.mktemp("hub")
    model = str(save_tiny_causal_lm(root / "tiny"))
    data = write_jsonl(root / "train.jsonl", [{"prompt": p} for p in PROMPTS])
    made = {}
    for name, merge in (("adapter", False), ("merged", True)):
        config = RebelConfig(model_name_or_path=model, dataset=data, eval_dataset=data, rewards=[], num_iterations=1,
                             prompts_per_iteration=4, minibatch_prompts=2, max_new_tokens=4, eval_prompts=2,
                             lora_r=2, learning_rate=1e-2, mixed_precision="no", progress=False, tensorboard=False,
                             save_every=0, merge_adapter=merge, hub_model_id=f"someone/tiny-{name}",
                             output_dir=str(root / name))
        RebelTrainer(config, reward_funcs=[count_e]).train()
        made[name] = root / name
    return made


def test_adapter_folder_loads_back_and_card_shows_the_table(runs, tmp_path):
    folder = Path(push(runs["adapter"], to_folder=tmp_path / "up"))
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "reward_kl.png",
            "rebel_config.yaml", "eval.json"} <= {p.name for p in folder.iterdir()}
    model = AutoPeftModelForCausalLM.from_pretrained(folder)
    AutoTokenizer.from_pretrained(folder)
    saved = load_file(runs["adapter"] / "final" / "adapter_model.safetensors")
    loaded = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert len(loaded) == len(saved) and all(torch.equal(loaded[k.replace(".weight", ".default.weight")], v)
                                             for k, v in saved.items())
    card = (folder / "README.md").read_text()
    table = (runs["adapter"] / "eval.md").read_text().strip().splitlines()
    assert all(line in card for line in table if line.startswith("|"))
    assert "library_name: peft" in card and "rebel-rl" in card and "![reward and KL" in card
    assert "AutoPeftModelForCausalLM.from_pretrained(\"someone/tiny-adapter\")" in card
    assert "learning_rate" in card and "eta" in card


def test_merged_folder_loads_with_transformers(runs, tmp_path):
    folder = Path(push(runs["merged"], "someone/other", to_folder=tmp_path / "up"))
    assert not (folder / "adapter_config.json").exists() and not (folder / "merged").exists()
    model = AutoModelForCausalLM.from_pretrained(folder)
    merged = AutoModelForCausalLM.from_pretrained(runs["merged"] / "final" / "merged")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), merged.state_dict().values()))
    assert "library_name: transformers" in (folder / "README.md").read_text()


def test_push_uploads_that_folder(runs, monkeypatch):
    calls = {}

    def create_repo(repo_id, private=False, exist_ok=False, token=None):
        calls["repo"] = (repo_id, private)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(repo_id, folder_path, token=None, commit_message=""):
        calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())

    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    assert main(["push", str(runs["adapter"]), "--private"]) == 0
    assert calls["repo"] == ("someone/tiny-adapter", True)
    assert "README.md" in calls["files"] and "adapter_model.safetensors" in calls["files"]


def test_bad_push_input_is_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="push_to_hub needs hub_model_id"):
        RebelConfig(push_to_hub=True).validate()
    assert main(["push", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def _fake_run(root: Path, algorithm: str) -> Path:
    """The least a run folder needs for its card: the config and a final/ adapter."""
    (root / "final").mkdir(parents=True)
    (root / "final" / "adapter_config.json").write_text("{}")
    (root / "config.yaml").write_text(f"training:\n  algorithm: {algorithm}\n")
    return root


@pytest.mark.parametrize("algorithm, arxiv, key", [
    ("rebel", "2404.16767", "@inproceedings{gao2024rebel"),
    ("grpo", "2402.03300", "@misc{shao2024deepseekmath")])
def test_card_cites_the_algorithms_paper_and_the_library(tmp_path, algorithm, arxiv, key):
    card = model_card(_fake_run(tmp_path, algorithm), "someone/m")
    citation = card[card.index("## Citation"):]
    assert f"arXiv {arxiv}" in citation and f"```bibtex\n{key}," in citation
    assert f"eprint = {{{arxiv}}}" in citation and "Library: rebel-rl " in citation
    other = "2402.03300" if algorithm == "rebel" else "2404.16767"
    assert other not in card
