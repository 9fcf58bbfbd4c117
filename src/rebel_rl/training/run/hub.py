"""A finished run on the Hugging Face Hub: the folder as uploaded (final/ or final/merged/, its
tokenizer, a generated model card, the plot and the config) and the upload itself (`push_to_hub:
true`, `rebel push`).

`hub_folder` writes exactly what `push_run` uploads, so a test (or a user without a network) can
load it back with transformers/peft and read the card.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ...config.algorithms import algorithm_names, algorithm_spec
from ...errors import HubError, RunDirError, first_line
from ..online import methods as _methods  # noqa: F401 (the algorithms' entries: their papers)
from .inputs import INPUTS_FILE
from .outputs import CONFIG_FILE

CARD_FILE = "README.md"
EXTRA_FILES = {
    "reward_kl.png": "reward_kl.png",
    "eval.json": "eval.json",
    CONFIG_FILE: "rebel_config.yaml",
}


def model_folder(run_dir: Path) -> tuple[Path, bool]:
    """The saved model to upload and whether it is a LoRA adapter: final/merged/ when the run merged
    its adapter, else final/ (an adapter, or a fully fine-tuned model)."""
    final = run_dir / "final"
    if (final / "merged" / "config.json").is_file():
        return final / "merged", False
    if not final.is_dir():
        raise RunDirError(f"{run_dir} has no final/ model: push a run that finished")
    return final, (final / "adapter_config.json").is_file()


def model_card(run_dir: Path, repo_id: str) -> str:
    """The model card of a finished run: metadata (base model, library, tags, dataset), then the
    run's algorithm and settings, data, rewards, held-out before/after table, plot, and how to load
    it."""
    from huggingface_hub import ModelCard, ModelCardData

    config = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    inputs = (
        json.loads((run_dir / INPUTS_FILE).read_text()) if (run_dir / INPUTS_FILE).is_file() else {}
    )
    model, data, reward = config.get("model", {}), config.get("data", {}), config.get("reward", {})
    training, sampling = config.get("training", {}), config.get("sampling", {})
    algorithm = training.get("algorithm", "rebel")
    base = (
        inputs.get("model", {}).get("name_or_path") or model.get("model_name_or_path") or "unknown"
    )
    dataset = (
        "a dataset object passed in Python"
        if "train_dataset" in inputs
        else str(data.get("dataset"))
    )
    _, adapter = model_folder(run_dir)
    metadata = ModelCardData(
        base_model=base if _looks_like_hub_id(base) else None,
        library_name="peft" if adapter else "transformers",
        tags=["rebel-rl", "reinforcement-learning", algorithm],
        datasets=[dataset] if _looks_like_hub_id(dataset) else None,
    )
    settings = {
        **{k: training.get(k) for k in ("learning_rate", "num_iterations", "num_epochs", "seed")},
        **config.get(algorithm, {}),
        **{k: sampling.get(k) for k in ("num_generations", "temperature", "max_new_tokens")},
        "kl_coef": reward.get("kl_coef"),
        "missing_eos_penalty": reward.get("missing_eos_penalty"),
        **(
            {"lora_r": model.get("lora_r"), "lora_alpha": model.get("lora_alpha")}
            if adapter
            else {}
        ),
    }
    rewards = ", ".join(f"`{r}`" for r in reward.get("rewards", [])) or "Python reward functions"
    if "reward_funcs" in inputs:
        rewards += " and " + ", ".join(
            f"`{f.get('name', f['class'])}`" for f in inputs["reward_funcs"]
        )
    table = (
        (run_dir / "eval.md").read_text().strip()
        if (run_dir / "eval.md").is_file()
        else "No held-out evaluation."
    )
    plot = (
        "![reward and KL per iteration](reward_kl.png)"
        if (run_dir / "reward_kl.png").is_file()
        else ""
    )
    body = "\n".join(
        [
            f"# {repo_id.split('/')[-1]}",
            "",
            f"`{base}` fine-tuned with **{algorithm}** by rebel-rl "
            f"({'a LoRA adapter' if adapter else 'the full model'}).",
            "",
            "## Training",
            "",
            f"- data: `{dataset}` (split `{data.get('dataset_split', 'train')}`, prompts in "
            f"`{data.get('prompt_column', 'prompt')}`)",
            f"- reward: {rewards}",
            *[f"- {key}: `{value}`" for key, value in settings.items() if value is not None],
            "",
            "The whole config is `rebel_config.yaml`.",
            "",
            "## Held-out evaluation, before and after",
            "",
            table,
            "",
            plot,
            "",
            "## Use it",
            "",
            "```python",
            *_loading_code(repo_id, base, adapter),
            "```",
            "",
            *_citation(algorithm),
        ]
    )
    return str(
        ModelCard.from_template(
            metadata, template_str="---\n{{ card_data }}\n---\n\n{{ body }}\n", body=body
        )
    )


def _citation(algorithm: str) -> list[str]:
    """The card's citation section: the algorithm's paper with its BibTeX entry (from its registry
    entry), then the library. An algorithm no longer registered (an old run) cites the library
    only."""
    lines = ["## Citation", ""]
    if algorithm in algorithm_names() and algorithm_spec(algorithm).paper:
        spec = algorithm_spec(algorithm)
        lines += [f"Trained with **{spec.label or algorithm}** (`--algorithm {algorithm}`): "
                  f"{spec.paper}.", ""]
        if spec.bibtex:
            lines += ["```bibtex", spec.bibtex, "```", ""]
    version = _library_version()
    lines += [f"Library: rebel-rl {version}. Cite it as: rebel-rl (version {version}), "
              "REBEL and online reinforcement learning for Hugging Face models.", ""]
    return lines


def _library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rebel-rl")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "(source tree)"


def _loading_code(repo_id: str, base: str, adapter: bool) -> list[str]:
    if adapter:
        return [
            "from peft import AutoPeftModelForCausalLM",
            "from transformers import AutoTokenizer",
            "",
            f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")  # loads {base} and '
            f'the adapter',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
            "merged = model.merge_and_unload()  # optional: one plain transformers model",
        ]
    return ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")']


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def hub_folder(run_dir: str | Path, folder: str | Path, repo_id: str) -> Path:
    """Write into `folder` exactly what `push_run` uploads: the model (final/ or final/merged/) with
    its tokenizer, README.md (the model card), the plot, eval.json and the run's config."""
    run_dir, folder = Path(run_dir), Path(folder)
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunDirError(f"{run_dir} is not a run directory: it has no {CONFIG_FILE}")
    source, _ = model_folder(run_dir)
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("merged"), dirs_exist_ok=True)
    for name, target in EXTRA_FILES.items():
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, folder / target)
    (folder / CARD_FILE).write_text(model_card(run_dir, repo_id))
    return folder


