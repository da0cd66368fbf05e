"""Search engines: pymoo NSGA-II, Optuna (NSGA-II, TPE), random search and a
surrogate-assisted NSGA-II (NSGANetV2-style).

Every engine sees only :class:`search.problem.SearchProblem` (genome in; objectives,
constraints, record out), the space's integer bounds and a :class:`RunContext`.
"""

from __future__ import annotations

from salnas.search.engines.base import Engine, RunContext, early_exit_population, initial_population
from salnas.search.problem import SearchProblem

__all__ = [
    "ENGINES",
    "Engine",
    "RunContext",
    "early_exit_population",
    "initial_population",
    "make_engine",
]

ENGINES = ("nsga2", "optuna-nsga2", "optuna-tpe", "random", "surrogate")


def make_engine(name: str, problem: SearchProblem, context: RunContext) -> Engine:
    """The engine called ``name`` (``search.engine``)."""
    if name == "nsga2":
        from salnas.search.engines.pymoo_nsga2 import PymooNSGA2

        return PymooNSGA2(problem, context)
    if name in ("optuna-nsga2", "optuna-tpe"):
        from salnas.search.engines.optuna_engine import OptunaEngine

        return OptunaEngine(problem, context, name.split("-", 1)[1])
    if name == "random":
        from salnas.search.engines.random_search import RandomSearch

        return RandomSearch(problem, context)
    if name == "surrogate":
        from salnas.search.engines.surrogate import SurrogateSearch

        return SurrogateSearch(problem, context)
    raise ValueError(f"unknown engine {name!r}; known: {ENGINES}")
