"""The tuned study's pieces on made-up results (no training): the paired bootstrap, the sweep's grid,
refinement and choice, tuning.md's heat-maps, the paired table and the reward-vs-KL frontier."""
import json

import numpy as np
import pytest

from rebel_rl.compare import CompareConfig
from rebel_rl.compare.frontier import frontier_jobs, frontier_points, frontier_table, plot_frontier
from rebel_rl.compare.paired import paired_table
from rebel_rl.compare.stats import paired_bootstrap, verdict
from rebel_rl.compare.sweep import best_key, coarse_keys, merge_records, refine_keys, run_sweep, sweep_methods
from rebel_rl.compare.sweep_report import write_sweep_report
from rebel_rl.compare.tuned import BASE, KNOBS, LEARNING_RATE, tuned_settings


def config(tmp_path, **overrides) -> CompareConfig:
    values = dict(output_dir=str(tmp_path), sft_model=str(tmp_path / "sft"), reward_model=str(tmp_path / "rm"))
    return CompareConfig(**{**values, **overrides}).validate()


# --- the paired bootstrap -------------------------------------------------------------------------------
def test_identical_methods_give_a_zero_difference_and_a_tie():
    mean, low, high = paired_bootstrap(np.zeros((5, 200)))
    assert (mean, low, high) == (0.0, 0.0, 0.0) and verdict(low, high) == "tie"


def test_a_constant_shift_gives_exactly_that_shift():
    mean, low, high = paired_bootstrap(np.full((5, 40), 0.07))
    assert mean == pytest.approx(0.07) and low == pytest.approx(0.07) and high == pytest.approx(0.07)
    assert verdict(low, high) == "higher" and verdict(-high, -low) == "lower"


def test_noise_around_zero_gives_an_interval_holding_zero_and_noise_around_a_shift_excludes_zero():
    noise = np.random.default_rng(0).normal(0, 0.3, (5, 200))
    _, low, high = paired_bootstrap(noise - noise.mean())
    assert low < 0 < high and high - low < 0.1
    mean, low, high = paired_bootstrap(noise - noise.mean() + 0.1)
    assert mean == pytest.approx(0.1) and 0.05 < low < 0.1 < high < 0.15


def test_the_bootstrap_resamples_seeds_too():
    """Every prompt agrees within a seed but the seeds disagree: the interval is as wide as the seeds' spread,
    not the (zero) spread over prompts."""
    diffs = np.repeat(np.array([[-0.2], [0.2], [-0.1], [0.1], [0.0]]), 50, axis=1)
    _, low, high = paired_bootstrap(diffs)
    assert low < -0.05 and high > 0.05
    with pytest.raises(ValueError, match="seeds x prompts"):
        paired_bootstrap(np.zeros(5))


# --- the sweep's grid ------------------------------------------------------------------------------------
def test_coarse_grids_are_equal_in_size_and_hold_the_hand_picked_setting():
    for method, (knob, axis) in KNOBS.items():
        reduced, full = coarse_keys(method, 2), coarse_keys(method, 3)
        assert len(reduced) == 4 and len(full) == 9, method
        assert (BASE[method]["learning_rate"], BASE[method][knob]) in reduced, method
        assert set(axis[1]) <= set(axis[0]) and set(axis[2]) <= set(axis[1]), method
        assert {k[0] for k in full} <= set(LEARNING_RATE[0])


def test_refinement_extends_the_grid_past_the_best_corner_first():
    keys = coarse_keys("rebel", 2)  # lr 1e-4, 3e-4 x eta 1, 3
    scores = dict(zip(keys, [0.60, 0.62, 0.61, 0.70]))  # best: lr 3e-4, eta 3
    assert best_key(scores) == (3e-4, 3.0)
    # the two half-steps outward from the best corner, then the two between it and its coarse neighbours
    assert refine_keys("rebel", scores, 2) == [(3e-4, 5.5), (5.5e-4, 3.0)]
    assert set(refine_keys("rebel", scores, 4)) == {(3e-4, 5.5), (5.5e-4, 3.0), (3e-4, 1.8), (1.8e-4, 3.0)}
    # a full 3 x 3 grid with the best in the middle: its four fine neighbours, none already run
    full = {key: 0.5 for key in coarse_keys("ppo", 3)} | {(1e-4, 0.2): 0.7}
    refined = refine_keys("ppo", full, 4)
    assert set(refined) == {(5.5e-5, 0.2), (1.8e-4, 0.2), (1e-4, 0.14), (1e-4, 0.28)} and not set(refined) & set(full)


