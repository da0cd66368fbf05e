"""Which model to use: the report's first section, as tables.

The **pool** of candidate models is the retrained Pareto architectures of ``distill/results.csv``
(``kind`` pareto; one candidate per architecture and arm, test scores averaged over seeds)
when there are any; else the search's Pareto set (``pareto.csv``, oracle scores on the
validation subset). The rank-fidelity sample (``kind`` fidelity, a short budget) and the
hand-designed peers are never candidates; the peers are compared with the pool instead.

* :func:`best_per_budget`: for each budget of ``search.constraints`` and each default level
  (the 25th, 50th and 75th percentile of the pool's latency, FLOPs and parameters), the
  candidate with the highest CC whose cost is within it, and the best one with no budget.
* :func:`knees`: the knee of the CC-cost front per cost. Rule: take the 2-D front (CC against
  the cost) of the pool, scale both to [0, 1] over the front (min-max), and pick the front
  point farthest from the straight line through its two ends (the cheapest and the most
  accurate model); undefined with fewer than three front points.
* :func:`peer_dominance`: for each hand-designed peer (and arm), the pool's models of the same
  arm that dominate it: CC at least the peer's and every cost at most the peer's, one of them
  strictly; per cost (CC-latency, CC-FLOPs, CC-params) and on all costs together.

Costs of a retrained candidate come from ``results.csv`` (params, FLOPs, and latency as distill
measured it on the trained model, median over its arms and seeds, so that an architecture has
one latency); its resolution from its ``resolution`` column, a Pareto row's from its genome.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from salnas.analysis.figures import front_2d
from salnas.analysis.load import COST_LABELS, COSTS, Run, as_dict, higher_is_better
from salnas.layout import ARCHIVE, DISTILL, PARETO_CSV, RESULTS_CSV

__all__ = [
    "PEERS",
    "PEER_LABELS",
    "QUANTILES",
    "best_per_budget",
    "budget_levels",
    "front",
    "knee",
    "knees",
    "latency_backend",
    "model_pool",
    "peer_dominance",
    "pool_caption",
    "resolution_of",
    "retrained_models",
]

# The hand-designed peers distill trains (arch names of results.csv), in the order shown.
PEERS: tuple[str, ...] = ("peer-max", "peer-fpn", "peer-csnet", "peer-csnet-dwd")
PEER_LABELS: dict[str, str] = {
    "peer-max": "the space's max subnet",
    "peer-fpn": "plain reference: Lite0 + small decoder",
    "peer-csnet": "CSNet-style, fixed channels",
    "peer-csnet-dwd": "CSNet-style, dynamic weight decay, pruned",
}
QUANTILES: tuple[float, ...] = (0.25, 0.5, 0.75)  # default budget levels, of the pool's costs
METRICS: tuple[str, ...] = ("CC", "NSS", "KLD")  # shown for every recommended model
RANK_METRIC = "CC"
MAX_NAMED = 3  # dominating models named per cell; the rest are counted
LEVEL_ORDER = (ARCHIVE.latency, "flops", "params")  # default levels: latency first
COST_SHORT = {"params": "params", "flops": "FLOPs", ARCHIVE.latency: "latency"}


def resolution_of(genome: Any) -> str:
    """``HxW`` of a genome JSON string (its ``resolution``), else ``""``."""
    try:
        data = json.loads(genome) if isinstance(genome, str) else genome
        h, w = data["resolution"]
        return f"{int(h)}x{int(w)}"
    except (TypeError, ValueError, KeyError):
        return ""


def _kind(distill: pd.DataFrame) -> pd.Series:
    """``kind`` of each row; results.csv files before the column: peers by their name."""
    if DISTILL.kind in distill:
        return distill[DISTILL.kind].astype(str)
    is_peer = distill[DISTILL.arch].astype(str).str.startswith("peer-")
    return is_peer.map({True: DISTILL.peer_kind, False: DISTILL.pareto_kind})


def retrained_models(distill: pd.DataFrame, kinds: Sequence[str] = (DISTILL.pareto_kind,
                                                                     DISTILL.peer_kind)
                     ) -> pd.DataFrame:
    """One row per (architecture, arm) of ``results.csv`` rows of ``kinds``: test metrics
    (mean over seeds, columns named by metric: ``CC``, ``NSS`` ...), ``seeds``, params, FLOPs,
    ``latency_ms`` (median over every row of the architecture), ``resolution``, ``genome_id``,
    ``model_dir`` (lowest seed) and ``params_unpruned`` where recorded."""
    need = {DISTILL.arch, DISTILL.arm, DISTILL.test_prefix + RANK_METRIC}
    if distill.empty or not need <= set(distill.columns):
        return pd.DataFrame()
    d = distill.assign(kind=_kind(distill))
    d = d[d["kind"].isin(list(kinds))]
    if d.empty:
        return pd.DataFrame()
    tests = [c for c in d.columns if c.startswith(DISTILL.test_prefix)]
    if DISTILL.seed in d:
        d = d.sort_values(DISTILL.seed, kind="stable")
    g = d.groupby([DISTILL.arch, DISTILL.arm], sort=False)
    out = g[tests].mean().rename(columns=lambda c: c[len(DISTILL.test_prefix):])
    out["seeds"] = g.size()
    out.insert(0, "kind", g["kind"].first())
    for c in (DISTILL.genome_id, "resolution", DISTILL.model_dir, DISTILL.params,
              "params_unpruned", DISTILL.flops):
        if c in d:
            out[c] = g[c].first()
    out = out.reset_index()
    if DISTILL.latency in d:
        per_arch = d.groupby(DISTILL.arch)[DISTILL.latency].median()
        out[ARCHIVE.latency] = out[DISTILL.arch].map(per_arch)
    return out.rename(columns={DISTILL.arch: "id"})


def model_pool(run: Run) -> tuple[pd.DataFrame, str]:
    """The candidate models and where their scores come from (``retrained`` or ``oracle``).

    Columns: ``id``, ``arm`` (empty for oracle rows), ``CC``, ``NSS``, ``KLD`` (those there
    are), ``latency_ms``, ``flops``, ``params``, ``resolution``, ``model_dir``.
    """
    pool = retrained_models(run.distill, (DISTILL.pareto_kind,))
    if not pool.empty:
        if ARCHIVE.latency not in pool or pool[ARCHIVE.latency].isna().all():
            pool[ARCHIVE.latency] = _search_latency(run, pool)
        return pool, "retrained"
    p = run.pareto
    if p.empty or ARCHIVE.id not in p or RANK_METRIC not in p:
        return pd.DataFrame(), "none"
    keep = [c for c in (ARCHIVE.id, *METRICS, *COSTS) if c in p]
    pool = p[keep].copy()
    pool.insert(1, DISTILL.arm, "")
    pool["resolution"] = p[ARCHIVE.genome].map(resolution_of) if ARCHIVE.genome in p else ""
    return pool.dropna(subset=[RANK_METRIC]).reset_index(drop=True), "oracle"


def _search_latency(run: Run, pool: pd.DataFrame) -> pd.Series:
    """The search's latency (pareto.csv) of retrained architectures, by genome id."""
    p = run.pareto
    if p.empty or not {ARCHIVE.id, ARCHIVE.latency} <= set(p.columns):
        return pd.Series(math.nan, index=pool.index)
    by_id = p.drop_duplicates(ARCHIVE.id).set_index(ARCHIVE.id)[ARCHIVE.latency]
    key = pool[DISTILL.genome_id] if DISTILL.genome_id in pool else pool["id"]
    return key.map(by_id)


