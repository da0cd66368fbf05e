"""Evolutionary multi-objective search on the trained supernet (``salnas search``).

Layers, each usable alone (Archai-style separation of space, evaluator, objectives and
algorithms):

* :mod:`search.archive`: the persistent, concurrency-safe record of evaluated genomes;
* :mod:`search.oracle`: genome -> record (costs first, then BN recalibration and scores);
* :mod:`search.problem`: objectives and constraints, ``evaluate(genome) -> Evaluation``;
* :mod:`search.engines`: pymoo NSGA-II, Optuna NSGA-II/TPE, random search;
* :mod:`search.hypervolume`: Pareto front and normalised hypervolume;
* :mod:`search.cli`: ``salnas search`` and :func:`search.cli.run_search`.

Kept import-light: submodules import torch, pymoo and Optuna when used.
"""
