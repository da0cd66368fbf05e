"""Read a run directory into pandas tables, tolerating every missing stage, file or column.

File names, column names and status words are the run directory's schema, declared once in
:mod:`salnas.layout` and imported here. :data:`COLUMNS_READ` and :data:`PREFIXES_READ` list
what this package reads from each CSV (``tests/test_report.py`` checks that the stages'
writers write all of it). A missing or unreadable file gives an empty table and a sentence
in :attr:`Run.notes` saying why, so the report shows an explanation instead of crashing; a
file that lacks a column the report reads gets a note too.

Layout read (:class:`salnas.layout.RunLayout`)::

    RUN_DIR/{config.yaml, run.json (salnas run's record), baselines.json}
    RUN_DIR/supernet/{config.yaml, provenance.json, split.json, train_log.csv, supernet.pt}
    RUN_DIR/search/{archive.csv, pareto.csv, hv_history.csv, search.json, lut.json}
    RUN_DIR/distill/{results.csv, distill.json, <arch>/<arm>/model.pt|.ts|.onnx}

A stage run alone with ``--out RUN_DIR`` writes its files into RUN_DIR itself; they are
found there too. Supernet runs made before ``provenance.json`` recorded their provenance in
``supernet/run.json`` (or ``RUN_DIR/run.json`` when it is no pipeline record), read as a
fallback.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from salnas.errors import SalnasError
from salnas.io import read_json
from salnas.layout import (
    ARCHIVE,
    ARCHIVE_CSV,
    BASELINES_JSON,
    CONFIG_YAML,
    DISTILL,
    DISTILL_JSON,
    HV,
    HV_CSV,
    LEGACY_SUPERNET_RUN_JSON,
    LUT,
    LUT_JSON,
    MODEL_FILES,
    ORACLE_METRICS,
    PARETO_CSV,
    PROVENANCE_JSON,
    RANK_FIDELITY_JSON,
    RESULTS_CSV,
    RUN_JSON,
    SEARCH_JSON,
    SPLIT_JSON,
    STAGE_CO2,
    STAGE_ENERGY,
    STAGE_WALL,
    SUPERNET_CKPT,
    TRAIN_LOG,
    TRAIN_LOG_CSV,
    RunLayout,
    Status,
)
from salnas.metrics import HIGHER_IS_BETTER
from salnas.supernet.space import DECODER_OPS, GENOME_LIST_GENES, genome_list_gene

__all__ = [
    "BASELINE_REFS",
    "COLUMNS_READ",
    "COSTS",
    "COST_LABELS",
    "PREFIXES_READ",
    "Run",
    "as_dict",
    "decode_genes",
    "gene_importance",
    "higher_is_better",
    "latency_stats",
    "latency_table",
    "load_run",
    "rank_fidelity",
    "validated_subnets",
    "varying_genes",
]

# ---------------------------------------------------------------- what the report reads
COSTS: tuple[str, ...] = ("params", "flops", ARCHIVE.latency)  # archive / pareto columns
BASELINE_REFS: tuple[str, ...] = ("centre_bias", "inter_observer", "generating_map")
COST_LABELS = {"params": "parameters", "flops": "FLOPs (multiply-adds)",
               ARCHIVE.latency: "latency (ms)"}
# The report's half of the CSV contract: every column it reads, per file (a file lacking
# one gets a note), and the column families it reads by prefix (loss_<subnet>,
# test_<metric>, search_<pareto column>).
COLUMNS_READ: Mapping[str, tuple[str, ...]] = {
    TRAIN_LOG_CSV: (TRAIN_LOG.epoch, TRAIN_LOG.seconds, TRAIN_LOG.kept_epoch,
                    *(TRAIN_LOG.val(tag, m) for tag in ("max", "min") for m in ORACLE_METRICS)),
    ARCHIVE_CSV: (ARCHIVE.id, ARCHIVE.genome, *ORACLE_METRICS, *COSTS, ARCHIVE.latency_source,
                  ARCHIVE.feasible, ARCHIVE.engine, ARCHIVE.generation, ARCHIVE.wall_s),
    PARETO_CSV: (ARCHIVE.id, ARCHIVE.genome, *ORACLE_METRICS, *COSTS, ARCHIVE.latency_source),
    HV_CSV: (HV.generation, HV.n_evaluated, HV.n_pareto, HV.hypervolume),
    RESULTS_CSV: (DISTILL.arch, DISTILL.kind, DISTILL.genome_id, DISTILL.arm, DISTILL.seed,
                  DISTILL.test_prefix + "CC", DISTILL.params, DISTILL.flops, DISTILL.latency,
                  "resolution", DISTILL.energy, DISTILL.co2, DISTILL.wall_s,  # in DISTILL.text
                  DISTILL.model_dir),
}
PREFIXES_READ: Mapping[str, tuple[str, ...]] = {
    TRAIN_LOG_CSV: (TRAIN_LOG.loss_prefix,),
    RESULTS_CSV: (DISTILL.test_prefix, DISTILL.search_prefix),
}
# Validated subnets of train_log.csv besides max and min: supernet.val_random's fixed, seeded
# random subnets, val_rand<k>_<metric> (read when present; older logs have none).
RANDOM_SUBNET = re.compile(r"rand\d+")


def validated_subnets(columns: Iterable[str]) -> list[str]:
    """The subnet tags of ``val_<tag>_<metric>`` columns: max, min, then rand0, rand1, ...
    (:data:`RANDOM_SUBNET`), then any other tag."""
    tags: dict[str, None] = {}
    for c in columns:
        for m in ORACLE_METRICS:
            tail = "_" + m
            if c.startswith("val_") and c.endswith(tail) and len(c) > 4 + len(tail):
                tags[c[4:-len(tail)]] = None
    fixed = [t for t in ("max", "min") if t in tags]
    rand = sorted((t for t in tags if RANDOM_SUBNET.fullmatch(t)), key=lambda t: int(t[4:]))
    return fixed + rand + [t for t in tags if t not in fixed and t not in rand]


# Genome JSON lists and the gene name of their i-th entry (others: ``key[i]``): the space's.
GENE_NAMES = GENOME_LIST_GENES
# Ordered categories (cheapest first) so a categorical gene's code means something.
GENE_ORDER = {"op": DECODER_OPS}


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a mapping (of a JSON or YAML file), else an empty dict."""
    return value if isinstance(value, dict) else {}


