"""Read a run directory into pandas tables, tolerating every missing stage, file or column.

This module is the one place that knows the run directory's file names and the column names
of the stages' tables (the constants below). A missing or unreadable file gives an empty
table and a sentence in :attr:`Run.notes` saying why, so the report shows an explanation
instead of crashing; a stage that renames a column only needs this module changed.

Layout read (see ``../shared/DESIGN.md``)::

    RUN_DIR/{config.yaml, run.json, split.json, train_log.csv, supernet.pt}  (or RUN_DIR/supernet/)
    RUN_DIR/baselines.json                                      salnas baselines --json
    RUN_DIR/search/{archive.csv, pareto.csv, hv_history.csv, search.json, lut.json}
    RUN_DIR/distill/{results.csv, distill.json, <arch>/<arm>/model.pt|.ts|.onnx}
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from salnas.errors import SalnasError
from salnas.metrics import HIGHER_IS_BETTER

__all__ = [
    "ACCURACY",
    "ARCHIVE",
    "BASELINE_REFS",
    "COSTS",
    "DISTILL",
    "HV",
    "LUT",
    "TRAIN_LOG",
    "Run",
    "as_dict",
    "decode_genes",
    "gene_importance",
    "higher_is_better",
    "kd_pairs",
    "kd_summary",
    "latency_table",
    "load_run",
    "rank_fidelity",
]

# ---------------------------------------------------------------- file names (the contract)
SUPERNET_DIRS = (".", "supernet")  # the supernet stage writes into RUN_DIR or RUN_DIR/supernet
SEARCH_DIRS = ("search", ".")
DISTILL_DIRS = ("distill", ".")
CONFIG_FILE = "config.yaml"
RUN_JSON = "run.json"
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
REPORT_FILE = "report.html"
MODEL_FILES = ("model.pt", "model.ts", "model.onnx")

# ---------------------------------------------------------------- column names (the contract)
ACCURACY: tuple[str, ...] = ("CC", "KLD", "NSS", "SIM", "AUC_Judd")  # scored by the oracle
COSTS: tuple[str, ...] = ("params", "flops", "latency_ms")
BASELINE_REFS: tuple[str, ...] = ("centre_bias", "inter_observer", "generating_map")
COST_LABELS = {"params": "parameters", "flops": "FLOPs (multiply-adds)",
               "latency_ms": "latency (ms)"}


@dataclass(frozen=True)
class _TrainLogColumns:
    epoch: str = "epoch"
    lr: str = "lr"
    temperature: str = "temperature"
    loss_prefix: str = "loss_"
    img_per_s: str = "img_per_s"
    seconds: str = "seconds"
    val_max: str = "val_max_"  # + metric
    val_min: str = "val_min_"
    kept_epoch: str = "kept_epoch"  # the epoch whose weights the later stages inherit


@dataclass(frozen=True)
class _ArchiveColumns:
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


@dataclass(frozen=True)
class _HvColumns:
    generation: str = "generation"
    n_evaluated: str = "n_evaluated"
    n_feasible: str = "n_feasible"
    n_pareto: str = "n_pareto"
    hypervolume: str = "hypervolume"


@dataclass(frozen=True)
class _DistillColumns:
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
    flops: str = "flops"
    latency: str = "latency_ms"
    energy: str = "energy_kwh"
    co2: str = "co2_kg"
    epochs: str = "epochs"
    train_s: str = "train_s"
    wall_s: str = "wall_s"
    model_dir: str = "model_dir"
    genome: str = "genome"
    selfkd: str = "selfkd"  # arm names
    baseline: str = "baseline"
    pareto_kind: str = "pareto"
    text: tuple[str, ...] = ("arch", "kind", "genome_id", "arm", "init", "resolution",
                             "model_dir", "genome")
    flags: tuple[str, ...] = ("kd", "onnx")


@dataclass(frozen=True)
class _LutKeys:
    validation: str = "validation"
    subnets: str = "subnets"
    id: str = "id"
    measured: str = "measured_ms"
    predicted: str = "predicted_ms"


TRAIN_LOG = _TrainLogColumns()
ARCHIVE = _ArchiveColumns()
HV = _HvColumns()
DISTILL = _DistillColumns()
LUT = _LutKeys()
# Keys of a stage's JSON that hold its cost (any stage JSON may carry them).
STAGE_WALL, STAGE_ENERGY, STAGE_CO2 = "wall_s", "energy_kwh", "co2_kg"
STAGES = ("supernet", "search", "distill")
# Genome JSON lists and the gene name of their i-th entry (others: ``key[i]``).
GENE_NAMES = {"depths": "s{i}.depth", "kernels": "s{i}.kernel", "expands": "s{i}.expand",
              "skips": "d{i}.skip", "ops": "d{i}.op", "widths": "d{i}.width"}
# Ordered categories (cheapest first) so a categorical gene's code means something.
GENE_ORDER = {"op": ("dwsep3x3", "dwsep5x5", "conv3x3", "dynconv")}


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
    stages: pd.DataFrame = field(default_factory=pd.DataFrame)
    files: dict[str, Path] = field(default_factory=dict)  # table -> the file it came from
    notes: dict[str, str] = field(default_factory=dict)  # table -> why it is empty / caveats

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
def _find(run_dir: Path, dirs: Sequence[str], name: str) -> Path | None:
    for d in dirs:
        p = (run_dir / d / name) if d != "." else run_dir / name
        if p.is_file():
            return p
    return None


def _read_json(path: Path | None, what: str, notes: dict[str, str]) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        notes[what] = f"{path} could not be read ({e})"
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
    """A CSV as a DataFrame (ids stay text: '12e4567890' is an id, not a float)."""
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
    _load_config(run)
    _load_supernet(run)
    _load_baselines(run)
    _load_search(run)
    _load_distill(run)
    run.latency = latency_table(run.archive, run.lut, run.distill)
    if run.latency.empty:
        notes.setdefault(
            "latency",
            "no latency predictions to check: needs lut.json with a validation block "
            "(salnas latency profile --validate N, stored as search/lut.json), or archive "
            f"latencies from a LUT ({ARCHIVE.latency_source} = lut) next to distilled "
            "models' measured latency",
        )
    run.stages = _stage_table(run)
    return run


def _load_config(run: Run) -> None:
    notes, d = run.notes, run.path
    found = None
    for sub in (".", "supernet", "search", "distill"):
        p = _find(d, (sub,), CONFIG_FILE)
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
        notes.setdefault("config", f"no {CONFIG_FILE} in {d} or its stage folders")


def _load_supernet(run: Run) -> None:
    notes, d = run.notes, run.path
    log_path = _find(d, SUPERNET_DIRS, TRAIN_LOG_CSV)
    run.train_log = _read_csv(
        log_path, "train_log", notes,
        f"no {TRAIN_LOG_CSV} in {d} or {d / 'supernet'}: the supernet has not been trained "
        "(salnas supernet train --out RUN_DIR)")
    _numeric(run.train_log, run.train_log.columns)
    if log_path is not None:
        run.files["train_log"] = log_path
    ckpt = _find(d, SUPERNET_DIRS, SUPERNET_CKPT)
    if ckpt is not None:
        run.files["supernet"] = ckpt
    prov = _read_json(_find(d, SUPERNET_DIRS, RUN_JSON), "provenance", notes)
    if prov:
        run.provenance["supernet"] = prov
    split_path = _find(d, SUPERNET_DIRS, SPLIT_JSON)
    run.split = _read_json(split_path, "split", notes)
    if split_path is not None:
        run.files["split"] = split_path


def _load_baselines(run: Run) -> None:
    notes, d = run.notes, run.path
    path = _find(d, (".", "supernet"), BASELINES_JSON)
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
            f"are not drawn (salnas baselines --data SPEC --split-file RUN_DIR/{SPLIT_JSON} "
            f"--json RUN_DIR/{BASELINES_JSON})")


def _load_search(run: Run) -> None:
    notes, d = run.notes, run.path
    archive_path = _find(d, SEARCH_DIRS, ARCHIVE_CSV)
    search_dir = archive_path.parent if archive_path else None
    never = (f"no {ARCHIVE_CSV} in {d / 'search'}: the architecture search has not run "
             "(salnas search --out RUN_DIR/search)")
    run.archive = _read_csv(archive_path, "archive", notes, never, ARCHIVE.text, ARCHIVE.flags)
    _numeric(run.archive, [*ACCURACY, *COSTS, ARCHIVE.generation, ARCHIVE.wall_s,
                           ARCHIVE.latency_measured, ARCHIVE.latency_predicted])
    if not run.archive.empty:
        run.files["archive"] = archive_path  # type: ignore[assignment]
        if ARCHIVE.genome in run.archive:
            run.genes, run.gene_labels = decode_genes(run.archive[ARCHIVE.genome])
        else:
            notes["genes"] = f"{archive_path} has no '{ARCHIVE.genome}' column"
    search_dir = search_dir or next((d / s for s in SEARCH_DIRS[:1] if (d / s).is_dir()), None)

    def one(name: str) -> Path | None:
        return _find(search_dir, (".",), name) if search_dir else None

    run.pareto = _read_csv(one(PARETO_CSV), "pareto", notes,
                           f"no {PARETO_CSV}: the search has not written a front yet",
                           ARCHIVE.text, ARCHIVE.flags)
    _numeric(run.pareto, [*ACCURACY, *COSTS])
    run.hv_history = _read_csv(one(HV_CSV), "hv_history", notes,
                               f"no {HV_CSV}: the search has not finished a generation yet")
    _numeric(run.hv_history, run.hv_history.columns)
    run.search = _read_json(one(SEARCH_JSON), "search", notes)
    if isinstance(run.search.get("provenance"), dict):
        run.provenance["search"] = run.search["provenance"]
    lut_path = one(LUT_JSON) or _find(d, (".",), LUT_JSON)
    named = as_dict(as_dict(as_dict(run.search.get("config")).get("search")).get("latency")
                    ).get("lut")
    if lut_path is None and named:
        for candidate in (Path(named), d / named, d / "search" / named):
            if candidate.is_file():
                lut_path = candidate
                break
    run.lut = _read_json(lut_path, "lut", notes)
    if lut_path is not None:
        run.files["lut"] = lut_path
    if search_dir is not None:
        run.files["search_dir"] = search_dir


def _load_distill(run: Run) -> None:
    notes, d = run.notes, run.path
    path = _find(d, DISTILL_DIRS, RESULTS_CSV)
    run.distill = _read_csv(
        path, "distill", notes,
        f"no {RESULTS_CSV} in {d / 'distill'}: no architecture has been retrained yet "
        "(salnas distill --search RUN_DIR/search --out RUN_DIR/distill)",
        DISTILL.text, DISTILL.flags)
    numeric = [c for c in run.distill.columns
               if c not in DISTILL.text and c not in DISTILL.flags]
    _numeric(run.distill, numeric)
    if path is not None:
        run.files["distill_dir"] = path.parent
    meta_dir = path.parent if path else (d / "distill")
    run.distill_meta = _read_json(_find(meta_dir, (".",), DISTILL_JSON), "distill_meta", notes)
    if isinstance(run.distill_meta.get("provenance"), dict):
        run.provenance["distill"] = run.distill_meta["provenance"]


# ---------------------------------------------------------------- genes
def _gene_name(key: str, i: int) -> str:
    return GENE_NAMES.get(key, key + "[{i}]").format(i=i)


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
def _arch_means(distill: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Test ``metric`` per (arch, arm), averaged over seeds."""
    col = DISTILL.test_prefix + metric
    need = {DISTILL.arch, DISTILL.arm, col}
    if distill.empty or not need <= set(distill.columns):
        return pd.DataFrame()
    return distill.groupby([DISTILL.arch, DISTILL.arm], as_index=False)[col].mean()