def pool_caption(source: str, run: Run) -> str:
    """One sentence on where the pool's scores and costs come from."""
    backend = latency_backend(run)
    if source == "retrained":
        return (f"Candidates: the retrained Pareto architectures of {RESULTS_CSV}, one per "
                "architecture and arm; scores on the test split, mean over seeds; latency as "
                "distill measured the trained model (batch 1, CPU; median over its rows).")
    if source == "oracle":
        return (f"No retrained model yet: candidates are the search's Pareto set ({PARETO_CSV}); "
                "scores are the oracle's (supernet weights, validation subset); latency "
                f"measured by the search in {backend} (search.latency.backend).")
    return "No candidates: neither retrained models nor a Pareto set."


def latency_backend(run: Run) -> str:
    """``search.latency.backend`` of the run's config (torch, the schema's default, when
    unset)."""
    latency = as_dict(as_dict(run.config.get("search")).get("latency"))
    return str(latency.get("backend") or "torch")


# ---------------------------------------------------------------- best model per budget
def _costs(pool: pd.DataFrame) -> list[str]:
    return [c for c in COSTS if c in pool and pool[c].notna().any()]


def _best(pool: pd.DataFrame, metric: str = RANK_METRIC) -> pd.Series | None:
    scored = pool.dropna(subset=[metric])
    if scored.empty:
        return None
    order = scored.sort_values(metric, ascending=not higher_is_better(metric), kind="stable")
    return order.iloc[0]


