"""Objectives, constraints, Pareto front and the fixed hypervolume normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from salnas.config import SearchConfig, config_from_dict
from salnas.errors import ConfigError, SalnasError
from salnas.search.engines.base import RunContext, initial_population
from salnas.search.hypervolume import hv_history, hypervolume, pareto_front
from salnas.search.problem import OBJECTIVES, Objectives, SearchProblem
from salnas.supernet.space import SearchSpace


def objectives(names=("CC", "flops"), budgets=None, **kw) -> Objectives:
    obj = Objectives.from_config(SearchConfig(objectives=list(names),
                                              constraints=budgets or {}, **kw))
    obj.bounds.setdefault("flops", (0.0, 100.0))
    obj.bounds.setdefault("latency_ms", (0.0, 10.0))
    return obj


def rec(i, cc, flops, feasible=True, generation=0, **kw):
    return {"id": f"r{i}", "CC": cc, "flops": flops, "feasible": feasible, "scored": feasible,
            "generation": generation, **kw}


def test_objective_and_budget_names_are_checked():
    assert set(OBJECTIVES) == {"CC", "KLD", "NSS", "SIM", "AUC_Judd", "params", "flops",
                               "latency_ms"}
    with pytest.raises(ConfigError, match=r"search.objectives: unknown objective\(s\) \['ccc'\]"):
        objectives(("ccc", "flops"))
    with pytest.raises(ConfigError, match="two or more distinct"):
        objectives(("CC", "CC"))
    with pytest.raises(ConfigError, match=r"search.constraints: unknown budget\(s\) \['energy'\]"):
        objectives(budgets={"energy": 1.0})
    with pytest.raises(ConfigError, match=r"search\.constraints\.flops: budget must be > 0"):
        objectives(budgets={"flops": 0})
    with pytest.raises(ConfigError, match=r"search\.hv_bounds\.NSS: not one of"):
        objectives(hv_bounds={"NSS": (0, 3)})
    with pytest.raises(ConfigError, match=r"unknown key 'search\.populaton'"):
        config_from_dict({"search": {"populaton": 4}})
    with pytest.raises(ConfigError, match=r"'search\.population'"):
        config_from_dict({"search": {"population": 1}})


def test_minimisation_form_violations_and_normalisation():
    obj = objectives(("CC", "KLD", "flops"), budgets={"flops": 50, "latency_ms": 5})
    assert obj.directions == ["maximize", "minimize", "minimize"]
    assert obj.needs_latency
    r = rec(0, 0.75, 60.0, KLD=1.0, latency_ms=math.nan)
    np.testing.assert_allclose(obj.minimised(r), [-0.75, 1.0, 60.0])
    # COSTS order (flops, then latency_ms); an uncomputed latency does not add a violation
    np.testing.assert_allclose(obj.violations(r), [0.2, 0.0])
    np.testing.assert_allclose(obj.normalised(obj.minimised(r)), [[0.25, 0.2, 0.6]])
    # an infeasible, unscored genome takes the worst bound of each metric
    unscored = rec(1, math.nan, 90.0, feasible=False, KLD=math.nan)
    np.testing.assert_allclose(obj.raw(unscored), [0.0, 5.0, 90.0])
    np.testing.assert_allclose(obj.reference_point, [1.1, 1.1, 1.1])
    # better than the best bound clips to 0 (NSS above 5, say)
    assert objectives(("NSS", "flops")).normalised(np.array([-7.0, 0.0])).tolist() == [[0, 0]]


def test_pareto_front_is_feasible_and_mutually_non_dominated():
    obj = objectives()
    records = [rec(0, 0.5, 50), rec(1, 0.6, 60), rec(2, 0.4, 70),  # 2 dominated by 0
               rec(3, 0.9, 10, feasible=False),  # would dominate all: infeasible, excluded
               rec(4, 0.6, 60)]  # equal objectives: neither dominates
    front = pareto_front(records, obj)
    assert [r["id"] for r in front] == ["r0", "r1", "r4"]
    f = np.array([obj.minimised(r) for r in front])
    for i in range(len(f)):
        for j in range(len(f)):
            assert not (np.all(f[i] <= f[j]) and np.any(f[i] < f[j]))


def test_hypervolume_is_normalised_and_cumulative():
    obj = objectives()
    # one point at CC 1, flops 0: the whole box up to the reference point 1.1 x 1.1
    assert hypervolume([rec(0, 1.0, 0.0)], obj) == pytest.approx(1.21)
    assert hypervolume([rec(0, 0.5, 50, feasible=False)], obj) == 0.0
    records = [rec(0, 0.5, 50, generation=0), rec(1, 0.3, 90, generation=1),
               rec(2, 0.7, 40, generation=2), rec(3, 0.9, 5, feasible=False, generation=2)]
    history = hv_history(records, obj)
    assert [h["generation"] for h in history] == [0, 1, 2]
    assert [h["n_evaluated"] for h in history] == [1, 2, 4]
    assert [h["n_feasible"] for h in history] == [1, 2, 3]
    hv = [h["hypervolume"] for h in history]
    assert hv == sorted(hv) and hv[0] == pytest.approx(0.6 * 0.6)
    assert hv[2] == pytest.approx(0.8 * 0.7)


def test_search_problem_adapts_records():
    space = SearchSpace({"resolutions": [[32, 64]]})
    obj = objectives(budgets={"flops": 50})
    seen = []

    def oracle(genome, engine, generation):
        return rec(0, 0.5, 75.0, feasible=False), True

    problem = SearchProblem(obj, oracle, space, on_evaluation=seen.append)
    ev = problem.evaluate(space.min_genome(), engine="x", generation=3)
    assert ev.cached and not ev.feasible and seen == [ev]
    np.testing.assert_allclose(ev.objectives, [-0.5, 75.0])
    np.testing.assert_allclose(ev.constraints, [0.5])
    assert (problem.n_obj, problem.n_constr) == (2, 1)


def test_early_exit_draws_only_under_the_thresholds():
    space = SearchSpace({"resolutions": [[32, 64], [64, 96]]})
    size = lambda g: int(space.encode(g).sum()) + 1  # noqa: E731  stand-in cost: vector sum + 1
    cfg = SearchConfig(population=6, early_exit={"max_params": 20, "max_draws": 500})
    ctx = RunContext(cfg, 0, params=size, costs=lambda g: (size(g), 0))
    population = initial_population(space, ctx, np.random.default_rng(0))
    assert len(population) == 6 == len({g.id for g in population})
    assert all(size(g) <= 20 for g in population)
    assert population == initial_population(space, ctx, np.random.default_rng(0))  # seeded
    # anchors: the min genome (under the threshold) comes first, the max genome (over it) not
    assert population[0] == space.min_genome() and space.max_genome() not in population
    plain = SearchConfig(anchors=False)
    assert initial_population(space, RunContext(plain, 0, size, size),
                              np.random.default_rng(0)) is None  # nothing imposed
    assert initial_population(space, RunContext(SearchConfig(), 0, size, size),
                              np.random.default_rng(0)) == [space.max_genome(), space.min_genome()]
    assert initial_population(space, RunContext(SearchConfig(), 0, size, size),
                              np.random.default_rng(0), anchors=False) is None  # random search
    unanchored = initial_population(space, RunContext(cfg.model_copy(update={"anchors": False}),
                                    0, size, lambda g: (size(g), 0)), np.random.default_rng(0))
    assert len(unanchored) == 6 and all(size(g) <= 20 for g in unanchored)
    tight = cfg.model_copy(update={"early_exit": cfg.early_exit.model_copy(
        update={"max_params": 3})})
    with pytest.raises(SalnasError, match=r"search\.early_exit: only"):
        initial_population(space, RunContext(tight, 0, size, lambda g: (size(g), 0)),
                           np.random.default_rng(0))
    impossible = cfg.model_copy(update={"early_exit": cfg.early_exit.model_copy(
        update={"max_params": 0.5})})
    with pytest.raises(SalnasError, match="even the smallest genome"):
        initial_population(space, RunContext(impossible, 0, size, lambda g: (size(g), 0)),
                           np.random.default_rng(0))


def test_random_reset_mutation_stays_in_bounds_and_jumps():
    from pymoo.core.problem import Problem

    from salnas.search.engines.pymoo_nsga2 import RandomResetMutation

    problem = Problem(n_var=8, n_obj=1, xl=np.zeros(8), xu=np.full(8, 3), vtype=int)
    X = np.zeros((2000, 8))
    out = RandomResetMutation()._do(problem, X, random_state=np.random.default_rng(0))
    again = RandomResetMutation()._do(problem, X, random_state=np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)  # seeded
    assert out.min() >= 0 and out.max() <= 3 and np.all(out == np.rint(out))
    changed = out != X
    assert 0.08 < changed.mean() < 0.11  # each gene resampled with probability 1/8, 3/4 move
    assert (out == 3).sum() > 0.25 * changed.sum()  # the far end as often as the next value
