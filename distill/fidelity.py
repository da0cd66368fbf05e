"""Rank fidelity of the fitness oracle: does the supernet's ranking of architectures hold
after they are retrained as standalone models?

The oracle's score of an architecture is its supernet validation CC (``search_CC`` in
``results.csv``), the retrained one its test CC. Kendall's tau and Spearman's rho between the
two, with a permutation p-value (the pairing of oracle and retrained scores shuffled; two
sided), are written to ``rank_fidelity.json``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from salnas.layout import DISTILL

__all__ = ["FIDELITY_KIND", "rank_fidelity", "rank_fidelity_table"]

FIDELITY_KIND = "fidelity"  # results.csv kind of the rank-fidelity sample
ORACLE_COLUMN = DISTILL.search_prefix + "CC"
RETRAINED_COLUMN = DISTILL.test_prefix + "CC"


def rank_fidelity_table(results: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """``(arch, oracle, retrained)`` per architecture, and which sample it is.

    With a fidelity sample (``distill.fidelity``) only its rows count: they share one short
    budget. Otherwise every baseline-arm row with an oracle score (the selected Pareto
    architectures and the max peer). Retrained scores are means over seeds.
    """
    if results.empty or ORACLE_COLUMN not in results or RETRAINED_COLUMN not in results:
        return pd.DataFrame(columns=["arch", "oracle", "retrained"]), "none"
    rows = results[results[DISTILL.arm] == DISTILL.baseline]
    rows = rows[rows[ORACLE_COLUMN].notna() & rows[RETRAINED_COLUMN].notna()]
    sample = "retrained"
    if (rows[DISTILL.kind] == FIDELITY_KIND).any():
        rows, sample = rows[rows[DISTILL.kind] == FIDELITY_KIND], FIDELITY_KIND
    table = (rows.groupby(DISTILL.arch)[[ORACLE_COLUMN, RETRAINED_COLUMN]].mean()
             .reset_index().rename(columns={DISTILL.arch: "arch", ORACLE_COLUMN: "oracle",
                                            RETRAINED_COLUMN: "retrained"}))
    return table, sample


def rank_fidelity(results: pd.DataFrame, *, n_resamples: int = 9_999,
                  seed: int = 0) -> dict[str, Any]:
    """Kendall tau, Spearman rho, n and a permutation p-value (of tau) of ``results``.

    Fewer than 3 architectures, or constant scores, give null statistics (never NaN).
    """
    table, sample = rank_fidelity_table(results)
    n = len(table)
    out: dict[str, Any] = {"n": n, "sample": sample, "kendall_tau": None, "spearman_rho": None,
                           "p_value": None, "method": "permutation test of Kendall's tau "
                           f"(pairings, two-sided, {n_resamples} resamples, seed {seed})",
                           "architectures": table.to_dict(orient="records")}
    x, y = table["oracle"].to_numpy(float), table["retrained"].to_numpy(float)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    tau = float(stats.kendalltau(x, y).statistic)
    rho = float(stats.spearmanr(x, y).statistic)
    test = stats.permutation_test(
        (x, y), lambda a, b: stats.kendalltau(a, b).statistic, permutation_type="pairings",
        n_resamples=n_resamples, alternative="two-sided", rng=np.random.default_rng(seed))
    p = float(test.pvalue)
    out.update(kendall_tau=tau if math.isfinite(tau) else None,
               spearman_rho=rho if math.isfinite(rho) else None,
               p_value=p if math.isfinite(p) else None)
    return out
