"""Packaging and layering: what the installed distribution claims, and private imports.

* The stage folders (supernet/, search/, distill/, analysis/) are installed as
  ``salnas.supernet``, ... only: outside the repository root (not on ``sys.path``) they import
  through ``salnas`` and no top-level ``supernet``, ``search``, ... exists.
* No module imports another module's underscore name (DESIGN.md, "Layers"): neither
  ``from salnas.x import _y`` nor a private module (``salnas._x``, ``from . import _x``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("supernet", "search", "distill", "analysis")
PUBLIC_MODULES = ("salnas.supernet.train", "salnas.search.oracle", "salnas.distill.run",
                  "salnas.analysis.report")
NOT_CLAIMED = (*STAGES, "benchmarks")

_PROBE = """
import importlib, importlib.util, json, sys
from pathlib import Path

repo = Path(sys.argv[1]).resolve()
on_path = [p for p in sys.path if Path(p or ".").resolve() == repo]
for name in json.loads(sys.argv[2]):
    importlib.import_module(name)
specs = {name: importlib.util.find_spec(name) is not None for name in json.loads(sys.argv[3])}
print(json.dumps({"on_path": on_path, "found": specs}))
"""


def test_installed_distribution_claims_only_salnas(tmp_path):
    # -I: no PYTHONPATH, no user site, no script or working directory on sys.path; the
    # working directory is a fresh folder besides, so only the installed salnas is found.
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE, str(REPO), json.dumps(PUBLIC_MODULES),
         json.dumps(NOT_CLAIMED)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["on_path"] == []  # the check means something only without the repo root
    assert out["found"] == dict.fromkeys(NOT_CLAIMED, False)


# ---------------------------------------------------------------------------- private imports


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.endswith("__") and len(name) > 4)


def _project(module: tuple[str, ...]) -> bool:
    return bool(module) and module[0] in ("salnas", *NOT_CLAIMED)


def private_imports(source: str, module: tuple[str, ...], is_package: bool = False
                    ) -> list[str]:
    """``line: what`` for each import of a project module's underscore name, or of a private
    project module, in ``source`` (the code of ``module``, dotted parts)."""
    package = module if is_package else module[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (tuple(node.module.split(".")) if node.module else ())
            else:
                target = tuple((node.module or "").split("."))
            if not _project(target):
                continue
            dotted = ".".join(target)
            if any(_private(part) for part in target):
                found.append(f"{node.lineno}: from {dotted} import ... (a private module)")
            found += [f"{node.lineno}: from {dotted} import {a.name}"
                      for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names
                      if _project(tuple(a.name.split(".")))
                      and any(_private(p) for p in a.name.split("."))]
    return found


def _modules() -> Iterator[tuple[Path, tuple[str, ...], bool]]:
    """(file, dotted module, is a package) of every module of the project, each once (the
    links salnas/<stage> are skipped: the stage folders are read as salnas.<stage>)."""
    roots = [(REPO / "salnas", ("salnas",))]
    roots += [(REPO / s, ("salnas", s)) for s in STAGES]
    roots += [(REPO / "benchmarks", ("benchmarks",))]
    for root, prefix in roots:
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root)
            if prefix == ("salnas",) and rel.parts[0] in STAGES:
                continue
            parts = rel.with_suffix("").parts
            package = parts[-1] == "__init__"
            yield path, prefix + (parts[:-1] if package else parts), package


def test_the_private_import_check_finds_them():
    mod = ("salnas", "search", "cli")
    src = "\n".join([
        "from salnas.supernet.train import _helper, public",
        "from .oracle import _cache",
        "from ..supernet import _ops",
        "import salnas.search._impl",
        "from salnas._private import thing",
        "from salnas import __version__",
        "from optuna._imports import try_import",  # not ours: another project's business
        "from ._ok import fine",
    ])
    assert private_imports(src, mod) == [
        "1: from salnas.supernet.train import _helper",
        "2: from salnas.search.oracle import _cache",
        "3: from salnas.supernet import _ops",
        "4: import salnas.search._impl",
        "5: from salnas._private import ... (a private module)",
        "8: from salnas.search._ok import ... (a private module)",
    ]
    assert private_imports("from . import _x", ("salnas", "search"), is_package=True) == [
        "1: from salnas.search import _x"]


def test_no_module_imports_another_modules_private_names():
    modules = list(_modules())
    names = {m for _, m, _ in modules}
    assert {("salnas", "metrics"), ("salnas", "supernet", "train"),
            ("salnas", "distill", "run"), ("benchmarks", "search")} <= names
    found = {f"{path.relative_to(REPO)}:{hit}"
             for path, module, package in modules
             for hit in private_imports(path.read_text(encoding="utf-8"), module, package)}
    assert not found, "\n".join(sorted(found))


@pytest.mark.parametrize("name", STAGES)
def test_stage_links_point_at_the_stage_folders(name):
    link = REPO / "salnas" / name
    assert link.is_symlink() and link.resolve() == (REPO / name).resolve()
