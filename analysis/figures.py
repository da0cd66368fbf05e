"""Plotly figures of a run, each a function of tables from :mod:`analysis.load`.

A figure function raises :class:`NoData` (with a sentence for the reader) when its tables
cannot support it; :mod:`analysis.report` shows that sentence in place of the figure.
Every string that comes from a file (ids, genomes, folder names) is HTML-escaped before it
reaches Plotly, whose labels understand a subset of HTML.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from salnas.analysis.format import format_number
from salnas.analysis.load import (
    COST_LABELS,
    COSTS,
    RANDOM_SUBNET,
    higher_is_better,
    validated_subnets,
    varying_genes,
)
from salnas.layout import (
    ARCHIVE,
    DISTILL,
    HV,
    HV_CSV,
    ORACLE_METRICS,
    PARETO_CSV,
    TRAIN_LOG,
    TRAIN_LOG_CSV,
)

__all__ = [
    "NoData",
    "arm_differences",
    "compare_fronts",
    "fidelity_label",
    "front_2d",
    "gene_importance_bar",
    "hv_history",
    "kd_dumbbell",
    "label_references",
    "latency_scatter",
    "parallel_genes",
    "pareto_2d",
    "pareto_3d",
    "rank_fidelity_scatter",
    "retrained_fronts",
    "training_curves",
]

TEMPLATE = "plotly_white"
REFERENCE_STYLE = {  # baselines.json key -> (label, colour, dash)
    "centre_bias": ("centre-bias floor", "#8c564b", "dash"),
    "inter_observer": ("inter-observer ceiling", "#2ca02c", "dash"),
    "generating_map": ("generating map (synthetic truth)", "#7f7f7f", "dot"),
}
# Above this many archive rows only Pareto-set members carry their genome in the hover text:
# a genome is ~500 characters, repeated in every panel (5 metrics x 3 costs).
GENOME_HOVER_MAX = 1500
ARM_STYLE = {DISTILL.baseline: ("baseline (ground truth only)", "#1f77b4"),
             DISTILL.selfkd: ("Self-KD", "#d62728"),
             DISTILL.teacher: ("teacher KD", "#2ca02c")}
# The fixed random subnets of the training curves (dashed, beside max blue and min orange).
RANDOM_COLOURS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
# Hand-designed peers on the retrained fronts: one marker each (others get the last).
PEER_SYMBOLS = {"peer-max": "star", "peer-fpn": "diamond", "peer-csnet": "square",
                "peer-csnet-dwd": "triangle-up", "": "cross"}
# The inter-observer line where a model beats it: split-half observers are no ceiling (on
# synthetic data the generating map is; on real data more observers would score higher).
SPLIT_HALF_LABEL = "split-half observers"
BEATEN = "beaten"  # baselines.attrs key: metrics whose inter-observer score a model beats


class NoData(Exception):
    """The tables cannot support this figure; the message says why, for the reader."""


def esc(value: Any) -> str:
    """HTML-escaped text (Plotly labels render a subset of HTML)."""
    return html.escape(str(value))


def _num(v: Any) -> str:
    """A number for a label (:func:`analysis.format.format_number`), escaped."""
    return esc(format_number(v))


def _better(metric: str) -> str:
    return "higher" if higher_is_better(metric) else "lower"


def _wrap(text: str, width: int = 72, lines: int = 8) -> str:
    """Escaped text cut into hover lines (a genome JSON is several hundred characters)."""
    parts = textwrap.wrap(str(text), width) or [""]
    if len(parts) > lines:
        parts = [*parts[: lines - 1], parts[lines - 1][: width - 1] + "…"]
    return "<br>".join(esc(p) for p in parts)


def _layout(fig: go.Figure, title: str, height: int = 420, **kw: Any) -> go.Figure:
    kw = {"margin": {"l": 60, "r": 20, "t": 60, "b": 50},
          "legend": {"orientation": "h", "y": -0.18, "x": 0}, **kw}
    fig.update_layout(template=TEMPLATE, title={"text": esc(title), "x": 0.01}, height=height,
                      **kw)
    return fig


def label_references(baselines: pd.DataFrame, best: Mapping[str, float]) -> pd.DataFrame:
    """A copy of ``baselines`` that remembers the metrics (``best``: the best model score per
    metric) where a model beats the inter-observer score: there its line is labelled
    "split-half observers", not a ceiling."""
    out = baselines.copy()
    beaten = []
    if "inter_observer" in out.index:
        for metric, score in best.items():
            if metric not in out.columns or not np.isfinite(score):
                continue
            ref = float(out.loc["inter_observer", metric])
            if np.isfinite(ref) and (score > ref if higher_is_better(metric) else score < ref):
                beaten.append(metric)
    out.attrs[BEATEN] = beaten
    return out


def reference_label(baselines: pd.DataFrame | None, ref: str, metric: str | None = None
                    ) -> str:
    """The label of reference line ``ref`` on a ``metric`` axis (None: on any axis)."""
    label = REFERENCE_STYLE[ref][0]
    beaten = list((baselines.attrs if baselines is not None else {}).get(BEATEN, ()))
    if ref == "inter_observer" and (metric in beaten if metric else bool(beaten)):
        return SPLIT_HALF_LABEL
    return label


def _reference_lines(fig: go.Figure, baselines: pd.DataFrame | None, metric: str,
                     row: int | None = None, col: int | None = None,
                     annotate: bool = True, axis: str = "y") -> None:
    """Floor / ceiling lines of the dataset on a ``metric`` axis (horizontal on y)."""
    if baselines is None or baselines.empty or metric not in baselines.columns:
        return
    for ref, (_, colour, dash) in REFERENCE_STYLE.items():
        if ref not in baselines.index or not np.isfinite(baselines.loc[ref, metric]):
            continue
        label = reference_label(baselines, ref, metric)
        value = float(baselines.loc[ref, metric])
        kwargs: dict[str, Any] = {axis: value, "line": {"color": colour, "dash": dash,
                                                        "width": 1.5}}
        if annotate:
            kwargs.update(annotation_text=esc(f"{label} {value:.3f}"),
                          annotation_position="top left",
                          annotation_font={"size": 10, "color": colour})
            if axis == "x":  # vertical lines: labels along the line, so they never collide
                kwargs.update(annotation_textangle=-90, annotation_position="bottom left")
        if row is not None:
            kwargs.update(row=row, col=col)
        (fig.add_hline if axis == "y" else fig.add_vline)(**kwargs)


def _hover(frame: pd.DataFrame, metric_cols: Sequence[str], genome: bool = True) -> list[str]:
    out = []
    for _, r in frame.iterrows():
        bits = [f"<b>id {esc(r.get(ARCHIVE.id, ''))}</b>"]
        if ARCHIVE.generation in r and pd.notna(r[ARCHIVE.generation]):
            bits.append(f"generation {int(r[ARCHIVE.generation])}")
        bits += [f"{esc(c)} {_num(r[c])}" for c in metric_cols if c in r and pd.notna(r[c])]
        if genome and r.get(ARCHIVE.genome):
            bits.append(_wrap(r[ARCHIVE.genome]))
        out.append("<br>".join(bits))
    return out


def _scored(archive: pd.DataFrame, metric: str) -> pd.DataFrame:
    if metric not in archive:
        return archive.iloc[0:0]
    mask = archive[metric].notna()
    if ARCHIVE.feasible in archive:
        mask &= archive[ARCHIVE.feasible]
    return archive[mask]


def front_2d(frame: pd.DataFrame, metric: str, cost: str) -> pd.DataFrame:
    """Rows of ``frame`` not dominated in (``metric``, ``cost``), sorted by cost."""
    data = frame.dropna(subset=[metric, cost]).sort_values(
        [cost, metric], ascending=[True, not higher_is_better(metric)], kind="stable")
    keep, best = [], -math.inf
    sign = 1.0 if higher_is_better(metric) else -1.0
    for i, v in zip(data.index, data[metric], strict=True):
        if sign * v > best:
            keep.append(i)
            best = sign * v
    return data.loc[keep]


# ---------------------------------------------------------------- supernet training
def training_curves(train_log: pd.DataFrame, baselines: pd.DataFrame | None = None
                    ) -> go.Figure:
    """Validation metrics per epoch of the max and min subnets and of the fixed random ones
    (``val_rand<k>_*``, supernet.val_random), and the training losses."""
    ep = TRAIN_LOG.epoch
    if train_log.empty or ep not in train_log:
        raise NoData(f"{TRAIN_LOG_CSV} has no rows (or no '{ep}' column)")
    tags = validated_subnets(train_log.columns)
    metrics = [m for m in ORACLE_METRICS if any(TRAIN_LOG.val(t, m) in train_log for t in tags)]
    losses = [c for c in train_log.columns if c.startswith(TRAIN_LOG.loss_prefix)]
    panels = [*metrics, *(["losses"] if losses else [])]
    if not panels:
        raise NoData(f"{TRAIN_LOG_CSV} has neither val_max_*/val_min_* nor "
                     f"{TRAIN_LOG.loss_prefix}* columns")
    cols = 3
    rows = math.ceil(len(panels) / cols)
    titles = [f"val {m} ({_better(m)} is better)"
              if m != "losses" else "training losses" for m in panels]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[esc(t) for t in titles],
                        horizontal_spacing=0.07, vertical_spacing=0.14)
    x = train_log[ep]
    for k, m in enumerate(panels):
        r, c = k // cols + 1, k % cols + 1
        if m == "losses":
            for j, name in enumerate(losses):
                fig.add_trace(go.Scatter(x=x, y=train_log[name], mode="lines+markers",
                                         name=esc(name), legendgroup=esc(name),
                                         line={"color": f"hsl({40 + 50 * j},60%,45%)"}),
                              row=r, col=c)
            continue
        for j, tag in enumerate(tags):
            col = TRAIN_LOG.val(tag, m)
            if col not in train_log:
                continue
            name, line = _subnet_style(tag, j)
            fig.add_trace(go.Scatter(x=x, y=train_log[col], mode="lines+markers", name=name,
                                     legendgroup=name, showlegend=k == 0, line=line,
                                     marker={"size": 5 if "dash" in line else 7}),
                          row=r, col=c)
        _reference_lines(fig, baselines, m, r, c,
                         annotate=False)
    kept = (train_log[TRAIN_LOG.kept_epoch].dropna() if TRAIN_LOG.kept_epoch in train_log
            else pd.Series(dtype=float))
    if len(kept):
        # Drawn in every panel: the weights the search and distillation inherit.
        for k in range(len(panels)):
            fig.add_vline(x=float(kept.iloc[-1]), line={"color": "#555", "dash": "dot"},
                          row=k // cols + 1, col=k % cols + 1)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="kept epoch",
                                 line={"color": "#555", "dash": "dot"}))
    # Reference lines carry no legend entry of their own: add one dummy trace per kind.
    if baselines is not None and not baselines.empty:
        for ref, (_, colour, dash) in REFERENCE_STYLE.items():
            if ref in baselines.index:
                fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines",
                                         name=esc(reference_label(baselines, ref)),
                                         line={"color": colour, "dash": dash}))
    fig.update_xaxes(title_text="epoch")
    n_random = sum(1 for t in tags if RANDOM_SUBNET.fullmatch(t))
    what = "max, min" + (f" and {n_random} fixed random subnets" if n_random else
                         " subnets")
    return _layout(fig, f"Supernet training: validation of the {what}",
                   height=330 * rows + 80)


def _subnet_style(tag: str, j: int) -> tuple[str, dict[str, Any]]:
    """Legend name and line of a validated subnet: max and min solid, random ones dashed."""
    if tag == "max":
        return "max subnet", {"color": "#1f77b4"}
    if tag == "min":
        return "min subnet", {"color": "#ff7f0e"}
    if RANDOM_SUBNET.fullmatch(tag):
        k = int(tag[4:])
        return f"random subnet {k}", {"color": RANDOM_COLOURS[k % len(RANDOM_COLOURS)],
                                      "dash": "dash", "width": 1.5}
    return esc(f"{tag} subnet"), {"color": f"hsl({280 + (20 * j) % 80},40%,45%)",
                                  "dash": "dot"}


# ---------------------------------------------------------------- Pareto fronts
def pareto_2d(archive: pd.DataFrame, metric: str, baselines: pd.DataFrame | None = None,
              pareto_ids: Sequence[str] = (), constraints: Mapping[str, float] | None = None,
              costs: Sequence[str] = COSTS) -> go.Figure:
    """``metric`` against each cost: every archive row, coloured by generation; the search's
    Pareto set ringed; the 2-D front of each projection as a line; infeasible genomes (not
    scored) as crosses on a lane at the bottom; budgets as vertical lines."""
    if archive.empty or metric not in archive or archive[metric].notna().sum() == 0:
        raise NoData(f"the archive holds no scored '{metric}' values")
    costs = [c for c in costs if c in archive and archive[c].notna().any()]
    if not costs:
        raise NoData(f"the archive has none of the cost columns {list(COSTS)}")
    constraints = constraints or {}
    fig = make_subplots(rows=1, cols=len(costs), shared_yaxes=True,
                        horizontal_spacing=0.04)
    scored = _scored(archive, metric)
    others = archive.drop(index=scored.index)
    in_front = scored[ARCHIVE.id].isin(list(pareto_ids)) if ARCHIVE.id in scored else None
    y_all = scored[metric]
    lo, hi = float(y_all.min()), float(y_all.max())
    if baselines is not None and metric in getattr(baselines, "columns", []):
        refs = baselines[metric].dropna()
        lo, hi = min(lo, float(refs.min())), max(hi, float(refs.max()))
    # Unscored (infeasible) genomes are drawn on a lane beyond the worst value.
    pad = 0.06 * (hi - lo or 1.0)
    lane = lo - pad if higher_is_better(metric) else hi + pad
    hover_cols = [metric, *costs]
    genomes = len(archive) <= GENOME_HOVER_MAX
    generation = scored.get(ARCHIVE.generation)
    for k, cost in enumerate(costs, start=1):
        first = k == 1
        data = scored.dropna(subset=[cost])
        marker: dict[str, Any] = {"size": 7, "opacity": 0.85, "line": {"width": 0}}
        if generation is not None:
            marker.update(color=data[ARCHIVE.generation], coloraxis="coloraxis")
        fig.add_trace(go.Scatter(x=data[cost], y=data[metric], mode="markers",
                                 name="feasible (colour: generation)", legendgroup="feasible",
                                 showlegend=first, marker=marker,
                                 text=_hover(data, hover_cols, genomes),
                                 hovertemplate="%{text}<extra></extra>"), row=1, col=k)
        if in_front is not None and in_front.any():
            members = data[data[ARCHIVE.id].isin(list(pareto_ids))]
            fig.add_trace(go.Scatter(x=members[cost], y=members[metric], mode="markers",
                                     name=f"search Pareto set ({PARETO_CSV})", legendgroup="pset",
                                     showlegend=first, text=_hover(members, hover_cols),
                                     hovertemplate="%{text}<extra>Pareto set</extra>",
                                     marker={"size": 13, "color": "rgba(0,0,0,0)",
                                             "line": {"width": 2, "color": "#222"}}),
                          row=1, col=k)
        front = front_2d(data, metric, cost)
        fig.add_trace(go.Scatter(x=front[cost], y=front[metric], mode="lines",
                                 line={"shape": "hv", "color": "#444", "width": 1.5},
                                 name="2-D front of this projection", legendgroup="front",
                                 showlegend=first, hoverinfo="skip"), row=1, col=k)
        bad = others.dropna(subset=[cost])
        if len(bad):
            y = bad[metric].fillna(lane) if metric in bad else pd.Series(lane, bad.index)
            fig.add_trace(go.Scatter(x=bad[cost], y=y, mode="markers",
                                     name="infeasible (unscored ones on a lane past the worst)",
                                     legendgroup="infeasible", showlegend=first,
                                     marker={"symbol": "x", "size": 7, "color": "#999"},
                                     text=_hover(bad, costs, genomes),
                                     hovertemplate="%{text}<br>infeasible<extra></extra>"),
                          row=1, col=k)
        if cost in constraints:
            fig.add_vline(x=constraints[cost], line={"color": "#d62728", "dash": "dot"},
                          annotation_text=esc(f"budget {format_number(constraints[cost])}"),
                          annotation_font={"size": 10, "color": "#d62728"}, row=1, col=k)
        _reference_lines(fig, baselines, metric,
                         1, k, annotate=first)
        fig.update_xaxes(title_text=esc(COST_LABELS.get(cost, cost)), row=1, col=k)
    fig.update_yaxes(title_text=esc(f"{metric} ({_better(metric)} is better)"), row=1, col=1)
    fig.update_layout(coloraxis={"colorscale": "Viridis",
                                 "colorbar": {"title": {"text": "generation"}, "len": 0.8}})
    return _layout(fig, f"{metric} against the costs (oracle scores on the validation subset)",
                   height=440)


def pareto_3d(archive: pd.DataFrame, axes: Sequence[str], pareto_ids: Sequence[str] = ()
              ) -> go.Figure:
    """Feasible archive rows on three objectives, the search's Pareto set highlighted."""
    axes = list(axes)
    if len(axes) != 3 or any(a not in archive for a in axes):
        raise NoData(f"a 3-D front needs three columns of the archive, have {axes}")
    data = _scored(archive, axes[0]).dropna(subset=axes)
    if len(data) < 2:
        raise NoData("fewer than two feasible, scored architectures")
    member = data[ARCHIVE.id].isin(list(pareto_ids)) if ARCHIVE.id in data else \
        pd.Series(False, index=data.index)
    fig = go.Figure()
    for sel, name, size, symbol in ((~member, "feasible", 4, "circle"),
                                    (member, "search Pareto set", 7, "diamond")):
        part = data[sel]
        if part.empty:
            continue
        marker: dict[str, Any] = {"size": size, "symbol": symbol, "opacity": 0.9}
        if ARCHIVE.generation in part:
            marker.update(color=part[ARCHIVE.generation], coloraxis="coloraxis")
        fig.add_trace(go.Scatter3d(x=part[axes[0]], y=part[axes[1]], z=part[axes[2]],
                                   mode="markers", name=name, marker=marker,
                                   text=_hover(part, axes, len(data) <= GENOME_HOVER_MAX
                                                or name != "feasible"),
                                   hovertemplate="%{text}<extra></extra>"))
    # Short axis titles, the camera pulled back and no outer margins: the default camera and
    # margins clipped the titles of the front axes.
    titles = [_axis_title(a) for a in axes]
    fig.update_layout(scene={"xaxis": {"title": {"text": esc(titles[0])}},
                             "yaxis": {"title": {"text": esc(titles[1])}},
                             "zaxis": {"title": {"text": esc(titles[2])}},
                             "aspectmode": "cube",
                             "camera": {"eye": {"x": 1.75, "y": 1.75, "z": 1.05},
                                        "center": {"x": 0, "y": 0, "z": -0.08}},
                             "domain": {"x": [0.0, 0.88], "y": [0.0, 1.0]}},
                      coloraxis={"colorscale": "Viridis",
                                 "colorbar": {"title": {"text": "generation"}, "len": 0.7}})
    return _layout(fig, f"3-D view: {', '.join(titles)}", height=620,
                   margin={"l": 10, "r": 10, "t": 50, "b": 10},
                   legend={"orientation": "h", "y": 0.02, "x": 0.02})


