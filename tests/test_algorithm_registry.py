"""Every list of algorithms is read from the registry: an algorithm registered here (and removed
again) shows up in `rebel compare`'s methods, its sweep and labels, `rebel train --help`, and
nowhere needs a hand edit. Each registered algorithm cites its paper."""
import pytest

from rebel_rl.cli import build_parser
from rebel_rl.compare import CompareConfig
from rebel_rl.compare.config import all_methods, methods, online_methods
from rebel_rl.compare.results import label
from rebel_rl.compare.tuned import DEFAULT_SETTINGS, knob_of, swept_methods, tuned_settings
from rebel_rl.config import algorithms
from rebel_rl.config.algorithms import AlgorithmSpec, algorithm_names, register_algorithm

OBJECTIVE = "rebel_rl.training.online.objectives:Rloo"


@pytest.fixture
def throwaway():
    """A text algorithm and a diffusion-only one, registered for one test and then removed."""
    specs = [AlgorithmSpec("zz_text", OBJECTIVE, label="ZZ Text"),
             AlgorithmSpec("zz_pixels", OBJECTIVE, policy_kinds=("diffusion",))]
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
    assert "| grpo | apo | zz_text | zz_pixels for diffusion)" in _train_help()


def test_after_removal_nothing_is_left():
    assert "zz_text" not in algorithm_names() and "zz_text" not in online_methods()
    assert "zz_text" not in _train_help()
    with pytest.raises(Exception, match="algorithms must be among"):
        CompareConfig(algorithms=["zz_text"]).validate()


def test_compare_lists_every_text_algorithm_and_no_diffusion_one():
    assert methods() == ["sft", "dpo", "rebel", "ppo", "rloo", "reinforce", "iterative_dpo", "grpo", "apo"]
    assert "ddpo for diffusion" in _train_help()


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
