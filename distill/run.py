"""The distill stage: train the chosen Pareto architectures (and the peers) as standalone
models, each as a pair of arms, Self-KD and ground-truth-only baseline, and score them on the
test split at the original image size.

Inputs: ``SEARCH_DIR/pareto.csv`` (columns ``id``, ``genome`` and numeric objectives),
``SEARCH_DIR/search.json`` (the supernet checkpoint path; ``--supernet`` overrides) and the
supernet run's ``split.json``. Data settings (resolution, sigma, split) are the supernet run's;
``--data`` may point at the same data elsewhere.

Outputs in ``OUT``: ``results.csv`` (one row per finished architecture x seed x arm),
``<arch>/<arm>/`` (``<arm>_seed<k>`` for seeds other than 0) holding ``model.pt``,
``model.ts``, ``model.onnx``, ``train_log.csv`` and ``result.json``, plus ``distill.json``
(status, selection, fingerprint, provenance) and ``config.yaml``. ``result.json`` is written
last: an arm is finished exactly when it exists, so a killed run resumes with the next
unfinished arm (an arm cut mid-training restarts from its first epoch).

``distill.min_snapshots: N`` sizes each architecture's budget by its Self-KD teacher: the
Self-KD arm trains first, and while its teacher averages fewer than N improving snapshots it
is retrained from its initial weights for 1.5x the epochs (up to ``distill.max_epochs``); the
baseline and teacher arms of that architecture and seed then train for the epochs it ended
with, so the paired differences compare equal budgets. ``result.json`` lists every attempt.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
from torch import nn
from tqdm.auto import tqdm

from salnas.config import Config, DistillConfig, dump_config
from salnas.datasets.training import TrainingData, load_training_data
from salnas.errors import ConfigError, SalnasError
from salnas.evaluation import Target, centre_bias_map, load_targets, score_maps, summarise
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
    ARCHIVE,
    ARCHIVE_CSV,
    ARMS,
    CONFIG_YAML,
    DISTILL,
    DISTILL_JSON,
    ORACLE_METRICS,
    PARETO_CSV,
    RANK_FIDELITY_JSON,
    RESULT_JSON,
    RESULTS_CSV,
    SEARCH_JSON,
    SPLIT_JSON,
    TRAIN_LOG_CSV,
    Status,
    check_fingerprint,
)
from salnas.metrics import HIGHER_IS_BETTER
from salnas.search.latency import measure_latency_ms
from salnas.supernet.checkpoint import load_supernet
from salnas.supernet.costs import count_params_flops
from salnas.supernet.evaluate import calibrated_subnet
from salnas.supernet.model import SalNet, Supernet
from salnas.supernet.space import Genome, GenomeError, SearchSpace
from salnas.supernet.subnet import predict_image, save_subnet

from .energy import track_energy
from .export import (
    export_metadata,
    export_onnx,
    export_torchscript,
    load_any_model,
    onnx_available,
)
from .fidelity import FIDELITY_KIND, rank_fidelity
from .peers import CSNet, fpn_genome, save_peer
from .pruning import train_pruned_csnet
from .teacher import CachedTeacher, parse_teacher
from .trainer import TrainResult, train_standalone

__all__ = [
    "ARMS",
    "Unit",
    "crowding_distance",
    "read_archive",
    "read_pareto",
    "run_distill",
    "select_architectures",
    "select_crowding",
    "select_fidelity",
    "student_arms",
]

FPN_PEER = "peer-fpn"
CSNET_DWD_PEER = "peer-csnet-dwd"  # CSNet trained with dynamic weight decay, then pruned
RESULT_FILE = RESULT_JSON  # an arm is finished exactly when its result.json exists
# Settings that may change between a run and its resume (what and where, not how).
_RESUMABLE = ("select", "ids", "fidelity", "time_budget_s", "peers", "seeds", "threads", "device",
              "export_onnx", "track_energy", "country_iso_code", "latency_repeats",
              "latency_threads")
_OBJECTIVE_FALLBACK = (*ORACLE_METRICS, "params", "flops", "latency_ms")


# ---------------------------------------------------------------- selection
def _check_complete_csv(path: Path) -> None:
    """Refuse a cut (torn last line) or damaged CSV: every row has the header's fields and an
    id and a genome, naming the line (pandas would fill the missing fields with NaN)."""
    rewrite = "rerun `salnas search` with the same --out to rewrite it"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SalnasError(f"{path}: cannot be read ({e})") from None
    if text and not text.endswith("\n"):
        raise SalnasError(f"{path}: the last line is incomplete (the file was cut short); "
                          + rewrite)
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise SalnasError(f"{path}: not a readable CSV ({e}); {rewrite}") from None
    header = rows[0] if rows else []
    wanted = [header.index(c) for c in ("id", "genome") if c in header]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise SalnasError(f"{path}: line {line} has {len(row)} fields, the header "
                              f"{len(header)} (the file was cut or edited); {rewrite}")
        if any(not row[i].strip() for i in wanted):
            raise SalnasError(f"{path}: line {line} has no id or no genome; {rewrite}")


def read_pareto(search_dir: Path) -> pd.DataFrame:
    """``pareto.csv`` of a search, with ``id`` and ``genome`` checked (ids as strings)."""
    path = Path(search_dir) / PARETO_CSV
    if not path.is_file():
        raise SalnasError(f"{path} does not exist; run `salnas search` first (or pass the "
                          "search folder with --search)")
    front = _read_search_csv(path)
    missing = {"id", "genome"} - set(front.columns)
    if missing:
        raise SalnasError(f"{path}: missing column(s) {sorted(missing)}")
    if front.empty:
        raise SalnasError(f"{path} holds no architectures")
    return front.drop_duplicates("id").reset_index(drop=True)


def crowding_distance(f: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the rows of ``f`` (n, m): pymoo's, whose boundary points
    are infinite; also those of a constant objective (first and last row, where pymoo
    gives 0), and every point of a front of two or fewer.

    pymoo averages the normalised side lengths over the objectives: the values are the
    NSGA-II paper's sums divided by m, which orders the points the same.
    """
    f = np.asarray(f, dtype=np.float64)
    n = f.shape[0]
    if n <= 2:
        return np.full(n, np.inf)
    dist = np.asarray(calc_crowding_distance(f), dtype=np.float64)
    order = np.argsort(f, axis=0, kind="stable")  # pymoo's order (mergesort is stable)
    dist[order[0]] = dist[order[-1]] = np.inf
    return dist