def fake_run(method, seed, settings, win, *, split="validation", kl=1.0, per_prompt=None):
    config = {"learning_rate": 1e-4, "kl_coef": 0.05, **settings}
    rewards = {"tldr_win_rate": win, "reward_model": win / 2, "tldr_judge": 2.0}
    evaluation = {"rewards": rewards, "kl": kl, "num_prompts": 4,
                  "per_prompt_rewards": {"tldr_win_rate": per_prompt or [win] * 4,
                                         "reward_model": [x / 2 for x in per_prompt or [win] * 4]}}
    return {"job": {"method": method, "seed": seed, "name": f"{method}-{seed}", "config": config, "split": split},
            "evaluation": evaluation, "extra_evaluations": [evaluation], "wall_seconds": 10.0}


def test_run_sweep_spends_the_same_budget_on_every_method_and_writes_the_best_cell(tmp_path):
    """The sweep with a stand-in for the job runner: each cell's validation win rate is a made-up function of
    its settings; the refinement cells come from the coarse scores and the best of all cells is chosen."""
    cfg = config(tmp_path, algorithms=["sft", "ppo", "rebel"], sweep_refine=2)
    peak = {"ppo": (1e-4, 0.14), "rebel": (3e-4, 5.5)}  # each method's best cell is a refinement cell
    batches = []

    def fake_jobs(jobs, _config):
        batches.append([job["name"] for job in jobs])
        out = []
        for job in jobs:
            method, run = job["method"], job["config"]
            key = (run["learning_rate"], run[KNOBS[method][0]])
            assert job["evaluate"][0]["split"] == "validation" and len(job["evaluate"]) == 1
            distance = abs(np.log(key[0] / peak[method][0])) + abs(np.log(key[1] / peak[method][1]))
            out.append(fake_run(method, 0, run, 0.8 - 0.1 * distance))
        return out

    record = run_sweep(cfg, fake_jobs)
    assert sweep_methods(cfg) == ["ppo", "rebel"] and [len(b) for b in batches] == [8, 4]
    assert record["chosen"] == {"ppo": {"learning_rate": 1e-4, "clip_range": 0.14},
                                "rebel": {"learning_rate": 3e-4, "eta": 5.5}}
    assert [len(record["cells"][m]) for m in ("ppo", "rebel")] == [6, 6] and record["budget"] == {"coarse": 4, "refine": 2}
    assert json.loads((tmp_path / "tuned.json").read_text()) == record
    # the grid in this folder now trains with the chosen cells (the settings not swept kept)
    assert tuned_settings(tmp_path)["rebel"] == {**BASE["rebel"], "learning_rate": 3e-4, "eta": 5.5}
    # tuning.md: the chosen cells, one heat-map per method, every cell
    path = write_sweep_report(config(tmp_path, report_dir=str(tmp_path / "docs")), record, 90.0)
    text = path.read_text()
    assert "| REBEL | eta | 0.0003 | 5.5 |" in text and "| PPO | clip_range | 0.0001 | 0.14 |" in text
    assert "6 cells = a 2 x 2 coarse grid, then 2 cells" in text and text.count("| refine |") == 4
    assert "Not swept yet: DPO, RLOO, REINFORCE, Iterative DPO, GRPO" in text
    assert all((tmp_path / "docs" / f"tuning_{m}.png").stat().st_size > 1000 for m in ("ppo", "rebel"))


