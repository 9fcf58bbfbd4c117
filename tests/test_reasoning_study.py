"""benchmarks/reasoning_study.py: the page follows the runs' files (a method better on every
problem makes REBEL lose, an equal one ties), and the whole command runs on a tiny model."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reasoning_study as study  # noqa: E402

PROBLEMS = 6


def side(accuracy: list[float], kl: float) -> dict:
    """One side (before / after) of an eval.json with per-problem accuracy `accuracy`."""
    mean = sum(accuracy) / len(accuracy)
    return {"kl": kl, "per_prompt_rewards": {"math_answer": accuracy,
                                             "answer_tag_format": [0.5] * len(accuracy)},
            "verified": {"math_answer": {"mean@2": mean, "pass@2": min(1.0, 2 * mean)},
                         "answer_tag_format": {"mean@2": 0.5, "pass@2": 0.75}}}


def write_run(runs: Path, method: str, seed: int, accuracy: list[float]) -> None:
    """A finished run's eval.json, metrics.jsonl (2 iterations of 32 queries) and timing."""
    folder = runs / study.run_name(method, seed)
    folder.mkdir(parents=True)
    before = [0.1] * PROBLEMS
    (folder / "eval.json").write_text(json.dumps({"before": side(before, 0.0),
                                                  "after": side(accuracy, 0.2)}))
    lines = [{"iteration": i, "reward_queries": 32 * i, "rewards/math_answer": 0.1 * i}
             for i in (1, 2)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    (runs / "timings").mkdir(exist_ok=True)
    (runs / "timings" / f"{study.run_name(method, seed)}.json").write_text(
        json.dumps({"returncode": 0, "seconds": 200.0 + seed, "peak_rss_mb": 2048.0}))


def test_verdicts_follow_the_per_problem_differences(tmp_path):
    for seed in (0, 1, 2):
        base = [((seed + p) % 3) / 4 for p in range(PROBLEMS)]  # varies by seed and problem
        write_run(tmp_path, "rebel", seed, base)
        write_run(tmp_path, "grpo", seed, [a + 0.25 for a in base])  # better on every problem
        write_run(tmp_path, "rloo", seed, base)  # the same
        write_run(tmp_path, "apo", seed, [a - 0.1 for a in base])  # worse on every problem
    seeds = [0, 1, 2, 3]  # seed 3 never ran: a partial study
    loaded = study.load_runs(list(study.METHODS), seeds, tmp_path)
    meta = {"date": "today", "load_before": (1.0, 1.0, 1.0), "load_after": (2.0, 2.0, 2.0),
            "seeds": seeds, "command": "x", "figure": "reasoning_study.png", "failed": [],
            "missing": ["rebel-s3"]}
    page = study.report(loaded, meta)
    assert "- REBEL loses against GRPO: +25.0 [+25.0, +25.0] (3 seeds)." in page
    assert "- REBEL ties against RLOO: +0.0 [+0.0, +0.0] (3 seeds)." in page
    assert "- REBEL wins against A*-PO: -10.0 [-10.0, -10.0] (3 seeds)." in page
    assert "| pi_ref (before) | 3 | 10.0 ± 0.0 | 20.0 | 50.0 | 0.000 | — | — | — | — |" in page
    assert "| REBEL | 3 | 25.0 ± 0.0 | 50.0 | 50.0 | 0.200 | 201 | 2.00 | 32 | — |" in page
    assert "**Partial study.** Not finished: rebel-s3." in page
    assert "load (1, 5, 15 min) before: 1.00, 1.00, 1.00; after: 2.00, 2.00, 2.00" in page
    study.plot_curves(loaded, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_the_study_runs_end_to_end_on_a_tiny_model(tmp_path, monkeypatch):
    from tiny import save_tiny_causal_lm

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    model = save_tiny_causal_lm(tmp_path / "tiny", max_position_embeddings=512)
    runs, page = tmp_path / "runs", tmp_path / "docs" / "study.md"
    extra = (f"--model_name_or_path {model} --num_iterations 1 --prompts_per_iteration 2 "
             "--max_new_tokens 6 --eval_prompts 4")
    argv = ["--methods", "rebel", "apo", "--seeds", "0", "--runs-dir", str(runs),
            "--output", str(page), f"--extra={extra}"]
    assert study.main(argv) == 0
    text = page.read_text()
    assert "REBEL" in text and "A*-PO" in text and "- REBEL " in text
    assert (page.parent / "reasoning_study.png").is_file()
    timing = json.loads((runs / "timings" / "apo-s0.json").read_text())
    assert timing["seconds"] > 0 and timing["peak_rss_mb"] > 50
    assert "--vstar_samples 7" in timing["command"]
    mtime = (runs / "rebel-s0" / "eval.json").stat().st_mtime
    assert study.main(argv) == 0  # resumable: finished runs are kept, not trained again
    assert (runs / "rebel-s0" / "eval.json").stat().st_mtime == mtime
