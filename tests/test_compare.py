"""`rebel compare` and `rebel evaluate` end to end on tiny models (the SFT and reward models given)."""
import dataclasses
import json
import os

import pytest

from rebel_rl.cli import main
from rebel_rl.compare import CompareConfig, compare
from rebel_rl.compare.jobs import method_job
from rebel_rl.errors import ConfigError
from tiny import save_tiny_causal_lm, save_tiny_reward_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    return {"sft": str(save_tiny_causal_lm(root / "sft", max_position_embeddings=1024)),
            "rm": str(save_tiny_reward_model(root / "rm"))}


def tiny_compare(models, out, **overrides) -> CompareConfig:
    values = dict(algorithms=["sft", "rebel"], seeds=[0, 1], workers=2, output_dir=str(out), sft_model=models["sft"],
                  reward_model=models["rm"], num_iterations=2, prompts_per_iteration=2, max_new_tokens=4,
                  eval_every=1, eval_prompts=2, test_prompts=2, eval_samples=2, frontier_kl_coefs=[])
    values.update(overrides)
    return CompareConfig(**values)


def test_compare_grid_writes_the_table_and_plots_and_reuses_finished_jobs(models, tmp_path):
    summary = compare(tiny_compare(models, tmp_path / "grid"))
    report = (tmp_path / "grid" / "results.md").read_text()
    assert summary["results"] == 4
    rows = [line for line in report.splitlines() if line.startswith("| SFT") or line.startswith("| REBEL")]
    assert len(rows) == 3  # SFT and REBEL in the table, SFT paired against REBEL
    assert "| SFT | 2 | " in rows[2]
    # two methods ranked: one best (bold) and one second (underlined) in the win-rate and RM columns
    assert report.count("**") >= 4 and "<u>" in report
    assert (tmp_path / "grid" / "learning_curves.png").stat().st_size > 0
    assert (tmp_path / "grid" / "reward_vs_kl.png").stat().st_size > 0
    results = [json.loads((tmp_path / "grid" / "runs" / f"{m}-seed{s}" / "result.json").read_text())
               for m in ("sft", "rebel") for s in (0, 1)]
    assert [r["reward_queries"] for r in results] == [0, 0, 2 * 2 * 2, 2 * 2 * 2]
    assert all(r["peak_memory_mb"] > 50 and r["evaluation"]["num_prompts"] == 2 for r in results)
    # both evaluations: the comparison's temperature, and the paper's 0.01
    assert [r["extra_evaluations"][0]["temperature"] for r in results] == [0.01] * 4
    # a second invocation reuses every finished job (same spec) instead of running it again
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "grid" / "runs").glob("*/result.json")}
    compare(tiny_compare(models, tmp_path / "grid"))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_every_online_method_gets_the_same_budget_reward_and_kl_term(models, tmp_path):
    config = tiny_compare(models, tmp_path).validate()
    shared = ["rewards", "kl_coef", "missing_eos_penalty", "num_generations", "prompts_per_iteration",
              "num_iterations", "max_new_tokens", "temperature", "model_name_or_path", "dataset"]
    jobs = [method_job(config, m, 0)["config"] for m in ["iterative_dpo", "ppo", "reinforce", "rloo", "grpo", "rebel"]]
    for name in shared:
        assert len({json.dumps(job[name]) for job in jobs}) == 1, name


