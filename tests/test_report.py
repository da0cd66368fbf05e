"""Reports: loading a run directory, derived tables, the HTML page, the CLI, missing stages.

Everything runs on the fake run of ``tests/report_fixtures.py`` (invented numbers, real
formats); the browser and notebook checks live in ``test_report_browser.py`` and
``test_report_notebook.py``.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import html
import inspect
import io
import json
import re
import shutil
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from report_fixtures import INJECTED, RUN_NAME, TINY_SPACE, built_report, make_fake_run
from scipy.stats import kendalltau, spearmanr
from typer.testing import CliRunner

import salnas.distill.run as distill_run
import salnas.search.archive as archive_mod
import salnas.search.hypervolume as hypervolume
import salnas.supernet.evaluate as supernet_evaluate
import salnas.supernet.train as supernet_train
from salnas import layout, metrics
from salnas.analysis import load_run
from salnas.analysis.format import format_number
from salnas.analysis.load import (
    COLUMNS_READ,
    PREFIXES_READ,
    RANDOM_SUBNET,
    decode_genes,
    gene_importance,
    rank_fidelity,
    validated_subnets,
)
from salnas.analysis.report import build_report, gallery_html, write_compare, write_report
from salnas.cli import app
from salnas.distill.summary import kd_pairs, kd_summary
from salnas.errors import SalnasError
from salnas.layout import (
    ARCHIVE,
    ARCHIVE_CSV,
    DISTILL,
    HV_CSV,
    ORACLE_METRICS,
    PARETO_CSV,
    RESULTS_CSV,
    TRAIN_LOG,
    TRAIN_LOG_CSV,
)
from salnas.supernet.space import SearchSpace

runner = CliRunner()
SECTIONS = ("recommend", "summary", "baselines", "supernet", "search", "genes", "retrain",
            "arms", "latency", "gallery", "models", "downloads", "notes")
# training, 5 x 2-D, 3-D, HV, importance, genes, rank fidelity, retrained fronts, arm
# differences, latency
N_FIGURES = 14


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, str]:
    path, page = built_report(tmp_path_factory.getbasetemp() / "report-run")
    return path, page, path.read_text(encoding="utf-8")


# ---------------------------------------------------------------- the column contract
def _declared() -> tuple[set[str], set[str]]:
    """(names, prefixes) of every column salnas.layout declares: its column tuples and the
    string fields of its column dataclasses, and their tuples of text and flag columns (a
    field ending in '_' is a prefix)."""
    names = {*ORACLE_METRICS, *layout.ARCHIVE_COLUMNS, *layout.HV_COLUMNS,
             *layout.TRAIN_LOG_COLUMNS}
    for columns in (layout.TRAIN_LOG, layout.ARCHIVE, layout.HV, layout.DISTILL):
        for f in dataclasses.fields(columns):
            value = getattr(columns, f.name)
            if isinstance(value, str):
                names.add(value)
            elif isinstance(value, tuple):
                names.update(v for v in value if isinstance(v, str))
    return {n for n in names if not n.endswith("_")}, {n for n in names if n.endswith("_")}


def _train_log_written() -> set[str]:
    """The columns supernet training writes per epoch: its epoch row (TRAIN_LOG_COLUMNS),
    validate_epoch's val_<subnet>_<metric> of the max, min and (supernet.val_random's
    default) random subnets, and keep_best's."""
    tags = [tag for tag, _ in supernet_train.validation_subnets(SearchSpace(TINY_SPACE), 0)]
    names = inspect.signature(supernet_evaluate.validate).parameters["names"].default
    row: dict[str, object] = dict.fromkeys(supernet_train.TRAIN_LOG_COLUMNS, 1.0)
    row.update({TRAIN_LOG.val(tag, m): 0.5 for tag in tags for m in names})
    supernet_train.keep_best(SimpleNamespace(best=None, epoch=0), row, "last")  # type: ignore
    return set(row)


