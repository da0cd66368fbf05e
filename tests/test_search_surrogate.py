"""The surrogate-assisted engine on an analytic problem (no supernet): its model, its
ranking, determinism, budget, and that it out-searches random search where a model helps.

The engine on the real oracle (tiny supernet: outputs, anchors, early exit, budgets) is
covered with every other engine by ``test_search_engines.py::test_engine_outputs``.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from spaces import NARROW_SPACE

from salnas.config import SearchConfig
from salnas.search.engines import RunContext, make_engine
from salnas.search.engines.surrogate import GenomeSurrogate, rank_candidates
from salnas.search.hypervolume import hypervolume
from salnas.search.problem import Objectives, SearchProblem
from salnas.supernet.space import SearchSpace

SPACE = SearchSpace(NARROW_SPACE)
LO, HI = (np.asarray(b, dtype=float) for b in SPACE.bounds())


def capacity(genome) -> float:
    """Genes scaled to [0, 1], averaged: a smooth stand-in for model size."""
    x = (np.asarray(SPACE.encode(genome), dtype=float) - LO) / np.maximum(HI - LO, 1)
    return float(x.mean())


def costs(genome) -> tuple[int, int]:
    c = capacity(genome)
    return int(1e5 * (1 + 9 * c)), int(1e6 * (1 + 99 * c ** 2))


class AnalyticOracle:
    """Records as the fitness oracle writes them: CC rises with capacity, with diminishing
    returns, plus a fixed gene-dependent ripple; FLOPs grow quadratically."""

    def __init__(self, flops_budget: float | None = None) -> None:
        self.calls: list[str] = []
        self.budget = flops_budget
        self.memo: dict[str, dict] = {}

    def __call__(self, genome, *, engine: str = "", generation: int = 0):
        if genome.id in self.memo:
            return dict(self.memo[genome.id]), True
        self.calls.append(genome.id)
        params, flops = costs(genome)
        x = (np.asarray(SPACE.encode(genome), dtype=float) - LO) / np.maximum(HI - LO, 1)
        feasible = self.budget is None or flops <= self.budget
        cc = (0.8 * math.sqrt(capacity(genome)) + 0.05 * math.sin(7 * x[:5].sum())
              if feasible else math.nan)
        record = {"id": genome.id, "CC": cc, "params": params, "flops": flops,
                  "feasible": feasible, "scored": feasible}
        self.memo[genome.id] = record
        return dict(record), False


def run(engine: str, seed: int, population: int = 8, generations: int = 5,
        flops_budget: float | None = None, **search):
    cfg = SearchConfig(engine=engine, population=population, generations=generations,
                       constraints={"flops": flops_budget} if flops_budget else {},
                       surrogate={"population": 24, "generations": 10}, **search)
    objectives = Objectives.from_config(cfg)
    objectives.bounds["flops"] = (0.0, 1e8)
    oracle = AnalyticOracle(flops_budget)
    problem = SearchProblem(objectives, oracle, SPACE)
    generations_seen: list[int] = []
    context = RunContext(cfg, seed, params=lambda g: costs(g)[0], costs=costs,
                         on_generation=generations_seen.append)
    make_engine(engine, problem, context).run()
    records = [oracle.memo[i] for i in oracle.calls]
    return oracle, records, hypervolume(records, objectives), generations_seen


def test_surrogate_fits_what_it_saw_and_predicts_the_rest_smoothly():
    rng = np.random.default_rng(0)
    genomes = list({g.id: g for g in (SPACE.random_genome(rng) for _ in range(40))}.values())
    oracle = AnalyticOracle()
    records = [oracle(g)[0] for g in genomes]
    train, test = genomes[:30], genomes[30:]
    model = GenomeSurrogate(SPACE, train, records[:30], ["CC", "flops", "latency_ms"])
    seen = model.predict([SPACE.encode(g) for g in train])
    assert [p["CC"] for p in seen] == pytest.approx([r["CC"] for r in records[:30]], abs=0.02)
    unseen = model.predict([SPACE.encode(g) for g in test])
    truth = [r["flops"] for r in records[30:]]
    assert np.corrcoef([p["flops"] for p in unseen], truth)[0, 1] > 0.8
    assert all(math.isnan(p["latency_ms"]) for p in unseen)  # no record held it
    single = GenomeSurrogate(SPACE, train[:1], records[:1], ["CC"])
    assert single.predict([SPACE.encode(test[0])])[0]["CC"] == pytest.approx(records[0]["CC"])


def test_rank_candidates_feasible_front_first_ends_before_middle():
    f = np.array([[0.0, 3.0], [1.0, 2.0], [3.0, 0.0], [2.0, 2.5], [2.0, 1.0], [-9.0, -9.0]])
    g = np.array([[-1.0], [-1.0], [-1.0], [-1.0], [-1.0], [0.5]])
    order = rank_candidates(f, g, 6)
    assert set(order[:4]) == {0, 1, 2, 4}  # the feasible front (3 is dominated by 1)
    assert set(order[:2]) == {0, 2}  # its ends first (infinite crowding distance)
    assert order[4:] == [3, 5]  # then the next front, then the infeasible row
    assert rank_candidates(f, None, 2)[0] == 5  # unconstrained, row 5 dominates every row
    assert rank_candidates(f[:0], None, 3) == []


def test_engine_spends_the_budget_deterministically_and_never_repeats():
    oracle, _, hv, gens = run("surrogate", seed=1)
    assert len(oracle.calls) == len(set(oracle.calls)) == 8 * 5
    assert gens == [0, 1, 2, 3, 4]
    assert SPACE.max_genome().id in oracle.calls[:8] and SPACE.min_genome().id in oracle.calls[:8]
    again, _, hv_again, _ = run("surrogate", seed=1)
    assert again.calls == oracle.calls and hv_again == hv
    other, _, _, _ = run("surrogate", seed=2)
    assert other.calls != oracle.calls


def test_budgets_are_respected_by_the_proposals():
    budget = 2e7
    _, records, hv, _ = run("surrogate", seed=0, flops_budget=budget)
    later = records[8:]  # chosen by the model, with exact FLOPs
    assert hv > 0 and sum(r["flops"] <= budget for r in later) >= 0.9 * len(later)


def test_surrogate_beats_random_search_on_a_smooth_problem():
    """With a model to learn, the surrogate's front is better at equal evaluations (3 seeds)."""
    surrogate = [run("surrogate", seed)[2] for seed in (0, 1, 2)]
    random = [run("random", seed)[2] for seed in (0, 1, 2)]
    assert statistics.mean(surrogate) > statistics.mean(random)
