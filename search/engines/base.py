"""What every engine shares: the run context, the early-exit initial population, progress."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from salnas.config import SearchConfig
from salnas.errors import SalnasError
from search.problem import SearchProblem
from supernet.space import Genome, SearchSpace

__all__ = ["Engine", "RunContext", "early_exit_population", "initial_population"]


@dataclass
class RunContext:
    """Engine inputs besides the problem: budget, seed, storage and a per-generation hook.

    ``params`` and ``costs`` (params, FLOPs) are the cheap cost checks (no scoring) that early
    exit uses; parameters are checked first because they need no FLOP trace.
    ``on_generation(g)`` runs after generation ``g`` is evaluated (hypervolume, outputs).
    """

    config: SearchConfig
    seed: int
    params: Callable[[Genome], int]
    costs: Callable[[Genome], tuple[int, int]]
    on_generation: Callable[[int], None] = lambda g: None
    storage: Any = None  # an Optuna storage (or its URL / journal path); None: in memory
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def population(self) -> int:
        return self.config.population

    @property
    def trials(self) -> int:
        """Evaluation budget of trial-based engines (Optuna, random)."""
        cfg = self.config
        return cfg.trials if cfg.trials is not None else cfg.population * cfg.generations


class Engine(abc.ABC):
    """A search algorithm on the integer genome; resumable by replaying against the archive.

    Engines are deterministic for a fixed seed, and the archive answers every genome already
    evaluated without work, so running an engine again after a kill re-proposes the same
    genomes, gets the same answers, and continues exactly where it stopped.
    """

    name: str = "base"

    def __init__(self, problem: SearchProblem, context: RunContext) -> None:
        self.problem = problem
        self.context = context
        self.space = problem.space

    @abc.abstractmethod
    def run(self) -> None:
        """Spend the budget of ``context.config`` (proposals, cached ones included)."""


def early_exit_population(
    space: SearchSpace, context: RunContext, n: int, rng: np.random.Generator,
) -> list[Genome]:
    """EEEA-Net early exit: ``n`` distinct random genomes under the params/FLOPs thresholds.

    Only the cheap cost check runs (no BN recalibration, no scoring).
    """
    ee = context.config.early_exit
    max_params, max_flops = ee.max_params, ee.max_flops
    smallest = space.min_genome()
    params, flops = context.costs(smallest)
    if (max_params is not None and params > max_params) or (
        max_flops is not None and flops > max_flops
    ):
        raise SalnasError(
            f"search.early_exit: even the smallest genome ({params} params, {flops} FLOPs) is "
            f"over max_params={max_params} / max_flops={max_flops}; raise the thresholds"
        )
    picked: dict[str, Genome] = {}
    for _ in range(ee.max_draws):
        genome = space.random_genome(rng)
        if genome.id in picked:
            continue
        if max_params is not None and context.params(genome) > max_params:
            continue
        if max_flops is None or context.costs(genome)[1] <= max_flops:
            picked[genome.id] = genome
            if len(picked) == n:
                return list(picked.values())
    raise SalnasError(
        f"search.early_exit: only {len(picked)} of {n} genomes met max_params={max_params}, "
        f"max_flops={max_flops} in {ee.max_draws} draws; raise the thresholds or max_draws"
    )


def initial_population(space: SearchSpace, context: RunContext,
                       rng: np.random.Generator) -> list[Genome] | None:
    """The early-exit initial population when ``search.early_exit`` is set, else None."""
    if not context.config.early_exit.enabled:
        return None
    return early_exit_population(space, context, context.population, rng)
