"""What a run writes: completions.jsonl keeps conversational prompts as messages, and the reward/KL
plot's x axis has whole-iteration ticks."""
from __future__ import annotations

import json

from cli_run import PROMPTS, files, in_tmp_dir, train_args  # noqa: F401 (fixtures)
from test_cli import run_main
from tiny import write_jsonl


def test_completions_keep_conversational_prompts_as_messages(files, tmp_path, capfd):
    chat = write_jsonl(
        tmp_path / "chat.jsonl", [{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS]
    )
    args = train_args(files, tmp_path / "run", "--num_iterations", "1")
    args[args.index(files["prompts"])] = chat
    code, _, err = run_main(capfd, *args)
    assert code == 0, err
    records = [
        json.loads(line)
        for line in (tmp_path / "run" / "completions.jsonl").read_text().splitlines()
    ]
    assert records and all(
        isinstance(r["prompt"], list) and r["prompt"][0]["role"] == "user" for r in records
    )
    assert {r["prompt"][0]["content"] for r in records} <= set(PROMPTS)


def test_reward_kl_plot_has_whole_iteration_ticks(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from rebel_rl.evaluation.report import plot_reward_kl

    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", figures.append)
    metrics = [
        {"iteration": i, "reward": 0.1 * i, "reward_std": 0.01, "kl": 0.01 * i} for i in (1, 2)
    ]
    plot_reward_kl(metrics, tmp_path / "reward_kl.png")
    (figure,) = figures
    for ax in figure.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    close(figure)