def _axis_title(column: str) -> str:
    """A short axis title: ``CC (higher is better)``, ``FLOPs``, ``latency (ms)``."""
    if column in COSTS:
        return {"params": "parameters", "flops": "FLOPs"}.get(column, COST_LABELS[column])
    return f"{column} ({_better(column)} is better)"


def hv_history(histories: Mapping[str, pd.DataFrame]) -> go.Figure:
    """Hypervolume of the cumulative feasible front against architectures evaluated, one
    line per run / engine (labels are escaped here)."""
    fig = go.Figure()
    for label, frame in histories.items():
        if frame.empty or HV.hypervolume not in frame:
            continue
        x_col = HV.n_evaluated if HV.n_evaluated in frame else HV.generation
        if x_col not in frame:
            continue
        text = [f"{esc(label)}<br>generation {_num(g)}<br>front size {_num(p)}"
                for g, p in zip(frame.get(HV.generation, [math.nan] * len(frame)),
                                frame.get(HV.n_pareto, [math.nan] * len(frame)), strict=True)]
        fig.add_trace(go.Scatter(x=frame[x_col], y=frame[HV.hypervolume], mode="lines+markers",
                                 name=esc(label), text=text,
                                 hovertemplate="%{text}<br>HV %{y:.4f}<extra></extra>"))
    if not fig.data:
        raise NoData(f"no {HV_CSV} with a '{HV.hypervolume}' column")
    fig.update_xaxes(title_text="architectures evaluated (cumulative)")
    fig.update_yaxes(title_text="normalised hypervolume")
    return _layout(fig, "Hypervolume of the feasible front", height=380)


