"""One search run: wire the supernet, the oracle, the archive and an engine; write outputs.

Outputs in the search directory (atomic writes; ``archive.csv`` is append-only, see
:mod:`salnas.search.archive`): ``archive.csv``, ``pareto.csv``, ``hv_history.csv``,
``search.json``, ``config.yaml``. Running it again resumes (the engine replays, the archive
answers).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from salnas.config import Config, dump_config
from salnas.datasets.training import load_training_data
from salnas.errors import ConfigError, SalnasError
from salnas.io import (
    atomic_open,
    file_sha1,
    provenance,
    read_json,
    remove_stale_tmp,
    write_json_atomic,
    write_text_atomic,
)
from salnas.layout import (
    ARCHIVE_COLUMNS,
    ARCHIVE_CSV,
    CONFIG_YAML,
    HV_COLUMNS,
    HV_CSV,
    PARETO_CSV,
    SEARCH_JSON,
    SPLIT_JSON,
    Status,
    check_fingerprint,
)
from salnas.search.archive import Archive, format_value
from salnas.search.engines import RunContext, make_engine
from salnas.search.hypervolume import hv_history, pareto_front
from salnas.search.oracle import FitnessOracle, latency_model
from salnas.search.problem import COSTS, Objectives, SearchProblem
from salnas.supernet.checkpoint import load_supernet
from salnas.supernet.runtime import resolve_device

__all__ = ["RESUMABLE", "SearchRun", "fingerprint", "run_search"]

# Settings that may change between a run and its resume (budget and where/how it runs).
RESUMABLE = ("generations", "trials", "storage", "claim_timeout_s", "device", "threads")


def fingerprint(config: Config, supernet_sha1: str) -> dict[str, Any]:
    """What must not change for a search directory (or a shared study) to be continued:
    the seed, the search settings but the :data:`RESUMABLE` ones, and the supernet's bytes."""
    search = config.search.model_dump(mode="json", exclude=set(RESUMABLE))
    return {"seed": config.seed, "search": search, "supernet_sha1": supernet_sha1}


