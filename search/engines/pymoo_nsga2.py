"""NSGA-II (pymoo) on the integer genome, built from pymoo's small blocks.

* :class:`GenomeProblem` (``pymoo Problem``): integer bounds of the space, evaluation through
  :meth:`search.problem.SearchProblem.evaluate`;
* sampling: :class:`SeededSampling`: the anchors (max and min genome) and, with early exit
  (EEEA-Net), genomes under the thresholds, the rest ``IntegerRandomSampling``;
* SBX crossover with pymoo's ``RoundingRepair`` and :class:`RandomResetMutation` (default) or
  polynomial mutation (``search.mutation: pm``) on the integers, then
  :class:`CanonicalRepair` (``space.repair``: clip, round, zero the inactive genes) so that
  equivalent vectors are equal and duplicate elimination sees them as one;
* :class:`GenerationCallback` (``pymoo Callback``): the per-generation hook (hypervolume).

pymoo's ``seed`` fixes every random draw, so a rerun re-proposes the same genomes and the
archive answers them: that is the resume.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.callback import Callback
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling

from salnas.search.engines.base import Engine, RunContext, initial_population
from salnas.search.problem import SearchProblem

__all__ = [
    "CanonicalRepair", "GenomeProblem", "PymooNSGA2", "RandomResetMutation", "SeededSampling",
]


def _generation(algorithm: Any) -> int:
    """0 for the initial population, then 1, 2, ... (pymoo counts iterations from 1)."""
    return int(algorithm.n_iter) - 1 if algorithm is not None and algorithm.n_iter else 0


class GenomeProblem(Problem):
    """The search problem as pymoo sees it: integer vectors within the space's bounds."""

    def __init__(self, problem: SearchProblem, engine: str) -> None:
        lo, hi = problem.space.bounds()
        super().__init__(n_var=len(lo), n_obj=problem.n_obj, n_ieq_constr=problem.n_constr,
                         xl=lo, xu=hi, vtype=int, requires_kwargs=True)
        self.search = problem
        self.engine = engine

    def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any,
                  algorithm: Any = None, **kwargs: Any) -> None:
        space = self.search.space
        evals = self.search.evaluate_many([space.repair(x) for x in X], engine=self.engine,
                                          generation=_generation(algorithm))
        out["F"] = np.array([e.objectives for e in evals])
        if self.n_ieq_constr:
            out["G"] = np.array([e.constraints for e in evals])


class CanonicalRepair(Repair):
    """Round and clip to the bounds, then canonicalise (inactive genes 0) via ``space.repair``."""

    def __init__(self, space: Any) -> None:
        super().__init__()
        self.space = space

    def _do(self, problem: Problem, X: np.ndarray, **kwargs: Any) -> np.ndarray:
        return np.array([self.space.encode(self.space.repair(x)) for x in X], dtype=np.int64)


class SeededSampling(Sampling):
    """The first population: :func:`initial_population` (anchors, early exit), then uniform
    integer vectors for the places left."""

    def __init__(self, problem: SearchProblem, context: RunContext) -> None:
        super().__init__()
        self.search = problem
        self.context = context

    def _do(self, problem: Problem, n_samples: int, *args: Any, random_state: Any = None,
            **kwargs: Any) -> np.ndarray:
        space = self.search.space
        genomes = initial_population(space, self.context, random_state) or []
        seeded = [space.encode(g) for g in genomes[:n_samples]]
        rest = IntegerRandomSampling()._do(problem, n_samples - len(seeded),
                                           random_state=random_state)
        return np.array([*seeded, *rest], dtype=np.int64).reshape(n_samples, problem.n_var)


class RandomResetMutation(Mutation):
    """Each gene, with probability ``1 / n_var``, takes a uniformly drawn value of its range:
    the categorical counterpart of polynomial mutation (an operator gene jumps from the first
    choice to the last as easily as to the next)."""

    def _do(self, problem: Problem, X: np.ndarray, *args: Any, random_state: Any = None,
            **kwargs: Any) -> np.ndarray:
        X = np.array(X, dtype=np.float64)
        lo, hi = problem.bounds()
        mask = random_state.random(X.shape) < 1.0 / problem.n_var
        draws = random_state.integers(lo, hi + 1, size=X.shape)
        return np.where(mask, draws, X)


class GenerationCallback(Callback):
    """Calls the run's per-generation hook after each generation is evaluated and survived."""

    def __init__(self, hook: Any) -> None:
        super().__init__()
        self.hook = hook

    def notify(self, algorithm: Any) -> None:
        self.hook(_generation(algorithm))


class PymooNSGA2(Engine):
    """pymoo NSGA-II: ``search.population`` x ``search.generations`` (initial one included)."""

    name = "nsga2"

    def run(self) -> None:
        cfg, ctx = self.context.config, self.context
        algorithm = NSGA2(
            pop_size=cfg.population,
            sampling=SeededSampling(self.problem, ctx),
            crossover=SBX(prob=cfg.crossover_prob, eta=cfg.crossover_eta, vtype=float,
                          repair=RoundingRepair()),
            mutation=(RandomResetMutation() if cfg.mutation == "reset" else
                      PM(eta=cfg.mutation_eta, vtype=float, repair=RoundingRepair())),
            repair=CanonicalRepair(self.space),
            eliminate_duplicates=True,
            callback=GenerationCallback(ctx.on_generation),
        )
        algorithm.setup(GenomeProblem(self.problem, self.name),
                        termination=("n_gen", cfg.generations), seed=ctx.seed, verbose=False)
        while algorithm.has_next():
            algorithm.next()
