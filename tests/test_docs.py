"""The docs do not drift from the code.

The config reference in docs/configuration.md is generated from RebelConfig; the README's Python
examples run (with `rebel_rl.train` replaced by a recorder, since a real run needs a hub model); every
`rebel ...` command line in the README and docs/cli.md parses with the real CLI parser; and the
longer Python examples of docs/python_api.md at least compile.
"""
import ast
import re
import runpy
import shlex
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
COMMAND_LINE = re.compile(r"^    (rebel [^#\n]*)", re.M)


def python_blocks(page: str) -> list[str]:
    """The fenced ```python blocks of a markdown page under the repository root, in order."""
    return PYTHON_BLOCK.findall((ROOT / page).read_text())


def test_config_reference_is_current():
    reference = runpy.run_path(str(ROOT / "scripts" / "config_reference.py"), run_name="not_main")
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert reference["render"](page) == page, "run: .venv/bin/python scripts/config_reference.py"


def test_every_config_field_is_documented():
    from rebel_rl.cli import field_help
    from rebel_rl.config import RebelConfig

    helps = field_help()
    flags = [RebelConfig.flag(name, owner) for name, _, owner in RebelConfig.option_fields()]
    assert [flag for flag in flags if not helps.get(flag)] == []


def test_readme_train_example_builds_its_config(monkeypatch):
    import rebel_rl

    calls = []
    monkeypatch.setattr(rebel_rl, "train", lambda config, **kw: calls.append((config, kw)) or "done")
    train_example, _ = python_blocks("README.md")
    scope: dict = {}
    exec(compile(train_example, "README.md", "exec"), scope)
    (config, kwargs), = calls
    assert scope["summary"] == "done"
    assert (config.num_iterations, config.eta, config.kl_coef) == (50, 1.0, 0.05)
    assert config.rewards == ["sentiment"] and config.dataset == "prompts.jsonl"
    brevity, = kwargs["reward_funcs"]
    assert brevity(["p", "q"], ["one two three four five", ""]) == [-0.1, 0.0]


def test_readme_loss_example_computes_the_stated_formula():
    _, loss_example = python_blocks("README.md")
    torch.manual_seed(0)
    logps, old_logps, rewards = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    scope = {"logps": logps, "old_logps": old_logps, "rewards": rewards}
    exec(compile(loss_example, "README.md", "exec"), scope)
    ratio = logps - old_logps
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    expected = torch.stack([((ratio[:, i] - ratio[:, j]) - (rewards[:, i] - rewards[:, j])) ** 2
                            for i, j in pairs], dim=1).mean()
    assert torch.allclose(scope["loss"], expected)


@pytest.mark.parametrize("page", ["README.md", "docs/cli.md"])
def test_command_lines_parse(page):
    from rebel_rl.cli import build_parser

    lines = COMMAND_LINE.findall((ROOT / page).read_text())
    assert len(lines) >= 5
    for line in lines:
        try:
            build_parser().parse_args(shlex.split(line)[1:])
        except SystemExit as exit_:  # --help exits 0; a bad option exits 2
            assert exit_.code == 0, line


def test_python_api_examples_compile():
    blocks = python_blocks("docs/python_api.md")
    assert len(blocks) == 3
    for block in blocks:
        ast.parse(block)
