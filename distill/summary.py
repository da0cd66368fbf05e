"""What each distillation arm gains over the baseline, from ``distill/results.csv``: the one
computation that ``salnas distill`` prints and the report draws.

Pairs are the same architecture and seed trained both ways (same initialisation), so the
difference isolates what the arm adds (Self-KD's own snapshots, or a frozen teacher); seeds
are pairs of their own, never averaged first. ``arm_pairs`` / ``arm_summary`` /
``arm_differences`` take any arm (``selfkd``, ``teacher``); ``kd_pairs`` / ``kd_summary`` are
the Self-KD case. The paired test is Wilcoxon's signed-rank test (two-sided,
``scipy.stats.wilcoxon``; exact for small samples), ``NaN`` under 2 pairs or when every
difference is zero.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from salnas.layout import DISTILL
from salnas.metrics import HIGHER_IS_BETTER

__all__ = ["architecture_summary", "arm_differences", "arm_pairs", "arm_summary",
           "compared_arms", "kd_pairs", "kd_summary", "paired_p_value", "tested_metrics"]

ARM_ORDER = (DISTILL.selfkd, DISTILL.teacher)  # arms compared with the baseline, this order


def _higher_is_better(metric: str) -> bool:
    return HIGHER_IS_BETTER.get(metric, False)


def tested_metrics(results: pd.DataFrame) -> list[str]:
    """The metrics of ``results`` with a test score (``test_<metric>`` columns), in order."""
    return [c[len(DISTILL.test_prefix):] for c in results.columns
            if c.startswith(DISTILL.test_prefix)]


def compared_arms(results: pd.DataFrame) -> list[str]:
    """The arms of ``results`` other than the baseline: selfkd, teacher, then any other."""
    if results.empty or DISTILL.arm not in results:
        return []
    have = [str(a) for a in dict.fromkeys(results[DISTILL.arm].dropna())]
    known = [a for a in ARM_ORDER if a in have]
    return known + [a for a in have if a not in known and a != DISTILL.baseline]


def arm_pairs(results: pd.DataFrame, metric: str = "CC", arm: str = DISTILL.selfkd,
              reference: str = DISTILL.baseline) -> pd.DataFrame:
    """One row per (arch, seed) that finished both ``arm`` and ``reference``, for test
    ``metric``.

    Columns: ``arch``, ``seed`` (when ``results`` has one), ``<reference>``, ``<arm>``,
    ``difference`` (arm - reference) and ``gain`` (the difference signed so that positive
    means the arm is better, whatever the metric's direction). Empty when no pair exists or
    a column is missing.
    """
    col = DISTILL.test_prefix + metric
    if results.empty or not {DISTILL.arch, DISTILL.arm, col} <= set(results.columns):
        return pd.DataFrame()
    index = [DISTILL.arch] + ([DISTILL.seed] if DISTILL.seed in results else [])
    wide = results.pivot_table(index=index, columns=DISTILL.arm, values=col, aggfunc="mean")
    if not {arm, reference} <= set(wide.columns):
        return pd.DataFrame()
    wide = wide[[reference, arm]].dropna().reset_index()
    wide.columns.name = None
    sign = 1.0 if _higher_is_better(metric) else -1.0
    wide["difference"] = wide[arm] - wide[reference]
    wide["gain"] = sign * wide["difference"]
    return wide


def kd_pairs(results: pd.DataFrame, metric: str = "CC") -> pd.DataFrame:
    """:func:`arm_pairs` of the Self-KD arm against the baseline (columns ``baseline``,
    ``selfkd``, ``difference``, ``gain``)."""
    return arm_pairs(results, metric, DISTILL.selfkd)


def paired_p_value(differences: Sequence[float] | pd.Series) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences; NaN under 2 pairs or
    when every difference is zero (no evidence either way)."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2 or not np.any(d != 0):
        return math.nan
    from scipy.stats import wilcoxon

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample and ties notes
        p = float(wilcoxon(d, alternative="two-sided").pvalue)
    return p if math.isfinite(p) else math.nan


def arm_summary(results: pd.DataFrame, arms: Sequence[str] | None = None,
                metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Per (arm, test metric): which direction is better, pairs, mean and std of the arm -
    baseline difference, in how many pairs the arm is better, and the paired test's p."""
    rows: list[dict[str, Any]] = []
    for arm in compared_arms(results) if arms is None else arms:
        for metric in tested_metrics(results) if metrics is None else metrics:
            pairs = arm_pairs(results, metric, arm)
            if pairs.empty:
                continue
            diff = pairs["difference"]
            rows.append({"arm": arm, "metric": metric,
                         "better": "higher" if _higher_is_better(metric) else "lower",
                         "pairs": len(pairs), "mean_difference": float(diff.mean()),
                         "std_difference": float(diff.std(ddof=1)) if len(pairs) > 1
                         else math.nan,
                         "arm_better": int((pairs["gain"] > 0).sum()),
                         "p_value": paired_p_value(diff)})
    return pd.DataFrame(rows)


def arm_differences(results: pd.DataFrame, metric: str = "CC",
                    arms: Sequence[str] | None = None) -> pd.DataFrame:
    """Per (arm, architecture): the arm - baseline difference of test ``metric`` over its
    seeds (``mean_difference``, ``std_difference`` with ddof 1, NaN for one seed, ``seeds``),
    from the pairs of :func:`arm_pairs`; the error bars of the report's arm comparison."""
    parts = []
    for arm in compared_arms(results) if arms is None else arms:
        pairs = arm_pairs(results, metric, arm)
        if pairs.empty:
            continue
        g = pairs.groupby(DISTILL.arch, sort=False)["difference"]
        part = pd.DataFrame({"mean_difference": g.mean(), "std_difference": g.std(ddof=1),
                             "seeds": g.size()}).reset_index()
        part.insert(0, "arm", arm)
        part.insert(2, "metric", metric)
        parts.append(part)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def kd_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per test metric: which direction is better, pairs, mean and std of the Self-KD -
    baseline difference, in how many pairs Self-KD is better, and the paired test's p."""
    frame = arm_summary(results, [DISTILL.selfkd])
    if frame.empty:
        return frame
    return (frame.drop(columns="arm").rename(columns={"arm_better": "selfkd_better"})
            .reset_index(drop=True))


def architecture_summary(results: pd.DataFrame, metric: str = "CC") -> pd.DataFrame:
    """Per architecture, in order of FLOPs: its costs (FLOPs and latency medians over its
    rows, params range), seeds, the mean and std over seeds of test ``metric`` per arm
    (``<arm>_mean``, ``<arm>_std``), and the Self-KD runs' epochs and teacher snapshots (one
    entry per seed, in seed order)."""
    col = DISTILL.test_prefix + metric
    if results.empty or col not in results:
        return pd.DataFrame()
    arms = [a for a in (DISTILL.baseline, *compared_arms(results))
            if a in set(results[DISTILL.arm])]
    rows: list[dict[str, Any]] = []
    for arch, group in results.groupby(DISTILL.arch, sort=False):
        row: dict[str, Any] = {
            "arch": arch, "kind": group[DISTILL.kind].iloc[0] if DISTILL.kind in group else "",
            "flops": float(group[DISTILL.flops].median()),
            "params_min": int(group[DISTILL.params].min()),
            "params_max": int(group[DISTILL.params].max()),
            "latency_ms": float(group[DISTILL.latency].median()),
            "seeds": int(group[DISTILL.seed].nunique()) if DISTILL.seed in group else 1,
        }
        for arm in arms:
            scores = group.loc[group[DISTILL.arm] == arm, col]
            row[f"{arm}_mean"] = float(scores.mean()) if len(scores) else math.nan
            row[f"{arm}_std"] = float(scores.std(ddof=1)) if len(scores) > 1 else math.nan
        kd = group[group[DISTILL.arm] == DISTILL.selfkd]
        if DISTILL.seed in kd:
            kd = kd.sort_values(DISTILL.seed)
        row["selfkd_epochs"] = [int(e) for e in kd[DISTILL.epochs]] if len(kd) else []
        row["teacher_snapshots"] = ([int(n) for n in kd["teacher_snapshots"]]
                                    if "teacher_snapshots" in kd and len(kd) else [])
        rows.append(row)
    return pd.DataFrame(rows).sort_values("flops", kind="stable").reset_index(drop=True)