def test_a_sweep_of_some_methods_keeps_the_others_choice_at_the_same_budget():
    old = {"chosen": {"dpo": {"beta": 0.1}, "rebel": {"eta": 1.0}}, "cells": {"dpo": [1], "rebel": [2]}, "seed": 0,
           "budget": {"coarse": 4, "refine": 2}}
    new = {"chosen": {"rebel": {"eta": 3.0}}, "cells": {"rebel": [3]}, "seed": 0, "budget": {"coarse": 4, "refine": 2}}
    assert merge_records(old, new)["chosen"] == {"dpo": {"beta": 0.1}, "rebel": {"eta": 3.0}}
    assert merge_records({**old, "budget": {"coarse": 9, "refine": 4}}, new) == new


# --- the paired table and the frontier -------------------------------------------------------------------
def test_paired_table_says_who_wins_from_per_prompt_differences():
    results = []
    for seed in range(3):
        base = [0.5, 0.25, 0.75, 0.5]
        results += [fake_run("rebel", seed, {}, 0.5, per_prompt=base),
                    fake_run("ppo", seed, {}, 0.5, per_prompt=base),  # identical: a tie at exactly 0
                    fake_run("rloo", seed, {}, 0.4, per_prompt=[x - 0.1 for x in base]),
                    fake_run("dpo", seed, {}, 0.6, per_prompt=[x + 0.05 for x in base])]
    rows = {row.split(" | ")[0][2:]: row for row in paired_table(results)[2:]}
    assert set(rows) == {"DPO", "PPO", "RLOO"}
    assert "| 3 | +0.0 [+0.0, +0.0] |" in rows["PPO"] and rows["PPO"].endswith("| tie |")
    assert "-10.0 [-10.0, -10.0]" in rows["RLOO"] and rows["RLOO"].endswith("| REBEL wins |")
    assert "+5.0 [+5.0, +5.0]" in rows["DPO"] and rows["DPO"].endswith("| REBEL loses |")
    assert paired_table([r for r in results if r["job"]["method"] != "rebel"]) == []


def test_frontier_points_average_each_method_and_kl_coefficient(tmp_path):
    runs = [fake_run("rebel", s, {"kl_coef": k}, w, kl=kl) for s, k, w, kl in
            [(0, 0.05, 0.7, 1.0), (1, 0.05, 0.6, 2.0), (0, 0.2, 0.5, 0.5), (0, 0.01, 0.8, 3.0)]]
    runs += [fake_run("ppo", 0, {"kl_coef": 0.05}, 0.65), fake_run("dpo", 0, {}, 0.6), fake_run("sft", 0, {}, 0.4)]
    points = frontier_points(runs)
    assert list(points) == ["rebel", "ppo"]  # registry order; offline methods have no KL coef
    assert [(p["kl_coef"], p["runs"]) for p in points["rebel"]] == [(0.01, 1), (0.05, 2), (0.2, 1)]
    assert points["rebel"][1]["win"] == pytest.approx(0.65) and points["rebel"][1]["kl"] == pytest.approx(1.5)
    assert "| REBEL | 0.05 | 2 | 65.0 | 0.325 | 1.50 |" in frontier_table(points)
    plot_frontier(points, tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").stat().st_size > 1000


def test_frontier_jobs_rerun_online_methods_at_the_other_coefficients_only(tmp_path):
    cfg = config(tmp_path, algorithms=["sft", "dpo", "rebel", "ppo"], frontier_kl_coefs=[0.01, 0.05, 0.2],
                 frontier_seeds=[0, 1])
    jobs = frontier_jobs(cfg)
    assert len(jobs) == 2 * 2 * 2  # kl 0.05 is the table's own runs
    assert {(j["config"]["algorithm"], j["config"]["kl_coef"], j["seed"]) for j in jobs} == {
        (m, k, s) for m in ("ppo", "rebel") for k in (0.01, 0.2) for s in (0, 1)}
    assert all(len(j["evaluate"]) == 1 and j["evaluate"][0]["split"] == "test" for j in jobs)
    assert frontier_jobs(config(tmp_path, frontier_kl_coefs=[])) == []
