"""`salnas arms` and the per-architecture summary behind it, on a hand-made results.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from salnas.cli import app
from salnas.distill.summary import architecture_summary
from salnas.errors import SalnasError

runner = CliRunner()


def results_frame() -> pd.DataFrame:
    rows = []
    cc = {("a1", 0): (0.60, 0.62, 0.61), ("a1", 1): (0.58, 0.61, 0.57),
          ("csnet", 0): (0.50, 0.49, 0.52), ("csnet", 1): (0.52, 0.50, 0.55)}
    for (arch, seed), scores in cc.items():
        for arm, score in zip(("baseline", "selfkd", "teacher"), scores, strict=True):
            rows.append({
                "arch": arch, "kind": "pareto" if arch == "a1" else "peer", "arm": arm,
                "seed": seed, "test_CC": score, "test_NSS": 2.0 + score,
                "test_KLD": 1.0 - score, "flops": 4e7 if arch == "a1" else 5e7,
                "params": 700_000 if arch == "a1" else 20_000 + 1000 * seed,
                "latency_ms": 1.5 + seed, "epochs": 15 if seed else 10,
                "teacher_snapshots": 5 + seed if arm == "selfkd" else 0,
            })
    return pd.DataFrame(rows)


def test_architecture_summary_per_arm_means_costs_and_snapshots():
    table = architecture_summary(results_frame()).set_index("arch")
    assert list(table.index) == ["a1", "csnet"]  # by FLOPs
    assert table.at["a1", "baseline_mean"] == pytest.approx(0.59)
    assert table.at["a1", "selfkd_mean"] == pytest.approx(0.615)
    assert table.at["csnet", "teacher_std"] == pytest.approx(pd.Series([0.52, 0.55]).std())
    assert table.at["csnet", "params_min"] == 20_000 and table.at["csnet", "params_max"] == 21_000
    assert table.at["a1", "latency_ms"] == pytest.approx(2.0) and table.at["a1", "seeds"] == 2
    assert table.at["a1", "selfkd_epochs"] == [10, 15]
    assert table.at["a1", "teacher_snapshots"] == [5, 6]


def test_arms_command_prints_markdown_tables(tmp_path: Path):
    path = tmp_path / "results.csv"
    results_frame().to_csv(path, index=False)
    res = runner.invoke(app, ["arms", str(path), "--kind", "pareto"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    selfkd = next(line for line in lines if line.startswith("| Self-KD minus baseline"))
    cells = [c.strip() for c in selfkd.strip("|").split("|")]
    assert cells[1] == "2"  # a1's two seeds; csnet is a peer
    assert cells[2] == "+0.0250 (0.0071)"  # CC: +0.02, +0.03
    assert cells[4] == "-0.0250 (0.0071)"  # KLD = 1 - CC
    assert cells[5] == "2 / 2 / 2 of 2"
    assert any(line.startswith("| `a1` | 40 | 700,000 | 2.00 | 2 |") for line in lines)
    assert not any("csnet" in line for line in lines)
    every = runner.invoke(app, ["arms", str(path)])
    assert "| `csnet` | 50 | 20,000-21,000 |" in every.output


def _error(args: list[str]) -> str:
    """The SalnasError a command raises (``salnas``'s entry point prints it as one line and
    exits 2)."""
    res = runner.invoke(app, args)
    assert isinstance(res.exception, SalnasError), res.output
    return str(res.exception)


def test_arms_command_bad_input_names_the_file_or_option(tmp_path: Path):
    assert "missing.csv: not a readable results.csv" in _error(
        ["arms", str(tmp_path / "missing.csv")])
    path = tmp_path / "results.csv"
    results_frame().to_csv(path, index=False)
    assert "--metrics: XX not in" in _error(["arms", str(path), "--metrics", "CC,XX"])
    results_frame().query("arm == 'baseline'").to_csv(path, index=False)
    assert "no architecture and seed with a baseline" in _error(["arms", str(path)])