def select_crowding(f: np.ndarray, k: int) -> list[int]:
    """Indices of ``k`` rows spread along the front: repeatedly drop the most crowded point
    (smallest crowding distance, recomputed after each drop); returned in input order."""
    keep = list(range(len(f)))
    while len(keep) > k:
        dist = crowding_distance(f[keep])
        del keep[int(np.argmin(dist))]  # first of ties: deterministic
    return keep


def _objective_columns(front: pd.DataFrame, search_json: dict[str, Any]) -> list[str]:
    names = search_json.get("objectives") or list(_OBJECTIVE_FALLBACK)
    cols = [c for c in names if c in front.columns]
    return [c for c in cols if pd.api.types.is_numeric_dtype(front[c]) and front[c].notna().all()]


def select_architectures(front: pd.DataFrame, cfg: DistillConfig,
                         search_json: dict[str, Any] | None = None,
                         source: str = PARETO_CSV,
                         exclude: Collection[str] = ()) -> list[int]:
    """Row indices of ``front`` that ``cfg.select`` (all | crowding:K | ids | none) chooses.

    ``all`` and ``crowding:K`` choose among the rows whose id is not in ``exclude`` (the
    genomes the peers train anyway); ``ids`` takes the named rows as they are.
    """
    eligible = [i for i, v in enumerate(front["id"]) if str(v) not in set(exclude)]
    if cfg.select == "all":
        return eligible
    if cfg.select == "none":  # the peers (and a rank-fidelity sample) only
        return []
    if cfg.select == "ids":
        if not cfg.ids:
            raise ConfigError("distill.select is 'ids' but no ids are given (distill.ids or "
                              "--ids)")
        known = {str(v): i for i, v in enumerate(front["id"])}
        unknown = [i for i in cfg.ids if i not in known]
        if unknown:
            raise SalnasError(f"unknown architecture id(s) {unknown} in {source}; it holds "
                              f"{', '.join(known)}")
        return [known[i] for i in dict.fromkeys(cfg.ids)]
    k = int(cfg.select.split(":", 1)[1])
    cols = _objective_columns(front, search_json or {})
    if not cols:
        raise SalnasError(f"distill.select {cfg.select}: {source} has no complete numeric "
                          f"objective column (looked for {list(_OBJECTIVE_FALLBACK)})")
    f = front[cols].to_numpy(np.float64)[eligible]
    return [eligible[i] for i in select_crowding(f, k)]


def read_archive(search_dir: Path) -> pd.DataFrame | None:
    """``archive.csv`` of a search (ids as strings), or None when there is none."""
    path = Path(search_dir) / ARCHIVE_CSV
    return _read_search_csv(path) if path.is_file() else None