def _results_written() -> set[str]:
    """The columns of results.csv: the keys of the ``row`` dict distill writes per arm
    (``DistillRun.train_arm``), read from its source, with ``test_<metric>`` for every metric
    of salnas.metrics and ``search_<column>`` (the ``extra`` of ``_units``) for every oracle
    metric.

    distill/run.py spells its row out instead of using a column tuple of salnas.layout;
    once it has one, compare with that instead.
    """
    tree = ast.parse(inspect.getsource(distill_run))
    names: set[str] = set()
    prefixes: set[str] = set()
    found = set()
    for fn in ast.walk(tree):
        if not (isinstance(fn, ast.FunctionDef) and fn.name in ("train_arm", "_units")):
            continue
        for node in ast.walk(fn):
            target = node.target if isinstance(node, ast.AnnAssign) else (
                node.targets[0] if isinstance(node, ast.Assign) else None)
            if not (isinstance(target, ast.Name) and target.id in ("row", "extra")
                    and isinstance(node.value, ast.Dict | ast.DictComp)):  # type: ignore
                continue
            found.add(fn.name)
            value = node.value  # type: ignore[union-attr]
            keys = list(value.keys) if isinstance(value, ast.Dict) else [value.key]
            if isinstance(value, ast.Dict):  # **{f"test_{k}": ...} inside the row
                keys += [v.key for k, v in zip(value.keys, value.values, strict=True)
                         if k is None and isinstance(v, ast.DictComp)]
            for k in keys:
                if isinstance(k, ast.Constant) and isinstance(k.value, str):
                    names.add(k.value)
                elif isinstance(k, ast.JoinedStr) and isinstance(k.values[0], ast.Constant):
                    prefixes.add(str(k.values[0].value))
    assert found == {"train_arm", "_units"}, "distill.run no longer writes its row there"
    assert {DISTILL.test_prefix, DISTILL.search_prefix} <= prefixes, prefixes
    return (names | {DISTILL.test_prefix + m for m in metrics.METRIC_NAMES}
            | {DISTILL.search_prefix + m for m in ORACLE_METRICS})


def test_writers_use_the_layout() -> None:
    """The stages write the columns salnas.layout declares (its tuples are theirs)."""
    assert archive_mod.METRICS == ORACLE_METRICS
    assert archive_mod.COLUMNS == layout.ARCHIVE_COLUMNS
    assert tuple(hypervolume.HV_FIELDS) == layout.HV_COLUMNS
    assert supernet_train.TRAIN_LOG_COLUMNS == layout.TRAIN_LOG_COLUMNS
    assert distill_run.ARMS == layout.ARMS


def test_every_column_the_report_reads_is_declared_and_written() -> None:
    """Each column of analysis.load.COLUMNS_READ (and each prefix of PREFIXES_READ) is
    declared in salnas.layout and written by its stage's writer: renaming a column in a
    writer, or reading one no writer writes, fails here, naming it."""
    names, prefixes = _declared()
    written = {TRAIN_LOG_CSV: _train_log_written(), ARCHIVE_CSV: set(archive_mod.COLUMNS),
               # search.run writes pareto.csv with the archive's columns
               PARETO_CSV: set(archive_mod.COLUMNS), HV_CSV: set(hypervolume.HV_FIELDS),
               RESULTS_CSV: _results_written()}
    assert set(COLUMNS_READ) == set(written)
    for file, columns in COLUMNS_READ.items():
        for c in columns:
            assert c in names or any(c == p + m for p in prefixes for m in ORACLE_METRICS), \
                f"{file}: the report reads '{c}', which salnas.layout does not declare"
            assert c in written[file], f"{file}: the report reads '{c}', no writer writes it"
    for file, family in PREFIXES_READ.items():
        for p in family:
            assert p in prefixes, f"{file}: prefix '{p}' is not declared in salnas.layout"
            assert any(c.startswith(p) for c in written[file]), \
                f"{file}: the report reads '{p}*' columns, no writer writes one"


def test_random_subnet_columns_are_the_writers() -> None:
    """The supernet's fixed random subnets (supernet.val_random) are read by the report's
    pattern: every tag validation_subnets writes, besides max and min, matches it, and the
    report finds them all in the columns the writer writes."""
    tags = [tag for tag, _ in supernet_train.validation_subnets(SearchSpace(TINY_SPACE), 0)]
    assert tags[:2] == ["max", "min"] and len(tags) > 2
    assert all(RANDOM_SUBNET.fullmatch(t) for t in tags[2:]), tags
    assert validated_subnets(sorted(_train_log_written())) == tags