def _write_csv(path: Path, fields: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(fields)
        writer.writerows([format_value(f, r.get(f)) for f in fields] for r in rows)


class SearchRun:
    """One ``salnas search`` invocation: everything set up, :meth:`run` spends the budget."""

    def __init__(self, config: Config, supernet: Path, out_dir: Path, *,
                 progress: bool = True) -> None:
        cfg = config.search
        self.config, self.out_dir, self.progress = config, Path(out_dir), progress
        self.objectives = Objectives.from_config(cfg)  # bad names fail before any work
        if cfg.storage is not None and not cfg.engine.startswith("optuna"):
            raise ConfigError(f"search.storage / --storage is for the optuna engines, not "
                              f"search.engine {cfg.engine!r}")
        self.storage: Any = None
        if cfg.storage is not None:  # unreachable storage: fail before anything is written
            from salnas.search.engines.optuna_engine import open_storage

            self.storage = open_storage(cfg.storage)
        supernet = Path(supernet)
        model, sn_config, _ = load_supernet(supernet)  # clear error when missing
        latency = (latency_model(cfg.latency, model.space)
                   if self.objectives.needs_latency or cfg.latency.record else None)
        self.fingerprint = fingerprint(config, file_sha1(supernet))
        self._check_resumable()
        # Orphans of a killed worker's atomic writes (other workers' writes in flight stay).
        remove_stale_tmp(self.out_dir)
        self._threads = torch.get_num_threads()  # restored when run() ends
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        run_dir = supernet.parent if (supernet.parent / SPLIT_JSON).is_file() else None
        data = load_training_data(sn_config, run_dir, progress)
        self.archive = Archive(self.out_dir, cfg.claim_timeout_s)
        self.oracle = FitnessOracle(
            model, data, self.archive,
            budgets=self.objectives.budgets, latency=latency, val_images=cfg.val_images,
            bn_batches=cfg.bn_batches or sn_config.supernet.bn_recalib_batches,
            batch_size=cfg.batch_size or sn_config.supernet.batch_size,
            seed=config.seed, device=resolve_device(cfg.device),
        )
        self.supernet_path = supernet
        self.hv_bounds = self._bounds()
        self.objectives.bounds.update({k: (v[0], v[1]) for k, v in self.hv_bounds.items()})
        self.problem = SearchProblem(self.objectives, self.oracle.evaluate, model.space,
                                     on_evaluation=self._on_evaluation)
        self._bar: Any = None
        self._hv = 0.0
        self._generation = 0
        self._pareto_size = 0

    # ------------------------------------------------------------------ search.json
    @property
    def _json_path(self) -> Path:
        return self.out_dir / SEARCH_JSON

    def _saved(self) -> dict[str, Any] | None:
        saved = read_json(self._json_path)
        if saved is not None and not isinstance(saved, dict):
            raise SalnasError(f"{self._json_path}: not a search record (a JSON object)")
        return saved

    def _check_resumable(self) -> None:
        """Refuse to continue a directory made with another config or supernet (before any
        write, so the archive is never mixed)."""
        saved = self._saved()
        check_fingerprint(self.out_dir, None if saved is None else saved.get("fingerprint", {}),
                          self.fingerprint, what="a search",
                          may_change=[f"search.{k}" for k in RESUMABLE])
        if saved is None and (self.out_dir / ARCHIVE_CSV).exists():
            raise SalnasError(f"{self.out_dir / ARCHIVE_CSV} exists without {SEARCH_JSON}; "
                              "use a new --out")

    def _bounds(self) -> dict[str, list[float]]:
        """Fixed normalisation bounds; cost bounds come from the max genome, once per directory
        (the first worker writes them, resumes and other workers reuse them)."""
        with self.archive.locked():
            saved = self._saved()
            if saved is not None:
                return {k: list(v) for k, v in saved["hypervolume"]["bounds"].items()}
            names = self.objectives.names
            fixed = self.config.search.hv_bounds  # explicit bounds win over measured ones
            costs = (self.oracle.max_costs() if any(n in COSTS and n not in fixed for n in names)
                     else {})
            bounds = {n: [0.0, costs[n]] if n in COSTS and n not in fixed
                      else list(self.objectives.bounds[n]) for n in names}
            self._write_json(Status.RUNNING, bounds=bounds)
            return bounds

    def _write_json(self, status: Status, bounds: dict[str, list[float]] | None = None,
                    summary: dict[str, Any] | None = None) -> None:
        bounds = bounds if bounds is not None else self.hv_bounds
        write_text_atomic(self.out_dir / CONFIG_YAML, dump_config(self.config))
        write_json_atomic(self._json_path, {
            "status": status.value,
            "engine": self.config.search.engine,
            "seed": self.config.seed,
            "objectives": list(self.objectives.names),
            "constraints": self.objectives.budgets,
            "supernet": str(self.supernet_path),
            "fingerprint": self.fingerprint,
            "hypervolume": {
                "bounds": bounds,
                "reference_point": self.objectives.reference_point.tolist(),
                "normalisation": "objective -> [0, 1] (0 best) by the fixed bounds, maximised "
                                 "ones flipped; values beyond the best bound clip to 0; HV of "
                                 "the cumulative feasible front against the reference point "
                                 "(pymoo HV)",
            },
            "flop_convention": "fvcore: one fused multiply-add = one flop (FLOPs = MACs)",
            "config": self.config.model_dump(mode="json"),
            "summary": summary or {},
            "provenance": provenance(seed=self.config.seed, stage="search"),
        })

    # ------------------------------------------------------------------ progress and outputs
    def _on_evaluation(self, ev: Any) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(gen=self._generation, new=self.oracle.evaluated,
                                  hits=self.oracle.hits, hv=f"{self._hv:.4f}", refresh=False)

    def write_outputs(self, generation: int | None = None) -> float:
        """pareto.csv and hv_history.csv from the whole archive; returns the current HV."""
        records = self.archive.records()
        history = hv_history(records, self.objectives)
        front = pareto_front(records, self.objectives)
        self._pareto_size = len(front)
        _write_csv(self.out_dir / PARETO_CSV, ARCHIVE_COLUMNS, front)
        _write_csv(self.out_dir / HV_CSV, HV_COLUMNS, history)
        self._hv = history[-1]["hypervolume"] if history else 0.0
        if generation is not None:
            self._generation = generation + 1
        return self._hv

    def run(self) -> dict[str, Any]:
        """Spend the budget (resuming from the archive) and write every output."""
        cfg = self.config.search
        context = RunContext(
            cfg, self.config.seed, params=self.oracle.params, costs=self.oracle.costs,
            on_generation=self.write_outputs, storage=self.storage,
            extra={"fingerprint": self.fingerprint},
        )
        engine = make_engine(cfg.engine, self.problem, context)
        budget = (cfg.population * cfg.generations if cfg.engine in ("nsga2", "surrogate")
                  else context.trials)
        t0 = time.perf_counter()
        self._bar = tqdm(total=budget, desc=f"search {cfg.engine}", unit="arch",
                         disable=not self.progress)
        try:
            engine.run()
        finally:
            self._bar.close()
            self._bar = None
            torch.set_num_threads(self._threads)  # a library call leaves the process as it was
        hv = self.write_outputs()
        records = self.archive.records()
        summary = {
            "archive_size": len(records),
            "feasible": sum(bool(r["feasible"]) for r in records),
            "pareto_size": self._pareto_size,
            "hypervolume": hv,
            "evaluated_by_this_process": self.oracle.evaluated,
            "cache_hits_of_this_process": self.oracle.hits,
            "wall_s_of_this_process": time.perf_counter() - t0,
        }
        with self.archive.locked():
            self._write_json(Status.DONE, summary=summary)
        return summary


def run_search(config: Config, supernet: Path, out_dir: Path, *,
               progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a search; returns the summary written into ``search.json``."""
    return SearchRun(config, supernet, out_dir, progress=progress).run()


