"""One self-contained HTML report of a run (``salnas report``) or of several (``salnas compare``).

The file embeds plotly.js once, in ``<head>``, and every table as a ``data:`` CSV download,
so it opens from ``file://`` with no network (``plotlyjs="directory"`` instead writes one shared
``plotly.min.js`` beside the report and links it, for folders of many reports). The first
section recommends a model (:mod:`analysis.recommend`); the details follow. Every string read
from a file or a config (names, paths, ids, commands, YAML) goes through :func:`html.escape`
(``esc``) before it enters the page; Plotly's own JSON escapes ``<`` and ``/`` inside scripts.
A section whose stage has not run shows why (:attr:`analysis.load.Run.notes`) instead of
failing, and a figure that fails is reported in the page and in :attr:`Page.problems`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import math
import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import yaml

from salnas.analysis import figures as F
from salnas.analysis import recommend as R
from salnas.analysis.figures import NoData, esc
from salnas.analysis.format import format_number
from salnas.analysis.load import (
    COSTS,
    Run,
    as_dict,
    gene_importance,
    higher_is_better,
    latency_stats,
    load_run,
)
from salnas.colormap import colorize
from salnas.distill.summary import arm_differences, arm_pairs, arm_summary, compared_arms
from salnas.errors import SalnasError
from salnas.io import provenance, write_text_atomic
from salnas.layout import (
    ARCHIVE,
    ARCHIVE_CSV,
    DISTILL,
    DISTILL_JSON,
    HV,
    HV_CSV,
    LUT_JSON,
    ORACLE_METRICS,
    PARETO_CSV,
    PROVENANCE_JSON,
    REPORT_HTML,
    RESULTS_CSV,
    RUN_JSON,
    SEARCH_JSON,
    SPLIT_JSON,
    TRAIN_LOG_CSV,
)

__all__ = ["PLOTLYJS_MODES", "Page", "build_compare", "build_report", "write_compare",
           "write_report"]

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
THUMB_WIDTH = 176  # gallery thumbnails, pixels: 4 images x (3 + models) stay small
CENTRE_BIAS_MAX_TRAIN = 200  # gallery centre bias from at most this many training images
PLOTLYJS_MODES = ("inline", "directory")  # plotly.js in the page, or one shared file beside it
PLOTLYJS_FILE = "plotly.min.js"  # the shared file's name (plotly's include_plotlyjs="directory")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}
header{background:#1f3b57;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:1.5em}
header p{margin:2px 0;opacity:.85;font-size:.9em}
nav{padding:8px 28px;background:#e8eef4;font-size:.9em;position:sticky;top:0;z-index:10}
nav a{margin-right:14px;color:#1f3b57;text-decoration:none}
main{max-width:1280px;margin:0 auto;padding:8px 28px 40px}
section{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:12px 20px;
margin:18px 0}
h2{margin:6px 0 10px;font-size:1.25em;color:#1f3b57}h3{font-size:1.05em;margin:14px 0 6px}
table{border-collapse:collapse;font-size:.85em;margin:6px 0 10px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f0f3f6}td.t,th.t{text-align:left}tr:nth-child(even) td{background:#fafbfc}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:8px 12px;margin:8px 0;
font-size:.9em}
.problem{background:#fdecea;border-left:4px solid #d62728;padding:8px 12px;margin:8px 0}
.caption{color:#555;font-size:.88em;margin:4px 0 10px}
.downloads a{margin-right:12px}pre{background:#f6f8fa;padding:8px;overflow:auto;
font-size:.8em;max-height:420px}
.gallery td,.gallery th{text-align:center;font-size:.75em}.gallery img{display:block;margin:auto}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #dde;border-radius:6px;
padding:8px 14px;background:#f7f9fc;min-width:150px}.card b{display:block;font-size:1.2em}
.scroll{overflow-x:auto;max-width:100%}
"""


# ---------------------------------------------------------------- page assembly
class Page:
    """Sections of one HTML page; figures are numbered, failures collected."""

    def __init__(self, title: str, subtitle: Sequence[str] = ()) -> None:
        self.title = title
        self.subtitle = list(subtitle)
        self.sections: list[tuple[str, str, str]] = []  # (anchor, title, html)
        self.problems: list[str] = []
        self.n_figures = 0

    def section(self, anchor: str, title: str, parts: Sequence[str]) -> None:
        self.sections.append((anchor, title, "\n".join(p for p in parts if p)))

    def figure(self, make: Callable[[], go.Figure], caption: str = "") -> str:
        """The figure ``make()`` builds, or the reason it cannot be drawn."""
        try:
            fig = make()
        except NoData as e:
            return note(str(e))
        except Exception as e:  # a report never crashes on one figure; it says so
            message = f"figure failed: {type(e).__name__}: {e}"
            self.problems.append(message)
            return f'<div class="problem">{esc(message)}</div>'
        self.n_figures += 1
        height = f"{fig.layout.height or 420}px"
        div = pio.to_html(fig, include_plotlyjs=False, full_html=False, config=PLOTLY_CONFIG,
                          div_id=f"figure-{self.n_figures}", default_height=height)
        return div + (f'<p class="caption">{esc(caption)}</p>' if caption else "")

    def guard(self, make: Callable[[], str], what: str) -> str:
        """HTML from ``make()``; an unexpected error becomes a visible problem."""
        try:
            return make()
        except Exception as e:
            message = f"{what} failed: {type(e).__name__}: {e}"
            self.problems.append(message)
            return f'<div class="problem">{esc(message)}</div>'

    def render(self, plotlyjs: str = "inline") -> str:
        """The HTML page; ``plotlyjs`` "inline" embeds plotly.js, "directory" links
        ``plotly.min.js`` beside the page (:func:`write_plotlyjs` writes it)."""
        from plotly.offline import get_plotlyjs

        if plotlyjs not in PLOTLYJS_MODES:
            raise SalnasError(f"plotlyjs must be one of {', '.join(PLOTLYJS_MODES)}, "
                              f"not {plotlyjs!r}")
        # Inline: the file works offline from file://, alone.
        script = (f'<script type="text/javascript">{get_plotlyjs()}</script>'
                  if plotlyjs == "inline" else
                  f'<script type="text/javascript" src="{PLOTLYJS_FILE}"></script>')
        nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in self.sections)
        body = "\n".join(f'<section id="{a}"><h2>{esc(t)}</h2>\n{h}\n</section>'
                         for a, t, h in self.sections)
        sub = "".join(f"<p>{esc(s)}</p>" for s in self.subtitle)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(self.title)}</title>\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<style>{CSS}</style>\n"
            f"{script}\n</head>\n<body>\n"
            f"<header><h1>{esc(self.title)}</h1>{sub}</header>\n<nav>{nav}</nav>\n"
            f"<main>\n{body}\n</main>\n</body>\n</html>\n"
        )


