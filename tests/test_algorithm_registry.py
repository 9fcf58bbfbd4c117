"""Every list of algorithms is read from the registry, and an algorithm is one module.

An algorithm registered here (and removed again) shows up in `rebel compare`'s methods, its sweep
and labels, `rebel train --help`, and nowhere needs a hand edit; a module dropped into
training/online/methods/ is registered with no other edit; each registered algorithm's options,
objective and entry sit in its own module, and cites its paper; the README's table of algorithms
is the one the registry generates."""
import runpy
import sys
from pathlib import Path

import pytest
import torch

from rebel_rl.cli import build_parser
from rebel_rl.compare import CompareConfig
from rebel_rl.compare.config import all_methods, methods, online_methods
from rebel_rl.compare.results import label
from rebel_rl.compare.tuned import DEFAULT_SETTINGS, knob_of, swept_methods, tuned_settings
from rebel_rl.config import RebelConfig, algorithms
from rebel_rl.config.algorithms import AlgorithmSpec, algorithm_names, register_algorithm
from rebel_rl.training.online import methods as methods_package
from rebel_rl.training.online.methods import ratio_stats
from rebel_rl.training.online.methods.rloo import Rloo

ROOT = Path(__file__).resolve().parents[1]
TOY = '''
from dataclasses import dataclass
from rebel_rl.config.algorithms import AlgorithmSpec, register_algorithm
from rebel_rl.training.online.methods.base import Objective

@dataclass
class ZzToyOptions:
    zz_toy_weight: float = 2.0  # zz_toy: a weight

    def validate(self) -> None:
        pass

class ZzToy(Objective):
    pass

register_algorithm(AlgorithmSpec("zz_toy", ZzToy, ZzToyOptions, label="ZZ Toy"))
'''


@pytest.fixture
def throwaway():
    """A text algorithm and a diffusion-only one, registered for one test and then removed."""
    specs = [AlgorithmSpec("zz_text", Rloo, label="ZZ Text"),
             AlgorithmSpec("zz_pixels", Rloo, policy_kinds=("diffusion",))]
    for spec in specs:
        register_algorithm(spec)
    try:
        yield specs
    finally:
        for spec in specs:
            algorithms._REGISTRY.pop(spec.name)


def _train_help() -> str:
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    return next(a.help for a in train._actions if "--algorithm" in a.option_strings)


def test_a_registered_algorithm_appears_in_compare_and_help(throwaway):
    assert methods()[-1] == "zz_text" and "zz_text" in all_methods()
    assert "zz_pixels" not in all_methods()  # compare trains causal LMs only
    assert CompareConfig(algorithms=["zz_text"]).validate().algorithms == ["zz_text"]
    assert "zz_text" in CompareConfig().algorithms  # a default row
    assert label("zz_text") == "ZZ Text" and label("grpo") == "GRPO" and label("sft") == "SFT"
    assert "zz_text" in swept_methods() and knob_of("zz_text")[0] == "num_epochs"
    assert tuned_settings()["zz_text"] == DEFAULT_SETTINGS
    last = [name for name in algorithm_names() if not name.startswith("zz_")][-1]
    assert f"| {last} | zz_text | zz_pixels for diffusion)" in _train_help()


def test_after_removal_nothing_is_left():
    assert "zz_text" not in algorithm_names() and "zz_text" not in online_methods()
    assert "zz_text" not in _train_help()
    with pytest.raises(Exception, match="algorithms must be among"):
        CompareConfig(algorithms=["zz_text"]).validate()


def test_compare_lists_every_text_algorithm_and_no_diffusion_one():
    """In registration order: the first modules as methods/__init__.py's FIRST lists them (a new
    algorithm's module comes after them, so this does not change when one is added)."""
    assert methods()[:9] == ["sft", "dpo", "rebel", "ppo", "rloo", "reinforce", "iterative_dpo",
                             "grpo", "apo"]
    assert algorithm_names()[:8] == list(methods_package.FIRST)
    assert "ddpo" not in methods()
    assert "ddpo for diffusion" in _train_help()


