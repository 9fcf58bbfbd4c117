"""Inside the online loop's modules every config read is `config.<group>.<field>`: a flat read
(`config.kl_coef`) hides which group a component depends on (docs/architecture.md, Configs)."""
import ast
from pathlib import Path

from rebel_rl import RebelConfig

ONLINE = Path(__file__).resolve().parents[1] / "src" / "rebel_rl" / "training" / "online"
GROUPS = set(RebelConfig.groups())
FIELDS = {name for name, _, _ in RebelConfig.option_fields()} - GROUPS


def _config_is_a_group(function: ast.AST) -> bool:
    """A function whose parameter `config` is annotated as something else than RebelConfig (a
    group such as DataConfig) reads that group's fields, which is what the rule asks."""
    for arg in [*function.args.args, *function.args.kwonlyargs]:
        if arg.arg == "config" and arg.annotation is not None:
            return "RebelConfig" not in ast.unparse(arg.annotation)
    return False


def flat_reads(source: str) -> list[tuple[int, str]]:
    """(line, expression) of every `config.<field>` or `self.config.<field>` whose attribute is a
    field name rather than a group name."""
    tree = ast.parse(source)
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _config_is_a_group(node):
            skipped.update(id(inner) for inner in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or node.attr not in FIELDS or id(node) in skipped:
            continue
        owner = node.value
        bare = isinstance(owner, ast.Name) and owner.id == "config"
        on_self = (isinstance(owner, ast.Attribute) and owner.attr == "config"
                   and isinstance(owner.value, ast.Name) and owner.value.id == "self")
        if bare or on_self:
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_the_rule_catches_flat_reads_and_passes_group_reads():
    source = ("def f(config):\n"
              "    return config.kl_coef, config.reward.kl_coef, config.validate()\n"
              "class T:\n    def g(self):\n"
              "        return self.config.seed, self.config.training.seed\n"
              "def h(config: DataConfig):\n    return config.dataset\n")
    assert flat_reads(source) == [(2, "config.kl_coef"), (5, "self.config.seed")]


def test_online_loop_modules_read_config_by_group():
    files = sorted(ONLINE.glob("*.py"))
    assert {"loop.py", "setup.py", "update.py"} <= {f.name for f in files}
    offenders = [f"{path.name}:{line}: {expr}" for path in files
                 for line, expr in flat_reads(path.read_text())]
    message = "flat config reads; write config.<group>.<field>:\n"
    assert not offenders, message + "\n".join(offenders)
