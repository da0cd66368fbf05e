"""Surrogate-assisted search after NSGANetV2 / MSuNAS (Lu et al., ECCV 2020): the oracle
scores ``search.population`` genomes per generation, and a model learned from every score so
far chooses them.

* generation 0: :func:`initial_population` (anchors, early exit), filled with uniform random
  genomes, all scored by the oracle;
* every later generation: one radial-basis-function model per objective and budget that the
  oracle measures (``scipy.interpolate.RBFInterpolator``, Gaussian kernel on the genes scaled
  to [0, 1], a constant trend, light smoothing), fitted on the genomes scored so far; NSGA-II
  (pymoo, the operators of :mod:`search.engines.pymoo_nsga2`) runs
  ``search.surrogate.generations`` generations of ``search.surrogate.population`` on those
  predictions alone, seeded with the scored front; of its final population the genomes not
  yet scored are ranked (non-dominated front, then crowding distance) on the predictions,
  the best 2 x ``search.population`` get their exact params and FLOPs from the cheap cost
  check, and the best ``search.population`` of those, ranked again, go to the oracle.

Every draw comes from ``context.seed`` and the generation, and the models are fitted on this
run's evaluations in proposal order, so a rerun re-proposes the same genomes and the archive
answers them (the resume of every engine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
from scipy.interpolate import RBFInterpolator

from salnas.search.engines.base import Engine, initial_population
from salnas.search.engines.pymoo_nsga2 import CanonicalRepair, RandomResetMutation
from salnas.search.problem import Evaluation
from salnas.supernet.space import Genome

__all__ = ["GenomeSurrogate", "SurrogateSearch", "rank_candidates"]

EXACT_COSTS = ("params", "flops")  # from the cheap cost check, never predicted for the oracle


class GenomeSurrogate:
    """One RBF model per record field, on the genes scaled to [0, 1] by the space's bounds.

    A field is fitted on the genomes whose record holds a finite value for it (an infeasible
    genome has costs but no scores); with fewer than two such genomes it predicts their mean.
    """

    def __init__(self, space: Any, genomes: Sequence[Genome], records: Sequence[dict[str, Any]],
                 fields: Sequence[str], smoothing: float = 1e-3) -> None:
        self.space = space
        lo, hi = space.bounds()
        self.lo = np.asarray(lo, dtype=np.float64)
        self.span = np.maximum(np.asarray(hi, dtype=np.float64) - self.lo, 1.0)
        x = self.features([space.encode(g) for g in genomes])
        self.models: dict[str, Any] = {}
        for name in fields:
            values = np.array([_finite(r.get(name)) for r in records])
            keep = np.isfinite(values)
            xs, ys = _unique_rows(x[keep], values[keep])
            if len(ys) < 2:
                self.models[name] = float(ys.mean()) if len(ys) else math.nan
                continue
            distances = np.linalg.norm(xs[:, None, :] - xs[None, :, :], axis=-1)
            scale = float(np.median(distances[np.triu_indices(len(xs), 1)])) or 1.0
            self.models[name] = RBFInterpolator(xs, ys, kernel="gaussian", epsilon=1 / scale,
                                                degree=0, smoothing=smoothing)

    def features(self, vectors: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        return (np.atleast_2d(np.asarray(vectors, dtype=np.float64)) - self.lo) / self.span

    def predict(self, vectors: Sequence[np.ndarray] | np.ndarray) -> list[dict[str, float]]:
        """Predicted records (the fitted fields only) of integer genome vectors."""
        x = self.features(vectors)
        columns = {name: (np.full(len(x), model) if isinstance(model, float)
                          else np.asarray(model(x), dtype=np.float64))
                   for name, model in self.models.items()}
        return [{name: float(col[i]) for name, col in columns.items()} for i in range(len(x))]


def _finite(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def _unique_rows(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Identical feature rows (RBF interpolation needs distinct centres) averaged."""
    if not len(x):
        return x, y
    rows, inverse = np.unique(x, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    means = np.bincount(inverse, weights=y) / np.bincount(inverse)
    return rows, means


def rank_candidates(f: np.ndarray, g: np.ndarray | None, k: int) -> list[int]:
    """Indices of the ``k`` best rows of minimisation objectives ``f`` (constraint values
    ``g``, ``<= 0`` feasible): feasible before infeasible (by total violation), then by
    non-dominated front and, within a front, by crowding distance (ends first)."""
    n = len(f)
    violation = (np.zeros(n) if g is None or not np.size(g)
                 else np.maximum(np.asarray(g, dtype=np.float64), 0).sum(axis=1))
    feasible = np.flatnonzero(violation <= 0)
    order: list[int] = []
    if len(feasible):
        for front in NonDominatedSorting().do(f[feasible]):
            members = feasible[front]
            crowd = (calc_crowding_distance(f[members]) if len(members) > 2
                     else np.full(len(members), np.inf))
            order += [int(members[i]) for i in np.argsort(-crowd, kind="stable")]
            if len(order) >= k:
                break
    infeasible = np.flatnonzero(violation > 0)
    order += [int(i) for i in infeasible[np.argsort(violation[infeasible], kind="stable")]]
    return order[:k]


class _PredictedProblem(Problem):
    """The search problem as the surrogate answers it (no oracle call)."""

    def __init__(self, engine: SurrogateSearch, surrogate: GenomeSurrogate) -> None:
        lo, hi = engine.space.bounds()
        objectives = engine.problem.objectives
        super().__init__(n_var=len(lo), n_obj=len(objectives.names),
                         n_ieq_constr=len(objectives.budgets), xl=lo, xu=hi, vtype=int)
        self.engine = engine
        self.surrogate = surrogate

    def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        f, g = self.engine.predicted(self.surrogate, np.asarray(X, dtype=np.int64))
        out["F"] = f
        if self.n_ieq_constr:
            out["G"] = g


class SurrogateSearch(Engine):
    """``search.population`` oracle evaluations per generation for ``search.generations``
    generations (the initial one included), chosen by a surrogate after the first."""

    name = "surrogate"

    def run(self) -> None:
        ctx, space = self.context, self.space
        pop = ctx.population
        rng = np.random.default_rng([ctx.seed, 37])
        self.scored: dict[str, tuple[Genome, Evaluation]] = {}
        batch = list(initial_population(space, ctx, rng) or [])[:pop]
        batch = self._fill(batch, pop, rng)
        for generation in range(ctx.config.generations):
            if generation:
                batch = self._propose(pop, generation)
            for genome in batch:
                self.scored[genome.id] = (genome, self.problem.evaluate(
                    genome, engine=self.name, generation=generation))
            ctx.on_generation(generation)

    # ------------------------------------------------------------------ proposals
    def _fill(self, batch: list[Genome], n: int, rng: np.random.Generator) -> list[Genome]:
        """``batch`` completed to ``n`` distinct genomes not yet scored, drawn uniformly."""
        ids = {g.id for g in batch} | set(self.scored)
        for _ in range(100 * n):
            if len(batch) >= n:
                break
            genome = self.space.random_genome(rng)
            if genome.id not in ids:
                ids.add(genome.id)
                batch.append(genome)
        return batch

    def _fields(self) -> list[str]:
        objectives = self.problem.objectives
        return list(dict.fromkeys([*objectives.names, *objectives.budget_names]))

    def predicted(self, surrogate: GenomeSurrogate, vectors: np.ndarray,
                  exact: Sequence[Genome] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(minimisation-form objectives, constraint values) of integer vectors, every field
        predicted, or for ``exact`` genomes with their measured params and FLOPs."""
        objectives = self.problem.objectives
        records = surrogate.predict(vectors)
        if exact is not None:
            for record, genome in zip(records, exact, strict=True):
                record["params"], record["flops"] = map(float, self.context.costs(genome))
        f = np.array([objectives.minimised(r) for r in records])
        g = np.array([objectives.violations(r) for r in records])
        return f, g.reshape(len(records), len(objectives.budget_names))

    def _propose(self, n: int, generation: int) -> list[Genome]:
        space, ctx = self.space, self.context
        cfg = ctx.config.surrogate
        genomes = [g for g, _ in self.scored.values()]
        evals = [e for _, e in self.scored.values()]
        surrogate = GenomeSurrogate(space, genomes, [e.record for e in evals], self._fields())
        # The inner search starts from the scored front (ranked on the oracle's values).
        f = np.array([e.objectives for e in evals])
        g = np.array([e.constraints for e in evals]).reshape(len(evals), -1)
        best = [space.encode(genomes[i]) for i in rank_candidates(f, g, cfg.population)]
        rng = np.random.default_rng([ctx.seed, 41, generation])
        lo, hi = space.bounds()
        rest = rng.integers(lo, np.asarray(hi) + 1, size=(cfg.population - len(best), len(lo)))
        start = np.array([*best, *rest], dtype=np.int64).reshape(cfg.population, len(lo))
        algorithm = NSGA2(
            pop_size=cfg.population, sampling=start,
            crossover=SBX(prob=ctx.config.crossover_prob, eta=ctx.config.crossover_eta,
                          vtype=float, repair=RoundingRepair()),
            mutation=RandomResetMutation(), repair=CanonicalRepair(space),
            eliminate_duplicates=True,
        )
        algorithm.setup(_PredictedProblem(self, surrogate), termination=("n_gen", cfg.generations),
                        seed=int(rng.integers(2**31 - 1)), verbose=False)
        while algorithm.has_next():
            algorithm.next()
        pool: dict[str, Genome] = {}
        for x in algorithm.pop.get("X"):
            genome = space.repair(x)
            if genome.id not in self.scored:
                pool.setdefault(genome.id, genome)
        chosen: list[Genome] = []
        if pool:
            # Exact costs (a FLOP trace each) only for the 2n best by prediction alone.
            candidates = list(pool.values())
            f, g = self.predicted(surrogate, np.array([space.encode(c) for c in candidates]))
            candidates = [candidates[i] for i in rank_candidates(f, g, 2 * n)]
            f, g = self.predicted(surrogate, np.array([space.encode(c) for c in candidates]),
                                  exact=candidates)
            chosen = [candidates[i] for i in rank_candidates(f, g, n)]
        return self._fill(chosen, n, rng)
