"""Evolutionary multi-objective search on the trained supernet (``salnas search``).

Layers, each usable alone (Archai-style separation of space, evaluator, objectives and
algorithms):

* :mod:`salnas.search.archive`: the persistent, concurrency-safe record of evaluated genomes;
* :mod:`salnas.search.oracle`: genome -> record (costs first, then BN recalibration and scores);
* :mod:`salnas.search.problem`: objectives and constraints, ``evaluate(genome) -> Evaluation``;
* :mod:`salnas.search.engines`: pymoo NSGA-II, Optuna NSGA-II/TPE, random search;
* :mod:`salnas.search.hypervolume`: Pareto front and normalised hypervolume;
* :mod:`salnas.search.latency`: latency measurement and the lookup table;
* :mod:`salnas.search.run`: one search run (:class:`SearchRun`, :func:`run_search`);
* :mod:`salnas.search.stage`: the stage runner of ``salnas run``; :mod:`salnas.search.cli`:
  ``salnas search``.

Kept import-light: submodules import torch, pymoo and Optuna when used.
"""
