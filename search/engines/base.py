"""What every engine shares: the run context, the early-exit initial population, progress."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from salnas.config import SearchConfig
from salnas.errors import SalnasError
from salnas.search.problem import SearchProblem
from salnas.supernet.space import Genome, SearchSpace

__all__ = [
    "Engine", "RunContext", "anchor_genomes", "early_exit_population", "initial_population",
]


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
    on_generation: Callable[[int], object] = lambda g: None
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


def _under_thresholds(context: RunContext, genome: Genome) -> bool:
    """The early-exit check: parameters first (no FLOP trace needed), then FLOPs."""
    ee = context.config.early_exit
    if ee.max_params is not None and context.params(genome) > ee.max_params:
        return False
    return ee.max_flops is None or context.costs(genome)[1] <= ee.max_flops


def anchor_genomes(space: SearchSpace, context: RunContext) -> list[Genome]:
    """The two ends of every front, max and min genome, when ``search.anchors`` is on.

    An anchor over the early-exit thresholds is left out (early exit means no such genome
    in the first population).
    """
    if not context.config.anchors:
        return []
    anchors = [space.max_genome(), space.min_genome()]
    if context.config.early_exit.enabled:
        anchors = [g for g in anchors if _under_thresholds(context, g)]
    return anchors


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
        if genome.id not in picked and _under_thresholds(context, genome):
            picked[genome.id] = genome
            if len(picked) == n:
                return list(picked.values())
    raise SalnasError(
        f"search.early_exit: only {len(picked)} of {n} genomes met max_params={max_params}, "
        f"max_flops={max_flops} in {ee.max_draws} draws; raise the thresholds or max_draws"
    )


def initial_population(space: SearchSpace, context: RunContext, rng: np.random.Generator,
                       anchors: bool = True) -> list[Genome] | None:
    """The genomes the first population must hold, None when nothing is imposed.

    The anchors (:func:`anchor_genomes`, unless ``anchors=False``) come first; with
    ``search.early_exit`` early-exit draws fill the population. Without early exit the engine
    fills the rest with its own sampling.
    """
    picked = {g.id: g for g in anchor_genomes(space, context)} if anchors else {}
    if context.config.early_exit.enabled:
        for genome in early_exit_population(space, context, context.population, rng):
            if len(picked) >= context.population:
                break
            picked.setdefault(genome.id, genome)
    return list(picked.values())[: context.population] or None