def note(text: str) -> str:
    return f'<div class="note">{esc(text)}</div>'


def _num(v: Any) -> str:
    """A table cell or card value (:func:`analysis.format.format_number`), escaped."""
    return esc(format_number(v))


def table(frame: pd.DataFrame, index: bool = False, max_rows: int | None = 60,
          raw_html: Sequence[str] = ()) -> str:
    """An escaped HTML table (``raw_html`` columns hold HTML this module built)."""
    if frame is None or frame.empty:
        return note("(empty table)")
    data = frame.reset_index() if index else frame
    shown = data if max_rows is None else data.head(max_rows)
    head = "".join(f'<th class="t">{esc(c)}</th>' for c in shown.columns)
    rows = []
    for _, r in shown.iterrows():
        cells = []
        for c in shown.columns:
            v = r[c]
            if c in raw_html:
                cells.append(f'<td class="t">{v}</td>')
            elif isinstance(v, str):
                cells.append(f'<td class="t">{esc(v)}</td>')
            else:
                cells.append(f"<td>{_num(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if max_rows is not None and len(data) > max_rows:
        more = f'<p class="caption">first {max_rows} of {len(data)} rows (download the CSV ' \
               "for all)</p>"
    # Wide tables scroll inside their section instead of widening the page.
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
            f"</tbody></table></div>{more}")


def csv_link(frame: pd.DataFrame, filename: str) -> str:
    """A download link carrying the table as a base64 ``data:`` URI (no file beside it)."""
    if frame is None or frame.empty:
        return ""
    data = base64.b64encode(frame.to_csv(index=False).encode("utf-8")).decode("ascii")
    return (f'<a download="{esc(filename)}" href="data:text/csv;charset=utf-8;base64,{data}">'
            f"{esc(filename)}</a>")


def _href(target: Path, out_dir: Path) -> str:
    rel = os.path.relpath(target.resolve(), out_dir.resolve())
    return esc(urllib.parse.quote(Path(rel).as_posix()))