def test_the_report_needs_no_other_column(tmp_path: Path) -> None:
    """With only the columns the report declares it reads, every figure still draws."""
    run_dir = make_fake_run(tmp_path, models=False)
    for path in sorted(run_dir.rglob("*.csv")):
        frame = pd.read_csv(path, dtype=str)
        keep = [c for c in frame.columns if c in COLUMNS_READ[path.name]
                or any(c.startswith(p) for p in PREFIXES_READ.get(path.name, ()))]
        frame[keep].to_csv(path, index=False)
    run = load_run(run_dir)
    assert run.notes == {}, run.notes
    page = build_report(run, tmp_path / "r.html", gallery=0)
    assert page.problems == [] and page.n_figures == N_FIGURES


def test_format_number_rules() -> None:
    cases = [(None, "–"), (float("nan"), "–"), (True, "yes"), (np.bool_(False), "no"),
             (0, "0"), (7, "7"), (9999, "9999"), (12345, "12.3k"), (312_456, "312k"),
             (999_600, "1M"), (2.61e7, "26.1M"), (np.int64(1_230_000_000), "1.23G"),
             (0.712345, "0.7123"), (12.3456, "12.35"), (9999.7, "10k"), (1.234e-4, "1.23e-04"),
             (-0.5, "-0.5"), (np.float32(0.25), "0.25"), ("abc", "abc")]
    for value, text in cases:
        assert format_number(value) == text, value


# ---------------------------------------------------------------- loading
def test_load_run_reads_every_table(tmp_path: Path) -> None:
    run = load_run(make_fake_run(tmp_path, models=False))
    assert run.notes == {}, run.notes
    assert len(run.archive) == 40 and run.archive[ARCHIVE.feasible].dtype == bool
    assert run.archive[ARCHIVE.id].map(type).eq(str).all()  # hex ids never become numbers
    assert set(run.pareto_ids) <= set(run.archive[ARCHIVE.id])
    assert run.genes.index.equals(run.archive.index) and "s1.depth" in run.genes
    assert run.gene_labels["d0.op"][0] == "dwsep3x3"  # ops coded in cost order
    assert list(run.baselines.index) == ["centre_bias", "generating_map", "inter_observer"]
    assert len(run.train_log) == 4 and len(run.hv_history) == 5
    assert set(run.latency["source"]) == {"lut.json validation subnets",
                                          "search LUT prediction vs distilled model measured"}
    stages = run.stages.set_index("stage")
    assert stages.loc["supernet", "wall_s"] == pytest.approx(sum(20 + e for e in range(1, 5)))
    assert stages.loc["search", "wall_s"] == pytest.approx(123.4)
    assert stages.loc["distill", "energy_kwh"] == pytest.approx(
        run.distill[DISTILL.energy].sum())
    assert run.engine == "nsga2" and run.objectives == ["CC", "flops"]


def test_load_run_explains_missing_stages(tmp_path: Path) -> None:
    run = load_run(make_fake_run(tmp_path, stages=("supernet",)))
    assert not run.train_log.empty and run.archive.empty and run.distill.empty
    assert "salnas search" in run.note("archive")
    assert "salnas distill" in run.note("distill")
    assert "salnas baselines" in run.note("baselines")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "supernet has not been trained" in load_run(empty).note("train_log")
    with pytest.raises(SalnasError, match="not a run directory"):
        load_run(tmp_path / "nowhere")


def test_decode_genes_is_generic_and_tolerant() -> None:
    genomes = pd.Series([
        json.dumps({"resolution": [96, 128], "depths": [1, 2], "kernels": [[3], [3, 5]],
                    "skips": [True, False], "ops": ["conv3x3", "dwsep3x3"], "centre_bias": True,
                    "new_gene": 7}),
        "not json", json.dumps({"resolution": [64, 96], "depths": [1, 1], "kernels": [[3], [5]],
                                "skips": [False, False], "ops": ["dynconv", "dwsep5x5"],
                                "centre_bias": False, "new_gene": 9})])
    genes, labels = decode_genes(genomes)
    assert genes.loc[0, "resolution"] == 96 and genes.loc[0, "s1.kernel"] == 4.0
    assert genes.loc[0, "d0.skip"] == 1.0 and genes.loc[2, "centre_bias"] == 0.0
    assert genes.loc[0, "new_gene"] == 7  # an unknown gene still becomes a column
    assert genes.loc[1].isna().all()  # an unreadable genome is a row of NaN, not an error
    assert labels["d0.op"] == ["conv3x3", "dynconv"]  # cost order, not alphabetical
    assert genes.loc[2, "d0.op"] == 1.0


