"""parse_reward_spec: each kind of the grammar, and one clear error line for bad specs."""
from __future__ import annotations

import pytest

from rebel_rl.errors import RewardError
from rebel_rl.rewards import RewardSpec, check_reward_spec, parse_reward_spec


def test_each_kind(tmp_path):
    assert parse_reward_spec("length") == RewardSpec("builtin", "length")
    assert parse_reward_spec("model:org/rm") == RewardSpec("model", "org/rm")
    assert parse_reward_spec("a/b.py:fn") == RewardSpec("file", "a/b.py", "fn")
    assert parse_reward_spec("pkg.mod:fn") == RewardSpec("module", "pkg.mod", "fn")
    (tmp_path / "config.json").write_text("{}")
    assert parse_reward_spec(str(tmp_path)) == RewardSpec("model", str(tmp_path))


@pytest.mark.parametrize("spec", ["no_such_builtin", "missing_file.py:fn", "no_such_mod_xyz:fn"])
def test_bad_specs_one_line(spec):
    with pytest.raises(RewardError) as err:
        check_reward_spec(spec)
    assert "\n" not in str(err.value) and spec.split(":")[0] in str(err.value)
