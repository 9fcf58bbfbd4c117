"""Held-out evaluation of a run with an environment plays episodes (evaluation/heldout.py): the
reported reward is the episode return plus the configured rewards, with the success rate, the
mean turns and, for a 0/1 return, pass@k; eval prompts keep their columns for the environment."""
import inspect
import json

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM

from rebel_rl import RebelConfig
from rebel_rl.cli import main
from rebel_rl.evaluation.heldout import Episodes, evaluate
from rebel_rl.training.online.loop import RebelTrainer
from test_multiturn_rollout import TwoTurnEnv, make_policy  # TwoTurnEnv: 2 turns, return 1.5
from tiny import save_tiny_causal_lm, write_jsonl


class ColumnEnv:
    """One turn; the return is the row's hidden `score` column (so it must reach reset)."""

    def reset(self, row):
        self.score = float(row["score"])
        return []

    def step(self, text):
        return [], self.score, True


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return save_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny", max_position_embeddings=512)


SCORES = {"the movie was": 1.0, "tell me a story": 0.0, "hello": 1.0, "why": 0.0}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rows = [{"prompt": p, "score": s} for p, s in SCORES.items()]
    return write_jsonl(tmp_path_factory.mktemp("episodes") / "train.jsonl", rows)


def run(tiny_path, data, run_dir, environment, **overrides) -> dict:
    """Train one iteration with `environment`, evaluating on 2 prompts; eval.json's content."""
    values = dict(model_name_or_path=str(tiny_path), dataset=data, rewards=[], num_iterations=1,
                  prompts_per_iteration=2, num_generations=2, max_new_tokens=4, max_turns=2,
                  max_total_tokens=64, eval_prompts=2, eval_generations=2, lora_r=4, warmup_ratio=0.0,
                  mixed_precision="no", progress=False, tensorboard=False, save_every=0, seed=0,
                  output_dir=str(run_dir))
    reward_funcs = overrides.pop("reward_funcs", None)
    values.update(overrides)
    RebelTrainer(RebelConfig(**values), environment=environment,
                 reward_funcs=reward_funcs).train()
    return json.loads((run_dir / "eval.json").read_text())


def test_eval_reward_is_the_episode_return(tiny_path, data, tmp_path):
    result = run(tiny_path, data, tmp_path / "two", TwoTurnEnv, eval_generations=3)
    for side in ("before", "after"):
        assert result[side]["reward"] == pytest.approx(1.5)
        assert result[side]["episode_return"] == pytest.approx(1.5)
        assert result[side]["success_rate"] == 1.0
        assert result[side]["mean_turns"] == 2.0
        assert result[side]["per_prompt_reward"] == pytest.approx([1.5, 1.5])
        assert "return" not in result[side]["verified"]  # 1.5 is not a verdict
    # equal returns give REBEL no signal: the policy is still pi_ref, its episodes' KL exactly 0
    assert result["before"]["kl"] == 0.0 and result["after"]["kl"] == 0.0
    table = (tmp_path / "two" / "eval.md").read_text()
    assert "success_rate: 100.0% -> 100.0%" in table and "mean_turns: 2.00 -> 2.00" in table


def test_eval_rows_keep_their_columns_and_rewards_add(tiny_path, data, tmp_path):
    def bonus(prompts, completions, **columns):
        assert columns["score"] == [SCORES[p] for p in prompts]  # each row's own, per episode
        return [0.01 * len(c) for c in completions]  # differs between episodes: a gradient

    result = run(tiny_path, data, tmp_path / "col", ColumnEnv, reward_funcs=[bonus],
                 max_turns=3, learning_rate=1e-2)
    for side in ("before", "after"):
        after = result[side]
        extra = after["per_prompt_rewards"]["bonus"]
        assert extra[0] > 0 and extra[1] > 0
        assert after["per_prompt_reward"] == pytest.approx([1.0 + extra[0], extra[1]])
        assert after["reward"] == pytest.approx(0.5 + sum(extra) / 2)
        assert after["episode_return"] == pytest.approx(0.5)
        assert after["success_rate"] == 0.5 and after["mean_turns"] == 1.0
        assert after["verified"]["return"] == pytest.approx(
            {"pass@1": 0.5, "pass@2": 0.5, "mean@2": 0.5})
    assert result["before"]["kl"] == 0.0 and result["after"]["kl"] != 0.0  # KL as single-turn


def test_single_turn_eval_has_no_episode_metrics(tiny_path, data, tmp_path):
    result = run(tiny_path, data, tmp_path / "single", None, rewards=["length"])
    assert result["after"]["success_rate"] is None and result["after"]["mean_turns"] is None
    assert result["after"]["episode_return"] is None


