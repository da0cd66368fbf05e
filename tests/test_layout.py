"""The run-directory schema, the resume check, and the layering of the packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from salnas.errors import SalnasError
from salnas.layout import (
    ARCHIVE_COLUMNS,
    ORACLE_METRICS,
    RunLayout,
    Status,
    check_fingerprint,
    first_difference,
)
from salnas.stage import StageRunner

REPO = Path(__file__).resolve().parents[1]
STAGE_PACKAGES = ("supernet", "search", "distill", "analysis")
APPLICATION = ("cli.py", "pipeline.py")


def test_status_vocabulary_reads_legacy_and_rejects_unknown():
    assert Status.of({"status": "done"}) is Status.DONE
    assert Status.of({"status": "finished"}) is Status.DONE  # search.json before unification
    assert Status.of({"status": "budget_exhausted"}) is Status.BUDGET_EXHAUSTED
    assert Status.of({"status": "exploded"}) is None
    assert Status.of({"status": None}) is None
    assert Status.of(None) is None


def test_first_difference_names_the_nested_setting():
    saved = {"seed": 0, "search": {"population": 16, "objectives": ["CC", "flops"]}}
    assert first_difference(saved, saved) is None
    now = {"seed": 0, "search": {"population": 20, "objectives": ["CC", "flops"]}}
    assert first_difference(saved, now) == "search.population: 16 -> 20"
    assert first_difference({"a": 1}, {"a": 1, "b": 2}) == "b: 'absent' -> 2"


def test_check_fingerprint_refuses_another_config(tmp_path):
    check_fingerprint(tmp_path, None, {"a": 1}, what="a search")  # fresh directory
    check_fingerprint(tmp_path, {"a": 1}, {"a": 1}, what="a search")
    with pytest.raises(SalnasError, match=r"another config \(a: 1 -> 2\).*only search.trials"):
        check_fingerprint(tmp_path, {"a": 1}, {"a": 2}, what="a search",
                          may_change=["search.trials"])


def test_run_layout_paths(tmp_path):
    layout = RunLayout(tmp_path)
    assert layout.checkpoint == tmp_path / "supernet" / "supernet.pt"
    assert layout.split == tmp_path / "supernet" / "split.json"
    assert layout.search_dir.name == "search" and layout.distill_dir.name == "distill"
    assert ARCHIVE_COLUMNS[2 : 2 + len(ORACLE_METRICS)] == ORACLE_METRICS


def test_every_stage_implements_the_runner_protocol(tmp_path):
    from salnas.config import config_from_dict
    from salnas.pipeline import STAGES, stage_runners

    runners = stage_runners(config_from_dict({}), RunLayout(tmp_path), progress=False)
    assert [r.name for r in runners] == list(STAGES)
    for runner in runners:
        assert isinstance(runner, StageRunner), runner
        assert not runner.is_done()  # nothing in an empty directory is finished
        assert isinstance(runner.fingerprint(), dict)


def _imports(path: Path) -> list[str]:
    """Every module a file imports, at any depth (function-local imports included)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_core_imports_no_stage_and_no_application_module():
    core = [p for p in (REPO / "salnas").rglob("*.py")
            if p.relative_to(REPO / "salnas").parts[0] not in (*STAGE_PACKAGES, *APPLICATION)]
    assert len(core) > 10
    banned = (*tuple(f"salnas.{p}" for p in STAGE_PACKAGES), "salnas.cli", "salnas.pipeline")
    offenders = {f"{p.relative_to(REPO)}: {name}" for p in core for name in _imports(p)
                 if name.startswith(banned)}
    assert not offenders, sorted(offenders)


def test_code_imports_stages_only_through_the_salnas_name():
    files = [p for d in ("salnas", *STAGE_PACKAGES, "benchmarks", "tests")
             for p in (REPO / d).rglob("*.py")]
    offenders = {f"{p.relative_to(REPO)}: {name}" for p in files for name in _imports(p)
                 if name.split(".")[0] in STAGE_PACKAGES}
    assert not offenders, sorted(offenders)
