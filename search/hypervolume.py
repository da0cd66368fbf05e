"""Pareto front and hypervolume of archive records, with a fixed normalisation.

Every objective is mapped to [0, 1] (0 best) with fixed bounds that do not depend on what a
run found (:data:`search.problem.DEFAULT_METRIC_BOUNDS`; costs: [0, cost of the max genome];
overridable by ``search.hv_bounds``), and the hypervolume is taken against the reference point
1.1 per objective with pymoo's indicator. Runs with the same objectives and bounds (written
to ``search.json``) are therefore comparable.

The hypervolume of generation ``g`` is that of the feasible Pareto front of every genome first
evaluated in generations ``0..g``: a cumulative archive front, non-decreasing by construction
whatever the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from salnas.layout import HV_COLUMNS
from salnas.search.problem import Objectives

__all__ = ["HV_FIELDS", "hv_history", "hypervolume", "pareto_front"]

HV_FIELDS = HV_COLUMNS  # the schema of hv_history.csv (salnas.layout)


def _feasible_scored(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["feasible"] and r["scored"]]


def pareto_front(records: Sequence[dict[str, Any]], objectives: Objectives) -> list[dict[str, Any]]:
    """Feasible records no other feasible record dominates (infeasible ones never enter)."""
    pool = _feasible_scored(records)
    if not pool:
        return []
    f = np.array([objectives.minimised(r) for r in pool])
    keep = NonDominatedSorting().do(f, only_non_dominated_front=True)
    return [pool[i] for i in sorted(int(i) for i in keep)]


def hypervolume(records: Sequence[dict[str, Any]], objectives: Objectives) -> float:
    """Normalised hypervolume of the feasible front of ``records`` (0 when none)."""
    front = pareto_front(records, objectives)
    if not front:
        return 0.0
    f = objectives.normalised(np.array([objectives.minimised(r) for r in front]))
    return float(HV(ref_point=objectives.reference_point)(f))


def hv_history(
    records: Sequence[dict[str, Any]], objectives: Objectives, generations: int | None = None
) -> list[dict[str, Any]]:
    """One row per generation: cumulative evaluated/feasible counts, front size, hypervolume."""
    last = max((int(r["generation"]) for r in records), default=-1)
    if generations is not None:
        last = max(last, generations - 1)
    rows = []
    for g in range(last + 1):
        upto = [r for r in records if int(r["generation"]) <= g]
        front = pareto_front(upto, objectives)
        rows.append({
            "generation": g,
            "n_evaluated": len(upto),
            "n_feasible": sum(bool(r["feasible"]) for r in upto),
            "n_pareto": len(front),
            "hypervolume": hypervolume(front, objectives),
        })
    return rows
