"""The report's first section recommends a model (issue 14 item 3), peers on every retrained
front (issue 13 item 4), random subnets on the training curves (issue 13 item 2), the arm
comparison (issue 16 item 4), and the smaller report fixes of issue 14 item 3.

Expected values are recomputed here from the fixture's own files (``results.csv``,
``pareto.csv``) with plain pandas, not with the code under test.
"""

from __future__ import annotations

import html
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from report_fixtures import PEER_ROWS, built_report, make_fake_run
from scipy.stats import wilcoxon
from typer.testing import CliRunner

from salnas.analysis import figures as F
from salnas.analysis import load_run
from salnas.analysis import recommend as R
from salnas.analysis.format import format_number
from salnas.analysis.report import build_report, write_report
from salnas.cli import app
from salnas.distill.summary import arm_differences, arm_pairs, arm_summary, kd_summary

runner = CliRunner()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, str]:
    path, page = built_report(tmp_path_factory.getbasetemp() / "report-run")
    return path, page, path.read_text(encoding="utf-8")


class _Tables(HTMLParser):
    """Every <table> of a piece of HTML as a list of {header: cell text} rows."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[dict[str, str]]] = []
        self._head: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "table":
            self.tables.append([])
            self._head = []
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._in_head:
                self._head = self._row
            else:
                self.tables[-1].append(dict(zip(self._head, self._row, strict=True)))
            self._row = None
        elif tag == "thead":
            self._in_head = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def section(text: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', text, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


def tables(fragment: str) -> list[list[dict[str, str]]]:
    parser = _Tables()
    parser.feed(fragment)
    return parser.tables


def _expected_pool(results: pd.DataFrame) -> pd.DataFrame:
    """The retrained candidates, by hand: Pareto rows, mean test scores per (arch, arm)."""
    pareto = results[results["kind"] == "pareto"]
    pool = pareto.groupby(["arch", "arm"])[["test_CC", "test_NSS", "test_KLD", "params",
                                            "flops"]].mean().reset_index()
    latency = pareto.groupby("arch")["latency_ms"].median()
    pool["latency_ms"] = pool["arch"].map(latency)
    return pool


def _best(pool: pd.DataFrame, cost: str | None = None, budget: float = math.inf) -> pd.Series:
    within = pool if cost is None else pool[pool[cost] <= budget]
    return within.loc[within["test_CC"].idxmax()]


# ---------------------------------------------------------------- the recommendation
def test_recommendation_is_the_first_section_and_names_the_best_model_per_budget(report
                                                                                 ) -> None:
    path, page, text = report
    assert page.problems == []
    assert text.index('<section id="recommend">') < text.index('<section id="summary">')
    run_dir = path.parent
    results = pd.read_csv(run_dir / "distill" / "results.csv", dtype={"arch": str})
    pareto_ids = set(pd.read_csv(run_dir / "search" / "pareto.csv", dtype={"id": str})["id"])
    pool = _expected_pool(results)
    rows = tables(section(text, "recommend"))[0]
    by_budget = {r["budget"]: r for r in rows}
    best = _best(pool)
    overall = by_budget["none (best overall)"]
    assert (overall["model id"], overall["arm"]) == (best["arch"], best["arm"])
    assert overall["CC"] == format_number(best["test_CC"])
    assert overall["NSS"] == format_number(best["test_NSS"])
    assert overall["KLD"] == format_number(best["test_KLD"])
    # The config's budget (search.constraints: flops <= 1.8e7) ...
    config = by_budget["FLOPs ≤ 18M"]
    assert config["from"] == "search.constraints"
    assert config["model id"] == _best(pool, "flops", 1.8e7)["arch"]
    # ... and the default levels: quantiles of the candidates' costs, latency first.
    levels = [r for r in rows if r["from"].endswith("percentile")]
    assert len(levels) == 9 and levels[0]["budget"].startswith("latency")
    for cost, label in (("latency_ms", "latency"), ("flops", "FLOPs"), ("params", "params")):
        for q in (0.25, 0.5, 0.75):
            value = float(np.quantile(pool[cost], q))
            unit = " ms" if cost == "latency_ms" else ""
            row = by_budget[f"{label} ≤ {format_number(value)}{unit}"]
            expected = _best(pool, cost, value)
            assert (row["model id"], row["arm"]) == (expected["arch"], expected["arm"])
            assert row["from"] == f"{round(q * 100)}th percentile"
            assert row["resolution"] == results.loc[results["arch"] == expected["arch"],
                                                    "resolution"].iloc[0]
    assert {r["model id"] for r in rows} <= pareto_ids  # every recommendation is on the front
    # A recommended model that has a file links to it (relative to the report).
    for r in rows:
        model = run_dir / "distill" / r["model id"] / r["arm"] / "model.pt"
        assert r["model file"] == (f"{r['model id']}/{r['arm']}/model.pt" if model.is_file()
                                   else "–")
    assert any(r["model file"] != "–" for r in rows)


def test_recommendation_without_retrained_models_reads_pareto_csv(tmp_path: Path) -> None:
    run_dir = make_fake_run(tmp_path, stages=("supernet", "baselines", "search"))
    path, page = write_report(run_dir, tmp_path / "r.html", gallery=0)
    text = path.read_text()
    assert page.problems == []
    pareto = pd.read_csv(run_dir / "search" / "pareto.csv", dtype={"id": str})
    rows = tables(section(text, "recommend"))[0]
    assert "No retrained model yet" in html.unescape(section(text, "recommend"))
    by_budget = {r["budget"]: r for r in rows}
    assert by_budget["none (best overall)"]["model id"] == pareto.loc[pareto["CC"].idxmax(),
                                                                      "id"]
    value = float(np.quantile(pareto["flops"], 0.5))
    within = pareto[pareto["flops"] <= value]
    row = by_budget[f"FLOPs ≤ {format_number(value)}"]
    assert row["model id"] == within.loc[within["CC"].idxmax(), "id"]
    genome = within.loc[within["CC"].idxmax(), "genome"]
    assert row["resolution"] == R.resolution_of(genome) and "x" in row["resolution"]
    assert "arm" not in row  # oracle scores have no arm


def test_a_budget_nothing_meets_says_so() -> None:
    pool = pd.DataFrame({"id": ["a", "b"], "arm": ["baseline"] * 2, "CC": [0.5, 0.6],
                         "flops": [10.0, 20.0]})
    frame = R.best_per_budget(pool, {"flops": 5.0, "unknown_cost": 1.0}, quantiles=())
    assert frame["budget"].to_list() == ["none (best overall)", "FLOPs ≤ 5"]
    assert frame["model id"].to_list() == ["b", "no model within this budget"]


def test_knee_is_the_front_point_farthest_from_the_line_through_its_ends() -> None:
    pool = pd.DataFrame({"id": list("abcdef"), "arm": "",
                         "CC": [0.30, 0.60, 0.66, 0.70, 0.50, 0.55],
                         "flops": [1.0, 2.0, 6.0, 10.0, 3.0, 8.0]})  # e, f are dominated
    front = R.front(pool, "flops")
    assert front["id"].to_list() == ["a", "b", "c", "d"]
    row, dist, n = R.knee(pool, "flops")  # type: ignore[misc]
    # normalised: a (0, 0), b (1/9, 0.75), c (5/9, 0.9), d (1, 1); line y = x
    assert row["id"] == "b" and n == 4
    assert dist == pytest.approx((0.75 - 1 / 9) / math.sqrt(2))
    assert R.knee(pool.iloc[[0, 3]], "flops") is None  # two points: no knee
    # KLD is minimised: the rule flips the metric's sign.
    kld = pool.assign(KLD=2 - pool["CC"])
    assert R.knee(kld, "flops", "KLD")[0]["id"] == "b"  # type: ignore[index]


def test_peers_dominated_by_the_front_are_named(report) -> None:
    path, _, text = report
    results = pd.read_csv(path.parent / "distill" / "results.csv", dtype={"arch": str})
    pool = _expected_pool(results)
    rows = tables(section(text, "recommend"))[2]
    assert [r["peer"] for r in rows if r["arm"] == "baseline"] == [p[0] for p in PEER_ROWS]
    peers = results[results["kind"] == "peer"]
    for r in rows:
        peer = peers[(peers["arch"] == r["peer"]) & (peers["arm"] == r["arm"])]
        cc, latency = peer["test_CC"].mean(), peers.loc[peers["arch"] == r["peer"],
                                                        "latency_ms"].median()
        flops, params = peer["flops"].iloc[0], peer["params"].iloc[0]
        same = pool[pool["arm"] == r["arm"]]
        better = same[(same["test_CC"] >= cc) & (same["flops"] <= flops)
                      & (same["params"] <= params) & (same["latency_ms"] <= latency)]
        better = better.sort_values("test_CC", ascending=False)
        expected = ", ".join(better["arch"][:3]) if len(better) else "not dominated"
        if len(better) > 3:
            expected += f" (+{len(better) - 3} more)"
        assert r["dominated on every cost by"] == expected, r
    verdict = {r["peer"]: r["dominated on every cost by"] for r in rows
               if r["arm"] == "baseline"}
    assert verdict["peer-max"] == "not dominated"  # the most accurate model of the run
    assert verdict["peer-fpn"] != "not dominated"  # the fixture's front beats it
    assert verdict["peer-csnet"] == "not dominated"  # cheaper than every Pareto model


def test_a_missing_peer_is_named(tmp_path: Path) -> None:
    run_dir = make_fake_run(tmp_path, models=False)
    results = pd.read_csv(run_dir / "distill" / "results.csv")
    results[results["arch"] != "peer-fpn"].to_csv(run_dir / "distill" / "results.csv",
                                                  index=False)
    _, missing = R.peer_dominance(load_run(run_dir))
    assert len(missing) == 1 and missing[0].startswith("peer-fpn")


# ---------------------------------------------------------------- figures
def test_every_peer_is_on_every_retrained_front(report) -> None:
    path, _, _ = report
    run = load_run(path.parent)
    fig = F.retrained_fronts(R.retrained_models(run.distill), "CC", run.baselines)
    symbols = {}
    for panel in ("x", "x2", "x3"):
        traces = [t for t in fig.data if (t.xaxis or "x") == panel and t.x[0] is not None]
        for name in (p[0] for p in PEER_ROWS):
            mine = [t for t in traces if t.name == name]
            assert len(mine) == 1, (panel, name)
            assert name in mine[0].text  # labelled with its name on the plot
            symbols.setdefault(name, set()).add(mine[0].marker.symbol)
        arms = {t.name for t in traces if t.name.startswith("Pareto, ")}
        assert arms == {"Pareto, baseline (ground truth only)", "Pareto, Self-KD",
                        "Pareto, teacher KD"}
    assert all(len(s) == 1 for s in symbols.values())
    assert len({next(iter(s)) for s in symbols.values()}) == len(PEER_ROWS)  # distinct


def test_training_curves_show_the_random_subnets(report) -> None:
    path, _, _ = report
    run = load_run(path.parent)
    fig = F.training_curves(run.train_log, run.baselines)
    names = {t.name for t in fig.data}
    assert {"max subnet", "min subnet"} <= names
    assert {f"random subnet {k}" for k in range(4)} <= names
    cc = [t for t in fig.data if t.name == "random subnet 2" and (t.yaxis or "y") == "y"]
    assert list(cc[0].y) == pytest.approx(run.train_log["val_rand2_CC"].to_list())
    assert "4 fixed random subnets" in fig.layout.title.text


def test_arm_comparison_pairs_every_arm_with_the_baseline(report) -> None:
    path, _, text = report
    results = pd.read_csv(path.parent / "distill" / "results.csv", dtype={"arch": str})
    for arm in ("selfkd", "teacher"):
        pairs = arm_pairs(results, "NSS", arm)
        wide = results.pivot_table(index=["arch", "seed"], columns="arm", values="test_NSS")
        expected = (wide[arm] - wide["baseline"]).dropna()
        assert len(pairs) == len(expected)
        assert pairs.set_index(["arch", "seed"])["difference"].sort_index().to_numpy() == \
            pytest.approx(expected.sort_index().to_numpy())
        per_arch = arm_differences(results, "NSS", [arm]).set_index("arch")
        by_hand = expected.groupby(level="arch")
        assert per_arch["mean_difference"].sort_index().to_numpy() == pytest.approx(
            by_hand.mean().sort_index().to_numpy())
        assert per_arch["std_difference"].sort_index().to_numpy() == pytest.approx(
            by_hand.std(ddof=1).sort_index().to_numpy())
        row = arm_summary(results, [arm], ["KLD"]).iloc[0]
        kld = arm_pairs(results, "KLD", arm)["difference"]
        assert row["p_value"] == pytest.approx(wilcoxon(kld).pvalue)
        assert row["arm_better"] == int((kld < 0).sum())  # KLD: lower is better
    # peer-max is the teacher: it has no teacher arm, and is no teacher-arm pair.
    assert "peer-max" not in set(arm_pairs(results, "CC", "teacher")["arch"])
    assert "p_value" in kd_summary(results) and "selfkd_better" in kd_summary(results)
    arms = section(text, "arms")
    assert "Each arm minus the baseline" in arms
    table = tables(arms)[0]
    assert {(r["arm"], r["metric"]) for r in table} == {
        (a, m) for a in ("selfkd", "teacher") for m in ("CC", "NSS", "KLD")}
    diffs = pd.concat([arm_differences(results, m) for m in ("CC", "NSS", "KLD")])
    fig = F.arm_differences(diffs)
    bars = [t for t in fig.data if t.error_x is not None and t.error_x.array is not None]
    assert len(bars) == 6 and all(len(t.error_x.array) == len(t.y) for t in bars)


def test_split_half_line_is_no_ceiling_once_a_model_beats_it(tmp_path: Path) -> None:
    run_dir = make_fake_run(tmp_path, models=False)
    run = load_run(run_dir)
    run.baselines.loc["inter_observer", "CC"] = 0.5  # every model beats it in CC only
    page = build_report(run, tmp_path / "r.html", gallery=0)
    text = page.render()
    assert F.SPLIT_HALF_LABEL in text and "Models beat the split-half" in html.unescape(text)
    cc = F.pareto_2d(run.archive, "CC", run.baselines, run.pareto_ids)
    nss = F.pareto_2d(run.archive, "NSS", run.baselines, run.pareto_ids)
    labels = {a.text for a in cc.layout.annotations}
    assert any(t.startswith(F.SPLIT_HALF_LABEL) for t in labels)
    assert not any("ceiling" in t for t in labels if "inter" in t or "split" in t)
    assert any(t.startswith("inter-observer ceiling") for t in
               (a.text for a in nss.layout.annotations))  # NSS: still a ceiling


def test_rank_fidelity_tile_shows_n_and_p(report) -> None:
    path, _, text = report
    _, stats = load_run(path.parent).fidelity
    cards = html.unescape(section(text, "summary"))
    tile = re.search(r"rank fidelity, Kendall τ<b>([^<]*)<small>\(([^)]*)\)", cards)
    assert tile, cards[:2000]
    assert tile.group(1).strip() == format_number(stats["kendall_tau"])
    assert tile.group(2) == f"n {stats['n']}, p {format_number(stats['p_value'])}"
    assert stats["source"] == "distill/rank_fidelity.json" and stats["sample"] == "fidelity"


def test_3d_view_keeps_its_axis_titles_and_budgets_read_like_their_axis(report) -> None:
    path, _, _ = report
    run = load_run(path.parent)
    fig = F.pareto_3d(run.archive, ["CC", "flops", "params"], run.pareto_ids)
    scene = fig.layout.scene
    assert fig.layout.margin.l <= 20 and fig.layout.margin.b <= 20
    eye = scene.camera.eye
    assert min(eye.x, eye.y) >= 1.5  # pulled back: the default 1.25 clipped the titles
    assert scene.yaxis.title.text == "FLOPs" and scene.zaxis.title.text == "parameters"
    budget = next(a.text for a in F.pareto_2d(run.archive, "CC", run.baselines,
                                              run.pareto_ids, {"flops": 1.5e8}
                                              ).layout.annotations if "budget" in a.text)
    assert budget == "budget 150M"  # as the axis ticks it, not 1.5e+08


def test_pareto_table_has_latency_and_resolution(report) -> None:
    path, _, text = report
    rows = tables(section(text, "models"))[0]
    pareto = pd.read_csv(path.parent / "search" / "pareto.csv", dtype={"id": str})
    assert len(rows) == len(pareto)
    header = set(rows[0])
    assert {"resolution", "search latency (ms, torch)", "latency source",
            "retrained latency (ms)"} <= header
    by_id = {r["id"]: r for r in rows}
    for _, p in pareto.iterrows():
        assert by_id[p["id"]]["resolution"] == R.resolution_of(p["genome"])
        assert by_id[p["id"]]["search latency (ms, torch)"] == format_number(p["latency_ms"])


def test_gallery_colours_come_from_salnas_colormap(monkeypatch: pytest.MonkeyPatch) -> None:
    import salnas.analysis.report as report_mod
    from salnas.colormap import colorize

    assert not hasattr(report_mod, "_viridis")  # one colour map, salnas.colormap's
    seen = []

    def spy(m: np.ndarray) -> np.ndarray:
        seen.append(m.shape)
        return colorize(m)

    monkeypatch.setattr(report_mod, "colorize", spy)
    m = np.outer(np.linspace(0, 1, 60), np.linspace(1, 2, 2 * report_mod.THUMB_WIDTH))
    heat = report_mod._heat(m)
    assert seen == [(30, report_mod.THUMB_WIDTH)]  # the thumbnail, coloured by salnas.colormap
    assert heat.shape == (30, report_mod.THUMB_WIDTH, 3) and heat.dtype == np.uint8


def test_plotlyjs_directory_shares_one_file(report, tmp_path: Path) -> None:
    from plotly.offline import get_plotlyjs

    path, _, _ = report
    out = tmp_path / "reports"
    for name in ("a.html", "b.html"):
        result = runner.invoke(app, ["report", str(path.parent), "--out", str(out / name),
                                     "--gallery", "0", "--plotlyjs", "directory"])
        assert result.exit_code == 0, result.output
    shared = out / "plotly.min.js"
    assert shared.read_text(encoding="utf-8") == get_plotlyjs()
    assert sorted(p.name for p in out.iterdir()) == ["a.html", "b.html", "plotly.min.js"]
    text = (out / "a.html").read_text()
    assert '<script type="text/javascript" src="plotly.min.js"></script>' in text
    assert get_plotlyjs()[:500] not in text
    assert (out / "a.html").stat().st_size < path.stat().st_size / 3
    result = runner.invoke(app, ["report", str(path.parent), "--out", str(out / "c.html"),
                                 "--gallery", "0", "--plotlyjs", "cdn"])
    assert result.exit_code == 2 and not (out / "c.html").exists()
