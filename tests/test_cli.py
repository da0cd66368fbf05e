"""The command line as a user meets it: help everywhere, checks, evaluate, baselines."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from salnas.cli import STAGE_COMMANDS, app, load_stage_command
from salnas.datasets import make_split, open_source
from salnas.predictions import write_prediction

runner = CliRunner()


def _command_paths(group: typer.Typer) -> list[list[str]]:
    root = typer.main.get_command(group)
    paths: list[list[str]] = []

    def walk(cmd, prefix: list[str]) -> None:
        paths.append(prefix)
        if hasattr(cmd, "list_commands"):  # a group (the root loads stage commands lazily)
            ctx = typer.Context(cmd)
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*prefix, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", _command_paths(app), ids=lambda p: " ".join(p) or "salnas")
def test_every_command_has_help_with_an_example(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert "Example" in result.output and "salnas " in result.output.split("Example")[-1]


def test_every_lazily_listed_stage_command_loads():
    # `salnas --help` lists stage commands from STAGE_COMMANDS without importing them; each
    # entry must name a real command with help of its own.
    listed = runner.invoke(app, ["--help"]).output
    for name, (_, _, short) in STAGE_COMMANDS.items():
        cmd = load_stage_command(name)
        assert cmd.name == name and (cmd.help or "").strip(), name
        assert short.split()[0] in listed


def test_help_and_version_are_fast_and_import_no_torch():
    code = ("import sys, salnas.cli; "
            "sys.exit('torch' in sys.modules or 'salnas.supernet' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    version = subprocess.run([sys.executable, "-m", "salnas.cli", "--version"],
                             capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("salnas 0.")
    start = time.perf_counter()
    helped = subprocess.run([sys.executable, "-m", "salnas.cli", "--help"],
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert helped.returncode == 0 and "distill" in helped.stdout and "--version" in helped.stdout
    assert elapsed < 3.0  # well under a second on a quiet machine; torch alone takes 2-5 s


def test_data_check_on_a_clean_dataset():
    result = runner.invoke(app, ["data", "check", "synthetic:8"])
    assert result.exit_code == 0, result.output
    assert "no problems found" in result.output and "6/1/1" in result.output


def test_errors_exit_non_zero_with_one_clear_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "salnas.cli", "data", "check", f"osie:{tmp_path / 'absent'}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def _write_predictions(folder, source, stems, kind):
    folder.mkdir()
    for stem in stems:
        if kind == "truth":
            saliency = source.generating_map(stem)
        else:
            saliency = np.ones(source.image_size(stem), np.float32)
        write_prediction(folder / f"{stem}.png", saliency)


def test_evaluate_scores_saved_maps_and_names_a_missing_one(tmp_path):
    source = open_source("synthetic:12")
    test = make_split(source.stems(), 0, *source.default_split)["test"]
    _write_predictions(tmp_path / "truth", source, test, "truth")
    out = tmp_path / "truth.json"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            "synthetic:12",
            "--predictions",
            str(tmp_path / "truth"),
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    assert set(scores) >= {"CC", "KLD", "NSS", "SIM", "AUC_Judd", "AUC_Borji", "sAUC", "IG"}
    per_image = out.with_suffix(".csv").read_text().splitlines()
    assert len(per_image) == 1 + len(test)
    # The map the fixations were drawn from beats a flat map by far.
    _write_predictions(tmp_path / "flat", source, test, "flat")
    flat_out = tmp_path / "flat.json"
    runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            "synthetic:12",
            "--predictions",
            str(tmp_path / "flat"),
            "--json",
            str(flat_out),
        ],
    )
    flat = json.loads(flat_out.read_text())
    assert scores["CC"] > 0.5 > flat["CC"]
    assert scores["AUC_Judd"] > 0.75 and flat["AUC_Judd"] == pytest.approx(0.5, abs=1e-6)
    (tmp_path / "truth" / f"{test[0]}.png").unlink()
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            "synthetic:12",
            "--predictions",
            str(tmp_path / "truth"),
            "--json",
            str(out),
        ],
    )
    assert result.exit_code != 0 and test[0] in str(result.exception)


def test_baselines_on_synthetic(tmp_path):
    out = tmp_path / "b.json"
    result = runner.invoke(app, ["baselines", "--data", "synthetic:40", "--json", str(out)])
    assert result.exit_code == 0, result.output
    b = json.loads(out.read_text())
    for metric in ("CC", "NSS", "AUC_Judd", "SIM"):
        assert b["centre_bias"][metric] < b["inter_observer"][metric], metric
    # Half of 15 observers is a sparse map, so its KLD is poor; the generating map is the
    # true ceiling of synthetic data and beats both on every metric.
    for metric in ("CC", "NSS", "AUC_Judd", "SIM"):
        assert b["generating_map"][metric] > b["inter_observer"][metric], metric
    assert b["generating_map"]["KLD"] < min(b["centre_bias"]["KLD"], b["inter_observer"]["KLD"])


@pytest.mark.slow
def test_osie_baselines_floor_far_below_ceiling(osie_root, tmp_path):
    out = tmp_path / "osie.json"
    result = runner.invoke(app, ["baselines", "--data", f"osie:{osie_root}", "--json", str(out)])
    assert result.exit_code == 0, result.output
    b = json.loads(out.read_text())
    assert b["n_images"] == 100 and b["n_train"] == 500
    bias, human = b["centre_bias"], b["inter_observer"]
    assert human["CC"] - bias["CC"] > 0.3
    assert human["NSS"] - bias["NSS"] > 1.0
    assert human["AUC_Judd"] - bias["AUC_Judd"] > 0.05