def compare_fronts(archives: Mapping[str, pd.DataFrame], metric: str,
                   baselines: pd.DataFrame | None = None, costs: Sequence[str] = COSTS
                   ) -> go.Figure:
    """Several runs' feasible archives and 2-D fronts on one ``metric`` against each cost."""
    have = {k: a for k, a in archives.items() if metric in a and a[metric].notna().any()}
    costs = [c for c in costs if any(c in a and a[c].notna().any() for a in have.values())]
    if not have or not costs:
        raise NoData(f"no run has scored '{metric}' values and a cost column")
    fig = make_subplots(rows=1, cols=len(costs), shared_yaxes=True, horizontal_spacing=0.04)
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"]
    for j, (label, archive) in enumerate(have.items()):
        colour = palette[j % len(palette)]
        data = _scored(archive, metric)
        for k, cost in enumerate(costs, start=1):
            if cost not in data:
                continue
            part = data.dropna(subset=[cost])
            fig.add_trace(go.Scatter(x=part[cost], y=part[metric], mode="markers",
                                     name=esc(label), legendgroup=esc(label), showlegend=False,
                                     marker={"size": 5, "color": colour, "opacity": 0.35},
                                     text=_hover(part, [metric, cost], genome=False),
                                     hovertemplate=esc(label) + "<br>%{text}<extra></extra>"),
                          row=1, col=k)
            front = front_2d(part, metric, cost)
            fig.add_trace(go.Scatter(x=front[cost], y=front[metric], mode="lines+markers",
                                     line={"shape": "hv", "color": colour, "width": 2},
                                     marker={"size": 7, "color": colour},
                                     name=esc(label), legendgroup=esc(label),
                                     showlegend=k == 1, hoverinfo="skip"), row=1, col=k)
            fig.update_xaxes(title_text=esc(COST_LABELS.get(cost, cost)), row=1, col=k)
    for k in range(1, len(costs) + 1):
        _reference_lines(fig, baselines, metric,
                         1, k, annotate=k == 1)
    fig.update_yaxes(title_text=esc(metric), row=1, col=1)
    return _layout(fig, f"{metric}: fronts of every run (dots: all feasible architectures)",
                   height=440)