def _details(summary: str, inner: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{inner}</details>"


# ---------------------------------------------------------------- report of one run
def _accuracy_metrics(run: Run) -> list[str]:
    """Metrics of the archive with scores, search objectives first."""
    have = [m for m in ORACLE_METRICS if m in run.archive and run.archive[m].notna().any()]
    first = [m for m in run.objectives if m in have]
    return first + [m for m in have if m not in first]


def _axes_3d(run: Run) -> list[str]:
    objs = [o for o in run.objectives if o in run.archive]
    if len(objs) == 3:
        return objs
    metric = next(iter(_accuracy_metrics(run)), "CC")
    costs = [c for c in COSTS if c in run.archive and run.archive[c].notna().any()]
    costs = [c for c in objs if c in costs] + [c for c in costs if c not in objs]
    return [metric, *costs[:2]]


def _key_numbers(run: Run) -> str:
    cards: list[tuple[str, str]] = []
    a = run.archive
    if not a.empty:
        feasible = int(a[ARCHIVE.feasible].sum()) if ARCHIVE.feasible in a else len(a)
        cards.append(("architectures evaluated", f"{len(a)} ({feasible} feasible)"))
    if run.pareto_ids:
        cards.append(("on the Pareto front", str(len(run.pareto_ids))))
    if not run.hv_history.empty and HV.hypervolume in run.hv_history:
        cards.append(("final hypervolume", _num(float(run.hv_history[HV.hypervolume].iloc[-1]))))
    if "CC" in a and a["CC"].notna().any():
        cards.append(("best oracle CC", _num(float(a["CC"].max()))))
    _, fidelity = run.fidelity
    if fidelity.get("n"):
        cards.append(("rank fidelity, Kendall τ",
                      f"{_num(fidelity.get('kendall_tau'))} "
                      f"<small>(n {int(fidelity['n'])}, p {_num(fidelity.get('p_value'))})"
                      "</small>"))
    for arm in compared_arms(run.distill):
        pairs = arm_pairs(run.distill, "CC", arm)
        if not pairs.empty:
            label = F.ARM_STYLE.get(arm, (arm,))[0]
            cards.append((f"{label} − baseline test CC",
                          f"{pairs['difference'].mean():+.4f} <small>({len(pairs)} pairs)"
                          "</small>"))
    if not run.stages.empty:
        wall = run.stages["wall_s"].sum(min_count=1)
        kwh = run.stages["energy_kwh"].sum(min_count=1)
        cards.append(("wall time, all stages", "–" if pd.isna(wall) else f"{wall / 60:.1f} min"))
        if pd.notna(kwh):
            cards.append(("energy measured", f"{_num(kwh)} kWh"))
    if not cards:
        return note("no stage has produced results yet")
    return '<div class="cards">' + "".join(
        f'<div class="card">{esc(k)}<b>{v}</b></div>' for k, v in cards) + "</div>"


def _model_link(run: Run, model_dir: Any, out_dir: Path) -> str:
    """A relative link to the model file of one distilled arm (model.pt first), or '–'."""
    files = run.model_files(str(model_dir)) if isinstance(model_dir, str) else []
    if not files:
        return "–"
    f = files[0]
    return f'<a href="{_href(f, out_dir)}">{esc(f"{model_dir}/{f.name}")}</a>'


def _with_links(run: Run, frame: pd.DataFrame, out_dir: Path
                ) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """``frame`` with its ``model_dir`` column turned into links to the model files."""
    if DISTILL.model_dir not in frame:
        return frame, ()
    frame = frame.copy()
    frame["model file"] = [_model_link(run, d, out_dir) for d in frame[DISTILL.model_dir]]
    return frame.drop(columns=DISTILL.model_dir), ("model file",)


def _recommend_section(run: Run, page: Page, out_dir: Path) -> None:
    """The analyst's question first: which model for my budget, where is the knee, and does
    the search beat the hand designs (:mod:`analysis.recommend`)."""
    title = "Which model to use"
    pool, source = R.model_pool(run)
    if pool.empty:
        why = run.note("pareto") if run.distill.empty else run.note("distill")
        page.section("recommend", title, [note(
            "nothing to recommend yet: no retrained Pareto model and no Pareto set (" + why
            + ")")])
        return
    parts = [f'<p class="caption">{esc(R.pool_caption(source, run))} Best = highest CC; '
             "budgets from search.constraints, then the 25th, 50th and 75th percentile of "
             "the candidates' latency, FLOPs and parameters.</p>"]
    best = R.best_per_budget(pool, run.constraints)
    frame, raw = _with_links(run, best, out_dir)
    parts.append(table(frame, raw_html=raw, max_rows=None))
    parts.append("<h3>Knee of the front</h3>")
    knees = R.knees(pool)
    frame, raw = _with_links(run, knees, out_dir)
    parts.append(table(frame, raw_html=raw, max_rows=None) if not knees.empty else
                 note("no cost column to find a knee on"))
    parts.append('<p class="caption">Knee: on the 2-D front of CC against the cost, both '
                 "scaled to [0, 1] over the front, the model farthest from the straight line "
                 "through the front's two ends (distance in those units): past it, cost buys "
                 "little CC.</p>")
    parts.append("<h3>Does the front beat the hand designs?</h3>")
    dominance, missing = R.peer_dominance(run, pool, source)
    if not dominance.empty:
        parts.append(table(dominance, max_rows=None))
        parts.append('<p class="caption">A retrained Pareto model of the same arm dominates a '
                     "peer when its test CC is at least the peer's and its cost at most the "
                     "peer's, one of them strictly; per cost and on every cost together (best "
                     "CC first).</p>")
    if missing:
        parts.append(note("; ".join(missing)))
    page.section("recommend", title, parts)


def _summary_section(run: Run, page: Page) -> None:
    parts = [_key_numbers(run), "<h3>Stages: wall time, energy, CO2</h3>",
             table(run.stages.rename(columns={"wall_s": "wall time (s)",
                                              "energy_kwh": "energy (kWh)",
                                              "co2_kg": "CO2 (kg)"})),
             '<p class="caption">Energy and CO2 are codecarbon\'s offline estimates where a '
             "stage measured them (distill does); '–' means not measured.</p>"]
    data = as_dict(run.config.get("data"))
    info = {"dataset spec": data.get("spec"), "model resolution": data.get("resolution"),
            "sigma_px override": data.get("sigma_px"), "split seed": data.get("split_seed"),
            "seed": run.config.get("seed")}
    sizes = run.split.get("sizes") if isinstance(run.split.get("sizes"), dict) else {
        k: len(run.split[k]) for k in ("train", "val", "test") if isinstance(run.split.get(k),
                                                                            list)}
    if sizes:
        info["split sizes (train/val/test)"] = "/".join(str(sizes.get(k, "?"))
                                                         for k in ("train", "val", "test"))
    if run.baselines_meta.get("data"):
        info["baselines scored on"] = (f"{run.baselines_meta.get('data')} "
                                       f"({run.baselines_meta.get('split', '?')} split, "
                                       f"{run.baselines_meta.get('n_images', '?')} images)")
    parts += ["<h3>Dataset</h3>", table(pd.DataFrame(
        {"setting": list(info), "value": [str(v) if v is not None else "–"
                                          for v in info.values()]}))]
    prov_rows = []
    for stage, prov in run.provenance.items():
        prov_rows.append({"stage": stage, "git commit": str(prov.get("git_commit") or "–"),
                          "command": str(prov.get("command") or "–")})
    parts.append("<h3>Provenance</h3>")
    parts.append(table(pd.DataFrame(prov_rows)) if prov_rows else note(
        run.notes.get("provenance", f"no {RUN_JSON}, {PROVENANCE_JSON}, {SEARCH_JSON} or "
                                 f"{DISTILL_JSON} provenance")))
    versions: dict[str, Any] = {}
    for prov in run.provenance.values():
        if isinstance(prov.get("versions"), dict):
            versions = prov["versions"]
            break
    now = provenance()
    names = list(dict.fromkeys([*versions, *now["versions"]]))
    parts.append(table(pd.DataFrame({
        "package": names, "run": [str(versions.get(n, "–")) for n in names],
        "this report": [str(now["versions"].get(n, "–")) for n in names]})))
    parts.append(f'<p class="caption">report made by git commit '
                 f'{esc(now.get("git_commit") or "unknown")}</p>')
    parts.append("<h3>Configuration</h3>")
    if run.configs:
        for name, text in run.configs.items():
            parts.append(_details(name, f"<pre>{esc(text)}</pre>"))
    else:
        parts.append(note(run.note("config")))
    page.section("summary", "Run summary", parts)


def _baselines_section(run: Run, page: Page) -> None:
    if run.baselines.empty:
        page.section("baselines", "Floor and ceiling", [note(run.note("baselines"))])
        return
    cols = [m for m in run.baselines.columns]
    frame = run.baselines[cols].copy()
    frame.index.name = "reference"
    notes = as_dict(run.baselines_meta.get("notes"))
    caption = " ".join(f"{k}: {v}." for k, v in notes.items() if k in frame.index)
    beaten = list(run.baselines.attrs.get(F.BEATEN, ()))
    if beaten:
        synthetic = ("On synthetic data the observers are drawn from the generating map, which "
                     "is the real ceiling. " if "generating_map" in frame.index else "")
        caption += (f" Models beat the split-half inter-observer score in {', '.join(beaten)}: "
                    f"it is no ceiling there, and those axes label it "
                    f"\"{F.SPLIT_HALF_LABEL}\". {synthetic}")
    page.section("baselines", "Floor and ceiling of the dataset", [
        table(frame, index=True),
        f'<p class="caption">Every accuracy axis below draws the centre-bias floor and the '
        f"inter-observer score as horizontal lines. {esc(caption)}</p>"])


def _training_section(run: Run, page: Page) -> None:
    if run.train_log.empty:
        page.section("supernet", "Supernet training", [note(run.note("train_log"))])
        return
    page.section("supernet", "Supernet training", [
        page.figure(lambda: F.training_curves(run.train_log, run.baselines),
                    "Max, min and the fixed random subnets (supernet.val_random; the same "
                    "genomes every epoch, dashed) validated after BN recalibration at the end "
                    "of every epoch; dashed horizontal lines: the dataset's floor and ceiling "
                    "(test split); dotted: the kept epoch, whose weights the search and "
                    "distillation inherit (supernet.keep)."),
        _details(TRAIN_LOG_CSV, table(run.train_log)),
    ])


def _search_section(run: Run, page: Page) -> None:
    if run.archive.empty:
        page.section("search", "Architecture search", [note(run.note("archive"))])
        return
    parts = []
    search_json_bits = []
    if run.objectives:
        search_json_bits.append(f"objectives {', '.join(run.objectives)}")
    if run.constraints:
        search_json_bits.append("budgets " + ", ".join(f"{k} ≤ {format_number(v)}"
                                                       for k, v in run.constraints.items()))
    search_json_bits.append(f"engine {run.engine}")
    parts.append(f'<p class="caption">{esc("; ".join(search_json_bits))}. Hover a point for '
                 "its id and genome. Oracle scores: supernet weights after BN recalibration, "
                 "on the fixed validation subset.</p>")
    metrics = _accuracy_metrics(run)
    if not metrics:
        parts.append(note("the archive holds no scored accuracy column "
                          f"(looked for {', '.join(ORACLE_METRICS)})"))
    for m in metrics:
        parts.append(page.figure(partial(F.pareto_2d, run.archive, m, run.baselines,
                                         run.pareto_ids, run.constraints)))
    parts.append(page.figure(lambda: F.pareto_3d(run.archive, _axes_3d(run), run.pareto_ids)))
    if run.hv_history.empty:
        parts.append(note(run.note("hv_history")))
    else:
        parts.append(page.figure(lambda: F.hv_history({run.engine: run.hv_history}),
                                 _hv_caption(run)))
    page.section("search", "Architecture search: Pareto fronts", parts)


def _hv_caption(run: Run) -> str:
    hv = as_dict(run.search.get("hypervolume"))
    bounds = hv.get("bounds")
    text = "Hypervolume of the cumulative feasible front, normalised by fixed bounds"
    if isinstance(bounds, dict):
        parts = []
        for k, v in bounds.items():
            shown = (", ".join(format_number(x) for x in v) if isinstance(v, list)
                     else format_number(v))
            parts.append(f"{k} [{shown}]")
        text += " (" + ", ".join(parts) + ")"
    return text + "; runs with the same objectives and bounds are comparable."


def _genes_section(run: Run, page: Page) -> None:
    if run.genes.empty:
        page.section("genes", "Genes", [note(run.notes.get("genes", run.note("archive")))])
        return
    metric = "CC" if "CC" in run.archive else next(iter(_accuracy_metrics(run)), None)
    if metric is None:
        page.section("genes", "Genes", [note("no scored accuracy column to relate genes to")])
        return
    target = run.archive[metric].where(run.archive.get(ARCHIVE.feasible, True))
    parts = []
    order: list[str] = []
    try:
        imp, method = gene_importance(run.genes, target, higher_is_better(metric),
                                      run.gene_labels)
        order = list(imp["gene"])
        parts.append(page.figure(lambda: F.gene_importance_bar(imp, method, metric),
                                 f"Method: {method}."))
    except ValueError as e:
        parts.append(note(str(e)))
    parts.append(page.figure(
        lambda: F.parallel_genes(run.genes, target, metric, run.gene_labels, order),
        "Genes decoded from the genome JSON: resolution = input height; s{i}.depth = blocks "
        "of stage i; s{i}.kernel / s{i}.expand = mean over its active blocks; d{l}.* = decoder "
        "level l (skip 0/1, op in cost order, width). Drag along an axis to filter."))
    page.section("genes", f"Genes against {metric}", parts)


def _retrain_section(run: Run, page: Page) -> None:
    if run.distill.empty:
        page.section("retrain", "Retrained architectures", [note(run.note("distill"))])
        return
    parts = ["<h3>Rank fidelity of the oracle</h3>"]
    table_, stats = run.fidelity
    parts.append(page.figure(
        lambda: F.rank_fidelity_scatter(table_, stats, "CC", run.baselines),
        "Does the supernet rank architectures as standalone training does? x: the oracle's CC "
        "(search_CC); y: test CC after retraining (mean over seeds). With a rank-fidelity "
        "sample (distill.fidelity) only its architectures count, at their one short budget; "
        "else the baseline arm of the retrained architectures. τ: Kendall, ρ: Spearman, p: "
        "permutation p-value of τ, from 3 architectures on."))
    shown = {k: stats.get(k) for k in ("n", "sample", "kendall_tau", "spearman_rho", "p_value",
                                       "fidelity_epochs", "method", "source") if k in stats}
    parts.append(table(pd.DataFrame({"statistic": list(shown),
                                     "value": [v if isinstance(v, int | float) and not
                                               isinstance(v, bool) else str(v)
                                               for v in shown.values()]})))
    page.section("retrain", "Retrained architectures: rank fidelity", parts)


def _arms_section(run: Run, page: Page) -> None:
    if run.distill.empty:
        page.section("arms", "Arms and hand-designed peers", [note(run.note("distill"))])
        return
    models = R.retrained_models(run.distill)
    parts = [page.figure(
        lambda: F.retrained_fronts(models, "CC", run.baselines),
        "Each arm's retrained Pareto architectures (test split, mean over seeds) with that "
        "arm's 2-D front, on the same axes; every hand-designed peer with its own marker "
        "(star: max subnet, diamond: Lite0 + small decoder, square: CSNet, triangle: pruned "
        "CSNet) and its name, coloured by arm. Latency as distill measured it.")]
    arms = compared_arms(run.distill)
    teacher = run.distill_meta.get("teacher")
    diffs = pd.concat([arm_differences(run.distill, m) for m in R.METRICS],
                      ignore_index=True)
    parts.append(page.figure(
        lambda: F.arm_differences(diffs, R.METRICS),
        "Paired by architecture and seed (same initialisation): each point is the mean over "
        "seeds of arm − baseline, the bar ± its std over seeds (none with one seed). The "
        "baseline learns from the ground truth only" + (f"; teacher: {teacher}" if teacher
                                                         else "") + "."))
    summary = arm_summary(run.distill, arms, R.METRICS)
    if not summary.empty:
        parts.append(table(summary))
        parts.append('<p class="caption">mean_difference = arm − baseline over (architecture, '
                     "seed) pairs; arm_better counts the pairs where the arm is better in the "
                     "metric's own direction; p_value: two-sided Wilcoxon signed-rank test of "
                     "the pairs (salnas.distill.summary).</p>")
    page.section("arms", "Retrained models: arms and hand-designed peers", parts)


def _latency_section(run: Run, page: Page) -> None:
    if run.latency.empty:
        page.section("latency", "Latency predictor", [note(run.note("latency"))])
        return
    stats = latency_stats(run.latency)
    parts = [page.figure(lambda: F.latency_scatter(run.latency, stats),
                         "RMSE of the relative error and Kendall τ per source; batch 1."),
             table(stats)]
    lut = run.lut
    if lut:
        device = as_dict(lut.get("device"))
        parts.append(f'<p class="caption">{LUT_JSON}: device {esc(device.get("name", "?"))}, '
                     f'{esc(lut.get("threads", "?"))} thread(s).</p>')
    page.section("latency", "Latency predictor against measurement", parts)


def _pareto_models(run: Run, out_dir: Path) -> pd.DataFrame:
    """Pareto architectures with their retrained scores and relative links to model files."""
    if run.pareto.empty:
        return pd.DataFrame()
    p = run.pareto
    keep = [c for c in (ARCHIVE.id, *ORACLE_METRICS, *COSTS, ARCHIVE.latency_source) if c in p]
    frame = p[keep].copy()
    # Latency and resolution always have a column ('–' where the search recorded none).
    if ARCHIVE.latency not in frame:
        frame[ARCHIVE.latency] = math.nan
    frame["resolution"] = (p[ARCHIVE.genome].map(R.resolution_of) if ARCHIVE.genome in p
                           else "")
    by = next((c for c in COSTS if c in frame and frame[c].notna().any()), None)
    if by is not None:
        frame = frame.sort_values(by, ignore_index=True)
    if not run.distill.empty and DISTILL.arch in run.distill:
        d = run.distill
        arms = [DISTILL.baseline, *compared_arms(d)]
        for arm in arms:
            col = DISTILL.test_prefix + "CC"
            part = d[d[DISTILL.arm] == arm] if DISTILL.arm in d else d.iloc[0:0]
            if col in part:
                frame[f"test CC {arm}"] = frame[ARCHIVE.id].map(part.groupby(DISTILL.arch)[col]
                                                                .mean())
        if DISTILL.latency in d:
            frame["retrained latency (ms)"] = frame[ARCHIVE.id].map(
                d.groupby(DISTILL.arch)[DISTILL.latency].median())
        links = []
        for arch in frame[ARCHIVE.id]:
            rows = d[d[DISTILL.arch] == arch]
            bits = []
            for _, r in rows.iterrows():
                for f in run.model_files(str(r.get(DISTILL.model_dir, ""))):
                    label = f"{r.get(DISTILL.model_dir, '')}/{f.name}"
                    bits.append(f'<a href="{_href(f, out_dir)}">{esc(label)}</a>')
            links.append("<br>".join(dict.fromkeys(bits)) or "–")
        frame["model files"] = links
    keep_empty = {ARCHIVE.latency}
    frame = frame[[c for c in frame.columns if c in keep_empty or frame[c].notna().any()]]
    return frame.rename(columns={**{m: f"oracle {m}" for m in ORACLE_METRICS},
                                 ARCHIVE.latency: f"search latency (ms, {R.latency_backend(run)})",
                                 ARCHIVE.latency_source: "latency source"})



def _models_section(run: Run, page: Page, out_dir: Path) -> None:
    frame = _pareto_models(run, out_dir)
    if frame.empty:
        page.section("models", "Pareto models", [note(run.note("pareto"))])
        return
    parts = [table(frame, raw_html=("model files",), max_rows=None)]
    if "model files" not in frame:
        parts.append(note(run.note("distill")))
    else:
        parts.append('<p class="caption">Links are relative to this report: keep it inside the '
                     "run directory (or move the folder with it).</p>")
    page.section("models", "Pareto models and their files", parts)


def _downloads_section(run: Run, page: Page) -> None:
    genes = run.genes.copy()
    if not genes.empty and ARCHIVE.id in run.archive:
        genes.insert(0, ARCHIVE.id, run.archive[ARCHIVE.id])
    fidelity, _ = run.fidelity
    pool, _ = R.model_pool(run)
    pairs = [arm_pairs(run.distill, m, arm).assign(metric=m, arm=arm)
             for arm in compared_arms(run.distill) for m in R.METRICS]
    pairs = [p for p in pairs if not p.empty]
    tables = {"recommendation.csv": R.best_per_budget(pool, run.constraints),
              ARCHIVE_CSV: run.archive, PARETO_CSV: run.pareto,
              HV_CSV: run.hv_history, TRAIN_LOG_CSV: run.train_log,
              "baselines.csv": run.baselines.reset_index(names="reference")
              if not run.baselines.empty else run.baselines,
              "genes.csv": genes, "distill_results.csv": run.distill,
              "rank_fidelity.csv": fidelity,
              "arm_pairs.csv": pd.concat(pairs, ignore_index=True) if pairs else None,
              "arm_summary.csv": arm_summary(run.distill),
              "latency.csv": run.latency, "stages.csv": run.stages}
    links = [csv_link(f, n) for n, f in tables.items()
             if isinstance(f, pd.DataFrame) and not f.empty]
    page.section("downloads", "Downloads", [
        '<p class="downloads">' + " ".join(links) + "</p>" if links else note("no tables"),
        '<p class="caption">CSV files embedded in this page (data: URIs): nothing to fetch.</p>'])


def _notes_section(run: Run, page: Page) -> None:
    items = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in run.notes.items())
    problems = "".join(f"<li>{esc(p)}</li>" for p in page.problems)
    parts = [f"<ul>{items}</ul>" if items else "<p>Every file was found.</p>"]
    if problems:
        parts.append(f'<div class="problem">Problems while building this report:<ul>{problems}'
                     "</ul></div>")
    page.section("notes", "What is missing", parts)


