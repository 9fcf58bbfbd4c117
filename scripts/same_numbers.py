"""Compare two run folders field by field: same numbers for the same seed (issue 24).

Usage: python scripts/same_numbers.py OLD_DIR NEW_DIR [FILE ...]

Each FILE (default: metrics.jsonl completions.jsonl eval.json) is read from both folders; with
a directory, every *.json / *.jsonl under OLD_DIR is compared with its twin under NEW_DIR.
Strings, ints and bools must be equal (OLD_DIR inside an old string reads as NEW_DIR, so paths
into the run folders compare equal); floats too, and when they are not bitwise equal the
largest absolute difference is reported. Keys that are wall-clock or paths differ by nature and
are skipped: anything under time/, *_seconds, tokens_per_second, timestamps and *_dir / path.
Exit status 0 when everything compared is identical, 1 otherwise.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

DEFAULT_FILES = ["metrics.jsonl", "completions.jsonl", "eval.json"]
SKIP_EXACT = {"tokens_per_second", "timestamp", "time", "wall_time", "elapsed", "date", "path",
              "output_dir", "started", "finished"}
SKIP_SUFFIX = ("_seconds", "_s", "_dir", "_path", "_time", "per_second")
SKIP_PREFIX = ("time/",)
ROOTS = {"old": "", "new": ""}  # the two folders, set by main: paths under them compare equal


def skipped(key: str) -> bool:
    """True for keys whose values are wall-clock times or paths, which differ between runs."""
    leaf = key.rsplit("/", 1)[-1] if not key.startswith(SKIP_PREFIX) else key
    return (key.startswith(SKIP_PREFIX) or key in SKIP_EXACT or leaf in SKIP_EXACT
            or leaf.endswith(SKIP_SUFFIX))


def diff(old: object, new: object, where: str, out: list[str], worst: list[float]) -> None:
    """Append to `out` one line per difference between `old` and `new` (recursively); keep
    in `worst[0]` the largest absolute difference among unequal floats."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if skipped(str(key)):
                continue
            if key not in old or key not in new:
                out.append(f"{where}.{key}: only in {'new' if key in new else 'old'}")
                continue
            diff(old[key], new[key], f"{where}.{key}", out, worst)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            out.append(f"{where}: length {len(old)} vs {len(new)}")
        for i, (a, b) in enumerate(zip(old, new)):
            diff(a, b, f"{where}[{i}]", out, worst)
    elif isinstance(old, float) and isinstance(new, (int, float)) and not isinstance(new, bool):
        if old != new and not (math.isnan(old) and math.isnan(float(new))):
            gap = abs(old - float(new))
            worst[0] = max(worst[0], gap)
            out.append(f"{where}: {old!r} vs {new!r} (|diff| {gap:.3g})")
    elif isinstance(old, str) and isinstance(new, str) and ROOTS["old"]:
        if old.replace(ROOTS["old"], ROOTS["new"]) != new:
            out.append(f"{where}: {old!r} vs {new!r}")
    elif type(old) is not type(new) or old != new:
        out.append(f"{where}: {old!r} vs {new!r}")


def load(path: Path) -> object:
    """A .json file's value, or a .jsonl file's list of records."""
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def compare_file(old: Path, new: Path) -> bool:
    """Print the comparison of one file pair; True when identical."""
    if not new.exists():
        print(f"{old}: missing in new ({new})")
        return False
    out: list[str] = []
    worst = [0.0]
    diff(load(old), load(new), old.name, out, worst)
    verdict = "identical" if not out else f"{len(out)} differences, max |float diff| {worst[0]:.3g}"
    print(f"{old} vs {new}: {verdict}")
    for line in out[:20]:
        print("   ", line)
    return not out


def main(argv: list[str]) -> int:
    """Compare the named files (or every JSON file of a tree) in two folders; 0 if identical."""
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2])
        return 2
    old_dir, new_dir = Path(argv[0]), Path(argv[1])
    names = argv[2:] or DEFAULT_FILES
    ROOTS.update(old=str(old_dir.resolve()), new=str(new_dir.resolve()))
    pairs: list[tuple[Path, Path]] = []
    for name in names:
        if (old_dir / name).is_dir():
            for path in sorted((old_dir / name).rglob("*.json*")):
                rel = path.relative_to(old_dir)
                pairs.append((path, new_dir / rel))
        else:
            pairs.append((old_dir / name, new_dir / name))
    ok = True
    for old, new in pairs:
        ok = compare_file(old, new) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
