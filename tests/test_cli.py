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


# ---------------------------------------------------------------- a CLI that behaves
def _capture(monkeypatch, target: str, result):
    calls: list[dict] = []

    def fake(config, *args, **kwargs):
        calls.append({"config": config, "args": args, **kwargs})
        return result

    monkeypatch.setattr(target, fake)
    return calls


SEARCH_SUMMARY = {"archive_size": 0, "feasible": 0, "pareto_size": 0, "hypervolume": 0.0,
                  "evaluated_by_this_process": 0, "cache_hits_of_this_process": 0,
                  "wall_s_of_this_process": 0.0}


@pytest.mark.parametrize(("argv", "target", "result"), [
    (["run", "--out", "{tmp}/run"], "salnas.pipeline.run_pipeline", {}),
    (["supernet", "train", "--out", "{tmp}/sn"], "salnas.supernet.train.train_supernet", "x"),
    (["search", "--out", "{tmp}/s"], "salnas.search.run.run_search", SEARCH_SUMMARY),
    (["distill", "--search", "{tmp}", "--out", "{tmp}/d"], "salnas.distill.run.run_distill",
     None),
], ids=["run", "supernet train", "search", "distill"])
def test_set_overrides_reach_the_stage_typed_by_the_schema(argv, target, result, tmp_path,
                                                           monkeypatch):
    import pandas as pd

    config = tmp_path / "c.yaml"
    config.write_text("supernet:\n  epochs: 2\n  loss: {kld: 1.0}\n")
    calls = _capture(monkeypatch, target, pd.DataFrame() if result is None else result)
    args = [a.format(tmp=tmp_path) for a in argv]
    invoked = runner.invoke(app, [*args, "--config", str(config), "--set", "supernet.epochs=5",
                                  "--set", "data.resolution=[64, 96]",
                                  "--set", "supernet.loss.cc=0.5", "--set", "seed=7"])
    assert invoked.exit_code == 0, invoked.output
    (call,) = calls
    cfg = call["config"]
    assert cfg.supernet.epochs == 5 and cfg.data.resolution == (64, 96) and cfg.seed == 7
    assert cfg.supernet.loss == {"kld": 1.0, "cc": 0.5}
    # progress bars: off here (stderr is not a terminal), as every command decides it
    assert call.get("progress", False) is False
    bad = runner.invoke(app, [*args, "--config", str(config), "--set", "supernet.epochs=x"])
    assert bad.exit_code != 0 and "'supernet.epochs'" in str(bad.exception)


def test_progress_flag_and_run_log(tmp_path, monkeypatch):
    calls = _capture(monkeypatch, "salnas.pipeline.run_pipeline", {})
    config = tmp_path / "c.yaml"
    config.write_text("seed: 1\n")
    base = ["run", "--config", str(config), "--out", str(tmp_path / "r")]
    assert runner.invoke(app, [*base, "--progress"]).exit_code == 0
    assert runner.invoke(app, ["--no-progress", *base]).exit_code == 0
    assert [c["progress"] for c in calls] == [True, False]


def test_the_pipeline_writes_run_log_with_a_failing_stages_reason(tmp_path, monkeypatch):
    import re

    import salnas.pipeline as pipeline
    from salnas.config import load_config
    from salnas.errors import SalnasError

    class Fake:
        def __init__(self, name, fail=False):
            self.name, self.fail = name, fail

        def fingerprint(self):
            return {}

        def is_done(self):
            return False

        def run(self):
            if self.fail:
                raise SalnasError("cannot write x: no space left on the device")

        def status(self):
            return {}

    monkeypatch.setattr(pipeline, "stage_runners", lambda c, layout, p: [Fake("a"), Fake("b")])
    said: list[str] = []
    pipeline.run_pipeline(load_config(None), tmp_path, progress=False, log=said.append)
    lines = (tmp_path / "run.log").read_text().splitlines()
    assert said == ["[a] running", "[a] done in 0 s", "[b] running", "[b] done in 0 s"]
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d \[", line) for line in lines)
    assert [line.split(" ", 1)[1] for line in lines] == said
    monkeypatch.setattr(pipeline, "stage_runners",
                        lambda c, layout, p: [Fake("a"), Fake("c", fail=True)])
    with pytest.raises(SalnasError):
        pipeline.run_pipeline(load_config(None), tmp_path, progress=False, log=said.append)
    last = (tmp_path / "run.log").read_text().splitlines()[-1]
    assert last.endswith("[c] failed: cannot write x: no space left on the device")
    assert len((tmp_path / "run.log").read_text().splitlines()) == 4 + 4  # appended


def test_until_stops_after_a_stage_and_a_rerun_goes_on(tmp_path, monkeypatch):
    import salnas.pipeline as pipeline
    from salnas.config import load_config
    from salnas.errors import ConfigError

    ran: list[str] = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def fingerprint(self):
            return {}

        def is_done(self):
            return self.name in ran

        def run(self):
            ran.append(self.name)

        def status(self):
            return {}

    monkeypatch.setattr(pipeline, "stage_runners",
                        lambda c, layout, p: [Fake("a"), Fake("b"), Fake("c")])
    said: list[str] = []
    config = load_config(None)
    pipeline.run_pipeline(config, tmp_path, progress=False, log=said.append, until="b")
    assert ran == ["a", "b"] and said[-1].startswith("stopped after [b] (--until)")
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "running"
    pipeline.run_pipeline(config, tmp_path, progress=False, log=said.append)
    assert ran == ["a", "b", "c"]
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "done"
    with pytest.raises(ConfigError, match=r"--until 'nope': not a stage; use one of a, b, c"):
        pipeline.run_pipeline(config, tmp_path, progress=False, log=said.append, until="nope")
    # the CLI passes --until through
    calls = _capture(monkeypatch, "salnas.pipeline.run_pipeline", {})
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("seed: 1\n")
    result = runner.invoke(app, ["run", "--config", str(cfg_file), "--out", str(tmp_path / "r"),
                                 "--until", "search"])
    assert result.exit_code == 0, result.output
    assert calls[0]["until"] == "search" and "run finished" not in result.output


def test_evaluate_scores_every_predicted_image_when_the_folder_covers_more(tmp_path):
    source = open_source("synthetic:20")
    stems = source.stems()
    test = make_split(stems, 0, *source.default_split)["test"]
    _write_predictions(tmp_path / "all", source, stems, "truth")
    result = runner.invoke(app, ["evaluate", "--data", "synthetic:20", "--predictions",
                                 str(tmp_path / "all"), "--json", str(tmp_path / "all.json")])
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "all.json").read_text())
    assert scores["n_images"] == 20 and scores["split"] == "every image with a prediction"
    assert "scoring 20 images of synthetic:20 (every image with a prediction" in result.output
    # only the test split predicted: the test split, said so; --split still chooses
    _write_predictions(tmp_path / "test", source, test, "truth")
    result = runner.invoke(app, ["evaluate", "--data", "synthetic:20", "--predictions",
                                 str(tmp_path / "test")])
    assert result.exit_code == 0, result.output
    assert f"scoring {len(test)} images of synthetic:20 (test" in result.output
    assert not list(tmp_path.glob("test*.json"))  # --json is optional, like data check's
    result = runner.invoke(app, ["evaluate", "--data", "synthetic:20", "--predictions",
                                 str(tmp_path / "all"), "--split", "test", "--json",
                                 str(tmp_path / "t.json")])
    assert json.loads((tmp_path / "t.json").read_text())["n_images"] == len(test)
