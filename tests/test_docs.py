"""The README's config table is generated from RebelConfig; it must not drift from the code."""
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_config_reference_is_current():
    reference = runpy.run_path(str(ROOT / "scripts" / "config_reference.py"), run_name="not_main")
    readme = (ROOT / "README.md").read_text()
    assert reference["render"](readme) == readme, "run: .venv/bin/python scripts/config_reference.py"


def test_every_config_field_is_documented():
    from rebel_rl.cli import field_help
    from rebel_rl.config import config_fields

    helps = field_help()
    assert [f.name for f in config_fields() if not helps.get(f.name)] == []