# ---------------------------------------------------------------- derived tables
def _fidelity_results() -> pd.DataFrame:
    """Four Pareto architectures (two arms, two seeds), a peer, and a fidelity sample of
    five whose ranking differs."""
    oracle = {"a": 0.5, "b": 0.6, "c": 0.7, "d": 0.8}
    retrained = {"a": 0.52, "b": 0.50, "c": 0.71, "d": 0.75}
    rows = [{DISTILL.arch: k, DISTILL.kind: "pareto", DISTILL.genome_id: k, DISTILL.arm: arm,
             DISTILL.seed: s, "search_CC": oracle[k],
             "test_CC": v + (0.01 if arm == "selfkd" else 0) + 0.001 * s}
            for k, v in retrained.items() for arm in ("selfkd", "baseline") for s in (0, 1)]
    rows.append({DISTILL.arch: "peer-max", DISTILL.kind: "peer", DISTILL.genome_id: "",
                 DISTILL.arm: "baseline", DISTILL.seed: 0, "test_CC": 0.9})
    short = {"e": (0.55, 0.40), "f": (0.65, 0.38), "g": (0.70, 0.45), "h": (0.75, 0.41),
             "i": (0.78, 0.47)}
    rows += [{DISTILL.arch: f"fidelity-{k}", DISTILL.kind: "fidelity", DISTILL.genome_id: k,
              DISTILL.arm: "baseline", DISTILL.seed: 0, "search_CC": o, "test_CC": r}
             for k, (o, r) in short.items()]
    return pd.DataFrame(rows)


def test_rank_fidelity_is_the_distill_stage_computation() -> None:
    """The report's rank fidelity is salnas.distill.fidelity's: the fidelity sample alone
    (never mixed with the full-budget baseline rows), or the baseline arm without one; and
    distill/rank_fidelity.json, when the run has one, is read rather than recomputed."""
    from salnas.distill.fidelity import rank_fidelity as stage_fidelity

    results = _fidelity_results()
    table, stats = rank_fidelity(results)
    expected = stage_fidelity(results)
    assert stats["sample"] == "fidelity" and stats["n"] == 5 == len(table)
    assert set(table["arch"]) == {f"fidelity-{k}" for k in "efghi"}  # no full-budget row
    for key in ("kendall_tau", "spearman_rho", "p_value"):
        assert stats[key] == pytest.approx(expected[key])
    sample = results[results[DISTILL.kind] == "fidelity"]
    assert stats["kendall_tau"] == pytest.approx(
        kendalltau(sample["search_CC"], sample["test_CC"]).statistic)
    assert "computed from results.csv" in stats["source"]
    # Without a fidelity sample: the baseline arm, mean over seeds; the peer has no oracle.
    plain = results[results[DISTILL.kind] != "fidelity"]
    table, stats = rank_fidelity(plain)
    base = plain[(plain[DISTILL.arm] == "baseline") & plain["search_CC"].notna()
                 ].groupby(DISTILL.arch)
    assert stats["sample"] == "retrained" and set(table["arch"]) == set("abcd")
    assert stats["spearman_rho"] == pytest.approx(spearmanr(
        base["search_CC"].mean(), base["test_CC"].mean()).statistic)
    # The stage's record wins over a recomputation.
    record = {**expected, "kendall_tau": 0.123, "p_value": 0.5}
    table, stats = rank_fidelity(results, record)
    assert stats["kendall_tau"] == 0.123 and stats["source"] == "distill/rank_fidelity.json"
    assert len(table) == 5
    # Too few architectures: no statistic rather than a meaningless +-1.
    _, two = rank_fidelity(plain[plain[DISTILL.arch].isin(["a", "b"])])
    assert two["n"] == 2 and two["kendall_tau"] is None