def higher_is_better(metric: str) -> bool:
    """Direction of an accuracy metric (the metrics module's table); costs are minimised."""
    return HIGHER_IS_BETTER.get(metric, False)


# ---------------------------------------------------------------- the run
@dataclass
class Run:
    """Every table of one run directory; empty tables come with a :attr:`notes` entry."""

    path: Path
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)  # file (relative) -> YAML text
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> provenance
    pipeline: dict[str, Any] = field(default_factory=dict)  # RUN/run.json of salnas run
    split: dict[str, Any] = field(default_factory=dict)
    baselines: pd.DataFrame = field(default_factory=pd.DataFrame)  # reference x metric
    baselines_meta: dict[str, Any] = field(default_factory=dict)
    train_log: pd.DataFrame = field(default_factory=pd.DataFrame)
    archive: pd.DataFrame = field(default_factory=pd.DataFrame)
    genes: pd.DataFrame = field(default_factory=pd.DataFrame)  # numeric genes, archive's index
    gene_labels: dict[str, list[str]] = field(default_factory=dict)  # categorical gene codes
    pareto: pd.DataFrame = field(default_factory=pd.DataFrame)
    hv_history: pd.DataFrame = field(default_factory=pd.DataFrame)
    search: dict[str, Any] = field(default_factory=dict)
    lut: dict[str, Any] = field(default_factory=dict)
    latency: pd.DataFrame = field(default_factory=pd.DataFrame)
    distill: pd.DataFrame = field(default_factory=pd.DataFrame)
    distill_meta: dict[str, Any] = field(default_factory=dict)
    fidelity_record: dict[str, Any] = field(default_factory=dict)  # distill/rank_fidelity.json
    stages: pd.DataFrame = field(default_factory=pd.DataFrame)
    files: dict[str, Path] = field(default_factory=dict)  # table -> the file it came from
    notes: dict[str, str] = field(default_factory=dict)  # table -> why it is empty / caveats

    @property
    def fidelity(self) -> tuple[pd.DataFrame, dict[str, Any]]:
        """:func:`rank_fidelity` of this run (rank_fidelity.json, else computed once)."""
        cached = self.__dict__.get("_fidelity")
        if cached is None:
            cached = rank_fidelity(self.distill, self.fidelity_record)
            self.__dict__["_fidelity"] = cached
        return cached

    def note(self, key: str) -> str:
        """Why table ``key`` is empty (or a caveat about it)."""
        return self.notes.get(key, f"no {key} data in {self.path}")

    @property
    def pareto_ids(self) -> list[str]:
        if self.pareto.empty or ARCHIVE.id not in self.pareto:
            return []
        return [str(i) for i in self.pareto[ARCHIVE.id]]

    @property
    def engine(self) -> str:
        """The search engine (search.json, else the archive's engine column)."""
        if self.search.get("engine"):
            return str(self.search["engine"])
        if ARCHIVE.engine in self.archive and self.archive[ARCHIVE.engine].notna().any():
            return ", ".join(sorted(set(self.archive[ARCHIVE.engine].dropna().astype(str))))
        return "search"

    @property
    def objectives(self) -> list[str]:
        objs = self.search.get("objectives") or as_dict(self.config.get("search")).get("objectives")
        return [str(o) for o in objs] if isinstance(objs, list) else []

    @property
    def constraints(self) -> dict[str, float]:
        cons = self.search.get("constraints")
        if not isinstance(cons, dict):
            cons = as_dict(as_dict(self.config.get("search")).get("constraints"))
        out = {}
        for k, v in cons.items():
            with contextlib.suppress(TypeError, ValueError):
                out[str(k)] = float(v)
        return out

    def model_files(self, model_dir: str) -> list[Path]:
        """Existing model files of one distilled arm (``model_dir`` of results.csv)."""
        base = self.files.get("distill_dir")
        if base is None or not model_dir:
            return []
        return [base / model_dir / f for f in MODEL_FILES if (base / model_dir / f).is_file()]