def push_run(
    run_dir: str | Path, repo_id: str | None, *, private: bool = False, token: str | None = None
) -> str:
    """Upload a finished run to the Hub repository `repo_id` (created if missing); return its URL.
    HubError, one line, when the upload fails (no network, no token, no permission)."""
    if not repo_id:
        raise HubError("push_to_hub needs hub_model_id (e.g. --hub_model_id your-name/your-model)")
    from huggingface_hub import create_repo, upload_folder

    with tempfile.TemporaryDirectory(prefix="rebel-push-") as tmp:
        folder = hub_folder(run_dir, tmp, repo_id)
        try:
            url: Any = create_repo(repo_id, private=private, exist_ok=True, token=token)
            upload_folder(repo_id=repo_id, folder_path=str(folder), token=token,
                          commit_message="rebel-rl: upload a trained run")
        except Exception as exc:  # network, auth, permissions: one line
            raise HubError(
                f"cannot push to {repo_id}: {type(exc).__name__}: {first_line(exc)}"
            ) from None
    return str(url)


def push(run_dir: str | Path, hub_model_id: str | None = None, *, private: bool | None = None,
         to_folder: str | Path | None = None) -> str:
    """Push a finished run after the fact (`rebel push RUN_DIR`): to `hub_model_id`, else the run's
    own `hub_model_id`; with `to_folder`, only write there what would be uploaded (no network).
    Returns the repository URL or the folder."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunDirError(f"{run_dir} is not a run directory: it has no {CONFIG_FILE}")
    output = yaml.safe_load((run_dir / CONFIG_FILE).read_text()).get("output", {})
    repo_id = hub_model_id or output.get("hub_model_id")
    if to_folder is not None:
        return str(hub_folder(run_dir, to_folder, repo_id or run_dir.name))
    return push_run(
        run_dir, repo_id, private=output.get("hub_private", False) if private is None else private
    )