def _read_search_csv(path: Path) -> pd.DataFrame:
    """A complete ``pareto.csv`` / ``archive.csv`` with ids and genomes as strings."""
    _check_complete_csv(path)
    try:
        return pd.read_csv(path, dtype={"id": str, "genome": str})
    except (ValueError, pd.errors.ParserError) as e:
        raise SalnasError(f"{path}: not a readable CSV ({e})") from None


def select_fidelity(front: pd.DataFrame, cfg: DistillConfig,
                    search_json: dict[str, Any] | None = None,
                    source: str = PARETO_CSV,
                    archive: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rank-fidelity sample: ``distill.fidelity`` architectures spread along the front
    (crowding). A front smaller than that is taken whole and filled from the archive's next
    non-dominated ranks, in order (crowding within the last one), so the sample stays spread
    along the front's objectives; with no archive, or too few scored architectures in it,
    the sample is what there is."""
    if cfg.fidelity == 0:
        return front.iloc[:0]
    cols = _objective_columns(front, search_json or {})
    if not cols:
        raise SalnasError(f"distill.fidelity: {source} has no complete numeric objective "
                          f"column (looked for {list(_OBJECTIVE_FALLBACK)})")
    if len(front) >= cfg.fidelity:
        return front.iloc[select_crowding(front[cols].to_numpy(np.float64), cfg.fidelity)]
    parts, missing = [front], cfg.fidelity - len(front)
    if archive is not None and set(cols) | {"id", "genome"} <= set(archive.columns):
        rest = archive.drop_duplicates("id")
        rest = rest[~rest["id"].isin(set(front["id"])) & rest[cols].notna().all(axis=1)]
        for flag in (ARCHIVE.scored, ARCHIVE.feasible):
            if flag in rest.columns:
                rest = rest[rest[flag].astype(str).str.lower().isin({"true", "1", "1.0"})]
        if not rest.empty:
            sign = np.array([-1.0 if HIGHER_IS_BETTER.get(c, False) else 1.0 for c in cols])
            minimised = rest[cols].to_numpy(np.float64) * sign
            for rank in NonDominatedSorting().do(minimised):
                if missing <= 0:
                    break
                rank = list(rank)
                if len(rank) > missing:
                    rank = [rank[i] for i in select_crowding(minimised[rank], missing)]
                parts.append(rest.iloc[rank])
                missing -= len(rank)
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------- units of work
@dataclass
class Unit:
    """One architecture and seed: both arms of it."""

    arch: str  # directory name: genome id, or peer-max / peer-fpn / peer-csnet
    kind: str  # "pareto" | "peer" | "fidelity"
    genome: Genome | None  # None for the CSNet peer
    seed: int
    search: dict[str, Any] = field(default_factory=dict)  # numeric pareto.csv columns
    arms: tuple[str, ...] = ARMS
    epochs: int | None = None  # None: distill.epochs (the fidelity sample trains shorter)

    def arm_dir(self, out_dir: Path, arm: str) -> Path:
        return out_dir / self.arch / (arm if self.seed == 0 else f"{arm}_seed{self.seed}")


def _parse_genome(row: pd.Series, space: SearchSpace, path: Path) -> Genome:
    try:
        genome = Genome.from_json(str(row["genome"]), space)
    except (GenomeError, ValueError, KeyError, TypeError) as e:
        raise SalnasError(f"{path}: architecture {row['id']}: not a genome of the supernet's "
                          f"search space ({e})") from e
    if genome.id != str(row["id"]):
        raise SalnasError(f"{path}: row id {row['id']} holds a genome whose id is {genome.id} "
                          "(another search space?)")
    return genome


def _units(front: pd.DataFrame, rows: Sequence[int], space: SearchSpace, cfg: DistillConfig,
           path: Path, objectives: Sequence[str] = ()) -> list[Unit]:
    # The search's estimates (supernet val metrics, costs) travel along as search_<column>.
    wanted = dict.fromkeys([*_OBJECTIVE_FALLBACK, *objectives])
    numeric = [c for c in wanted if c in front.columns and front[c].dtype.kind in "if"
               and front[c].notna().any()]
    archs: list[tuple[str, str, Genome | None, dict[str, float]]] = []
    for i in rows:
        row = front.iloc[i]
        extra = {f"search_{c}": float(row[c]) for c in numeric}
        archs.append((str(row["id"]), "pareto", _parse_genome(row, space, path), extra))
    peers = cfg.peer_names
    # The max genome named by id is trained once, as a Pareto architecture.
    if "max" in peers and space.max_genome() not in [g for _, _, g, _ in archs]:
        archs.append(("peer-max", "peer", space.max_genome(), {}))
    if "fpn" in peers:
        archs.append((FPN_PEER, "peer", fpn_genome(space), {}))
    if "csnet" in peers:
        archs.append(("peer-csnet", "peer", None, {}))
        if cfg.csnet_dwd > 0:
            archs.append((CSNET_DWD_PEER, "peer", None, {}))
    return [Unit(a, kind, g, seed, extra, student_arms(cfg)) for a, kind, g, extra in archs
            for seed in cfg.seeds]


def student_arms(cfg: DistillConfig) -> tuple[str, ...]:
    """The arms every selected architecture trains before any teacher arm: Self-KD and the
    baseline, or the baseline alone with ``distill.selfkd: false``."""
    return ARMS if cfg.selfkd else (DISTILL.baseline,)


def _fidelity_units(front: pd.DataFrame, rows: Sequence[int], space: SearchSpace,
                    cfg: DistillConfig, path: Path, objectives: Sequence[str] = ()) -> list[Unit]:
    """The rank-fidelity sample: baseline arm, first seed, ``distill.fidelity_epochs``."""
    units = _units(front, rows, space, cfg.model_copy(update={"peers": False}), path,
                   objectives)
    return [Unit(f"{FIDELITY_KIND}-{u.arch}", FIDELITY_KIND, u.genome, u.seed, u.search,
                 arms=(DISTILL.baseline,), epochs=cfg.fidelity_epochs)
            for u in units if u.seed == cfg.seeds[0]]


# ---------------------------------------------------------------- helpers
def _read_json(path: Path) -> dict[str, Any] | None:
    data = read_json(path)
    if data is not None and not isinstance(data, dict):
        raise SalnasError(f"{path}: not a JSON object")
    return data


def resolve_supernet(search_dir: Path, supernet: Path | None,
                     search_json: dict[str, Any]) -> Path:
    """``--supernet``, else search.json's path (as written, or relative to the run dir)."""
    if supernet is not None:
        if not Path(supernet).is_file():
            raise SalnasError(f"--supernet {supernet} does not exist")
        return Path(supernet)
    named = search_json.get("supernet")
    if not named:
        raise SalnasError(f"{search_dir}/search.json is missing or names no supernet; pass "
                          "--supernet RUN_DIR/supernet.pt")
    for candidate in (Path(named), search_dir.parent / named, search_dir / named):
        if candidate.is_file():
            return candidate
    raise SalnasError(f"the supernet {named} named by {search_dir}/search.json does not exist; "
                      "pass --supernet")


def _latency_ms(model: nn.Module, resolution: tuple[int, int], cfg: DistillConfig,
                backend: str = "torch") -> float:
    """Batch-1 CPU latency (median) in ``backend``, with the search stage's timer."""
    return measure_latency_ms(model, resolution, device="cpu", threads=cfg.latency_threads,
                              repeats=cfg.latency_repeats, backend=backend)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_open(path, "w", newline="") as fh:
        frame.to_csv(fh, index=False)


def collect_results(out_dir: Path) -> pd.DataFrame:
    """Every finished arm's row (from its result.json), in a stable order."""
    rows = [json.loads(p.read_text())["row"] for p in sorted(out_dir.glob(f"*/*/{RESULT_FILE}"))]
    # strict JSON holds a missing number (NaN) as null: back to NaN for the table
    rows = [{k: math.nan if v is None else v for k, v in row.items()} for row in rows]
    frame = pd.DataFrame(rows)
    if not frame.empty:
        # Pareto architectures before peers; Self-KD before its baseline.
        frame = frame.sort_values(["kind", "arch", "seed", "arm"],
                                  ascending=[True, True, True, False])
    return frame.reset_index(drop=True)


# ---------------------------------------------------------------- the stage
class DistillRun:
    """One ``salnas distill`` invocation; :meth:`run` trains every unfinished arm."""

    def __init__(self, config: Config, search_dir: Path, out_dir: Path, *,
                 data_spec: str | None = None, supernet: Path | None = None,
                 progress: bool = True) -> None:
        from salnas.supernet.runtime import resolve_device

        self.cfg = cfg = config.distill
        if cfg.epochs == 1 and cfg.selfkd:
            warnings.warn("distill.epochs is 1: the Self-KD teacher exists only after a first "
                          "improving epoch, so the selfkd and baseline arms are identical by "
                          "construction; use distill.epochs >= 2 to compare them", stacklevel=2)
        self.search_dir, self.out_dir, self.progress = Path(search_dir), Path(out_dir), progress
        self.front = read_pareto(self.search_dir)
        self.search_json = _read_json(self.search_dir / SEARCH_JSON) or {}
        self.supernet_path = resolve_supernet(self.search_dir, supernet, self.search_json)
        self.supernet, sn_config, _ = load_supernet(self.supernet_path)
        self.supernet.eval()
        self.space = self.supernet.space
        # The max genome (an anchor of the search, often on the front) is the max peer: a
        # selection of Pareto architectures spends its places on the others.
        peer_ids = [self.space.max_genome().id] if "max" in cfg.peer_names else []
        self.rows = select_architectures(self.front, cfg, self.search_json,
                                         str(self.search_dir / PARETO_CSV), peer_ids)
        self.units = _units(self.front, self.rows, self.space, cfg,
                            self.search_dir / PARETO_CSV,
                            self.search_json.get("objectives") or ())
        self.fidelity_sample = select_fidelity(self.front, cfg, self.search_json,
                                               str(self.search_dir / PARETO_CSV),
                                               read_archive(self.search_dir))
        self.teacher_kind, self.teacher_path = parse_teacher(cfg.teacher)
        self._add_teacher_arms()
        self.units += _fidelity_units(self.fidelity_sample,
                                      range(len(self.fidelity_sample)), self.space, cfg,
                                      self.search_dir / PARETO_CSV,
                                      self.search_json.get("objectives") or ())
        if not self.units:
            raise ConfigError("distill.select none with no peers and no fidelity sample: "
                              "nothing to train; set distill.peers or distill.select")
        data = sn_config.data
        if data_spec is not None:
            data = data.model_copy(update={"spec": data_spec})
        supernet_cfg = sn_config.supernet.model_copy(update={"val_images": cfg.val_images})
        # The config stored with every model: the supernet run's data, this run's distill.
        self.config = sn_config.model_copy(
            update={"data": data, "supernet": supernet_cfg, "distill": cfg})
        self.device = resolve_device(cfg.device)
        self.fingerprint = {
            "distill": cfg.model_dump(mode="json", exclude=set(_RESUMABLE)),
            "supernet_sha1": file_sha1(self.supernet_path),
            "data": data.model_dump(mode="json", exclude={"cache_dir"}),
        }
        self._check_resumable()
        run_dir = self.supernet_path.parent
        self.data: TrainingData = load_training_data(
            self.config, run_dir if (run_dir / SPLIT_JSON).is_file() else None, progress)
        self._targets: list[Target] | None = None
        self._centre_bias: np.ndarray | None = None
        self._teachers: dict[tuple[int, int], CachedTeacher] = {}

    # ------------------------------------------------------------ the teacher arm
    def _teacher_unit(self) -> Unit | None:
        """The unit that trains the ``max`` teacher (the max genome, first seed)."""
        top = self.space.max_genome()
        return next((u for u in self.units if u.genome == top and u.seed == self.cfg.seeds[0]),
                    None)

    def _add_teacher_arms(self) -> None:
        """With a fixed teacher, every student (not the teacher itself) gets a teacher arm;
        the max teacher's unit trains first."""
        if self.teacher_kind == "self":
            return
        if self.teacher_kind == "model":
            assert self.teacher_path is not None
            if not self.teacher_path.is_file():
                raise ConfigError(f"distill.teacher: model file {self.teacher_path} does not "
                                  "exist")
            teacher_unit = None
        else:
            teacher_unit = self._teacher_unit()
            if teacher_unit is None:
                raise ConfigError("distill.teacher max needs the max subnet in the run: set "
                                  "distill.peers: true (or a list with max) or select the max "
                                  "genome")
            self.units.remove(teacher_unit)
            self.units.insert(0, teacher_unit)
        for unit in self.units:
            if unit is not teacher_unit:
                unit.arms = (*unit.arms, DISTILL.teacher)

    def teacher_for(self, resolution: tuple[int, int]) -> CachedTeacher:
        """The frozen teacher's cached training-set densities for a student at
        ``resolution`` (built once per resolution)."""
        if resolution not in self._teachers:
            if self.teacher_kind == "max":
                unit = self._teacher_unit()
                assert unit is not None
                path = unit.arm_dir(self.out_dir, DISTILL.baseline) / "model.pt"
            else:
                assert self.teacher_path is not None
                path = self.teacher_path
            model, own = load_any_model(path)
            # Traced and ONNX models have a fixed input size (they run at their own) and,
            # with a dynamic conv, a fixed batch of 1.
            exported = path.suffix.lower() != ".pt"
            at = own if exported else resolution
            batch = export_metadata(path).get("batch") if exported else None
            self._teachers[resolution] = CachedTeacher(
                model, self.data.train, at, batch_size=batch or self.cfg.batch_size,
                temperature=self.cfg.teacher_temperature)
        return self._teachers[resolution]

    # ------------------------------------------------------------ bookkeeping
    def _check_resumable(self) -> None:
        saved = _read_json(self.out_dir / DISTILL_JSON)
        if saved is None and any(self.out_dir.glob(f"*/*/{RESULT_FILE}")):
            raise SalnasError(f"{self.out_dir} holds results without {DISTILL_JSON}; use a "
                              "new --out")
        fingerprint = None if saved is None else dict(saved.get("fingerprint", {}))
        if fingerprint is not None and isinstance(fingerprint.get("distill"), dict):
            # a run of an earlier version may hold settings that have since become resumable
            fingerprint["distill"] = {k: v for k, v in fingerprint["distill"].items()
                                      if k not in _RESUMABLE}
        check_fingerprint(self.out_dir, fingerprint, self.fingerprint, what="a distill run",
                          may_change=[f"distill.{k}" for k in _RESUMABLE])

    def _write_status(self, status: Status, **extra: Any) -> None:
        write_text_atomic(self.out_dir / CONFIG_YAML, dump_config(self.config))
        write_json_atomic(self.out_dir / DISTILL_JSON, {
            "status": status.value,
            "search": str(self.search_dir),
            "supernet": str(self.supernet_path),
            "select": self.cfg.select,
            "selected": [str(self.front["id"].iloc[i]) for i in self.rows],
            "fidelity_sample": [str(a) for a in self.fidelity_sample["id"]],
            "seeds": self.cfg.seeds,
            "peers": self.cfg.peers,
            "arms": list(student_arms(self.cfg))
            + ([DISTILL.teacher] if self.teacher_kind != "self" else []),
            "teacher": self.cfg.teacher,
            "fingerprint": self.fingerprint,
            **extra,
            "provenance": provenance(stage="distill"),
        })

    def finished(self, unit: Unit, arm: str) -> bool:
        return (unit.arm_dir(self.out_dir, arm) / RESULT_FILE).is_file()

    # ------------------------------------------------------------ test scoring
    def _test_set(self) -> tuple[list[Target], np.ndarray]:
        if self._targets is None:
            source, split = self.data.prepared.source, self.data.split
            sigma = self.config.data.sigma_px
            self._targets = load_targets(source, split["test"], sigma, progress=False)
            self._centre_bias = centre_bias_map(source, split["train"], sigma, progress=False)
        return self._targets, self._centre_bias  # type: ignore[return-value]

    def test_metrics(self, model: nn.Module, resolution: tuple[int, int]) -> dict[str, float]:
        """Every metric on the test split at the original image sizes (MIT protocol)."""
        targets, bias = self._test_set()
        source = self.data.prepared.source
        preds = [predict_image(model, source.load_image(t.stem), resolution) for t in targets]
        return summarise(score_maps(preds, targets, bias, seed=0))

    # ------------------------------------------------------------ one arm
    def _initial_model(self, unit: Unit, seed: int) -> tuple[nn.Module, tuple[int, int], bool]:
        """(model, input resolution, whether its encoder starts from learned weights)."""
        cfg = self.cfg
        if unit.genome is None:
            torch.manual_seed(seed)
            return CSNet(), tuple(self.space.max_genome().resolution), False  # type: ignore
        res = tuple(unit.genome.resolution)
        if unit.arch == FPN_PEER:  # the hand design: ImageNet encoder, no supernet weights
            torch.manual_seed(seed)
            imagenet = self.config.supernet.pretrained
            fpn = Supernet(self.space, pretrained=imagenet).extract(unit.genome)
            return fpn, res, imagenet  # type: ignore[return-value]
        if cfg.init == "inherited":
            net = calibrated_subnet(self.supernet, unit.genome, self.data.train,
                                    cfg.bn_recalib_batches, cfg.batch_size, seed, self.device)
            return net, res, True  # type: ignore[return-value]
        torch.manual_seed(seed)
        fresh = Supernet(self.space, pretrained=cfg.init == "imagenet")
        return fresh.extract(unit.genome), res, cfg.init == "imagenet"  # type: ignore

    def paired_epochs(self, unit: Unit) -> int:
        """Epochs of a baseline or teacher arm: those its Self-KD arm ended with when
        ``distill.min_snapshots`` may lengthen it (it trains first), so arms stay paired."""
        if unit.epochs is not None:
            return unit.epochs
        if not self.cfg.min_snapshots or DISTILL.selfkd not in unit.arms:
            return self.cfg.epochs
        path = unit.arm_dir(self.out_dir, DISTILL.selfkd) / RESULT_FILE
        done = _read_json(path)
        if done is None:
            raise SalnasError(f"{path}: missing; with distill.min_snapshots the Self-KD arm "
                              "trains first and sets the epochs of the other arms")
        return int(done["row"]["epochs"])

    def _fit(self, unit: Unit, arm: str, epochs: int) -> tuple[TrainResult, tuple[int, int],
                                                             CachedTeacher | None]:
        """Train one arm of ``unit`` for ``epochs`` from its initial weights."""
        model, res, pretrained = self._initial_model(unit, unit.seed)
        teacher = self.teacher_for(res) if arm == DISTILL.teacher else None
        train_cfg = self.cfg.model_copy(update={"epochs": epochs})
        kd = arm == DISTILL.selfkd
        desc = f"{unit.arch} {arm} seed {unit.seed}"
        if unit.arch == CSNET_DWD_PEER:  # decay, prune, fine-tune
            result = train_pruned_csnet(
                model, res, self.data, train_cfg, seed=unit.seed, kd=kd,  # type: ignore
                teacher=teacher, device=self.device, progress=self.progress, desc=desc)
        else:
            result = train_standalone(
                model, res, self.data, train_cfg, seed=unit.seed, kd=kd,
                pretrained=pretrained, device=self.device, progress=self.progress,
                desc=desc, teacher=teacher)
        return result, res, teacher

    def train_arm(self, unit: Unit, arm: str) -> dict[str, Any]:
        """Train, export, measure and score one arm; write its files, result.json last."""
        cfg = self.cfg
        t0 = time.perf_counter()
        arm_dir = unit.arm_dir(self.out_dir, arm)
        arm_dir.mkdir(parents=True, exist_ok=True)
        kd = arm == DISTILL.selfkd
        epochs = (unit.epochs or cfg.epochs) if kd else self.paired_epochs(unit)
        attempts: list[dict[str, Any]] = []
        with track_energy(cfg.country_iso_code, cfg.track_energy) as energy:
            while True:
                result, res, teacher = self._fit(unit, arm, epochs)
                snapshots = result.teacher.snapshots if result.teacher else 0
                attempts.append({"epochs": epochs, "teacher_snapshots": snapshots,
                                 "best_epoch": result.best_epoch, "train_s": result.seconds})
                longer = (cfg.longer_epochs(epochs)
                          if kd and unit.epochs is None and snapshots < cfg.min_snapshots
                          else None)
                if longer is None:
                    break
                tqdm.write(f"{unit.arch} seed {unit.seed}: the Self-KD teacher averages "
                           f"{snapshots} snapshot(s) after {epochs} epochs (distill."
                           f"min_snapshots {cfg.min_snapshots}): retraining for {longer}")
                epochs = longer
        net = result.model.cpu().eval()
        unpruned_params = result.extra.get("params_unpruned",
                                           sum(p.numel() for p in net.parameters()))
        meta = {"arch": unit.arch, "arm": arm, "seed": unit.seed, "kd": kd}
        # Exports carry what `salnas predict` needs without the .pt: the data settings
        # (split seed and sizes) and the genome.
        export_meta = {**meta, "data": self.config.data.model_dump(mode="json"),
                       "genome": unit.genome.to_json() if unit.genome is not None else None}
        if isinstance(net, SalNet):
            assert unit.genome is not None
            save_subnet(arm_dir / "model.pt", net, unit.genome, self.config, **meta)
        else:
            save_peer(arm_dir / "model.pt", net, res, self.config, **meta)  # type: ignore[arg-type]
        export_torchscript(net, res, arm_dir / "model.ts", **export_meta)
        onnx_written = False
        if cfg.export_onnx:
            if onnx_available():
                onnx_written = export_onnx(net, res, arm_dir / "model.onnx",
                                           **export_meta) is not None
            else:
                warnings.warn("distill.export_onnx is on but the onnx package is not installed; "
                              "model.onnx skipped (pip install onnx onnxruntime)", stacklevel=2)
        params, flops = count_params_flops(net, res)
        latency = _latency_ms(net, res, cfg, self.config.search.latency.backend)
        scores = self.test_metrics(net, res)
        _write_csv(arm_dir / TRAIN_LOG_CSV, pd.DataFrame(result.history))
        alpha_end = cfg.alpha_schedule[1] if cfg.alpha_schedule else cfg.alpha
        row: dict[str, Any] = {
            "arch": unit.arch,
            "kind": unit.kind,
            "genome_id": unit.genome.id if unit.genome is not None else "",
            "arm": arm,
            "kd": kd,
            # Ground-truth weight of the target: the baseline is alpha = 1 by definition.
            "alpha": (cfg.alpha_schedule[0] if cfg.alpha_schedule else cfg.alpha)
            if kd or teacher else 1.0,
            "alpha_end": alpha_end if kd or teacher else 1.0,
            "teacher": cfg.teacher if teacher else ("self" if kd else ""),
            "seed": unit.seed,
            "init": "scratch" if unit.genome is None else cfg.init,
            "kfold": cfg.kfold if kd else 0,
            "epochs": epochs,
            "best_epoch": result.best_epoch,
            "teacher_snapshots": result.teacher.snapshots if result.teacher else 0,
            f"val_{cfg.monitor}": result.best_val.get(cfg.monitor, math.nan),
            **{f"test_{k}": v for k, v in scores.items()},
            "params": params,
            "params_unpruned": unpruned_params,
            "flops": flops,
            "latency_ms": latency,
            "resolution": f"{res[0]}x{res[1]}",
            "energy_kwh": energy.kwh,
            "co2_kg": energy.co2_kg,
            "energy_s": energy.duration_s,
            "train_s": result.seconds,
            "wall_s": time.perf_counter() - t0,
            **unit.search,
            "onnx": onnx_written,
            "model_dir": str(arm_dir.relative_to(self.out_dir)),
            "genome": unit.genome.to_json() if unit.genome is not None else "",
        }
        write_json_atomic(arm_dir / RESULT_FILE, {
            "row": row,
            "teacher_epochs": result.teacher.epochs if result.teacher else [],
            "attempts": attempts,  # more than one: min_snapshots retrained the Self-KD arm
            "energy_tracker": energy.tracker,
            "country_iso_code": cfg.country_iso_code,
        })
        return row

    # ------------------------------------------------------------ the loop
    def run(self, *, clock: Callable[[], float] = time.perf_counter) -> pd.DataFrame:
        """Train every unfinished arm (within the time budget); returns results.csv's rows.

        ``clock`` (seconds, any origin) times the budget and ``wall_s``; tests pass a fake
        one that the training advances.
        """
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(self.out_dir, recursive=True, min_age_s=0)  # a kill mid-write
        self._write_status(Status.RUNNING)
        t0 = clock()
        skipped: list[str] = []
        todo = [u for u in self.units if not all(self.finished(u, a) for a in u.arms)]
        if len(todo) < len(self.units) and self.progress:
            tqdm.write(f"resuming: {len(self.units) - len(todo)} of {len(self.units)} "
                       "architecture x seed pairs already finished")
        bar = tqdm(todo, desc="architectures", unit="arch", disable=not self.progress)
        for unit in bar:
            elapsed = clock() - t0
            if cfg.time_budget_s is not None and elapsed >= cfg.time_budget_s:
                skipped = [f"{u.arch}/seed{u.seed}" for u in todo[todo.index(unit):]]
                tqdm.write(f"time budget of {cfg.time_budget_s:g} s spent after {elapsed:.0f} "
                           f"s: not starting {len(skipped)} architecture x seed pair(s) "
                           f"({', '.join(skipped)}); rerun to continue")
                break
            bar.set_postfix(arch=unit.arch, seed=unit.seed)
            for arm in unit.arms:
                if self.finished(unit, arm):
                    continue
                self.train_arm(unit, arm)
                _write_csv(self.out_dir / RESULTS_CSV, collect_results(self.out_dir))
        results = collect_results(self.out_dir)
        _write_csv(self.out_dir / RESULTS_CSV, results)
        write_json_atomic(self.out_dir / RANK_FIDELITY_JSON,
                          {**rank_fidelity(results, seed=self.config.seed),
                           "fidelity_epochs": (cfg.fidelity_epochs if len(self.fidelity_sample)
                                               else None)})
        status = Status.BUDGET_EXHAUSTED if skipped else Status.DONE
        self._write_status(status, not_started=skipped,
                           wall_s=clock() - t0,
                           onnx=cfg.export_onnx and onnx_available())
        return results


def run_distill(config: Config, search_dir: Path, out_dir: Path, *,
                data_spec: str | None = None, supernet: Path | None = None,
                progress: bool = True) -> pd.DataFrame:
    """The whole stage (see the module docstring); returns the rows of results.csv."""
    return DistillRun(config, search_dir, out_dir, data_spec=data_spec, supernet=supernet,
                      progress=progress).run()
