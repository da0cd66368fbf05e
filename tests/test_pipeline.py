"""`salnas run`: every stage end to end on a tiny config, and a rerun that skips them all."""

from __future__ import annotations

import json
import re
from html import escape

import pandas as pd
import pytest
import yaml
from test_supernet_train import TINY  # the tiny space every end-to-end test shares
from typer.testing import CliRunner

from salnas.cli import app

TINY_RUN = {
    **TINY,
    "seed": 1,
    "supernet": {**TINY["supernet"], "epochs": 1, "bn_recalib_batches": 1, "threads": 1},
    "search": {"objectives": ["CC", "flops"], "population": 4, "generations": 2,
               "val_images": 4, "threads": 1},
    "distill": {"select": "crowding:1", "epochs": 1, "batch_size": 4, "peers": False,
                "bn_recalib_batches": 1, "latency_repeats": 2, "threads": 1},
}


@pytest.mark.slow
def test_run_all_stages_then_resume_skips_them(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    run_dir = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--config", str(config), "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    for path in ("supernet/supernet.pt", "supernet/split.json", "baselines.json",
                 "search/archive.csv", "search/pareto.csv", "distill/results.csv", "report.html",
                 "run.json", "config.yaml"):
        assert (run_dir / path).is_file(), path
    stages = json.loads((run_dir / "run.json").read_text())["stages"]
    assert [s for s, v in stages.items() if v["status"] == "done"] == [
        "supernet", "baselines", "search", "distill", "report"]
    archive = pd.read_csv(run_dir / "search" / "archive.csv", dtype={"id": str})
    pareto = pd.read_csv(run_dir / "search" / "pareto.csv", dtype={"id": str})
    assert len(pareto) >= 1 and set(pareto["id"]) <= set(archive["id"])
    selected = json.loads((run_dir / "distill" / "distill.json").read_text())["selected"]
    assert len(selected) == 1 and set(selected) <= set(pareto["id"])  # crowding:1
    results = pd.read_csv(run_dir / "distill" / "results.csv",
                          dtype={"arch": str, "model_dir": str})
    # the distilled architecture, both arms, one row each
    assert sorted(zip(results["arch"], results["arm"], strict=True)) == [
        (selected[0], "baseline"), (selected[0], "selfkd")]
    assert results["test_CC"].between(-1, 1).all()
    html = (run_dir / "report.html").read_text()
    models = re.search(r'<section id="models">(.*?)</section>', html, re.S)
    assert models, "the report has no Pareto models section"
    for arch in pareto["id"]:  # every row of this run's pareto.csv, by id
        assert f'<td class="t">{escape(arch)}</td>' in models.group(1), arch
    for model_dir in results["model_dir"]:  # and the retrained models' files
        assert f">{escape(model_dir)}/" in models.group(1), model_dir

    again = runner.invoke(app, ["run", "--config", str(config), "--out", str(run_dir)])
    assert again.exit_code == 0, again.output
    for stage in ("supernet", "baselines", "search", "distill"):
        assert f"[{stage}] done earlier" in again.output, stage

    # A run started before a setting existed (its saved config lacks the key, which takes its
    # default) still resumes.
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    del saved["search"]["anchors"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    older = runner.invoke(app, ["run", "--config", str(config), "--out", str(run_dir)])
    assert older.exit_code == 0 and "[distill] done earlier" in older.output, older.output

    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**TINY_RUN, "seed": 2}))
    refused = runner.invoke(app, ["run", "--config", str(other), "--out", str(run_dir)])
    assert refused.exit_code != 0 and "another config" in str(refused.exception)


def test_a_stage_not_yet_finished_may_take_new_settings(tmp_path):
    """After `--until search`, the distill section may change; the settings of a finished
    stage may not (the error names the stage and the setting)."""
    from salnas.config import config_from_dict
    from salnas.errors import SalnasError
    from salnas.layout import RunLayout
    from salnas.pipeline import check_finished_stages

    layout = RunLayout(tmp_path)
    saved = config_from_dict(TINY_RUN)
    done = {name: {"status": "done"} for name in ("supernet", "baselines", "search")}
    new_distill = config_from_dict({**TINY_RUN, "distill": {**TINY_RUN["distill"],
                                                            "select": "all", "selfkd": False}})
    check_finished_stages(saved, new_distill, layout, done)  # distill has not run: accepted
    more_epochs = config_from_dict({**TINY_RUN, "supernet": {**TINY_RUN["supernet"],
                                                             "epochs": 3}})
    check_finished_stages(saved, more_epochs, layout, done)  # epochs may grow (resume)
    with pytest.raises(SalnasError, match=r"finished search stage .*search\.population"):
        check_finished_stages(saved, config_from_dict(
            {**TINY_RUN, "search": {**TINY_RUN["search"], "population": 6}}), layout, done)
    with pytest.raises(SalnasError, match=r"finished supernet stage .*supernet\.lr"):
        check_finished_stages(saved, config_from_dict(
            {**TINY_RUN, "supernet": {**TINY_RUN["supernet"], "lr": 0.5}}), layout, done)
    # once distill is done its section is fixed too
    with pytest.raises(SalnasError, match="finished distill stage"):
        check_finished_stages(saved, new_distill, layout, {**done, "distill": {"status": "done"}})