def test_cli_guess_number_writes_episode_metrics(tiny_path, tmp_path):
    run_dir = tmp_path / "guess"
    code = main(["train", "--model_name_or_path", str(tiny_path), "--environment",
                 "builtin:guess_number", "--dataset", "builtin:guess_number", "--rewards", "none",
                 "--eval_prompts", "2", "--eval_generations", "2", "--num_iterations", "1", "--prompts_per_iteration", "2",
                 "--num_generations", "2", "--max_new_tokens", "4", "--max_turns", "2",
                 "--max_total_tokens", "96", "--lora_r", "4", "--progress", "false",
                 "--tensorboard", "false", "--output_dir", str(run_dir)])
    assert code == 0
    result = json.loads((run_dir / "eval.json").read_text())
    for side in ("before", "after"):
        episodes = result[side]
        assert 1.0 <= episodes["mean_turns"] <= 2.0
        # guess_number's return is 1 (guessed) or 0: a verdict, so pass@k is reported
        assert episodes["verified"]["return"]["mean@2"] == pytest.approx(episodes["success_rate"])
        assert episodes["reward"] == pytest.approx(episodes["episode_return"])
        assert len(episodes["per_prompt_reward"]) == 2
    assert "mean_turns:" in (run_dir / "eval.md").read_text()


def evaluate_args(tiny_path, dataset, environment, out) -> list[str]:
    return ["evaluate", "--model_name_or_path", str(tiny_path), "--reference_model",
            str(tiny_path), "--dataset", dataset, "--split", "train", "--environment",
            environment, "--rewards", "none", "--num_prompts", "2", "--num_generations", "2",
            "--max_new_tokens", "4", "--max_turns", "3", "--max_total_tokens", "96",
            "--output", str(out)]


def test_rebel_evaluate_plays_episodes(tiny_path, data, tmp_path, capsys):
    # the rollout tests' environment, loaded from a file as a user's would be
    (tmp_path / "game.py").write_text(inspect.getsource(TwoTurnEnv))
    out = tmp_path / "result.json"
    assert main(evaluate_args(tiny_path, data, f"{tmp_path / 'game.py'}:TwoTurnEnv", out)) == 0
    result = json.loads(out.read_text())
    assert result["reward"] == pytest.approx(1.5) and result["episode_return"] == pytest.approx(1.5)
    assert result["success_rate"] == 1.0 and result["mean_turns"] == 2.0
    assert result["kl"] == 0.0  # the reference is the same model
    assert "mean_turns: 2.0000" in capsys.readouterr().out


def test_rebel_evaluate_guess_number(tiny_path, tmp_path, capsys):
    out = tmp_path / "guess.json"
    args = evaluate_args(tiny_path, "builtin:guess_number", "builtin:guess_number", out)
    args[args.index("train")] = "test"
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert 1.0 <= result["mean_turns"] <= 3.0
    assert result["verified"]["return"]["mean@2"] == pytest.approx(result["success_rate"])
    assert "return/pass@1:" in capsys.readouterr().out


def test_rebel_evaluate_without_rewards_or_environment_is_refused(tiny_path, data, tmp_path):
    args = evaluate_args(tiny_path, data, "x.py:Game", tmp_path / "r.json")
    i = args.index("--environment")
    assert main(args[:i] + args[i + 2:]) == 2


def sampled_temperatures(policy, monkeypatch) -> list[float]:
    """Record the temperature of each `generate` call (one per batched turn) of the policy's
    model and its reference model, in call order."""
    temperatures = []
    for model in (policy.model, policy.reference_model):
        def spy(*args, original=model.generate, **kwargs):
            temperatures.append(kwargs["generation_config"].temperature)
            return original(*args, **kwargs)

        monkeypatch.setattr(model, "generate", spy)
    return temperatures


@pytest.mark.parametrize("eval_temperature, reference, expected", [
    (0.01, False, [0.01, 0.01, 1.0, 1.0]),  # scored episodes, then the KL's at the trained 1.0
    (None, False, [1.0, 1.0]),  # one set of episodes: scores and KL from the same ones
    (1.0, False, [1.0, 1.0]),
    (0.01, True, [0.01, 0.01]),  # pi_ref's KL is 0: no episodes played for it
])
def test_episode_eval_scores_at_eval_temperature_and_kl_at_trained(
        tiny_path, monkeypatch, eval_temperature, reference, expected):
    policy = make_policy(tiny_path, max_new_tokens=4)  # trained temperature 1.0
    policy.reference_model = AutoModelForCausalLM.from_pretrained(tiny_path)
    temperatures = sampled_temperatures(policy, monkeypatch)
    result = evaluate(policy, Dataset.from_dict({"prompt": ["hello", "why"]}),
                      lambda prompts, completions, extra, ids: (torch.zeros(len(prompts)), {}),
                      num_generations=2, temperature=eval_temperature, reference=reference,
                      episodes=Episodes(TwoTurnEnv, max_turns=2, max_total_tokens=64))
    # 4 episodes of 2 turns, played together: one generate call per turn and set of episodes
    assert temperatures == expected
    assert result.temperature == (1.0 if eval_temperature is None else eval_temperature)
    assert result.kl_temperature == 1.0
    assert result.mean_turns == 2.0 and result.episode_return == pytest.approx(1.5)
