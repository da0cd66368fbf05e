"""The run directory's schema, declared once: file names, columns, the oracle's metric list,
the status words of the stage records, and the resume check.

Writers and readers both import it, so a stage and the report cannot disagree on a name::

    RUN/config.yaml, RUN/run.json (the pipeline's record), RUN/baselines.json, RUN/report.html
    RUN/supernet/   supernet.pt  train_log.csv  config.yaml  split.json  provenance.json
    RUN/search/     archive.csv  pareto.csv  hv_history.csv  search.json  config.yaml  [lut.json]
    RUN/distill/    results.csv  distill.json  rank_fidelity.json  config.yaml
                    <arch>/<arm>/{model.pt, model.ts, model.onnx, train_log.csv, result.json}

:class:`RunLayout` gives the paths of one run directory; the column tuples and the dataclasses
below name every column a stage writes and the report reads.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salnas.errors import SalnasError

__all__ = [
    "ARCHIVE",
    "ARCHIVE_COLUMNS",
    "DISTILL",
    "HV",
    "HV_COLUMNS",
    "LUT",
    "ORACLE_METRICS",
    "TRAIN_LOG",
    "TRAIN_LOG_COLUMNS",
    "VOLATILE_COLUMNS",
    "RunLayout",
    "Status",
    "check_fingerprint",
    "first_difference",
]

# ---------------------------------------------------------------- the metric list
# What the fitness oracle scores and the supernet validates each epoch (archive columns,
# ``val_max_<metric>`` of train_log.csv), in this order.
ORACLE_METRICS: tuple[str, ...] = ("CC", "KLD", "NSS", "SIM", "AUC_Judd")

# ---------------------------------------------------------------- file names
CONFIG_YAML = "config.yaml"
RUN_JSON = "run.json"  # RUN/: the pipeline's record of its stages
RUN_LOG = "run.log"  # RUN/: the pipeline's log lines, timestamped
PROVENANCE_JSON = "provenance.json"  # RUN/supernet/: command, seed, versions, commit
LEGACY_SUPERNET_RUN_JSON = "run.json"  # what supernet runs before provenance.json wrote
SPLIT_JSON = "split.json"
TRAIN_LOG_CSV = "train_log.csv"
SUPERNET_CKPT = "supernet.pt"
BASELINES_JSON = "baselines.json"
ARCHIVE_CSV = "archive.csv"
PARETO_CSV = "pareto.csv"
HV_CSV = "hv_history.csv"
SEARCH_JSON = "search.json"
LUT_JSON = "lut.json"
RESULTS_CSV = "results.csv"
DISTILL_JSON = "distill.json"
RANK_FIDELITY_JSON = "rank_fidelity.json"  # distill/: oracle vs retrained ranking
RESULT_JSON = "result.json"  # one finished distill arm; written last
REPORT_HTML = "report.html"
MODEL_FILES = ("model.pt", "model.ts", "model.onnx")


class Status(enum.StrEnum):
    """The one status vocabulary of ``search.json``, ``distill.json`` and ``run.json``."""

    RUNNING = "running"
    DONE = "done"
    BUDGET_EXHAUSTED = "budget_exhausted"  # distill: the time budget stopped it; rerun continues

    @classmethod
    def of(cls, record: Mapping[str, Any] | None) -> Status | None:
        """The status of a stage record (``None`` when absent or unknown)."""
        value = (record or {}).get("status")
        # "finished" is what search.json said before the vocabulary was unified.
        value = cls.DONE.value if value == "finished" else value
        if not isinstance(value, str):
            return None
        try:
            return cls(value)
        except ValueError:
            return None


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory (``salnas run --out RUN``)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG_YAML

    @property
    def run_json(self) -> Path:
        return self.root / RUN_JSON

    @property
    def baselines(self) -> Path:
        return self.root / BASELINES_JSON

    @property
    def report(self) -> Path:
        return self.root / REPORT_HTML

    @property
    def supernet_dir(self) -> Path:
        return self.root / "supernet"

    @property
    def checkpoint(self) -> Path:
        return self.supernet_dir / SUPERNET_CKPT

    @property
    def split(self) -> Path:
        return self.supernet_dir / SPLIT_JSON

    @property
    def search_dir(self) -> Path:
        return self.root / "search"

    @property
    def distill_dir(self) -> Path:
        return self.root / "distill"


# ---------------------------------------------------------------- columns (the contract)
@dataclass(frozen=True)
class TrainLogColumns:
    """``supernet/train_log.csv``: one row per epoch."""

    epoch: str = "epoch"
    lr: str = "lr"
    temperature: str = "temperature"
    loss_prefix: str = "loss_"  # + max | min | random
    img_per_s: str = "img_per_s"
    seconds: str = "seconds"
    val_max: str = "val_max_"  # + metric
    val_min: str = "val_min_"
    val_random: str = "val_rand"  # + k + "_" + metric: the fixed random subnets (val_random)
    score: str = "score"  # what supernet.keep: best maximises
    kept_epoch: str = "kept_epoch"  # the epoch whose weights the later stages inherit

    def val(self, tag: str, metric: str) -> str:
        """``val_<tag>_<metric>``, the validation score of subnet ``tag`` (max, min, ...)."""
        return f"val_{tag}_{metric}"


TRAIN_LOG = TrainLogColumns()
TRAIN_LOG_COLUMNS: tuple[str, ...] = (
    "epoch", "lr", "temperature", "loss_max", "loss_min", "loss_random", "img_per_s", "seconds",
)  # then val_<tag>_<metric> for every validated subnet, score, kept_epoch


@dataclass(frozen=True)
class ArchiveColumns:
    """``search/archive.csv`` (and ``pareto.csv``, the same columns)."""

    id: str = "id"
    genome: str = "genome"
    feasible: str = "feasible"
    scored: str = "scored"
    engine: str = "engine"
    generation: str = "generation"
    wall_s: str = "wall_s"
    latency: str = "latency_ms"
    latency_source: str = "latency_source"  # "measured" | "lut"
    # Optional pair some searches record (a LUT prediction checked by a measurement).
    latency_measured: str = "latency_measured_ms"
    latency_predicted: str = "latency_predicted_ms"
    text: tuple[str, ...] = ("id", "genome", "engine", "latency_source", "worker", "finished_at")
    flags: tuple[str, ...] = ("feasible", "scored")


ARCHIVE = ArchiveColumns()
ARCHIVE_COLUMNS: tuple[str, ...] = (
    "id", "genome", *ORACLE_METRICS, "params", "flops", "latency_ms", "latency_source",
    "feasible", "scored", "engine", "generation", "worker", "wall_s", "finished_at",
)
# Columns that legitimately differ between two runs of the same search (who and how long).
VOLATILE_COLUMNS: tuple[str, ...] = ("worker", "wall_s", "finished_at")


@dataclass(frozen=True)
class HvColumns:
    """``search/hv_history.csv``: one row per generation."""

    generation: str = "generation"
    n_evaluated: str = "n_evaluated"
    n_feasible: str = "n_feasible"
    n_pareto: str = "n_pareto"
    hypervolume: str = "hypervolume"


HV = HvColumns()
HV_COLUMNS: tuple[str, ...] = ("generation", "n_evaluated", "n_feasible", "n_pareto",
                               "hypervolume")


@dataclass(frozen=True)
class DistillColumns:
    """``distill/results.csv``: one row per (architecture, seed, arm)."""

    arch: str = "arch"
    kind: str = "kind"  # "pareto" | "peer"
    genome_id: str = "genome_id"
    arm: str = "arm"
    kd: str = "kd"
    alpha: str = "alpha"
    seed: str = "seed"
    test_prefix: str = "test_"  # + metric
    search_prefix: str = "search_"  # + pareto.csv column
    params: str = "params"
    params_unpruned: str = "params_unpruned"  # before pruning (peer-csnet-dwd), else = params
    flops: str = "flops"
    latency: str = "latency_ms"  # batch 1, CPU, in search.latency.backend
    teacher_spec: str = "teacher"  # self | max | model:PATH of the arm's teacher ("" baseline)
    energy: str = "energy_kwh"
    co2: str = "co2_kg"
    epochs: str = "epochs"
    train_s: str = "train_s"
    wall_s: str = "wall_s"
    model_dir: str = "model_dir"
    genome: str = "genome"
    selfkd: str = "selfkd"  # arm names
    baseline: str = "baseline"
    teacher: str = "teacher"  # KD from a frozen teacher (distill.teacher: max | model:PATH)
    pareto_kind: str = "pareto"
    peer_kind: str = "peer"
    text: tuple[str, ...] = ("arch", "kind", "genome_id", "arm", "init", "resolution",
                             "model_dir", "genome")
    flags: tuple[str, ...] = ("kd", "onnx")


DISTILL = DistillColumns()
ARMS: tuple[str, ...] = (DISTILL.selfkd, DISTILL.baseline)


@dataclass(frozen=True)
class LutKeys:
    """Keys of ``lut.json``'s validation record."""

    validation: str = "validation"
    subnets: str = "subnets"
    id: str = "id"
    measured: str = "measured_ms"
    predicted: str = "predicted_ms"