def test_a_module_dropped_into_methods_is_registered_with_no_other_edit(tmp_path, monkeypatch):
    """The toy module sits in a folder added to the package's path (the source tree is left as
    it is); discovery imports it, and it joins the config, the help and compare's rows."""
    (tmp_path / "zz_toy.py").write_text(TOY)
    monkeypatch.setattr(methods_package, "__path__", [*methods_package.__path__, str(tmp_path)])
    try:
        assert methods_package.discover() == ["zz_toy"]
        assert algorithm_names()[-1] == "zz_toy" and methods()[-1] == "zz_toy"
        assert " | zz_toy) (default: " in _train_help()
        assert RebelConfig(algorithm="zz_toy", zz_toy_weight=3.0).zz_toy.zz_toy_weight == 3.0
        assert methods_package.discover() == []  # a module is imported once
    finally:
        algorithms._REGISTRY.pop("zz_toy", None)
        sys.modules.pop(f"{methods_package.__name__}.zz_toy", None)


@pytest.mark.parametrize("name", ["rebel", "ppo", "rloo", "reinforce", "iterative_dpo", "ddpo",
                                  "grpo", "apo"])
def test_each_algorithm_is_one_module(name):
    """Its objective and its option group are defined in methods/<name>.py, which registers it."""
    spec = algorithms.algorithm_spec(name)
    module = f"{methods_package.__name__}.{name}"
    assert spec.objective.__module__ == module
    assert spec.options is None or spec.options.__module__ == module
    assert spec.summary and "\n" not in spec.summary


def test_the_readme_table_is_the_generated_one():
    table = runpy.run_path(str(ROOT / "scripts" / "algorithm_table.py"), run_name="not_main")
    readme = (ROOT / "README.md").read_text()
    assert table["render"](readme) == readme, "run: .venv/bin/python scripts/algorithm_table.py"
    assert "| `rebel` (default) |" in readme and "| `ddpo` (for diffusion) |" in readme
    assert "| `apo` |" in readme and "`beta1`, `beta2`, `vstar_samples` |" in readme


def test_ratio_stats_read_only_live_actions_under_the_algorithm_prefix():
    ratio = torch.tensor([[1.5, 0.9, 9.0], [1.0, 0.7, 1.2]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])  # the 9.0 is padding
    stats = ratio_stats("grpo", ratio, torch.tensor(0.25), mask)
    assert stats == pytest.approx({"grpo/clip_fraction": 0.25, "grpo/ratio_mean": 5.3 / 5,
                                   "grpo/ratio_max_deviation": 0.5})
    unmasked = ratio_stats("ddpo", ratio, torch.tensor(0.5))  # every denoising step counts
    assert unmasked["ddpo/ratio_max_deviation"] == pytest.approx(8.0)
    assert unmasked["ddpo/ratio_mean"] == pytest.approx(14.3 / 6)


@pytest.mark.parametrize("name, arxiv", [
    ("rebel", "2404.16767"), ("ppo", "1707.06347"), ("grpo", "2402.03300"),
    ("rloo", "2402.14740"), ("iterative_dpo", "2305.18290"), ("ddpo", "2305.13301"),
    ("apo", "2505.20686")])
def test_each_algorithm_cites_its_paper(name, arxiv):
    spec = algorithms.algorithm_spec(name)
    assert spec.paper.endswith(f"arXiv {arxiv}") and f"eprint = {{{arxiv}}}" in spec.bibtex
    assert spec.bibtex.startswith("@") and spec.bibtex.count("{") == spec.bibtex.count("}")


def test_reinforce_cites_williams_1992():
    spec = algorithms.algorithm_spec("reinforce")
    assert "Machine Learning 8" in spec.paper and "volume = {8}" in spec.bibtex