def test_kd_pairs_gain_follows_the_metric_direction() -> None:
    rows = [{DISTILL.arch: "a", DISTILL.arm: arm, DISTILL.seed: 0, "test_CC": cc,
             "test_KLD": kld}
            for arm, cc, kld in (("selfkd", 0.7, 0.9), ("baseline", 0.6, 1.0))]
    rows.append({DISTILL.arch: "b", DISTILL.arm: "selfkd", DISTILL.seed: 0, "test_CC": 0.5,
                 "test_KLD": 1.1})  # unpaired: ignored
    frame = pd.DataFrame(rows)
    cc, kld = kd_pairs(frame, "CC"), kd_pairs(frame, "KLD")
    assert len(cc) == 1 and cc["difference"].iloc[0] == pytest.approx(0.1)
    assert kld["difference"].iloc[0] == pytest.approx(-0.1) and kld["gain"].iloc[0] > 0
    summary = kd_summary(frame).set_index("metric")
    assert summary.loc["KLD", "selfkd_better"] == 1 and summary.loc["KLD", "better"] == "lower"


def test_gene_importance_finds_the_gene_that_matters(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    genes = pd.DataFrame({"a": rng.integers(0, 4, 60).astype(float),
                          "b": rng.integers(0, 3, 60).astype(float),
                          "fixed": np.ones(60)})
    target = pd.Series(genes["a"] * 0.1 + rng.normal(0, 0.01, 60))
    imp, method = gene_importance(genes, target)
    assert "PED-ANOVA" in method and imp["gene"].iloc[0] == "a"
    assert "fixed" not in set(imp["gene"])
    import builtins

    real_import = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name.startswith("optuna"):
            raise ImportError("no optuna here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    imp, method = gene_importance(genes, target)
    assert "Spearman" in method and "optuna is not installed" in method
    assert imp["gene"].iloc[0] == "a" and imp["importance"].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 4"):
        gene_importance(genes.head(3), target.head(3))


# ---------------------------------------------------------------- the page
def test_report_is_complete_and_self_contained(report) -> None:
    path, page, text = report
    assert path.name == "report.html" and path.parent.name == RUN_NAME
    assert page.problems == []
    assert page.n_figures == N_FIGURES
    anchors = re.findall(r'<section id="([^"]+)">', text)
    assert anchors == list(SECTIONS)  # the recommendation first, the details below it
    from plotly.offline import get_plotlyjs

    assert text.count(get_plotlyjs()[:500]) == 1  # plotly.js embedded exactly once
    page_only = text.replace(get_plotlyjs(), "")  # the library itself mentions URLs
    assert not re.search(r'(src|href)="(https?:)?//', page_only)  # nothing to fetch
    # One script for plotly.js, one per figure: nothing from a file became a script.
    assert page_only.count("<script") == 1 + page.n_figures
    assert not list(path.parent.glob(".report.html.*"))  # atomic write left no temp file


def test_report_escapes_names_and_config_values(report) -> None:
    _, _, text = report
    assert INJECTED not in text and RUN_NAME not in text
    assert html.escape(INJECTED) in text  # the config YAML, shown escaped
    assert html.escape(RUN_NAME) in text  # the title, shown escaped
    assert "<img src=x" not in text


def test_report_downloads_and_model_links(report) -> None:
    path, _, text = report
    run = load_run(path.parent)
    links = dict(re.findall(r'<a download="([^"]+)" href="data:text/csv;charset=utf-8;base64,'
                            r'([^"]+)"', text))
    assert {"archive.csv", "pareto.csv", "distill_results.csv", "genes.csv"} <= set(links)
    archive = pd.read_csv(io.BytesIO(base64.b64decode(links["archive.csv"])), dtype={"id": str})
    assert archive["id"].to_list() == run.archive[ARCHIVE.id].to_list()
    models = re.search(r'<section id="models">(.*?)</section>', text, re.S).group(1)
    hrefs = [urllib.parse.unquote(html.unescape(h))
             for h in re.findall(r'<a href="([^"]+model\.pt)"', models)]
    assert len(hrefs) == 6  # two distilled architectures with files x three arms
    hrefs += [urllib.parse.unquote(html.unescape(h))  # the recommended models' files
              for h in re.findall(r'<a href="([^"]+model\.pt)"', text)]
    for h in hrefs:
        assert not Path(h).is_absolute() and (path.parent / h).is_file()
    # Gallery: 4 images x (image, ground truth, centre bias, 2 models).
    assert text.count('<img src="data:image/png;base64,') == 4 * 5


def test_report_of_a_partial_run_explains(tmp_path: Path) -> None:
    run_dir = make_fake_run(tmp_path, "partial", stages=("supernet",))
    path, page = write_report(run_dir, tmp_path / "out" / "partial.html")
    text = path.read_text()
    assert page.problems == [] and page.n_figures == 1  # the training curves only
    assert "salnas search --out RUN_DIR/search" in text
    assert "salnas distill" in text and "salnas baselines" in text
    assert text.count('class="note"') >= 6


def test_report_tolerates_broken_and_renamed_files(tmp_path: Path) -> None:
    run_dir = make_fake_run(tmp_path, models=False)
    search = run_dir / "search"
    archive = pd.read_csv(search / "archive.csv", dtype=str)
    archive.drop(columns=["CC", "params", ARCHIVE.generation]).to_csv(search / "archive.csv",
                                                                       index=False)
    (search / "lut.json").write_text("{ not json")
    (search / "hv_history.csv").write_bytes(b"")
    results = pd.read_csv(run_dir / "distill" / "results.csv")
    results.rename(columns={"test_CC": "test_cc_renamed"}).to_csv(
        run_dir / "distill" / "results.csv", index=False)
    (run_dir / "supernet" / "train_log.csv").write_text("epoch,lr\n1,0.1\n")
    meta = json.loads((search / "search.json").read_text())  # fields of unexpected shapes
    meta.update(objectives="CC", constraints=["flops"], hypervolume={"bounds": {"CC": 3}})
    (search / "search.json").write_text(json.dumps(meta))
    (run_dir / "baselines.json").write_text(json.dumps({"centre_bias": {"CC": "abc"},
                                                        "inter_observer": 5}))
    (run_dir / "supernet" / "split.json").write_text("[1, 2]")
    page = build_report(load_run(run_dir), tmp_path / "r.html")
    text = page.render()
    assert page.problems == [], page.problems
    assert "lut.json: not valid JSON" in text and "hv_history.csv could not be read" in text
    assert "has no column test_CC" in text  # the renamed column is named
    assert "no retrained" not in text and page.n_figures >= 5  # the other metrics still plot


def test_report_of_a_baseline_only_distill_run(tmp_path: Path) -> None:
    # distill.selfkd false and no teacher: results.csv holds the baseline arm alone
    run_dir = make_fake_run(tmp_path, models=False)
    results = pd.read_csv(run_dir / "distill" / "results.csv")
    results[results["arm"] == "baseline"].to_csv(run_dir / "distill" / "results.csv",
                                                 index=False)
    page = build_report(load_run(run_dir), tmp_path / "r.html")
    assert page.problems == [], page.problems
    assert page.n_figures >= 5


def test_saliency_gallery_skips_without_models_or_data(tmp_path: Path) -> None:
    run_dir = make_fake_run(tmp_path, models=False)
    assert "no distilled Pareto model file" in gallery_html(load_run(run_dir))
    run_dir = make_fake_run(tmp_path, "moved-data")
    cfg = (run_dir / "config.yaml").read_text().replace("spec: synthetic:16",
                                                        "spec: folder:/nonexistent/data")
    (run_dir / "config.yaml").write_text(cfg)
    assert "cannot be opened here" in gallery_html(load_run(run_dir))
    (run_dir / "supernet" / "split.json").unlink()
    assert "split.json with train and test" in gallery_html(load_run(run_dir))


# ---------------------------------------------------------------- compare and the CLI
def test_compare_overlays_runs_and_warns_about_hypervolume(tmp_path: Path) -> None:
    a = make_fake_run(tmp_path / "x", "budget <a>", models=False, n_distilled=0,
                      stages=("supernet", "baselines", "search"))
    b = make_fake_run(tmp_path / "y", "optuna & tpe", engine="optuna-tpe", seed=1,
                      models=False, stages=("supernet", "search"))
    out, page = write_compare([a, b], tmp_path / "cmp.html")
    text = out.read_text()
    assert page.problems == [] and page.n_figures == len(ORACLE_METRICS) + 1
    assert html.escape("budget <a>") in text and "budget <a>" not in text
    assert html.escape("optuna & tpe") in text
    assert "not comparable" in text  # the two runs normalise their hypervolume differently
    with pytest.raises(SalnasError, match="two or more"):
        write_compare([a], tmp_path / "one.html")


def test_cli_report_and_compare(tmp_path: Path) -> None:
    a = make_fake_run(tmp_path, "a", stages=("supernet", "search"))
    b = make_fake_run(tmp_path, "b", seed=3, stages=("supernet", "search"))
    result = runner.invoke(app, ["report", str(a), "--out", str(tmp_path / "r.html"),
                                 "--gallery", "0"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (tmp_path / "r.html").is_file()
    assert 'id="gallery"' not in (tmp_path / "r.html").read_text()
    result = runner.invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "c.html")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert isinstance(result.exception, SalnasError)
    for command in ("report", "compare"):
        assert runner.invoke(app, [command, "--help"]).exit_code == 0


def test_report_moves_with_its_run_directory(report, tmp_path: Path) -> None:
    """Relative links keep working when the run directory moves (report inside it)."""
    path, _, _ = report
    moved = tmp_path / "moved"
    shutil.copytree(path.parent, moved)
    text = (moved / "report.html").read_text()
    for h in re.findall(r'<a href="([^"]+model\.pt)"', text):
        assert (moved / urllib.parse.unquote(html.unescape(h))).is_file()


def test_loader_reads_what_the_stage_writers_write(tmp_path: Path) -> None:
    """Files written by the stages' own writers (not the fixture's) load with the right types;
    the supernet's files may also sit in RUN_DIR itself, with a legacy run.json."""
    run_dir = make_fake_run(tmp_path, models=False, stages=("supernet",))
    for name in ("train_log.csv", "split.json"):
        (run_dir / "supernet" / name).rename(run_dir / name)
    (run_dir / "supernet" / "provenance.json").rename(run_dir / "run.json")  # the legacy name
    shutil.rmtree(run_dir / "supernet")
    archive = archive_mod.Archive(run_dir / "search")
    base = {c: None for c in archive_mod.COLUMNS}
    archive.add({**base, "id": "1234e56789", "genome": '{"resolution": [64, 96]}', "CC": 0.5,
                 "KLD": 1.0, "NSS": 1.5, "SIM": 0.4, "AUC_Judd": 0.8, "params": 10,
                 "flops": 1000, "feasible": True, "scored": True, "engine": "random",
                 "generation": 0})
    archive.add({**base, "id": "00000000a1", "genome": '{"resolution": [96, 128]}',
                 "params": 20, "flops": 5000, "feasible": False, "scored": False,
                 "engine": "random", "generation": 1})
    run = load_run(run_dir)
    assert not run.train_log.empty and run.split
    assert not {"train_log", "train_log_columns", "split", "provenance"} & set(run.notes)
    assert run.provenance["supernet"]["stage"] == "supernet" and not run.pipeline
    a = run.archive
    assert a[ARCHIVE.id].to_list() == ["1234e56789", "00000000a1"]  # text, not 1.234e+61
    assert a[ARCHIVE.feasible].to_list() == [True, False]
    assert a["CC"].iloc[0] == 0.5 and np.isnan(a["CC"].iloc[1])
    assert run.genes["resolution"].to_list() == [64.0, 96.0]


def test_pipeline_record_and_legacy_provenance(tmp_path: Path) -> None:
    """RUN/run.json is salnas run's record (stage status and cost), never the supernet's
    provenance; supernet/provenance.json is, else a legacy supernet/run.json."""
    run_dir = make_fake_run(tmp_path, models=False)
    stages = {"supernet": {"status": "done", "wall_s": 500.0},
              "search": {"status": "running", "wall_s": 60.0}}
    (run_dir / "run.json").write_text(json.dumps({"command": "salnas run", "stage": "run",
                                                  "git_commit": "abc", "stages": stages}))
    run = load_run(run_dir)
    assert run.pipeline["stages"] == stages and run.provenance["run"]["command"] == "salnas run"
    assert run.provenance["supernet"]["stage"] == "supernet"
    table = run.stages.set_index("stage")
    assert table.loc["supernet", "wall_s"] == 500.0
    assert table.loc["supernet", "source"].startswith("run.json")
    assert table.loc["search", "status"] == "done"  # search.json's own "finished" wins
    assert table.loc["distill", "status"] == "done"
    (run_dir / "supernet" / "provenance.json").rename(run_dir / "supernet" / "run.json")
    legacy = load_run(run_dir)
    assert legacy.provenance["supernet"] == run.provenance["supernet"]
    (run_dir / "supernet" / "run.json").unlink()
    assert "supernet" not in load_run(run_dir).provenance  # the pipeline's record is not it