# ---------------------------------------------------------------- genes
def parallel_genes(genes: pd.DataFrame, target: pd.Series, metric: str = "CC",
                   labels: Mapping[str, Sequence[str]] | None = None,
                   order: Sequence[str] | None = None, max_genes: int = 14) -> go.Figure:
    """Parallel coordinates of the genes (scored architectures) ending on ``metric``.

    ``order`` (e.g. genes by importance) picks which genes are drawn when there are more
    than ``max_genes``; fixed genes are never drawn.
    """
    labels = labels or {}
    ok = target.notna()
    x, y = genes.loc[ok], target.loc[ok]
    cols = varying_genes(x)
    if len(y) < 2 or not cols:
        raise NoData("fewer than two scored architectures, or no gene varies")
    if order:
        ranked = [c for c in order if c in cols]
        cols = ranked + [c for c in cols if c not in ranked]
    cols = cols[:max_genes]
    dims = []
    for c in cols:
        dim: dict[str, Any] = {"label": esc(c), "values": x[c].fillna(x[c].min())}
        if c in labels:
            dim.update(tickvals=list(range(len(labels[c]))),
                       ticktext=[esc(v) for v in labels[c]])
        elif set(x[c].dropna().unique()) <= {0.0, 1.0}:
            dim.update(tickvals=[0, 1], ticktext=["off", "on"])
        dims.append(dim)
    dims.append({"label": esc(metric), "values": y})
    fig = go.Figure(go.Parcoords(line={"color": y, "colorscale": "Viridis", "showscale": True,
                                       "colorbar": {"title": {"text": esc(metric)}, "x": 1.06}},
                                 dimensions=dims, labelangle=-30))
    shown = "" if len(cols) == len(varying_genes(x)) else f" ({len(cols)} most important)"
    return _layout(fig, f"Genes of {len(y)} scored architectures against {metric}{shown}",
                   height=480, margin={"l": 60, "r": 110, "t": 110, "b": 40})