def test_compare_rejects_an_unknown_algorithm(models, tmp_path, capsys):
    with pytest.raises(ConfigError, match="algorithms must be among"):
        tiny_compare(models, tmp_path, algorithms=["rebel", "a2c"]).validate()
    assert main(["compare", "--algorithms", "rebel", "a2c", "--output_dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: algorithms must be among")


def test_evaluate_command_reports_win_rate_rm_score_and_kl(models, tmp_path):
    output = tmp_path / "eval.json"
    code = main(["evaluate", "--model_name_or_path", models["sft"], "--reference_model", models["sft"],
                 "--split", "validation", "--num_prompts", "3", "--rewards", f"model:{models['rm']}",
                 "--eval_rewards", "tldr_win_rate,tldr_judge", "--max_new_tokens", "4", "--output", str(output)])
    assert code == 0
    result = json.loads(output.read_text())
    assert result["num_prompts"] == 3 and set(result["rewards"]) == {"reward_model", "tldr_win_rate", "tldr_judge"}
    assert 0.0 <= result["rewards"]["tldr_win_rate"] <= 1.0
    # each reward per prompt too, for paired comparisons of two policies on the same prompts
    assert {name: len(v) for name, v in result["per_prompt_rewards"].items()} == {name: 3 for name in result["rewards"]}
    # the policy is its own reference: KL is exactly zero
    assert result["kl"] == pytest.approx(0.0, abs=1e-5)


def test_evaluate_without_a_reference_for_a_full_model_is_a_one_line_error(models, capsys):
    assert main(["evaluate", "--model_name_or_path", models["sft"], "--num_prompts", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "reference_model" in err and len(err.strip().splitlines()) == 1


def test_compare_worker_failure_names_the_job_and_its_log(models, tmp_path):
    config = tiny_compare(models, tmp_path / "bad", algorithms=["rebel"], seeds=[0], reward_model=str(tmp_path))
    with pytest.raises(Exception, match=r"rebel-seed0 .*job.log"):
        compare(config)
    assert os.path.isfile(tmp_path / "bad" / "runs" / "rebel-seed0" / "job.log")


def test_extension_jobs_keep_the_budget_and_leave_the_rebel_job_unchanged(models, tmp_path):
    """Each extension is REBEL plus its overrides with the same reward queries per iteration; n = 4 halves the
    prompts (and keeps two minibatches); naming extensions changes nothing in the main grid's REBEL job."""
    from rebel_rl.compare.extensions import EXTENSIONS
    from rebel_rl.compare.jobs import check_job

    config = tiny_compare(models, tmp_path, prompts_per_iteration=8).validate()
    rebel = method_job(config, "rebel", 0)["config"]
    assert not {"pair_source", "pairing", "preference", "completion_columns"} & set(rebel)
    for name in EXTENSIONS:
        job = method_job(config, name, 0)
        check_job(job)
        run = job["config"]
        assert run["algorithm"] == "rebel" and job["method"] == name and job["dir"].endswith(f"{name}-seed0")
        assert run["prompts_per_iteration"] * run["num_generations"] == 8 * 2, name
        assert run["learning_rate"] == rebel["learning_rate"] and run["eta"] == rebel["eta"]
    n4 = method_job(config, "rebel_n4", 0)["config"]
    assert (n4["num_generations"], n4["prompts_per_iteration"], n4["minibatch_prompts"]) == (4, 4, 2)
    assert method_job(config, "rebel_best_worst4", 0)["config"]["pairing"] == "best_worst"
    hybrid = method_job(config, "rebel_hybrid", 0)["config"]
    assert (hybrid["pair_source"], hybrid["dataset"], hybrid["eval_dataset"]) == ("hybrid", "builtin:tldr_sft", "builtin:tldr")
    judge = method_job(config, "rebel_judge_preference", 0)["config"]
    assert judge["rewards"] == [] and f"model:{models['rm']}" in judge["eval_rewards"]


@pytest.mark.parametrize("name", ["rebel_hybrid", "rebel_offline", "rebel_judge_preference"])
def test_extension_runs_train_on_the_builtin_task(models, tmp_path, name):
    """One iteration of each extension's own config (its datasets, preference and evaluation rewards)."""
    from rebel_rl import RebelConfig
    from rebel_rl.training.online.loop import RebelTrainer

    config = tiny_compare(models, tmp_path, prompts_per_iteration=2, num_iterations=1).validate()
    run = method_job(config, name, 0)["config"]
    summary = RebelTrainer(RebelConfig.from_dict({**run, "eval_prompts": 2, "eval_every": 1}).validate()).train()
    assert summary["reward_queries"] == 4
    assert {"tldr_win_rate", "reward_model"} <= set(summary["after"]["rewards"])


def fake_result(tmp_path, method, seed, win, kl_coef=0.05):
    """A finished job's result.json content, with the files the learning curves read."""
    folder = tmp_path / "runs" / f"{method}-kl{kl_coef:g}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval_before.json").write_text(json.dumps({"rewards": {"tldr_win_rate": 0.3, "reward_model": 0.0}}))
    (folder / "metrics.jsonl").write_text(json.dumps({"reward_queries": 64, "eval/tldr_win_rate": win,
                                                      "eval/reward_model": win, "eval/kl": 1.0}) + "\n")
    evaluation = {"rewards": {"tldr_win_rate": win, "reward_model": 1.0, "tldr_judge": 2.0}, "kl": 1.5,
                  "per_prompt_rewards": {"tldr_win_rate": [win, win], "reward_model": [1.0, 1.0]}}
    return {"job": {"method": method, "dir": str(folder), "seed": seed, "name": f"{method}-seed{seed}",
                    "config": {"kl_coef": kl_coef}}, "evaluation": evaluation,
            "extra_evaluations": [evaluation], "reward_queries": 64, "train_seconds": 10.0, "wall_seconds": 12.0,
            "peak_memory_mb": 500.0}


def test_report_sections_replace_only_their_own_part_of_results_md(models, tmp_path):
    from rebel_rl.compare.report import write_report
    from rebel_rl.compare.sections import read_section

    path = tmp_path / "results.md"
    path.write_text("# TL;DR-style comparison\n\nthe main table, written before sections existed\n")
    results = [fake_result(tmp_path, m, s, w) for m, w in [("rebel", 0.5), ("rebel_hybrid", 0.6)] for s in (0, 1)]
    config = tiny_compare(models, tmp_path, report_dir=str(tmp_path), report_section="extensions").validate()
    write_report(config, results, [[None], [None]], 60.0)
    text = path.read_text()
    assert text.startswith("<!-- compare:main -->\n# TL;DR-style comparison")
    assert "the main table, written before sections existed" in read_section(path, "main")
    extensions = read_section(path, "extensions")
    assert "| REBEL hybrid | **60.0 ± 0.0** |" in extensions and "| REBEL | <u>50.0 ± 0.0</u> |" in extensions
    assert (tmp_path / "extensions_learning_curves.png").stat().st_size > 0
    # the main grid rewrites its own section and keeps the extensions'
    main = dataclasses.replace(config, report_section="main")
    write_report(main, results[:2], [[None], [None]], 60.0)
    assert "written before sections existed" not in path.read_text()
    assert read_section(path, "extensions") == extensions
    assert read_section(path, "main").startswith("# TL;DR-style comparison (built-in task)")
    # and an extensions rerun replaces only its section
    write_report(config, results[2:], [[None], [None]], 60.0)
    assert "| REBEL hybrid |" in read_section(path, "extensions") and "| REBEL |" not in read_section(path, "extensions")
    assert path.read_text().count("<!-- compare:main -->") == 1


def test_study_runs_the_sweep_then_the_table_with_its_choice_then_the_frontier(models, tmp_path, monkeypatch):
    """`--study true` with a stand-in for the job runner (made-up results): the order of the stages, the table
    trained with the sweep's choice, and both reports."""
    from rebel_rl.compare import grid
    from rebel_rl.compare.sections import read_section

    stages = []

    def fake_jobs(jobs, config):
        stages.append({job["name"].split("-")[0] for job in jobs})
        results = []
        for job in jobs:
            run = job.get("config", {})
            win = 0.5 + 0.1 * (run.get("eta") == 3.0) + (0.05 if job["method"] == "rebel" else 0)
            result = fake_result(tmp_path / "out", job["method"], job["seed"], win, run.get("kl_coef", 0.05))
            results.append({**result, "job": {**job, **result["job"], "config": run}})
        return results

    monkeypatch.setattr(grid, "run_jobs", fake_jobs)
    config = tiny_compare(models, tmp_path / "out", algorithms=["sft", "rloo", "rebel"], study=True,
                          frontier_kl_coefs=[0.2], frontier_seeds=[0])
    summary = grid.compare(config)
    assert stages == [{"sweep"}, {"sweep"}, {"sft", "rloo", "rebel"}, {"rloo", "rebel"}]
    tuned = json.loads((tmp_path / "out" / "tuned.json").read_text())["chosen"]
    assert tuned["rebel"]["eta"] == 3.0 and summary["results"] == 6 + 2
    main = read_section(tmp_path / "out" / "results.md", "main")
    assert "| RLOO | 2 | -15.0 [-15.0, -15.0] |" in main and "## Reward-vs-KL frontier" in main
    assert "Not in this table: DPO, PPO, REINFORCE, Iterative DPO, GRPO, A*-PO (not run" in main
    assert "| REBEL | 0.2 | 1 |" in main and (tmp_path / "out" / "frontier.png").stat().st_size > 0
    assert "tuning_rebel.png" in (tmp_path / "out" / "tuning.md").read_text()