def budget_levels(pool: pd.DataFrame, constraints: Mapping[str, float],
                  quantiles: Sequence[float] = QUANTILES) -> list[tuple[str, float, str]]:
    """(cost, value, where it comes from) of every budget: the config's, then the
    ``quantiles`` of the pool's costs."""
    levels = [(c, float(v), "search.constraints") for c, v in constraints.items()
              if c in COSTS and math.isfinite(float(v))]
    for cost in sorted(_costs(pool), key=LEVEL_ORDER.index):
        values = pool[cost].dropna().to_numpy(float)
        for q in quantiles:
            levels.append((cost, float(np.quantile(values, q)),
                           f"{round(q * 100)}th percentile"))
    return levels


def _model_row(best: pd.Series | None, costs: Sequence[str]) -> dict[str, Any]:
    if best is None:
        return {"model id": "no model within this budget"}
    row: dict[str, Any] = {"model id": str(best["id"]), "arm": str(best.get(DISTILL.arm, ""))}
    for m in METRICS:
        if m in best.index:
            row[m] = best[m]
    for c in costs:
        row[COST_LABELS.get(c, c)] = best.get(c, math.nan)
    row["resolution"] = str(best.get("resolution", "") or "–")
    if DISTILL.model_dir in best.index:
        row[DISTILL.model_dir] = str(best[DISTILL.model_dir])
    return row


def best_per_budget(pool: pd.DataFrame, constraints: Mapping[str, float],
                    quantiles: Sequence[float] = QUANTILES) -> pd.DataFrame:
    """The best candidate (highest CC) with no budget and within each budget level
    (:func:`budget_levels`); one row per level, with the model's id, arm, CC/NSS/KLD, costs,
    resolution and ``model_dir``."""
    if pool.empty:
        return pd.DataFrame()
    costs = _costs(pool)
    rows = [{"budget": "none (best overall)", "from": "–",
             **_model_row(_best(pool), costs)}]
    for cost, value, where in budget_levels(pool, constraints, quantiles):
        within = pool[pool[cost] <= value] if cost in pool else pool.iloc[0:0]
        unit = " ms" if cost == ARCHIVE.latency else ""
        rows.append({"budget": f"{COST_SHORT.get(cost, cost)} ≤ {_fmt(value)}{unit}",
                     "from": where, **_model_row(_best(within), costs)})
    frame = pd.DataFrame(rows)
    if "arm" in frame and not frame["arm"].fillna("").astype(str).str.len().any():
        frame = frame.drop(columns="arm")
    return frame


def _fmt(v: float) -> str:
    from salnas.analysis.format import format_number

    return format_number(v)


# ---------------------------------------------------------------- the knee
def front(pool: pd.DataFrame, cost: str, metric: str = RANK_METRIC) -> pd.DataFrame:
    """Rows of ``pool`` not dominated in (``metric``, ``cost``), cheapest first."""
    return front_2d(pool, metric, cost)


def knee(pool: pd.DataFrame, cost: str, metric: str = RANK_METRIC
         ) -> tuple[pd.Series, float, int] | None:
    """(knee row, its normalised distance to the line through the front's ends, front size),
    or None when the front has fewer than three points (see the module docstring)."""
    f = front(pool, cost, metric)
    if len(f) < 3:
        return None
    x = f[cost].to_numpy(float)
    y = f[metric].to_numpy(float) * (1.0 if higher_is_better(metric) else -1.0)
    span_x, span_y = np.ptp(x), np.ptp(y)
    if span_x == 0 or span_y == 0:
        return None
    xn, yn = (x - x.min()) / span_x, (y - y.min()) / span_y
    (x0, y0), (x1, y1) = (xn[0], yn[0]), (xn[-1], yn[-1])
    dist = np.abs((x1 - x0) * (y0 - yn) - (x0 - xn) * (y1 - y0)) / math.hypot(x1 - x0, y1 - y0)
    k = int(np.argmax(dist))
    return f.iloc[k], float(dist[k]), len(f)


