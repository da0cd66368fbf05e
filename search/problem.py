"""Objectives and constraints: the one interface every search engine adapts to.

``SearchProblem.evaluate(genome) -> Evaluation(objectives, constraints, record)``:

* ``objectives`` are in *minimisation form* (maximised metrics negated), the form pymoo wants;
  :meth:`Objectives.optuna_values` gives the raw values with :attr:`Objectives.directions`.
* ``constraints`` are ``(value - budget) / budget`` per budget, ``<= 0`` when met (pymoo's
  convention, and what Optuna's ``constraints_func`` expects).
* ``record`` is the archive row (every metric, costs, feasibility, bookkeeping).

Infeasible genomes are never scored: their metric objectives take the worst normalisation
bound, and :func:`search.hypervolume.pareto_front` never admits them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from salnas.config import SearchConfig
from salnas.errors import ConfigError
from salnas.metrics import HIGHER_IS_BETTER
from salnas.search.archive import METRICS
from salnas.supernet.space import Genome

__all__ = [
    "COSTS",
    "DEFAULT_METRIC_BOUNDS",
    "OBJECTIVES",
    "Evaluation",
    "Objectives",
    "SearchProblem",
]

COSTS: tuple[str, ...] = ("params", "flops", "latency_ms")
# name -> higher is better. Every objective is also a column of archive.csv.
OBJECTIVES: dict[str, bool] = {
    **{m: HIGHER_IS_BETTER[m] for m in METRICS},
    **dict.fromkeys(COSTS, False),
}
# Fixed hypervolume normalisation of the metrics (costs: [0, cost of the max genome]).
# CC, SIM in [0, 1] by definition; AUC_Judd from chance (0.5) to 1; NSS and KLD are unbounded,
# [0, 5] covers saliency models (MIT benchmark: NSS <= ~3, KLD <= ~3 for sensible models).
DEFAULT_METRIC_BOUNDS: dict[str, tuple[float, float]] = {
    "CC": (0.0, 1.0),
    "SIM": (0.0, 1.0),
    "AUC_Judd": (0.5, 1.0),
    "NSS": (0.0, 5.0),
    "KLD": (0.0, 5.0),
}


@dataclass(frozen=True)
class Evaluation:
    """What an engine gets back for one genome."""

    objectives: np.ndarray  # minimisation form
    constraints: np.ndarray  # <= 0 feasible
    record: dict[str, Any]
    cached: bool = False

    @property
    def feasible(self) -> bool:
        return bool(self.record["feasible"])


@dataclass
class Objectives:
    """Which objectives, which budgets, and the fixed normalisation for the hypervolume."""

    names: tuple[str, ...]
    budgets: dict[str, float] = field(default_factory=dict)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: SearchConfig) -> Objectives:
        """Validate ``search.objectives`` / ``search.constraints`` (errors name the setting)."""
        names = tuple(cfg.objectives)
        unknown = [n for n in names if n not in OBJECTIVES]
        if unknown:
            raise ConfigError(
                f"search.objectives: unknown objective(s) {unknown}; known: {list(OBJECTIVES)}"
            )
        if len(names) < 2 or len(set(names)) != len(names):
            raise ConfigError(f"search.objectives {list(names)}: need two or more distinct names")
        bad = [k for k in cfg.constraints if k not in COSTS]
        if bad:
            raise ConfigError(
                f"search.constraints: unknown budget(s) {bad}; known: {list(COSTS)}"
            )
        for key, value in cfg.constraints.items():
            if not value > 0:
                raise ConfigError(f"search.constraints.{key}: budget must be > 0, got {value}")
        for key, (lo, hi) in cfg.hv_bounds.items():
            if key not in names:
                raise ConfigError(f"search.hv_bounds.{key}: not one of search.objectives")
            if not hi > lo:
                raise ConfigError(f"search.hv_bounds.{key}: need lower < upper, got {[lo, hi]}")
        bounds = {n: DEFAULT_METRIC_BOUNDS[n] for n in names if n in DEFAULT_METRIC_BOUNDS}
        bounds.update({k: (float(lo), float(hi)) for k, (lo, hi) in cfg.hv_bounds.items()})
        return cls(names, dict(cfg.constraints), bounds)

    @property
    def budget_names(self) -> list[str]:
        """Budgets in the order of :meth:`violations` (``COSTS`` order)."""
        return [k for k in COSTS if k in self.budgets]

    @property
    def needs_latency(self) -> bool:
        return "latency_ms" in self.names or "latency_ms" in self.budgets

    @property
    def directions(self) -> list[str]:
        """Optuna directions of :meth:`optuna_values`."""
        return ["maximize" if OBJECTIVES[n] else "minimize" for n in self.names]

    def worst(self, name: str) -> float:
        """Raw value standing in for an objective that was not computed (infeasible genome)."""
        lo, hi = self.bounds[name]
        return lo if OBJECTIVES[name] else hi

    def raw(self, record: Mapping[str, Any]) -> np.ndarray:
        """Objective values as recorded (NaN: not computed, replaced by the worst bound)."""
        out = []
        for n in self.names:
            v = record.get(n)
            v = math.nan if v is None else float(v)
            out.append(self.worst(n) if math.isnan(v) else v)
        return np.array(out, dtype=np.float64)

    def minimised(self, record: Mapping[str, Any]) -> np.ndarray:
        """Minimisation form: maximised objectives negated."""
        sign = np.array([-1.0 if OBJECTIVES[n] else 1.0 for n in self.names])
        return sign * self.raw(record)

    def optuna_values(self, record: Mapping[str, Any]) -> list[float]:
        return self.raw(record).tolist()

    def violations(self, record: Mapping[str, Any]) -> np.ndarray:
        """``(value - budget) / budget`` per budget, in ``COSTS`` order; 0 when not computed
        (a cost is skipped only after an earlier budget already failed)."""
        out = []
        for key in self.budget_names:
            v = record.get(key)
            v = math.nan if v is None else float(v)
            out.append(0.0 if math.isnan(v) else (v - self.budgets[key]) / self.budgets[key])
        return np.array(out, dtype=np.float64)

    def normalised(self, minimised: np.ndarray) -> np.ndarray:
        """Map minimisation-form objectives onto [0, 1] (0 best) with the fixed bounds;
        values better than the best bound are clipped to 0."""
        f = np.atleast_2d(np.asarray(minimised, dtype=np.float64))
        lo = np.empty(len(self.names))
        span = np.empty(len(self.names))
        for j, n in enumerate(self.names):
            a, b = self.bounds[n]
            lo[j], span[j] = (-b, b - a) if OBJECTIVES[n] else (a, b - a)
        return np.maximum((f - lo) / span, 0.0)

    @property
    def reference_point(self) -> np.ndarray:
        """Hypervolume reference point in normalised space (1.1 per objective)."""
        return np.full(len(self.names), 1.1)


class SearchProblem:
    """Genome in, objectives/constraints/record out; every engine calls :meth:`evaluate`.

    ``evaluate_record`` is the oracle (archive-backed, see :class:`search.oracle.FitnessOracle`);
    ``on_evaluation`` lets the CLI count evaluations and cache hits for progress display.
    """

    def __init__(
        self,
        objectives: Objectives,
        evaluate_record: Callable[..., tuple[dict[str, Any], bool]],
        space: Any,
        on_evaluation: Callable[[Evaluation], None] | None = None,
    ) -> None:
        self.objectives = objectives
        self._evaluate_record = evaluate_record
        self.space = space
        self.on_evaluation = on_evaluation

    @property
    def n_obj(self) -> int:
        return len(self.objectives.names)

    @property
    def n_constr(self) -> int:
        return len(self.objectives.budgets)

    def evaluate(self, genome: Genome, *, engine: str = "", generation: int = 0) -> Evaluation:
        """Objectives (minimisation form), constraints (<= 0 feasible) and the archive row."""
        record, cached = self._evaluate_record(genome, engine=engine, generation=generation)
        ev = Evaluation(
            self.objectives.minimised(record), self.objectives.violations(record), record, cached
        )
        if self.on_evaluation is not None:
            self.on_evaluation(ev)
        return ev

    def evaluate_many(
        self, genomes: Sequence[Genome], *, engine: str = "", generation: int = 0
    ) -> list[Evaluation]:
        return [self.evaluate(g, engine=engine, generation=generation) for g in genomes]