def build_report(run: Run, out_path: Path, gallery: int = 4, gallery_models: int = 4
                 ) -> Page:
    """The report page of ``run`` (``out_path`` anchors the relative links)."""
    out_dir = Path(out_path).resolve().parent
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = Page(f"salnas report: {run.name}", [str(run.path.resolve()), f"made {stamp}"])
    if not run.baselines.empty:  # where a model beats the split-half line, it is no ceiling
        run.baselines = F.label_references(run.baselines, _best_scores(run))
    sections: list[tuple[str, str, Callable[[], None]]] = [
        ("recommend", "Which model to use", lambda: _recommend_section(run, page, out_dir)),
        ("summary", "Run summary", lambda: _summary_section(run, page)),
        ("baselines", "Floor and ceiling", lambda: _baselines_section(run, page)),
        ("supernet", "Supernet training", lambda: _training_section(run, page)),
        ("search", "Architecture search", lambda: _search_section(run, page)),
        ("genes", "Genes", lambda: _genes_section(run, page)),
        ("retrain", "Retrained architectures", lambda: _retrain_section(run, page)),
        ("arms", "Arms and hand-designed peers", lambda: _arms_section(run, page)),
        ("latency", "Latency predictor", lambda: _latency_section(run, page)),
    ]
    if gallery > 0:
        sections.append(("gallery", "Saliency gallery", lambda: page.section(
            "gallery", "Saliency gallery",
            [page.guard(lambda: gallery_html(run, gallery, gallery_models), "the gallery")])))
    sections += [("models", "Pareto models", lambda: _models_section(run, page, out_dir)),
                 ("downloads", "Downloads", lambda: _downloads_section(run, page))]
    for anchor, title, build in sections:
        try:
            build()
        except Exception as e:  # data no one foresaw: that section says so, the rest stands
            message = f"section '{title}' failed: {type(e).__name__}: {e}"
            page.problems.append(message)
            page.section(anchor, title, [f'<div class="problem">{esc(message)}</div>'])
    _notes_section(run, page)
    return page


