"""The reasoning recipe's path end to end on a tiny model: builtin:arithmetic, the verifier rewards,
pass@k in eval.json and the identical-score share in metrics.jsonl."""
import json

from rebel_rl.cli import main
from tiny import save_tiny_causal_lm


def test_reasoning_recipe_runs_and_logs_verifier_metrics(tmp_path):
    model = str(save_tiny_causal_lm(tmp_path / "tiny", max_position_embeddings=512))
    run = tmp_path / "run"
    code = main(["train", "--config", "builtin:reasoning_arithmetic", "--model_name_or_path", model,
                 "--num_iterations", "2", "--prompts_per_iteration", "2", "--max_new_tokens", "6",
                 "--eval_prompts", "4", "--output_dir", str(run), "--progress", "false"])
    assert code == 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    training = [m for m in metrics if "reward" in m]
    assert len(training) == 2
    for m in training:
        assert 0.0 <= m["identical_score_fraction"] <= 1.0
        assert {"rewards/math_answer", "rewards/answer_tag_format"} <= set(m)
    verified = json.loads((run / "eval.json").read_text())
    after = verified.get("after", verified)
    assert set(after["verified"]["math_answer"]) == {"pass@1", "pass@2", "mean@2"}
    accuracy = after["verified"]["math_answer"]
    assert 0.0 <= accuracy["pass@1"] <= accuracy["pass@2"] <= 1.0