LUT = LutKeys()
# Keys of a stage's JSON that hold its cost (any stage JSON may carry them).
STAGE_WALL, STAGE_ENERGY, STAGE_CO2 = "wall_s", "energy_kwh", "co2_kg"


# ---------------------------------------------------------------- the resume check
def first_difference(saved: Any, current: Any, path: str = "") -> str | None:
    """The first place where two JSON-like values differ, as ``key.sub: old -> new``."""
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        for key in sorted(set(saved) | set(current), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in saved or key not in current:
                old = saved.get(key, "absent")
                new = current.get(key, "absent")
                return f"{where}: {old!r} -> {new!r}"
            found = first_difference(saved[key], current[key], where)
            if found:
                return found
        return None
    if saved != current:
        return f"{path or 'value'}: {saved!r} -> {current!r}"
    return None


def check_fingerprint(
    where: Path | str,
    saved: Any,
    current: Any,
    *,
    what: str,
    may_change: Sequence[str] = (),
) -> None:
    """Refuse to continue ``where`` when its saved fingerprint differs from ``current``.

    ``saved`` is ``None`` for a fresh directory (nothing to compare). The error names the
    first differing setting and the settings that may change on a resume.
    """
    if saved is None or saved == current:
        return
    diff = first_difference(saved, current)
    allowed = f" (only {', '.join(may_change)} may change)" if may_change else ""
    raise SalnasError(
        f"{where} holds {what} made with another config ({diff}); rerun with the same "
        f"settings{allowed}, or use a new --out"
    )