def _best_scores(run: Run) -> dict[str, float]:
    """The best score of any model per metric: oracle scores of the archive and retrained
    test scores (what the split-half inter-observer line is compared with)."""
    best: dict[str, float] = {}
    for m in ORACLE_METRICS:
        values = []
        if m in run.archive:
            values.append(run.archive[m])
        col = DISTILL.test_prefix + m
        if col in run.distill:
            values.append(run.distill[col])
        scores = pd.concat(values).dropna() if values else pd.Series(dtype=float)
        if len(scores):
            best[m] = float(scores.max() if higher_is_better(m) else scores.min())
    return best


def write_plotlyjs(folder: Path) -> Path:
    """``folder/plotly.min.js``, the plotly.js that reports made with
    ``plotlyjs="directory"`` link; rewritten only when it differs from this plotly's."""
    from plotly.offline import get_plotlyjs

    path = Path(folder) / PLOTLYJS_FILE
    text = get_plotlyjs()
    try:
        same = path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        write_text_atomic(path, text)
    return path


def _write_page(page: Page, out_path: Path, plotlyjs: str) -> None:
    text = page.render(plotlyjs)  # validates plotlyjs before anything is written
    if plotlyjs == "directory":
        write_plotlyjs(out_path.parent)
    write_text_atomic(out_path, text)