def rank_fidelity(archive: pd.DataFrame, distill: pd.DataFrame, metric: str = "CC"
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Oracle (supernet, archive) score vs retrained test score of each distilled
    architecture that has an oracle score (the Pareto ones, and the max-subnet peer when the
    search evaluated the max genome), per arm; and per arm Kendall tau / Spearman rho with
    their p-values.

    The oracle score comes from the archive row of the architecture's genome id, else from
    the ``search_<metric>`` column that distill copies from pareto.csv.
    """
    from scipy.stats import kendalltau, spearmanr

    means = _arch_means(distill, metric)
    if means.empty:
        return pd.DataFrame(), pd.DataFrame()
    pareto_archs = distill  # peers without a genome in the archive drop out below
    oracle: dict[str, float] = {}
    search_col = DISTILL.search_prefix + metric
    if search_col in pareto_archs:
        oracle.update(pareto_archs.groupby(DISTILL.arch)[search_col].first().dropna().to_dict())
    if not archive.empty and {ARCHIVE.id, metric} <= set(archive.columns):
        by_id = archive.drop_duplicates(ARCHIVE.id).set_index(ARCHIVE.id)[metric].dropna()
        for arch in pareto_archs[DISTILL.arch].unique():
            key = arch
            if DISTILL.genome_id in pareto_archs:
                gid = pareto_archs.loc[pareto_archs[DISTILL.arch] == arch, DISTILL.genome_id]
                key = str(gid.iloc[0]) or arch
            if key in by_id.index:
                oracle[str(arch)] = float(by_id[key])
    table = means[means[DISTILL.arch].isin(oracle)].copy()
    if table.empty:
        return pd.DataFrame(), pd.DataFrame()
    table = table.rename(columns={DISTILL.test_prefix + metric: "retrained"})
    table.insert(2, "oracle", table[DISTILL.arch].map(oracle))
    stats = []
    for arm, part in table.groupby(DISTILL.arm, sort=False):
        n = len(part)
        row: dict[str, Any] = {"arm": arm, "n": n, "kendall_tau": math.nan,
                               "kendall_p": math.nan, "spearman_rho": math.nan,
                               "spearman_p": math.nan}
        if n >= 3:  # two points always agree or disagree perfectly: no evidence
            kt = kendalltau(part["oracle"], part["retrained"])
            sr = spearmanr(part["oracle"], part["retrained"])
            row.update(kendall_tau=float(kt.statistic), kendall_p=float(kt.pvalue),
                       spearman_rho=float(sr.statistic), spearman_p=float(sr.pvalue))
        stats.append(row)
    return table.reset_index(drop=True), pd.DataFrame(stats)


def kd_pairs(distill: pd.DataFrame, metric: str = "CC") -> pd.DataFrame:
    """One row per (arch, seed) with both arms: baseline, selfkd and their difference
    (``gain``: positive when Self-KD is better, whatever the metric's direction)."""
    col = DISTILL.test_prefix + metric
    need = {DISTILL.arch, DISTILL.arm, col}
    if distill.empty or not need <= set(distill.columns):
        return pd.DataFrame()
    index = [DISTILL.arch] + ([DISTILL.seed] if DISTILL.seed in distill else [])
    wide = distill.pivot_table(index=index, columns=DISTILL.arm, values=col, aggfunc="mean")
    if not {DISTILL.selfkd, DISTILL.baseline} <= set(wide.columns):
        return pd.DataFrame()
    wide = wide[[DISTILL.baseline, DISTILL.selfkd]].dropna().reset_index()
    wide.columns.name = None
    sign = 1.0 if higher_is_better(metric) else -1.0
    wide["difference"] = wide[DISTILL.selfkd] - wide[DISTILL.baseline]
    wide["gain"] = sign * wide["difference"]
    return wide


def kd_summary(distill: pd.DataFrame) -> pd.DataFrame:
    """Per test metric: mean Self-KD - baseline difference, its std, pairs, Self-KD wins."""
    rows = []
    metrics = [c[len(DISTILL.test_prefix):] for c in distill.columns
               if c.startswith(DISTILL.test_prefix)]
    for m in metrics:
        pairs = kd_pairs(distill, m)
        if pairs.empty:
            continue
        rows.append({"metric": m, "better": "higher" if higher_is_better(m) else "lower",
                     "pairs": len(pairs), "mean_difference": pairs["difference"].mean(),
                     "std_difference": pairs["difference"].std(ddof=1) if len(pairs) > 1
                     else math.nan,
                     "selfkd_better": int((pairs["gain"] > 0).sum())})
    return pd.DataFrame(rows)


def latency_table(archive: pd.DataFrame, lut: dict[str, Any], distill: pd.DataFrame
                  ) -> pd.DataFrame:
    """Predicted vs measured latency (ms) from every source there is: the LUT's validation
    subnets, archive rows that record both, and LUT-predicted archive rows against the
    distilled model's measured latency (columns: source, id, predicted_ms, measured_ms)."""
    parts = []
    val = lut.get(LUT.validation) if isinstance(lut, dict) else None
    subnets = val.get(LUT.subnets) if isinstance(val, dict) else None
    if isinstance(subnets, list) and subnets:
        frame = pd.DataFrame([s for s in subnets if isinstance(s, dict)])
        if {LUT.measured, LUT.predicted} <= set(frame.columns):
            parts.append(pd.DataFrame({
                "source": "lut.json validation subnets",
                "id": frame.get(LUT.id, pd.Series([""] * len(frame))).astype(str),
                "predicted_ms": pd.to_numeric(frame[LUT.predicted], errors="coerce"),
                "measured_ms": pd.to_numeric(frame[LUT.measured], errors="coerce")}))
    if {ARCHIVE.latency_measured, ARCHIVE.latency_predicted} <= set(archive.columns):
        parts.append(pd.DataFrame({
            "source": "archive (measured and predicted)",
            "id": archive[ARCHIVE.id].astype(str),
            "predicted_ms": archive[ARCHIVE.latency_predicted],
            "measured_ms": archive[ARCHIVE.latency_measured]}))
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


def _stage_table(run: Run) -> pd.DataFrame:
    """Wall time, energy and CO2 per stage, saying where each number comes from."""
    rows = []
    top = run.provenance.get("supernet", {})
    declared = as_dict(top.get("stages"))
    log = run.train_log
    wall, kwh, co2 = _stage_cost(as_dict(declared.get("supernet")) or top)
    source = "run.json"
    if math.isnan(wall) and TRAIN_LOG.seconds in log:
        wall = float(log[TRAIN_LOG.seconds].sum())
        source = (f"sum of {TRAIN_LOG_CSV} '{TRAIN_LOG.seconds}' over {len(log)} epoch(s) "
                  "(training steps; validation not included)")
    rows.append({"stage": "supernet", "status": "done" if not log.empty else "not run",
                 "wall_s": wall, "energy_kwh": kwh, "co2_kg": co2, "source": source})

    wall, kwh, co2 = _stage_cost(as_dict(declared.get("search")) or run.search)
    summary = run.search.get("summary") or {}
    source = SEARCH_JSON
    if math.isnan(wall) and "wall_s_of_this_process" in summary:
        wall = float(summary["wall_s_of_this_process"])
        source = f"{SEARCH_JSON} (the last search process only)"
    elif math.isnan(wall) and ARCHIVE.wall_s in run.archive:
        wall = float(run.archive[ARCHIVE.wall_s].sum())
        source = f"sum of {ARCHIVE_CSV} '{ARCHIVE.wall_s}' (evaluation time)"
    status = run.search.get("status") or ("partial" if not run.archive.empty else "not run")
    rows.append({"stage": "search", "status": status, "wall_s": wall, "energy_kwh": kwh,
                 "co2_kg": co2, "source": source})

    wall, kwh, co2 = _stage_cost(as_dict(declared.get("distill")) or run.distill_meta)
    source = DISTILL_JSON + " (the last distill process)"
    res = run.distill
    if math.isnan(wall) and DISTILL.wall_s in res:
        wall, source = float(res[DISTILL.wall_s].sum()), f"sum of {RESULTS_CSV} '{DISTILL.wall_s}'"
    if math.isnan(kwh) and DISTILL.energy in res and res[DISTILL.energy].notna().any():
        kwh = float(res[DISTILL.energy].sum())
        source += f"; energy: sum of '{DISTILL.energy}' (codecarbon)"
    if math.isnan(co2) and DISTILL.co2 in res and res[DISTILL.co2].notna().any():
        co2 = float(res[DISTILL.co2].sum())
    status = run.distill_meta.get("status") or ("partial" if not res.empty else "not run")
    rows.append({"stage": "distill", "status": status, "wall_s": wall, "energy_kwh": kwh,
                 "co2_kg": co2, "source": source})
    return pd.DataFrame(rows)