# ---------------------------------------------------------------- readers
def _find(dirs: Iterable[Path | None], name: str) -> Path | None:
    """The first ``dir/name`` that is a file."""
    for d in dirs:
        if d is not None and (d / name).is_file():
            return d / name
    return None


def _read_json(path: Path | None, what: str, notes: dict[str, str]) -> dict[str, Any]:
    """A JSON object (:func:`salnas.io.read_json`); ``{}`` with a note when it is unreadable,
    invalid or not an object, ``{}`` without one when ``path`` is None."""
    if path is None:
        return {}
    try:
        data = read_json(path)
    except SalnasError as e:  # the message names the file and what is wrong with it
        notes[what] = str(e)
        return {}
    if data is None:  # removed since it was found
        return {}
    if not isinstance(data, dict):
        notes[what] = f"{path} is not a JSON object"
        return {}
    return data


def _as_bool(series: pd.Series) -> pd.Series:
    """"true"/"false" text (or real booleans) as booleans; anything else is False."""
    if series.dtype == bool:
        return series
    text = series.astype(str).str.strip().str.lower()
    return text.isin(("true", "1", "1.0", "yes"))


def _read_csv(path: Path | None, what: str, notes: dict[str, str], missing: str,
              text: Iterable[str] = (), flags: Iterable[str] = ()) -> pd.DataFrame:
    """A CSV as a DataFrame (ids stay text: '12e4567890' is an id, not a float).

    A file that lacks a column of :data:`COLUMNS_READ` gets a note (``<what>_columns``).
    """
    if path is None:
        notes[what] = missing
        return pd.DataFrame()
    text = list(text)
    try:
        frame = pd.read_csv(path, dtype=dict.fromkeys(text, str))
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as e:
        # EmptyDataError is a ValueError: a file with no header at all.
        notes[what] = f"{path} could not be read as CSV ({e})"
        return pd.DataFrame()
    for c in text:
        if c in frame:
            frame[c] = frame[c].fillna("").astype(str)
    for c in flags:
        if c in frame:
            frame[c] = _as_bool(frame[c])
    lacking = [c for c in COLUMNS_READ.get(path.name, ()) if c not in frame.columns]
    if lacking:
        notes[f"{what}_columns"] = (f"{path} has no column {', '.join(lacking)}: what needs "
                                    "it is left out (a file of another salnas version?)")
    if frame.empty:
        notes[what] = f"{path} has a header but no rows yet"
    return frame