def write_report(run_dir: str | Path, out: str | Path | None = None, gallery: int = 4,
                 gallery_models: int = 4, plotlyjs: str = "inline") -> tuple[Path, Page]:
    """Load ``run_dir``, build its report and write it atomically (default RUN_DIR/report.html).

    ``plotlyjs``: "inline" (default) embeds plotly.js, a self-contained file; "directory"
    writes one ``plotly.min.js`` beside the report and links it (many reports, one copy).
    """
    run = load_run(run_dir)
    out_path = Path(out) if out is not None else run.path / REPORT_HTML
    page = build_report(run, out_path, gallery, gallery_models)
    _write_page(page, out_path, plotlyjs)
    return out_path, page


# ---------------------------------------------------------------- comparison of runs
def run_labels(paths: Sequence[Path]) -> list[str]:
    """Folder names, made unique with the parent folder, then a counter."""
    names = [p.resolve().name for p in paths]
    out = []
    for p, n in zip(paths, names, strict=True):
        label = n if names.count(n) == 1 else f"{p.resolve().parent.name}/{n}"
        while label in out:
            label += "'"
        out.append(label)
    return out


def _compare_summary(runs: Mapping[str, Run]) -> pd.DataFrame:
    rows = []
    for label, run in runs.items():
        a = run.archive
        hv = run.hv_history
        rows.append({
            "run": label, "engine": run.engine,
            "objectives": ", ".join(run.objectives) or "–",
            "budgets": ", ".join(f"{k} ≤ {format_number(v)}" for k, v in run.constraints.items())
            or "–",
            "evaluated": len(a),
            "feasible": int(a[ARCHIVE.feasible].sum()) if ARCHIVE.feasible in a else math.nan,
            "pareto": len(run.pareto_ids),
            "final HV": float(hv[HV.hypervolume].iloc[-1]) if HV.hypervolume in hv and len(hv)
            else math.nan,
            "best CC": float(a["CC"].max()) if "CC" in a and a["CC"].notna().any() else math.nan,
            "dataset": str(as_dict(run.config.get("data")).get("spec", "–")),
        })
    return pd.DataFrame(rows)