def gene_importance_bar(importance: pd.DataFrame, method: str, metric: str = "CC",
                        top: int = 20) -> go.Figure:
    """Horizontal bars of gene importances for ``metric``."""
    if importance.empty:
        raise NoData("no gene importances")
    data = importance.head(top).iloc[::-1]
    fig = go.Figure(go.Bar(x=data["importance"], y=[esc(g) for g in data["gene"]],
                           orientation="h", marker={"color": "#4c78a8"},
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_xaxes(title_text="importance")
    return _layout(fig, f"Which genes matter for {metric}", height=max(300, 22 * len(data) + 120),
                   margin={"l": 120, "r": 20, "t": 60, "b": 50})


# ---------------------------------------------------------------- retraining
def fidelity_label(stats: Mapping[str, Any]) -> str:
    """``τ +0.67, ρ +0.80, n 4, p 0.33`` of a rank-fidelity record (n/a where undefined)."""
    def f(key: str, signed: bool = True) -> str:
        v = stats.get(key)
        if not isinstance(v, int | float) or not math.isfinite(v):
            return "n/a"
        return f"{v:+.2f}" if signed else format_number(v)

    return (f"τ {f('kendall_tau')}, ρ {f('spearman_rho')}, n {int(stats.get('n') or 0)}, "
            f"p {f('p_value', signed=False)}")


def rank_fidelity_scatter(table: pd.DataFrame, stats: Mapping[str, Any], metric: str = "CC",
                          baselines: pd.DataFrame | None = None) -> go.Figure:
    """Oracle (supernet) score against retrained test score of the rank-fidelity sample
    (:func:`analysis.load.rank_fidelity`), with its statistics and the dataset's floor and
    ceiling on both axes."""
    if table.empty:
        raise NoData("no retrained architecture has both an oracle and a test score")
    sample = {"fidelity": "fidelity sample (short fixed budget)",
              "retrained": "retrained architectures, baseline arm"}.get(
                  str(stats.get("sample")), str(stats.get("sample", "")))
    fig = go.Figure(go.Scatter(
        x=table["oracle"], y=table["retrained"], mode="markers+text",
        name=esc(f"{sample} ({fidelity_label(stats)})"),
        text=[esc(a) for a in table["arch"]], textposition="top center",
        textfont={"size": 9, "color": "#1f77b4"}, marker={"size": 10, "color": "#1f77b4"},
        hovertemplate="%{text}<br>oracle %{x:.4f}<br>retrained %{y:.4f}<extra></extra>"))
    _reference_lines(fig, baselines, metric)
    _reference_lines(fig, baselines, metric, annotate=False, axis="x")
    fig.update_xaxes(title_text=esc(f"oracle {metric} (supernet weights, validation subset)"))
    fig.update_yaxes(title_text=esc(f"retrained test {metric}"))
    fig.update_layout(showlegend=True)
    return _layout(fig, f"Rank fidelity of the oracle ({metric}): {fidelity_label(stats)}",
                   height=460)


def _models_hover(frame: pd.DataFrame, metric: str, costs: Sequence[str]) -> list[str]:
    out = []
    for _, r in frame.iterrows():
        arm = ARM_STYLE.get(str(r[DISTILL.arm]), (str(r[DISTILL.arm]),))[0]
        bits = [f"<b>{esc(r['id'])}</b> ({esc(arm)})", f"test {esc(metric)} {_num(r[metric])}"]
        bits += [f"{esc(COST_LABELS.get(c, c))} {_num(r[c])}" for c in costs if c in r]
        if "seeds" in r:
            bits.append(f"{_num(r['seeds'])} seed(s)")
        out.append("<br>".join(bits))
    return out


def retrained_fronts(models: pd.DataFrame, metric: str = "CC",
                     baselines: pd.DataFrame | None = None,
                     costs: Sequence[str] = COSTS) -> go.Figure:
    """Test ``metric`` of the retrained models against each cost: the Pareto architectures
    of each arm (one colour per arm) with that arm's 2-D front, and every hand-designed peer
    with its own marker and name (``models``: :func:`analysis.recommend.retrained_models`)."""
    if models.empty or metric not in models or models[metric].notna().sum() == 0:
        raise NoData(f"the retrained models have no test {metric} score")
    costs = [c for c in costs if c in models and models[c].notna().any()]
    if not costs:
        raise NoData(f"the retrained models have none of the cost columns {list(COSTS)}")
    fig = make_subplots(rows=1, cols=len(costs), shared_yaxes=True, horizontal_spacing=0.04)
    pareto = models[models["kind"] != DISTILL.peer_kind]
    peers = models[models["kind"] == DISTILL.peer_kind]
    arms = list(dict.fromkeys(models[DISTILL.arm].astype(str)))
    for k, cost in enumerate(costs, start=1):
        first = k == 1
        for arm in arms:
            label, colour = ARM_STYLE.get(arm, (arm, "#555"))
            part = pareto[pareto[DISTILL.arm] == arm].dropna(subset=[metric, cost])
            if part.empty:
                continue
            fig.add_trace(go.Scatter(
                x=part[cost], y=part[metric], mode="markers", name=esc(f"Pareto, {label}"),
                legendgroup=esc(arm), showlegend=first,
                marker={"size": 8, "color": colour, "opacity": 0.85},
                text=_models_hover(part, metric, costs),
                hovertemplate="%{text}<extra></extra>"), row=1, col=k)
            f = front_2d(part, metric, cost)
            fig.add_trace(go.Scatter(x=f[cost], y=f[metric], mode="lines",
                                     line={"shape": "hv", "color": colour, "width": 1.5},
                                     name=esc(f"front, {label}"), legendgroup=esc(arm),
                                     showlegend=False, hoverinfo="skip"), row=1, col=k)
        for j, (peer, part) in enumerate(peers.groupby("id", sort=False)):
            part = part.dropna(subset=[metric, cost])
            if part.empty:
                continue
            symbol = PEER_SYMBOLS.get(str(peer), PEER_SYMBOLS[""])
            colours = [ARM_STYLE.get(str(a), (a, "#555"))[1] for a in part[DISTILL.arm]]
            # The name once, above the peer's highest point (every other peer: below its
            # lowest), clear of its other arms' markers.
            y = part[metric].to_numpy(float)
            top = int(np.argmax(y) if j % 2 == 0 else np.argmin(y))
            fig.add_trace(go.Scatter(
                x=part[cost], y=part[metric], mode="markers+text", name=esc(str(peer)),
                legendgroup=esc(f"peer {peer}"), showlegend=False, cliponaxis=False,
                text=[esc(peer) if i == top else "" for i in range(len(part))],
                textposition="top center" if j % 2 == 0 else "bottom center",
                textfont={"size": 10, "color": "#222"},
                hovertext=_models_hover(part, metric, costs),
                hovertemplate="%{hovertext}<extra>hand-designed peer</extra>",
                marker={"symbol": symbol, "size": 13, "color": colours,
                        "line": {"width": 1.5, "color": "#222"}}), row=1, col=k)
            if first:  # the legend shows the peer's marker, not one arm's colour
                fig.add_trace(go.Scatter(
                    x=[None], y=[None], mode="markers", name=esc(f"{peer} (hand-designed)"),
                    legendgroup=esc(f"peer {peer}"),
                    marker={"symbol": symbol, "size": 12, "color": "#ddd",
                            "line": {"width": 1.5, "color": "#222"}}), row=1, col=k)
        _reference_lines(fig, baselines, metric, 1, k, annotate=first)
        fig.update_xaxes(title_text=esc(COST_LABELS.get(cost, cost)), row=1, col=k)
    fig.update_yaxes(title_text=esc(f"test {metric} ({_better(metric)} is better)"), row=1,
                     col=1)
    return _layout(fig, f"Retrained models: test {metric} against the costs, each arm and the "
                   "hand-designed peers (marker colour: arm)", height=470)


def arm_differences(differences: pd.DataFrame, metrics: Sequence[str] = ("CC", "NSS", "KLD")
                    ) -> go.Figure:
    """Per architecture, the arm - baseline difference of each test metric (mean over seeds,
    error bars: std over seeds), one colour per arm (``differences``: rows of
    :func:`salnas.distill.summary.arm_differences` of each metric)."""
    if differences.empty:
        raise NoData("no architecture finished the baseline and another arm with the same seed")
    metrics = [m for m in metrics if m in set(differences["metric"])]
    if not metrics:
        raise NoData("no arm difference in " + ", ".join(metrics))
    fig = make_subplots(rows=1, cols=len(metrics), shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=[esc(f"{m}: arm − baseline ({_better(m)} is better)")
                                        for m in metrics])
    archs = list(dict.fromkeys(differences[DISTILL.arch].astype(str)))
    arms = list(dict.fromkeys(differences["arm"].astype(str)))
    for k, m in enumerate(metrics, start=1):
        for j, arm in enumerate(arms):
            label, colour = ARM_STYLE.get(arm, (arm, "#555"))
            part = differences[(differences["metric"] == m) & (differences["arm"] == arm)]
            if part.empty:
                continue
            std = part["std_difference"].fillna(0)
            fig.add_trace(go.Scatter(
                x=part["mean_difference"], y=[esc(a) for a in part[DISTILL.arch]],
                mode="markers", name=esc(f"{label} − baseline"), legendgroup=esc(arm),
                showlegend=k == 1, marker={"size": 9, "color": colour},
                error_x={"type": "data", "array": std.to_list(), "visible": True,
                         "color": colour, "thickness": 1.5},
                offsetgroup=str(j), orientation="h", text=[_num(n) for n in part["seeds"]],
                hovertemplate="%{y}<br>mean %{x:+.4f}<br>%{text} seed(s)<extra>" + esc(label)
                + "</extra>"), row=1, col=k)
        fig.add_vline(x=0, line={"color": "#888", "dash": "dash"}, row=1, col=k)
    fig.update_yaxes(categoryorder="array", categoryarray=[esc(a) for a in archs[::-1]])
    fig.update_layout(scattermode="group", scattergap=0.5)  # arms side by side per row
    return _layout(fig, "Each arm minus the baseline, same architecture and seed (mean over "
                   "seeds; bars: std over seeds)", height=max(320, 28 * len(archs) + 180),
                   margin={"l": 140, "r": 20, "t": 80, "b": 50})


def kd_dumbbell(pairs: pd.DataFrame, metric: str = "CC",
                baselines: pd.DataFrame | None = None) -> go.Figure:
    """Baseline and Self-KD test score per architecture (mean over seeds), joined by a line."""
    if pairs.empty:
        raise NoData("no architecture has finished both arms (baseline and Self-KD)")
    per_arch = pairs.groupby(DISTILL.arch, sort=False)[[DISTILL.baseline, DISTILL.selfkd,
                                                        "difference"]].mean()
    per_arch = per_arch.sort_values(DISTILL.baseline)
    names = [esc(a) for a in per_arch.index]
    fig = go.Figure()
    for i, (_, r) in enumerate(per_arch.iterrows()):
        better = r["difference"] * (1 if higher_is_better(metric) else -1) > 0
        fig.add_trace(go.Scatter(x=[r[DISTILL.baseline], r[DISTILL.selfkd]],
                                 y=[names[i], names[i]], mode="lines", showlegend=False,
                                 hoverinfo="skip",
                                 line={"color": "#2ca02c" if better else "#aaa", "width": 3}))
    for arm in (DISTILL.baseline, DISTILL.selfkd):
        label, colour = ARM_STYLE[arm]
        fig.add_trace(go.Scatter(x=per_arch[arm], y=names, mode="markers", name=esc(label),
                                 marker={"size": 11, "color": colour},
                                 hovertemplate="%{y}<br>" + esc(label) +
                                 " %{x:.4f}<extra></extra>"))
    _reference_lines(fig, baselines, metric, axis="x")
    mean = float(pairs["difference"].mean())
    fig.update_xaxes(title_text=esc(f"test {metric} ({_better(metric)} is better)"))
    title = (f"Self-KD vs baseline, test {metric}: mean difference {mean:+.4f} over "
             f"{len(pairs)} pair(s) (green: Self-KD better)")
    return _layout(fig, title, height=max(300, 40 * len(per_arch) + 160),
                   margin={"l": 140, "r": 20, "t": 60, "b": 50})


def latency_scatter(table: pd.DataFrame, stats: pd.DataFrame | None = None) -> go.Figure:
    """Predicted against measured latency per source, with the identity line."""
    if table.empty:
        raise NoData("no pairs of predicted and measured latency")
    fig = go.Figure()
    for source, part in table.groupby("source", sort=False):
        name = str(source)
        if stats is not None and not stats.empty:
            row = stats[stats["source"] == source]
            if len(row):
                r = row.iloc[0]
                tau = "n/a" if not np.isfinite(r["kendall_tau"]) else f"{r['kendall_tau']:.2f}"
                name += f" (RMSE {r['rmse_pct']:.1f} %, τ {tau}, n {int(r['n'])})"
        fig.add_trace(go.Scatter(x=part["measured_ms"], y=part["predicted_ms"], mode="markers",
                                 name=esc(name), text=[esc(i) for i in part["id"]],
                                 marker={"size": 8},
                                 hovertemplate="%{text}<br>measured %{x:.3f} ms<br>"
                                               "predicted %{y:.3f} ms<extra></extra>"))
    lo = float(min(table["measured_ms"].min(), table["predicted_ms"].min()))
    hi = float(max(table["measured_ms"].max(), table["predicted_ms"].max()))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="prediction = measured",
                             line={"color": "#888", "dash": "dash"}, hoverinfo="skip"))
    fig.update_xaxes(title_text="measured latency (ms)")
    fig.update_yaxes(title_text="predicted latency (ms)")
    return _layout(fig, "Latency predictor against measurement", height=440)
