"""Random search: the baseline every engine must beat, on the same interface and budget."""

from __future__ import annotations

import numpy as np

from salnas.search.engines.base import Engine, initial_population

__all__ = ["RandomSearch"]


class RandomSearch(Engine):
    """``search.trials`` uniform random genomes (the first ``population`` from early exit when
    it is enabled); "generation" ``g`` is the ``g``-th block of ``population`` proposals.

    With ``search.anchors`` the max and min genomes come first, as for every engine, so a
    comparison of engines at equal evaluations gives them equal anchors."""

    name = "random"

    def run(self) -> None:
        ctx = self.context
        rng = np.random.default_rng([ctx.seed, 23])
        first = initial_population(self.space, ctx, rng) or []
        pop = ctx.population
        for i in range(ctx.trials):
            genome = first[i] if i < len(first) else self.space.random_genome(rng)
            self.problem.evaluate(genome, engine=self.name, generation=i // pop)
            if (i + 1) % pop == 0 or i + 1 == ctx.trials:
                ctx.on_generation(i // pop)