def knees(pool: pd.DataFrame, metric: str = RANK_METRIC) -> pd.DataFrame:
    """The knee of the ``metric``-cost front for each cost of the pool."""
    rows: list[dict[str, Any]] = []
    costs = _costs(pool)
    for cost in costs:
        found = knee(pool, cost, metric)
        label = f"{metric} against {COST_LABELS.get(cost, cost)}"
        if found is None:
            rows.append({"front": label, "model id": "no knee (fewer than 3 front points)"})
            continue
        row, dist, n = found
        rows.append({"front": label, **_model_row(row, costs), "front size": n,
                     "distance": dist})
    frame = pd.DataFrame(rows)
    if "arm" in frame and not frame["arm"].fillna("").astype(str).str.len().any():
        frame = frame.drop(columns="arm")
    return frame


# ---------------------------------------------------------------- hand-designed peers
def _dominators(pool: pd.DataFrame, peer: pd.Series, costs: Sequence[str],
                metric: str = RANK_METRIC) -> pd.DataFrame:
    """Rows of ``pool`` at least as good as ``peer`` in ``metric`` and every cost, strictly
    better in one, best ``metric`` first."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    if not math.isfinite(float(peer.get(metric, math.nan))):
        return pool.iloc[0:0]
    mask = sign * pool[metric] >= sign * peer[metric]
    strict = sign * pool[metric] > sign * peer[metric]
    for c in costs:
        value = float(peer.get(c, math.nan))
        if not math.isfinite(value):
            return pool.iloc[0:0]
        mask &= pool[c] <= value
        strict |= pool[c] < value
    found = pool[mask & strict]
    return found.sort_values(metric, ascending=sign < 0, kind="stable")


def _names(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "not dominated"
    ids = [str(i) for i in rows["id"]]
    more = len(ids) - MAX_NAMED
    return ", ".join(ids[:MAX_NAMED]) + (f" (+{more} more)" if more > 0 else "")


def peer_dominance(run: Run, pool: pd.DataFrame | None = None, source: str = "retrained"
                   ) -> tuple[pd.DataFrame, list[str]]:
    """Per hand-designed peer and arm: its test CC and costs, and the pool's models (same arm)
    that dominate it, per cost and on every cost; and a sentence per peer missing here."""
    if pool is None:
        pool, source = model_pool(run)
    peers = retrained_models(run.distill, (DISTILL.peer_kind,))
    missing = []
    names = list(peers["id"].unique()) if not peers.empty else []
    for p in PEERS:
        if p not in names:
            why = (" (the max genome is on the front: it is trained as a Pareto architecture)"
                   if p == "peer-max" and not peers.empty else "")
            missing.append(f"{p} ({PEER_LABELS[p]}): not in {RESULTS_CSV}{why}")
    if peers.empty:
        return pd.DataFrame(), missing
    if pool.empty or source != "retrained":
        missing.append("no retrained Pareto model to compare the peers with")
        return pd.DataFrame(), missing
    order = {p: i for i, p in enumerate(PEERS)}
    arm_rank = {DISTILL.baseline: 0, DISTILL.selfkd: 1, DISTILL.teacher: 2}
    peers = peers.assign(_o=peers["id"].map(lambda a: order.get(a, len(order))),
                         _a=peers[DISTILL.arm].map(lambda a: arm_rank.get(a, 3)))
    peers = peers.sort_values(["_o", "_a"], kind="stable")
    rows = []
    for _, peer in peers.iterrows():
        same = pool[pool[DISTILL.arm] == peer[DISTILL.arm]] if DISTILL.arm in pool else pool
        costs = [c for c in _costs(pool) if c in peer.index and pd.notna(peer[c])]
        row: dict[str, Any] = {"peer": str(peer["id"]), "arm": str(peer[DISTILL.arm]),
                               RANK_METRIC: peer[RANK_METRIC]}
        for c in costs:
            row[COST_LABELS.get(c, c)] = peer[c]
        row["dominated on every cost by"] = _names(_dominators(same, peer, costs))
        for c in costs:
            row[f"on {RANK_METRIC}–{COST_SHORT.get(c, c)} by"] = _names(
                _dominators(same, peer, [c]))
        rows.append(row)
    return pd.DataFrame(rows), missing
