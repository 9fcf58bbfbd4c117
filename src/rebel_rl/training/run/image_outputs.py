"""What an image run writes besides the common outputs (training/outputs.py):

* `samples/iter-XXXXXX-K.png`: the sample images logged each iteration; completions.jsonl names
  them;
* `samples_before_after.png`: the same prompts and the same noise seeds sampled from pi_ref (left)
  and the trained policy (right), one column per prompt;
* `reward_curves.png`: every named reward of the training batches (and of the held-out evaluations
  when `eval_every` is set) against the number of reward queries.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

SAMPLES_DIR = "samples"
BEFORE_AFTER_GRID = "samples_before_after.png"
REWARD_CURVES = "reward_curves.png"


def is_image(value: Any) -> bool:
    """Whether a completion is an image tensor (C, H, W) rather than text or messages."""
    return isinstance(value, torch.Tensor) and value.dim() == 3


def save_image(image: torch.Tensor, path: Path, max_side: int = 256) -> Path:
    """Save a (C, H, W) image in [0, 1] as PNG, enlarged (nearest) to at least 64 px or shrunk to
    `max_side`."""
    from PIL import Image

    from ...rewards.images import to_pil

    picture = to_pil(image)
    scale = max(1, 64 // max(picture.size))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    elif max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side))
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def image_records(
    run_dir: Path, iteration: int, records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Records whose image completions are saved under samples/ and replaced by their file names."""
    out = []
    for index, record in enumerate(records):
        if is_image(record.get("completion")):
            name = f"{SAMPLES_DIR}/iter-{iteration:06d}-{index}.png"
            save_image(record["completion"], run_dir / name)
            record = {**record, "completion": name}
        out.append(record)
    return out


def spread_prompts(prompts: list, count: int) -> list:
    """`count` prompts spread evenly over `prompts` (the digits' held-out set is digit-major: one
    per digit)."""
    if len(prompts) <= count:
        return list(prompts)
    return (
        [prompts[round(i * (len(prompts) - 1) / (count - 1))] for i in range(count)]
        if count > 1
        else prompts[:1]
    )


@torch.no_grad()
def sample_pair(
    policy, prompts: list, per_prompt: int, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """`per_prompt` images per prompt from pi_ref and from the policy with the same noise (same
    generator seed)."""
    images = []
    for reference in (True, False):
        generator = torch.Generator(policy.device).manual_seed(seed)
        images.append(
            policy.sample(prompts, per_prompt, reference=reference, generator=generator).completions
        )
    return images[0], images[1]


def write_before_after_grid(
    policy, prompts: list, path: Path, *, per_prompt: int = 4, seed: int = 0, max_side: int = 128
) -> Path:
    """PNG: pi_ref (left) and the policy (right) on the same prompts and noise; one column per
    prompt, `per_prompt` rows. Images larger than `max_side` are shrunk first."""
    from PIL import Image, ImageDraw

    from ...rewards.images import to_pil
    from ...tasks.digits.plots import sample_grid

    before, after = sample_pair(policy, prompts, per_prompt, seed)
    side = before[0].shape[-1]
    if side > max_side:
        shrink = lambda ims: [
            torch.nn.functional.interpolate(i[None], size=max_side, mode="area")[0] for i in ims
        ]  # noqa: E731
        before, after = shrink(before), shrink(after)
    by_column = lambda ims: [
        ims[p * per_prompt + k] for k in range(per_prompt) for p in range(len(prompts))
    ]  # noqa: E731
    panels = [sample_grid(by_column(ims), columns=len(prompts)) for ims in (before, after)]
    scale = max(1, 48 // min(side, max_side))
    pictures = [to_pil(p).convert("RGB") for p in panels]
    pictures = [p.resize((p.width * scale, p.height * scale), Image.NEAREST) for p in pictures]
    gap, header = 12, 16
    canvas = Image.new("RGB", (pictures[0].width * 2 + gap, pictures[0].height + header), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (picture, label) in enumerate(zip(pictures, ("before (pi_ref)", "after"))):
        left = k * (picture.width + gap)
        canvas.paste(picture, (left, header))
        draw.text((left + 2, 2), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def plot_reward_curves(metrics: list[dict[str, Any]], path: Path, before: dict | None = None,
                       after: dict | None = None) -> Path | None:
    """One panel per named reward against reward queries: training-batch means (and their moving
    average over 5 iterations), and the held-out evaluations (`before` at 0, the `eval/` records of
    `eval_every`, `after` at the end: EvalResult dicts or None)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [m for m in metrics if "reward" in m]
    names = sorted(
        {k.removeprefix("rewards/") for m in train for k in m if k.startswith("rewards/")}
    )
    if not train or not names:
        return None
    if before is not None and after is not None:
        names += [n for n in after["rewards"] if n not in names]  # evaluation-only rewards
    end = train[-1]["reward_queries"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        points = [
            (m["reward_queries"], m[f"rewards/{name}"]) for m in train if f"rewards/{name}" in m
        ]
        if points:
            queries, values = zip(*points)
            smooth = [
                sum(values[max(0, i - 4) : i + 1]) / len(values[max(0, i - 4) : i + 1])
                for i in range(len(values))
            ]
            ax.plot(queries, values, color="tab:blue", alpha=0.3, label="training batch")
            ax.plot(queries, smooth, color="tab:blue", label="training batch, 5-iteration mean")
        held = [(m["reward_queries"], m[f"eval/{name}"]) for m in metrics if f"eval/{name}" in m]
        if before is not None and after is not None and name in after["rewards"]:
            held = [
                (0, before["rewards"][name]),
                *[h for h in held if h[0] < end],
                (end, after["rewards"][name]),
            ]
        if held:
            ax.plot(*zip(*held), "o-", color="tab:orange", label="held-out prompts (fixed noise)")
        ax.set(xlabel="reward queries", title=name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_run_images(
    policy, prompts: list, run_dir: Path, metrics: list[dict[str, Any]], seed: int
) -> None:
    """The image run's final outputs: the before/after grid (held-out prompts) and the reward curves
    (with the held-out evaluation before and after from eval.json when the run wrote one)."""
    write_before_after_grid(
        policy, spread_prompts(list(prompts), 10), run_dir / BEFORE_AFTER_GRID, seed=seed
    )
    evaluation = (
        json.loads((run_dir / "eval.json").read_text()) if (run_dir / "eval.json").is_file() else {}
    )
    plot_reward_curves(
        metrics, run_dir / REWARD_CURVES, evaluation.get("before"), evaluation.get("after")
    )
