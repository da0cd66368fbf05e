"""What Self-KD gains over the baseline, from ``distill/results.csv``: the one computation
that ``salnas distill`` prints and the report draws.

Pairs are the same architecture and seed trained both ways (same initialisation), so the
difference isolates the teacher; seeds are pairs of their own, never averaged first.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from salnas.layout import DISTILL
from salnas.metrics import HIGHER_IS_BETTER

__all__ = ["kd_pairs", "kd_summary", "tested_metrics"]


def _higher_is_better(metric: str) -> bool:
    return HIGHER_IS_BETTER.get(metric, False)


def tested_metrics(results: pd.DataFrame) -> list[str]:
    """The metrics of ``results`` with a test score (``test_<metric>`` columns), in order."""
    return [c[len(DISTILL.test_prefix):] for c in results.columns
            if c.startswith(DISTILL.test_prefix)]


def kd_pairs(results: pd.DataFrame, metric: str = "CC") -> pd.DataFrame:
    """One row per (arch, seed) that finished both arms, for test ``metric``.

    Columns: ``arch``, ``seed`` (when ``results`` has one), ``baseline``, ``selfkd``,
    ``difference`` (Self-KD - baseline) and ``gain`` (the difference signed so that positive
    means Self-KD is better, whatever the metric's direction). Empty when no pair exists or
    a column is missing.
    """
    col = DISTILL.test_prefix + metric
    if results.empty or not {DISTILL.arch, DISTILL.arm, col} <= set(results.columns):
        return pd.DataFrame()
    index = [DISTILL.arch] + ([DISTILL.seed] if DISTILL.seed in results else [])
    wide = results.pivot_table(index=index, columns=DISTILL.arm, values=col, aggfunc="mean")
    if not {DISTILL.selfkd, DISTILL.baseline} <= set(wide.columns):
        return pd.DataFrame()
    wide = wide[[DISTILL.baseline, DISTILL.selfkd]].dropna().reset_index()
    wide.columns.name = None
    sign = 1.0 if _higher_is_better(metric) else -1.0
    wide["difference"] = wide[DISTILL.selfkd] - wide[DISTILL.baseline]
    wide["gain"] = sign * wide["difference"]
    return wide


def kd_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per test metric: which direction is better, pairs, mean and std of the Self-KD -
    baseline difference, and in how many pairs Self-KD is better."""
    rows: list[dict[str, Any]] = []
    for metric in tested_metrics(results):
        pairs = kd_pairs(results, metric)
        if pairs.empty:
            continue
        diff = pairs["difference"]
        rows.append({"metric": metric, "better": "higher" if _higher_is_better(metric)
                     else "lower", "pairs": len(pairs), "mean_difference": float(diff.mean()),
                     "std_difference": float(diff.std(ddof=1)) if len(pairs) > 1 else math.nan,
                     "selfkd_better": int((pairs["gain"] > 0).sum())})
    return pd.DataFrame(rows)