def _hv_bounds(run: Run) -> str:
    hv = run.search.get("hypervolume")
    return yaml.safe_dump(hv.get("bounds"), sort_keys=True) if isinstance(hv, dict) else ""


def build_compare(paths: Sequence[Path]) -> Page:
    """One page overlaying the fronts and hypervolume histories of several runs."""
    labels = run_labels(list(paths))
    runs = {label: load_run(p) for label, p in zip(labels, paths, strict=True)}
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = Page(f"salnas compare: {', '.join(labels)}",
                [*(str(Path(p).resolve()) for p in paths), f"made {stamp}"])
    summary = _compare_summary(runs)
    parts = [table(summary), csv_link(summary, "runs.csv")]
    objectives = {tuple(r.objectives) for r in runs.values() if r.objectives}
    bounds = {_hv_bounds(r) for r in runs.values() if _hv_bounds(r)}
    if len(objectives) > 1 or len(bounds) > 1:
        parts.append(note("the runs differ in objectives or hypervolume bounds: their "
                          "hypervolumes are not comparable (the fronts still are)"))
    page.section("runs", "Runs", parts)
    specs = {str(r.config.get("data", {}).get("spec")) for r in runs.values()
             if isinstance(r.config.get("data"), dict)}
    with_refs = [r for r in runs.values() if not r.baselines.empty]
    baselines = with_refs[0].baselines if with_refs and len(specs) <= 1 else pd.DataFrame()
    fronts = []
    if with_refs and len(specs) > 1:
        fronts.append(note("the runs use different datasets: no floor / ceiling lines"))
    archives = {k: r.archive for k, r in runs.items() if not r.archive.empty}
    metrics = [m for m in ORACLE_METRICS if any(m in a and a[m].notna().any()
                                          for a in archives.values())]
    if not archives:
        fronts.append(note(f"no run has an {ARCHIVE_CSV}"))
    for m in metrics:
        fronts.append(page.figure(partial(F.compare_fronts, archives, m, baselines)))
    page.section("fronts", "Fronts", fronts)
    histories = {k: r.hv_history for k, r in runs.items() if not r.hv_history.empty}
    page.section("hypervolume", "Hypervolume", [
        page.figure(lambda: F.hv_history(histories)) if histories else
        note(f"no run has an {HV_CSV}")])
    items = "".join(f"<li><b>{esc(label)}</b>: {esc(k)}: {esc(v)}</li>"
                    for label, r in runs.items() for k, v in r.notes.items())
    problems = "".join(f"<li>{esc(p)}</li>" for p in page.problems)
    page.section("notes", "What is missing", [
        f"<ul>{items}</ul>" if items else "<p>Every file was found.</p>",
        f'<div class="problem"><ul>{problems}</ul></div>' if problems else ""])
    return page


def write_compare(paths: Sequence[str | Path], out: str | Path, plotlyjs: str = "inline"
                  ) -> tuple[Path, Page]:
    """Build the comparison of ``paths`` and write it atomically to ``out`` (``plotlyjs`` as
    for :func:`write_report`)."""
    dirs = [Path(p) for p in paths]
    if len(dirs) < 2:
        raise SalnasError("salnas compare needs two or more run directories")
    for d in dirs:
        if not d.is_dir():
            raise SalnasError(f"{d} is not a run directory (no such folder)")
    page = build_compare(dirs)
    _write_page(page, Path(out), plotlyjs)
    return Path(out), page