def _numeric(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    for c in columns:
        if c in frame:
            frame[c] = pd.to_numeric(frame[c], errors="coerce")


def load_run(run_dir: str | Path) -> Run:
    """Every table of ``run_dir``; raises only when ``run_dir`` is not a folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SalnasError(f"{run_dir} is not a run directory (no such folder)")
    run = Run(path=run_dir, name=run_dir.resolve().name)
    notes = run.notes
    layout = RunLayout(run_dir)
    _load_pipeline(run, layout)
    _load_config(run, layout)
    _load_supernet(run, layout)
    _load_baselines(run, layout)
    _load_search(run, layout)
    _load_distill(run, layout)
    run.latency = latency_table(run.archive, run.lut, run.distill)
    if run.latency.empty:
        notes.setdefault(
            "latency",
            f"no latency predictions to check: needs {LUT_JSON} with a validation block "
            f"(salnas latency profile --validate N, stored as search/{LUT_JSON}), or archive "
            f"latencies from a LUT ({ARCHIVE.latency_source} = lut) next to distilled "
            "models' measured latency",
        )
    run.stages = _stage_table(run)
    return run


def _is_pipeline_record(data: Mapping[str, Any]) -> bool:
    """``RUN/run.json`` of ``salnas run`` (not a legacy supernet provenance record)."""
    return isinstance(data.get("stages"), dict) or data.get("stage") == "run"


def _load_pipeline(run: Run, layout: RunLayout) -> None:
    path = layout.run_json if layout.run_json.is_file() else None
    data = _read_json(path, "run", run.notes)
    if data and _is_pipeline_record(data):
        run.pipeline = data
        run.provenance["run"] = {k: v for k, v in data.items() if k != "stages"}
        run.files["run"] = layout.run_json


def _load_config(run: Run, layout: RunLayout) -> None:
    notes, d = run.notes, run.path
    found = None
    for folder in (layout.root, layout.supernet_dir, layout.search_dir, layout.distill_dir):
        p = _find((folder,), CONFIG_YAML)
        if p is None:
            continue
        try:
            text = p.read_text(encoding="utf-8")
            data = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            notes.setdefault("config", f"{p} could not be read ({e})")
            continue
        run.configs[str(p.relative_to(d))] = text
        if found is None and isinstance(data, dict):
            found = data  # the run's own (top or supernet) config wins over later stages'
    run.config = found or {}
    if not run.configs:
        notes.setdefault("config", f"no {CONFIG_YAML} in {d} or its stage folders")


def _supernet_provenance(run: Run, dirs: Sequence[Path]) -> None:
    """``provenance.json``; else the legacy ``run.json`` of a supernet run made before it
    (RUN_DIR/run.json only when it is no pipeline record)."""
    path = _find(dirs, PROVENANCE_JSON)
    prov = _read_json(path, "provenance", run.notes)
    if path is None:
        for d in dirs:
            legacy = _find((d,), LEGACY_SUPERNET_RUN_JSON)
            if legacy is None or legacy == run.files.get("run") or (
                    d == run.path and "run" in run.notes):  # already said it is unreadable
                continue
            data = _read_json(legacy, "provenance", run.notes)
            if data and not _is_pipeline_record(data):
                path, prov = legacy, data
                break
    if prov and path is not None:
        run.provenance["supernet"] = prov
        run.files["provenance"] = path


def _load_supernet(run: Run, layout: RunLayout) -> None:
    notes, d = run.notes, run.path
    dirs = (layout.supernet_dir, layout.root)
    log_path = _find(dirs, TRAIN_LOG_CSV)
    run.train_log = _read_csv(
        log_path, "train_log", notes,
        f"no {TRAIN_LOG_CSV} in {layout.supernet_dir} or {d}: the supernet has not been "
        "trained (salnas supernet train --out RUN_DIR/supernet)")
    _numeric(run.train_log, run.train_log.columns)
    if log_path is not None:
        run.files["train_log"] = log_path
    ckpt = _find(dirs, SUPERNET_CKPT)
    if ckpt is not None:
        run.files["supernet"] = ckpt
    _supernet_provenance(run, dirs)
    split_path = _find(dirs, SPLIT_JSON)
    run.split = _read_json(split_path, "split", notes)
    if split_path is not None:
        run.files["split"] = split_path


def _load_baselines(run: Run, layout: RunLayout) -> None:
    notes, d = run.notes, run.path
    path = _find((layout.root, layout.supernet_dir), BASELINES_JSON)
    data = _read_json(path, "baselines", notes)
    rows = {k: v for k, v in data.items() if k in BASELINE_REFS and isinstance(v, dict)}
    if rows:
        frame = pd.DataFrame.from_dict(rows, orient="index")
        run.baselines = frame.apply(pd.to_numeric, errors="coerce")
        run.baselines_meta = {k: v for k, v in data.items() if k not in BASELINE_REFS}
        if isinstance(data.get("provenance"), dict):
            run.provenance["baselines"] = data["provenance"]
        run.files["baselines"] = path  # type: ignore[assignment]
    else:
        notes.setdefault(
            "baselines",
            f"no {BASELINES_JSON} in {d}: the centre-bias floor and inter-observer ceiling "
            f"are not drawn (salnas baselines --data SPEC --split-file "
            f"RUN_DIR/supernet/{SPLIT_JSON} --json RUN_DIR/{BASELINES_JSON})")


def _load_search(run: Run, layout: RunLayout) -> None:
    notes, d = run.notes, run.path
    archive_path = _find((layout.search_dir, layout.root), ARCHIVE_CSV)
    never = (f"no {ARCHIVE_CSV} in {layout.search_dir}: the architecture search has not run "
             "(salnas search --out RUN_DIR/search)")
    run.archive = _read_csv(archive_path, "archive", notes, never, ARCHIVE.text, ARCHIVE.flags)
    _numeric(run.archive, [*ORACLE_METRICS, *COSTS, ARCHIVE.generation, ARCHIVE.wall_s])
    if not run.archive.empty:
        run.files["archive"] = archive_path  # type: ignore[assignment]
        if ARCHIVE.genome in run.archive:
            run.genes, run.gene_labels = decode_genes(run.archive[ARCHIVE.genome])
        else:
            notes["genes"] = f"{archive_path} has no '{ARCHIVE.genome}' column"
    search_dir = archive_path.parent if archive_path else (
        layout.search_dir if layout.search_dir.is_dir() else None)

    def one(name: str) -> Path | None:
        return _find((search_dir,), name)

    run.pareto = _read_csv(one(PARETO_CSV), "pareto", notes,
                           f"no {PARETO_CSV}: the search has not written a front yet",
                           ARCHIVE.text, ARCHIVE.flags)
    _numeric(run.pareto, [*ORACLE_METRICS, *COSTS])
    run.hv_history = _read_csv(one(HV_CSV), "hv_history", notes,
                               f"no {HV_CSV}: the search has not finished a generation yet")
    _numeric(run.hv_history, run.hv_history.columns)
    run.search = _read_json(one(SEARCH_JSON), "search", notes)
    if isinstance(run.search.get("provenance"), dict):
        run.provenance["search"] = run.search["provenance"]
    lut_path = one(LUT_JSON) or _find((layout.root,), LUT_JSON)
    named = as_dict(as_dict(as_dict(run.search.get("config")).get("search")).get("latency")
                    ).get("lut")
    if lut_path is None and named:
        for candidate in (Path(named), d / named, layout.search_dir / named):
            if candidate.is_file():
                lut_path = candidate
                break
    run.lut = _read_json(lut_path, "lut", notes)
    if lut_path is not None:
        run.files["lut"] = lut_path
    if search_dir is not None:
        run.files["search_dir"] = search_dir


def _load_distill(run: Run, layout: RunLayout) -> None:
    notes = run.notes
    path = _find((layout.distill_dir, layout.root), RESULTS_CSV)
    run.distill = _read_csv(
        path, "distill", notes,
        f"no {RESULTS_CSV} in {layout.distill_dir}: no architecture has been retrained yet "
        "(salnas distill --search RUN_DIR/search --out RUN_DIR/distill)",
        DISTILL.text, DISTILL.flags)
    numeric = [c for c in run.distill.columns
               if c not in DISTILL.text and c not in DISTILL.flags]
    _numeric(run.distill, numeric)
    if path is not None:
        run.files["distill_dir"] = path.parent
    meta_dir = path.parent if path else layout.distill_dir
    run.distill_meta = _read_json(_find((meta_dir,), DISTILL_JSON), "distill_meta", notes)
    run.fidelity_record = _read_json(_find((meta_dir,), RANK_FIDELITY_JSON), "rank_fidelity",
                                     notes)
    if isinstance(run.distill_meta.get("provenance"), dict):
        run.provenance["distill"] = run.distill_meta["provenance"]


# ---------------------------------------------------------------- genes
def _gene_name(key: str, i: int) -> str:
    return genome_list_gene(key, i) or f"{key}[{i}]"


def decode_genes(genomes: pd.Series) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Genome JSON strings -> numeric gene columns (one row per genome, same index).

    Generic, so a genome format change degrades instead of failing: numbers and booleans
    stay (booleans as 0/1); ``resolution`` becomes its height; a list gives one column per
    entry (``depths`` -> ``s{i}.depth`` ...); a list of lists (per-block kernels and expand
    ratios of a stage) gives the stage's mean; strings become integer codes whose labels are
    returned (decoder ops in cost order). Unparseable genomes give a row of NaN.
    """
    rows: list[dict[str, Any]] = []
    for text in genomes:
        row: dict[str, Any] = {}
        try:
            data = json.loads(text) if isinstance(text, str) else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        for key, value in data.items():
            if key == "resolution" and isinstance(value, list) and value:
                row["resolution"] = value[0]
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    if isinstance(v, list):
                        nums = [x for x in v if isinstance(x, int | float)]
                        row[_gene_name(key, i)] = float(np.mean(nums)) if nums else math.nan
                    else:
                        row[_gene_name(key, i)] = v
            else:
                row[key] = value
        rows.append(row)
    frame = pd.DataFrame(rows, index=genomes.index)
    labels: dict[str, list[str]] = {}
    for c in list(frame.columns):
        col = frame[c]
        values = col.dropna()
        if values.map(lambda v: isinstance(v, bool)).all() and len(values):
            frame[c] = col.map(lambda v: float(v) if isinstance(v, bool) else math.nan)
        elif values.map(lambda v: isinstance(v, str)).any():
            kind = c.rsplit(".", 1)[-1]
            order = [o for o in GENE_ORDER.get(kind, ()) if o in set(values.astype(str))]
            order += sorted(set(values.astype(str)) - set(order))
            labels[c] = order
            frame[c] = col.map(lambda v, o=order: o.index(str(v)) if isinstance(v, str) else
                               math.nan)
        else:
            frame[c] = pd.to_numeric(col, errors="coerce")
    return frame.astype(float), labels


def varying_genes(genes: pd.DataFrame) -> list[str]:
    """Gene columns that take more than one value (fixed stages say nothing)."""
    return [c for c in genes.columns if genes[c].nunique(dropna=True) > 1]


def gene_importance(genes: pd.DataFrame, target: pd.Series, higher: bool = True,
                    labels: dict[str, list[str]] | None = None) -> tuple[pd.DataFrame, str]:
    """(gene, importance) sorted by importance, and the method used.

    Optuna's PED-ANOVA (``optuna.importance``) on an in-memory study rebuilt from the archive
    with ``optuna.trial.create_trial``: it needs no scikit-learn (fANOVA does) and asks which
    genes tell the top 10 % of architectures from the rest. Without Optuna (or if it fails),
    the documented fallback is |Spearman rho| between each gene and the target, normalised
    to sum 1.
    """
    labels = labels or {}
    ok = target.notna()
    x, y = genes.loc[ok], target.loc[ok].astype(float)
    cols = varying_genes(x)
    if len(y) < 4 or not cols:
        raise ValueError("gene importance needs at least 4 scored architectures whose genes "
                         f"vary (have {len(y)} scored, {len(cols)} varying genes)")
    try:
        return _optuna_importance(x[cols], y, higher, labels), (
            "Optuna PED-ANOVA importance (optuna.importance.PedAnovaImportanceEvaluator) on an "
            "in-memory study rebuilt from the archive; importances sum to 1")
    except ImportError:
        why = "optuna is not installed"
    except Exception as e:  # a library version that behaves differently: fall back, say why
        why = f"Optuna importance failed ({type(e).__name__}: {e})"
    from scipy.stats import spearmanr

    values = {}
    for c in cols:
        rho = spearmanr(x[c], y, nan_policy="omit").statistic
        values[c] = abs(float(rho)) if np.isfinite(rho) else 0.0
    total = sum(values.values()) or 1.0
    frame = pd.DataFrame({"gene": list(values), "importance": [v / total for v in
                                                               values.values()]})
    return frame.sort_values("importance", ascending=False, ignore_index=True), (
        f"|Spearman rho| of each gene with the target, normalised to sum 1 ({why})")


def _optuna_importance(x: pd.DataFrame, y: pd.Series, higher: bool,
                       labels: dict[str, list[str]]) -> pd.DataFrame:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
    from optuna.trial import create_trial

    dists: dict[str, Any] = {}
    for c in x.columns:
        lo, hi = float(x[c].min()), float(x[c].max())
        if c in labels or set(x[c].dropna().unique()) <= {0.0, 1.0}:
            dists[c] = CategoricalDistribution(tuple(sorted(int(v) for v in x[c].dropna()
                                                            .unique())))
        elif (x[c].dropna() % 1 == 0).all():
            dists[c] = IntDistribution(int(lo), int(hi))
        else:
            dists[c] = FloatDistribution(lo, hi)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning of the evaluator
            study = optuna.create_study(direction="maximize" if higher else "minimize")
            for (_, row), value in zip(x.iterrows(), y, strict=True):
                params = {}
                for c, v in row.items():
                    if pd.isna(v):
                        continue
                    integer = isinstance(dists[c], CategoricalDistribution | IntDistribution)
                    params[c] = int(v) if integer else float(v)
                study.add_trial(create_trial(params=params,
                                             distributions={c: dists[c] for c in params},
                                             value=float(value)))
            imp = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    finally:
        optuna.logging.set_verbosity(verbosity)
    frame = pd.DataFrame({"gene": list(imp), "importance": [float(v) for v in imp.values()]})
    return frame.sort_values("importance", ascending=False, ignore_index=True)


# ---------------------------------------------------------------- derived tables
def rank_fidelity(distill: pd.DataFrame, record: Mapping[str, Any] | None = None
                  ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rank fidelity of the oracle: ``(arch, oracle, retrained)`` per architecture and the
    statistics (``n``, ``sample``, ``kendall_tau``, ``spearman_rho``, ``p_value``, ``method``,
    and ``source``: where they come from).

    One computation, the distill stage's (:func:`salnas.distill.fidelity.rank_fidelity`):
    ``record`` is its ``distill/rank_fidelity.json`` when the run has one; else it is
    computed from ``results.csv`` the same way (the fidelity sample alone when there is one,
    else the baseline arm of the retrained architectures). Empty table, ``n`` 0, without
    results.
    """
    from salnas.distill.fidelity import rank_fidelity as compute

    if record and isinstance(record.get("architectures"), list):
        stats = dict(record)
        stats["source"] = f"distill/{RANK_FIDELITY_JSON}"
    elif distill.empty:
        return pd.DataFrame(columns=["arch", "oracle", "retrained"]), {
            "n": 0, "sample": "none", "kendall_tau": None, "spearman_rho": None,
            "p_value": None, "source": "no results"}
    elif DISTILL.arm not in distill:
        return pd.DataFrame(columns=["arch", "oracle", "retrained"]), {
            "n": 0, "sample": "none", "kendall_tau": None, "spearman_rho": None,
            "p_value": None, "source": f"{RESULTS_CSV} has no '{DISTILL.arm}' column"}
    else:
        frame = distill
        if DISTILL.kind not in frame:  # results.csv before the column: peers by their name
            frame = frame.assign(**{DISTILL.kind: frame[DISTILL.arch].astype(str).map(
                lambda a: DISTILL.peer_kind if a.startswith("peer-") else DISTILL.pareto_kind)})
        stats = compute(frame)
        stats["source"] = (f"computed from {RESULTS_CSV} (salnas.distill.fidelity."
                           f"rank_fidelity; no {RANK_FIDELITY_JSON})")
    rows = [a for a in stats.get("architectures", []) if isinstance(a, dict)]
    table = pd.DataFrame(rows, columns=["arch", "oracle", "retrained"])
    for c in ("oracle", "retrained"):
        table[c] = pd.to_numeric(table[c], errors="coerce")
    table["arch"] = table["arch"].astype(str)
    stats.pop("architectures", None)
    for k in ("kendall_tau", "spearman_rho", "p_value"):
        v = stats.get(k)
        stats[k] = float(v) if isinstance(v, int | float) and math.isfinite(v) else None
    stats["n"] = int(stats.get("n") or len(table))
    return table, stats


def latency_table(archive: pd.DataFrame, lut: dict[str, Any], distill: pd.DataFrame
                  ) -> pd.DataFrame:
    """Predicted vs measured latency (ms) from every source there is: the LUT's validation
    subnets, and LUT-predicted archive rows against the distilled model's measured latency
    (columns: source, id, predicted_ms, measured_ms)."""
    parts = []
    val = lut.get(LUT.validation) if isinstance(lut, dict) else None
    subnets = val.get(LUT.subnets) if isinstance(val, dict) else None
    if isinstance(subnets, list) and subnets:
        frame = pd.DataFrame([s for s in subnets if isinstance(s, dict)])
        if {LUT.measured, LUT.predicted} <= set(frame.columns):
            parts.append(pd.DataFrame({
                "source": f"{LUT_JSON} validation subnets",
                "id": frame.get(LUT.id, pd.Series([""] * len(frame))).astype(str),
                "predicted_ms": pd.to_numeric(frame[LUT.predicted], errors="coerce"),
                "measured_ms": pd.to_numeric(frame[LUT.measured], errors="coerce")}))
    if ({ARCHIVE.id, ARCHIVE.latency, ARCHIVE.latency_source} <= set(archive.columns)
            and {DISTILL.genome_id, DISTILL.latency} <= set(distill.columns)):
        lut_rows = archive[archive[ARCHIVE.latency_source].str.lower() == "lut"]
        predicted = lut_rows.drop_duplicates(ARCHIVE.id).set_index(ARCHIVE.id)[ARCHIVE.latency]
        measured = (distill[distill[DISTILL.genome_id].isin(predicted.index)]
                    .groupby(DISTILL.genome_id)[DISTILL.latency].median())
        if len(measured):
            parts.append(pd.DataFrame({
                "source": "search LUT prediction vs distilled model measured",
                "id": measured.index.astype(str),
                "predicted_ms": predicted.reindex(measured.index).to_numpy(),
                "measured_ms": measured.to_numpy()}))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True).dropna(subset=["predicted_ms", "measured_ms"])
    out = out[(out["measured_ms"] > 0) & (out["predicted_ms"] > 0)]
    return out.reset_index(drop=True)


def latency_stats(table: pd.DataFrame) -> pd.DataFrame:
    """Per source: n, RMSE of the relative error (%), mean error (%), Kendall tau."""
    from scipy.stats import kendalltau

    rows = []
    for source, part in table.groupby("source", sort=False):
        err = (part["predicted_ms"] - part["measured_ms"]) / part["measured_ms"] * 100
        tau = (float(kendalltau(part["predicted_ms"], part["measured_ms"]).statistic)
               if len(part) >= 3 else math.nan)
        rows.append({"source": source, "n": len(part),
                     "rmse_pct": float(np.sqrt(np.mean(err**2))),
                     "mean_error_pct": float(err.mean()), "kendall_tau": tau})
    return pd.DataFrame(rows)


def _stage_cost(data: dict[str, Any]) -> tuple[float, float, float]:
    def get(key: str) -> float:
        for where in (data, data.get("summary") or {}):
            if isinstance(where, dict) and key in where:
                with contextlib.suppress(TypeError, ValueError):
                    return float(where[key])
        return math.nan

    return get(STAGE_WALL), get(STAGE_ENERGY), get(STAGE_CO2)


def _status(records: Iterable[Mapping[str, Any]], fallback: str) -> str:
    """The first status :meth:`salnas.layout.Status.of` knows among ``records``, else
    ``fallback`` (legacy "finished" reads as done)."""
    for record in records:
        status = Status.of(record)
        if status is not None:
            return status.value
    return fallback


def _stage_table(run: Run) -> pd.DataFrame:
    """Status, wall time, energy and CO2 per stage, saying where each number comes from.

    A stage's own record (search.json, distill.json) has the last word on its status; the
    pipeline's ``run.json`` on its cost when it has one (the wall time of the process that
    ran the stage), else the stage's own files.
    """
    rows = []
    declared = as_dict(run.pipeline.get("stages"))
    by_pipeline = f"{RUN_JSON} (salnas run)"
    log = run.train_log
    piped = as_dict(declared.get("supernet"))
    wall, kwh, co2 = _stage_cost(piped or run.provenance.get("supernet", {}))
    source = by_pipeline if piped else PROVENANCE_JSON
    if math.isnan(wall) and TRAIN_LOG.seconds in log:
        wall = float(log[TRAIN_LOG.seconds].sum())
        source = (f"sum of {TRAIN_LOG_CSV} '{TRAIN_LOG.seconds}' over {len(log)} epoch(s) "
                  "(training steps; validation not included)")
    status = _status((piped,), Status.DONE.value if not log.empty else "not run")
    rows.append({"stage": "supernet", "status": status, "wall_s": wall, "energy_kwh": kwh,
                 "co2_kg": co2, "source": source})

    piped = as_dict(declared.get("search"))
    wall, kwh, co2 = _stage_cost(piped or run.search)
    summary = run.search.get("summary") or {}
    source = by_pipeline if piped else SEARCH_JSON
    if math.isnan(wall) and "wall_s_of_this_process" in summary:
        wall = float(summary["wall_s_of_this_process"])
        source = f"{SEARCH_JSON} (the last search process only)"
    elif math.isnan(wall) and ARCHIVE.wall_s in run.archive:
        wall = float(run.archive[ARCHIVE.wall_s].sum())
        source = f"sum of {ARCHIVE_CSV} '{ARCHIVE.wall_s}' (evaluation time)"
    status = _status((run.search, piped), "partial" if not run.archive.empty else "not run")
    rows.append({"stage": "search", "status": status, "wall_s": wall, "energy_kwh": kwh,
                 "co2_kg": co2, "source": source})

    piped = as_dict(declared.get("distill"))
    wall, kwh, co2 = _stage_cost(piped or run.distill_meta)
    source = by_pipeline if piped else DISTILL_JSON + " (the last distill process)"
    res = run.distill
    if math.isnan(wall) and DISTILL.wall_s in res:
        wall, source = float(res[DISTILL.wall_s].sum()), f"sum of {RESULTS_CSV} '{DISTILL.wall_s}'"
    if math.isnan(kwh) and DISTILL.energy in res and res[DISTILL.energy].notna().any():
        kwh = float(res[DISTILL.energy].sum())
        source += f"; energy: sum of '{DISTILL.energy}' (codecarbon)"
    if math.isnan(co2) and DISTILL.co2 in res and res[DISTILL.co2].notna().any():
        co2 = float(res[DISTILL.co2].sum())
    status = _status((run.distill_meta, piped), "partial" if not res.empty else "not run")
    rows.append({"stage": "distill", "status": status, "wall_s": wall, "energy_kwh": kwh,
                 "co2_kg": co2, "source": source})
    return pd.DataFrame(rows)
