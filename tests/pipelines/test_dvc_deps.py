"""Every project file a DVC stage runs is one of its `deps` in dvc.yaml.

A stage's code is its module `pipelines/<stage>.py` plus every module of `cajnn/` and
`pipelines/` it imports, directly or through other project modules, at module level or inside a
function (both run when the stage runs), and the `__init__.py` of each package on the way.
A file missing from `deps` means that changing it leaves the stage's outputs stale without a
word from `dvc status` / `dvc repro`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cajnn", "pipelines")


def _module_file(name: str) -> Path | None:
    """The project file of a dotted module name (package -> its __init__.py), or None."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_inits(name: str) -> list[Path]:
    """`__init__.py` of every package that importing `name` executes."""
    parts = name.split(".")
    return [f for i in range(1, len(parts) + 1) if (f := ROOT.joinpath(*parts[:i], "__init__.py")).is_file()]


def _imported_names(path: Path) -> set[str]:
    """Dotted names of every module `path` imports (relative imports resolved); for
    `from X import Y` both X and X.Y (Y may be a submodule)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    package = list(parts[:-1])  # a module's package; for __init__.py, the package itself
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def stage_code(stage: str) -> set[Path]:
    """The project files `python -m pipelines.<stage>` runs (see the module docstring)."""
    seen: set[Path] = set()
    todo = [ROOT / "pipelines" / f"{stage}.py", *_package_inits("pipelines")]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_names(path):
            found = _module_file(name)
            if found:
                todo += [found, *_package_inits(name)]
    return seen


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_it_runs(stage):
    deps = [d if isinstance(d, str) else next(iter(d)) for d in STAGES[stage].get("deps", [])]
    missing = sorted(str(p.relative_to(ROOT)) for p in stage_code(stage) if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage!r} runs these files but does not list them in deps: {missing}"


def test_the_import_walk_finds_what_it_must():
    """The walk itself: the train stage reaches the model through two levels of imports."""
    code = {str(p.relative_to(ROOT)) for p in stage_code("train")}
    assert {
        "pipelines/train.py",
        "cajnn/training/ray_trainer.py",
        "cajnn/archs/cajnn_arch.py",
        "cajnn/archs/rrdb.py",
        "cajnn/__init__.py",
        "pipelines/_common.py",
    } <= code
    assert "cajnn/retrain.py" not in code