def png_data_uri(rgb: np.ndarray) -> str:
    """A uint8 RGB array as a base64 PNG ``data:`` URI."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---------------------------------------------------------------- saliency gallery
def _thumb(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    size = (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))


def _heat(m: np.ndarray) -> np.ndarray:
    """A saliency map (any scale) as a Viridis thumbnail, min-max scaled
    (:func:`salnas.colormap.colorize`, the one colour map of salnas)."""
    from salnas.datasets.prepare import resize_map

    h, w = m.shape
    small = resize_map(np.asarray(m, np.float32), (max(1, round(h * THUMB_WIDTH / w)),
                                                    THUMB_WIDTH))
    return colorize(small)


def _with_fixations(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from PIL import Image, ImageDraw

    thumb = Image.fromarray(_thumb(image))
    scale = THUMB_WIDTH / image.shape[1]
    draw = ImageDraw.Draw(thumb)
    for xi, yi in zip(x * scale, y * scale, strict=True):
        draw.ellipse((xi - 2, yi - 2, xi + 2, yi + 2), fill=(255, 40, 40), outline=(255, 255, 255))
    return np.asarray(thumb)


def _gallery_models(run: Run, max_models: int) -> list[tuple[str, Path, str]]:
    """(arch, model.pt, caption) of up to ``max_models`` distilled Pareto models, spread over
    their cost (Self-KD arm preferred, lowest seed)."""
    d = run.distill
    if d.empty or not {DISTILL.arch, DISTILL.model_dir} <= set(d.columns):
        return []
    if DISTILL.kind in d:
        d = d[d[DISTILL.kind] == DISTILL.pareto_kind]
    rows = []
    for arch, part in d.groupby(DISTILL.arch, sort=False):
        if DISTILL.arm in part:
            part = part.assign(_pref=(part[DISTILL.arm] != DISTILL.selfkd).astype(int))
            part = part.sort_values(["_pref", *([DISTILL.seed] if DISTILL.seed in part else [])])
        for _, r in part.iterrows():
            path = next((f for f in run.model_files(str(r[DISTILL.model_dir]))
                         if f.suffix == ".pt"), None)
            if path is not None:
                cost = r.get(DISTILL.flops, math.nan)
                rows.append((str(arch), path, str(r.get(DISTILL.arm, "")),
                             float(cost) if pd.notna(cost) else math.nan))
                break
    rows.sort(key=lambda r: (math.isnan(r[3]), r[3]))
    if len(rows) > max_models:
        pick = np.unique(np.linspace(0, len(rows) - 1, max_models).round().astype(int))
        rows = [rows[i] for i in pick]
    return [(a, p, f"{a} ({arm}" + (f", {format_number(c)} FLOPs)" if np.isfinite(c) else ")"))
            for a, p, arm, c in rows]


def _gallery_cell(uri: str, text: str, stem: str) -> str:
    img = f'<img src="{uri}" alt="{esc(text or stem)}">' if uri else ""
    return f"<td>{img}{esc(text)}</td>"


def gallery_html(run: Run, n_images: int = 4, max_models: int = 4) -> str:
    """Test images with fixations, ground truth, centre bias and the Pareto models'
    predictions (distilled model files), as base64 PNG thumbnails with each map's CC."""
    import torch

    threads = torch.get_num_threads()
    # One thread: a few small forward passes gain nothing from more, and on a shared
    # machine two spinning threads were 100x slower than one here.
    torch.set_num_threads(1)
    try:
        return _gallery(run, n_images, max_models)
    finally:
        torch.set_num_threads(threads)


def _gallery(run: Run, n_images: int, max_models: int) -> str:
    import torch

    from salnas import metrics
    from salnas.datasets import ground_truth, open_source
    from salnas.errors import SalnasError
    from salnas.evaluation import centre_bias_map
    from salnas.supernet.subnet import load_subnet, predict_image

    models = _gallery_models(run, max_models)
    if not models:
        return note("no distilled Pareto model file (distill/<arch>/<arm>/model.pt) to predict "
                    "with: " + (run.note("distill") if run.distill.empty else
                                f"{RESULTS_CSV} names no existing model.pt"))
    data = as_dict(run.config.get("data"))
    spec, sigma = data.get("spec"), data.get("sigma_px")
    test = run.split.get("test") if isinstance(run.split.get("test"), list) else []
    train = run.split.get("train") if isinstance(run.split.get("train"), list) else []
    if not spec or not test or not train:
        return note("the gallery needs the run's dataset spec (config.yaml data.spec) and "
                    f"{SPLIT_JSON} with train and test images")
    try:
        source = open_source(str(spec))
        known = set(source.stems())
    except SalnasError as e:
        return note(f"the dataset {spec} cannot be opened here, so no gallery: {e}")
    stems = [s for s in test if s in known][:n_images]
    if not stems:
        return note(f"none of the split's test images is in the dataset {spec}")
    loaded: list[tuple[str, Any, str]] = []
    for _, path, caption in models:
        try:
            net, genome, _, _ = load_subnet(path)
        except SalnasError as e:
            loaded.append((caption, None, str(e)))
            continue
        loaded.append((caption, (net, tuple(genome.resolution)), ""))
    bias = centre_bias_map(source, [s for s in train if s in known][:CENTRE_BIAS_MAX_TRAIN],
                           sigma, progress=False)

    def cc(pred: np.ndarray, density: np.ndarray) -> float:
        p = metrics.resize_to(torch.from_numpy(np.asarray(pred, np.float32))[None],
                              density.shape)
        return float(metrics.cc(p, torch.from_numpy(density)[None])[0])

    head = ["image + fixations", "ground truth", "centre bias",
            *(c for c, _, _ in loaded)]
    rows = []
    for stem in stems:
        image = source.load_image(stem)
        density, _, fix = ground_truth(source, stem, None, sigma)
        cells = [(png_data_uri(_with_fixations(image, fix.x, fix.y)),
                  f"{stem}: {len(fix)} fixations"),
                 (png_data_uri(_heat(density)), "")]
        cells.append((png_data_uri(_heat(bias)), f"CC {cc(bias, density):.3f}"))
        for _, model, why in loaded:
            if model is None:
                cells.append(("", f"not loadable: {why}"))
                continue
            pred = predict_image(model[0], image, model[1])
            cells.append((png_data_uri(_heat(pred)), f"CC {cc(pred, density):.3f}"))
        rows.append("<tr>" + "".join(_gallery_cell(uri, text, stem) for uri, text in cells)
                    + "</tr>")
    thead = "".join(f"<th>{esc(h)}</th>" for h in head)
    return (f'<table class="gallery"><thead><tr>{thead}</tr></thead><tbody>{"".join(rows)}'
            "</tbody></table>"
            f'<p class="caption">{len(stems)} test images of {esc(spec)}; maps scaled to '
            "their own range (Viridis, min-max); CC against the ground truth at the original "
            f"size. Centre bias: mean training density (at most {CENTRE_BIAS_MAX_TRAIN} "
            "images). Models: Self-KD arm where present, spread along the front by FLOPs.</p>")
