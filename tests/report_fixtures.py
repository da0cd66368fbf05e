"""A small, fake but well-formed run directory with every file the report reads.

The numbers are invented (smooth functions of a genome's size plus noise), the formats are
real: genomes and ids come from a real (tiny) search space, the distilled Pareto models are
real model files (random weights) that ``supernet.subnet.load_subnet`` reads, and the dataset
is the embedded synthetic one, so the saliency gallery runs end to end in a second or two.
File and column names come from :mod:`salnas.layout`, the run directory's schema, and the
files sit where ``salnas run`` puts them (:class:`salnas.layout.RunLayout`: RUN/supernet/,
RUN/search/, RUN/distill/, RUN/baselines.json); ``tests/test_report.py`` checks that the
stages' writers write every column the report reads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salnas.config import config_from_dict, dump_config
from salnas.datasets import make_split, open_source, save_split
from salnas.io import provenance, write_json_atomic, write_text_atomic
from salnas.layout import (
    ARCHIVE,
    ARCHIVE_COLUMNS,
    ARCHIVE_CSV,
    CONFIG_YAML,
    DISTILL,
    DISTILL_JSON,
    HV,
    HV_CSV,
    LUT,
    LUT_JSON,
    ORACLE_METRICS,
    PARETO_CSV,
    PROVENANCE_JSON,
    RANK_FIDELITY_JSON,
    RESULTS_CSV,
    SEARCH_JSON,
    SPLIT_JSON,
    SUPERNET_CKPT,
    TRAIN_LOG,
    TRAIN_LOG_COLUMNS,
    TRAIN_LOG_CSV,
    RunLayout,
    Status,
)

ALL_STAGES = ("supernet", "baselines", "search", "distill")
# Tiny space: four stages, three decoder levels; extracting a model takes milliseconds.
TINY_SPACE: dict[str, Any] = {
    "stem": 8,
    "stages": ["e1_k3_s1_c8_r1", "e6_k3_s2_c8_r2", "e6_k5_s2_c16_r2", "e6_k3_s2_c16_r2"],
    "resolutions": [[64, 96], [96, 128]],
    "skip_stages": [2, 1, 0],
    "decoder_widths": [[8, 16], [8, 16], [8]],
    "prior_channels": 2,
}
DATA = {"spec": "synthetic:16", "resolution": [64, 96], "val": 4, "test": 4}


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, Mapping) else v
    return out


def _bool(v: bool) -> str:
    return "true" if v else "false"


def _front(frame: pd.DataFrame) -> pd.DataFrame:
    """Feasible rows not dominated in (CC max, flops min)."""
    ok = frame[frame[ARCHIVE.feasible] == "true"]
    keep = []
    for i, r in ok.iterrows():
        dominated = ((ok["CC"] >= r["CC"]) & (ok["flops"] <= r["flops"])
                     & ((ok["CC"] > r["CC"]) | (ok["flops"] < r["flops"]))).any()
        if not dominated:
            keep.append(i)
    return ok.loc[keep]


def _hv2(front: pd.DataFrame, flops_max: float) -> float:
    """2-D hypervolume of (1 - CC, flops / max) against the reference point (1.1, 1.1)."""
    pts = sorted(zip(front["flops"] / flops_max, 1 - front["CC"], strict=True))
    hv, best = 0.0, 1.1
    for i, (x, y) in enumerate(pts):
        nxt = pts[i + 1][0] if i + 1 < len(pts) else 1.1
        best = min(best, y)
        hv += (nxt - x) * (1.1 - best)
    return hv


def make_fake_run(root: Path, name: str = "fake-run", *, stages: Sequence[str] = ALL_STAGES,
                  engine: str = "nsga2", seed: int = 0, n_archive: int = 40,
                  n_distilled: int = 3, models: bool = True,
                  config: Mapping[str, Any] | None = None) -> Path:
    """Write ``root/name`` with the files of ``stages``; returns the run directory."""
    from salnas.supernet.space import SearchSpace

    run = Path(root) / name
    layout = RunLayout(run)
    run.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cfg = _merge({"seed": seed, "data": DATA,
                  "supernet": {"space": TINY_SPACE, "pretrained": False, "epochs": 4},
                  "search": {"engine": engine, "objectives": ["CC", "flops"],
                             "constraints": {"flops": 1.8e7}, "population": 8,
                             "generations": 5},
                  "distill": {"epochs": 2, "select": "crowding:3"}}, config or {})
    config_obj = config_from_dict(cfg)
    source = open_source(DATA["spec"])
    split = make_split(source.stems(), 0, DATA["val"], DATA["test"])
    prov = provenance(seed=seed, stage="supernet", world_size=1)
    if "supernet" in stages:
        sup = layout.supernet_dir
        sup.mkdir(exist_ok=True)
        write_text_atomic(layout.config, dump_config(config_obj))  # salnas run's copy
        write_text_atomic(sup / CONFIG_YAML, dump_config(config_obj))
        write_json_atomic(sup / PROVENANCE_JSON, prov)
        save_split(sup / SPLIT_JSON, split, seed=0, data=DATA["spec"])
        rows = []
        for e in range(1, 5):
            # The writer's columns (TRAIN_LOG_COLUMNS), then val_<subnet>_<metric>, score,
            # kept_epoch (supernet.train.validate_epoch and keep_best).
            row = dict(zip(TRAIN_LOG_COLUMNS, (
                e, 2e-3 * (1 + math.cos(math.pi * e / 4)) / 2, 30 - 7 * (e - 1),
                2.0 / e + 0.5, 2.2 / e + 0.6, 2.1 / e + 0.55, 40 + e, 20.0 + e), strict=True))
            # max, min and supernet.val_random's four fixed random subnets (rand<k>)
            for tag, scale in (("max", 1.0), ("min", 0.85), ("rand0", 0.9), ("rand1", 0.95),
                               ("rand2", 0.88), ("rand3", 0.97)):
                cc = scale * (0.75 - 0.4 / e)
                row.update({TRAIN_LOG.val(tag, m): v for m, v in zip(
                    ORACLE_METRICS, (cc, 1.6 - cc, 3.5 * cc, 0.25 + 0.5 * cc, 0.7 + 0.25 * cc),
                    strict=True)})
            row[TRAIN_LOG.score] = (row[TRAIN_LOG.val("max", "CC")]
                                    + row[TRAIN_LOG.val("min", "CC")]) / 2
            row[TRAIN_LOG.kept_epoch] = e  # val CC rises every epoch: the last is the best
            rows.append(row)
        pd.DataFrame(rows).to_csv(sup / TRAIN_LOG_CSV, index=False)
    if "baselines" in stages:
        write_json_atomic(layout.baselines, {
            "centre_bias": {"CC": 0.28, "KLD": 1.35, "NSS": 0.9, "SIM": 0.36, "AUC_Judd": 0.74},
            "generating_map": {"CC": 0.9, "KLD": 0.4, "NSS": 3.9, "SIM": 0.75,
                               "AUC_Judd": 0.93},
            "inter_observer": {"CC": 0.82, "KLD": 0.75, "NSS": 3.3, "SIM": 0.7,
                               "AUC_Judd": 0.92},
            "data": DATA["spec"], "split": "test", "n_images": DATA["test"], "n_train": 8,
            "notes": {"centre_bias": "mean training ground-truth density"},
            "provenance": provenance(seed=0)})

    space = SearchSpace(TINY_SPACE)
    genomes, seen = [], set()
    draw = 0
    while len(genomes) < n_archive:
        g = space.random_genome(seed * 10_000 + draw)
        draw += 1
        if g.id not in seen:
            seen.add(g.id)
            genomes.append(g)
    records = []
    for i, g in enumerate(genomes):
        size = sum(sum(e) * max(k) for e, k in zip(g.expands, g.kernels, strict=True))
        params = int(2e3 * size + 1e2 * sum(g.widths))
        flops = int(params * g.resolution[0] * g.resolution[1] / 120)
        latency = flops / 1.5e7 + 0.3 + rng.normal(0, 0.05)
        feasible = flops <= cfg["search"]["constraints"]["flops"]
        cc = 0.45 + 0.3 * (1 - math.exp(-flops / 1e7)) + rng.normal(0, 0.02)
        metrics = ({"CC": cc, "KLD": 1.6 - cc, "NSS": 3.6 * cc, "SIM": 0.25 + 0.5 * cc,
                    "AUC_Judd": 0.7 + 0.25 * cc} if feasible else dict.fromkeys(ORACLE_METRICS, ""))
        records.append({ARCHIVE.id: g.id, ARCHIVE.genome: g.to_json(), **metrics,
                        "params": params, "flops": flops, ARCHIVE.latency: latency,
                        ARCHIVE.latency_source: "lut", ARCHIVE.feasible: _bool(feasible),
                        ARCHIVE.scored: _bool(feasible), ARCHIVE.engine: engine,
                        ARCHIVE.generation: i // 8, "worker": "host:1",
                        ARCHIVE.wall_s: 0.5 + rng.random(), "finished_at": "2026-01-01T00:00:00"})
    archive = pd.DataFrame(records, columns=list(ARCHIVE_COLUMNS))
    front = _front(archive.replace("", np.nan).astype({"CC": float}))
    if "search" in stages:
        sdir = layout.search_dir
        sdir.mkdir(exist_ok=True)
        archive.to_csv(sdir / ARCHIVE_CSV, index=False)
        archive.loc[front.index].to_csv(sdir / PARETO_CSV, index=False)
        flops_max = float(archive["flops"].max())
        hv_rows = []
        for gen in range(int(archive[ARCHIVE.generation].max()) + 1):
            upto = archive[archive[ARCHIVE.generation] <= gen]
            f = _front(upto.replace("", np.nan).astype({"CC": float}))
            hv_rows.append({HV.generation: gen, HV.n_evaluated: len(upto),
                            HV.n_feasible: int((upto[ARCHIVE.feasible] == "true").sum()),
                            HV.n_pareto: len(f), HV.hypervolume: _hv2(f, flops_max)})
        pd.DataFrame(hv_rows).to_csv(sdir / HV_CSV, index=False)
        write_json_atomic(sdir / SEARCH_JSON, {
            "status": "finished",  # the word before Status: must read as done
            "engine": engine, "seed": seed, "objectives": cfg["search"]["objectives"],
            "constraints": cfg["search"]["constraints"],
            "supernet": str(layout.supernet_dir / SUPERNET_CKPT),
            "hypervolume": {"bounds": {"CC": [0.0, 1.0], "flops": [0.0, flops_max]},
                            "reference_point": [1.1, 1.1]},
            "config": config_obj.model_dump(mode="json"),
            "summary": {"archive_size": len(archive), "pareto_size": len(front),
                        "hypervolume": hv_rows[-1][HV.hypervolume],
                        "wall_s_of_this_process": 123.4},
            "provenance": provenance(seed=seed, stage="search")})
        subnets = []
        for k in range(8):
            g = space.random_genome(777 + k)
            measured = 0.5 + 0.4 * k + rng.normal(0, 0.03)
            predicted = measured * (1 + rng.normal(0, 0.06))
            subnets.append({LUT.id: g.id, "resolution": list(g.resolution),
                            LUT.measured: measured, LUT.predicted: predicted,
                            "ratio": predicted / measured})
        write_json_atomic(sdir / LUT_JSON, {
            "format": "salnas-latency-lut-v1", "device": {"type": "cpu", "name": "fake cpu"},
            "threads": 1, "entries": {}, "overhead": {"a": 1.0, "b": 0.0},
            LUT.validation: {"n": len(subnets), "rmse_pct": 6.0, LUT.subnets: subnets}})
    if "distill" in stages:
        _write_distill(run, config_obj, archive.loc[front.index], space, rng, n_distilled,
                       models)
    return run


# Hand-designed peers: (arch, test CC, params, FLOPs, latency ms, params before pruning).
# peer-max is the most accurate and dearest; peer-fpn sits above the fake front's cost range;
# the CSNet pair is cheaper than every Pareto model.
PEER_ROWS = (("peer-max", 0.74, 420_000, 3.2e7, 2.6, None),
             ("peer-fpn", 0.60, 390_000, 2.4e7, 2.1, None),
             ("peer-csnet", 0.47, 90_000, 1.5e6, 0.22, None),
             ("peer-csnet-dwd", 0.45, 30_000, 6e5, 0.16, 90_000))
ARM_GAIN = {DISTILL.baseline: 0.0, DISTILL.selfkd: 0.012, DISTILL.teacher: 0.02}
SEEDS = (0, 1)


def _write_distill(run: Path, config_obj: Any, front: pd.DataFrame, space: Any,
                   rng: np.random.Generator, n_distilled: int, models: bool) -> None:
    """results.csv with the three arms x two seeds of ``n_distilled`` Pareto architectures
    and the four peers, a rank-fidelity sample (kind fidelity) of the whole front, model files
    of the two cheapest architectures (seed 0, every arm), distill.json and rank_fidelity.json
    (written by :func:`salnas.distill.fidelity.rank_fidelity`, as distill does)."""
    import torch

    from salnas.distill.fidelity import FIDELITY_KIND, rank_fidelity
    from salnas.supernet.model import Supernet
    from salnas.supernet.space import Genome
    from salnas.supernet.subnet import save_subnet

    ddir = RunLayout(run).distill_dir
    ddir.mkdir(exist_ok=True)
    picks = front.sort_values("flops")
    idx = np.unique(np.linspace(0, len(picks) - 1, min(n_distilled, len(picks))).round()
                    .astype(int))
    chosen = picks.iloc[idx] if n_distilled > 0 else picks.iloc[0:0]
    rows = []
    archs: list[tuple[str, str, Any, Any]] = [(r[ARCHIVE.id], "pareto", r, None)
                                              for _, r in chosen.iterrows()]
    archs += [(p[0], "peer", None, p) for p in PEER_ROWS]
    archs += [(f"{FIDELITY_KIND}-{r[ARCHIVE.id]}", FIDELITY_KIND, r, None)
              for _, r in picks.iterrows()]
    teacher = "max"
    for n, (arch, kind, r, peer) in enumerate(archs):
        base_cc = (float(r["CC"]) - 0.05 + rng.normal(0, 0.015) if r is not None
                   else peer[1])
        fidelity = kind == FIDELITY_KIND
        arms = ((DISTILL.baseline,) if fidelity else
                (DISTILL.selfkd, DISTILL.baseline) if arch == "peer-max"  # the teacher itself
                else (DISTILL.selfkd, DISTILL.baseline, DISTILL.teacher))
        for seed in (SEEDS[:1] if fidelity else SEEDS):
            for arm in arms:
                kd = arm == DISTILL.selfkd
                cc = (base_cc - (0.04 if fidelity else 0.0) + ARM_GAIN[arm]
                      + rng.normal(0, 0.004))
                model_dir = f"{arch}/{arm}" + (f"_seed{seed}" if seed else "")
                params = r["params"] if r is not None else peer[2]
                row = {DISTILL.arch: arch, DISTILL.kind: kind,
                       DISTILL.genome_id: r[ARCHIVE.id] if r is not None else "",
                       DISTILL.arm: arm, DISTILL.kd: kd,
                       DISTILL.alpha: 1.0 if arm == DISTILL.baseline else 0.5,
                       "alpha_end": 1.0 if arm == DISTILL.baseline else 0.5,
                       "teacher": {DISTILL.selfkd: "self", DISTILL.teacher: teacher}.get(arm, ""),
                       DISTILL.seed: seed, "init": "inherited" if peer is None else "scratch",
                       "kfold": 0, DISTILL.epochs: 1 if fidelity else 2, "best_epoch": 2,
                       "teacher_snapshots": 2 if kd else 0,
                       "val_CC": cc + 0.01, "test_CC": cc, "test_KLD": 1.6 - cc,
                       "test_NSS": 3.6 * cc, "test_SIM": 0.25 + 0.5 * cc,
                       "test_AUC_Judd": 0.7 + 0.25 * cc, "test_AUC_Borji": 0.68 + 0.25 * cc,
                       "test_sAUC": 0.55 + 0.1 * cc, "test_IG": cc,
                       DISTILL.params: params,
                       "params_unpruned": peer[5] if peer is not None and peer[5] else params,
                       DISTILL.flops: r["flops"] if r is not None else peer[3],
                       DISTILL.latency: (float(r[ARCHIVE.latency]) if r is not None
                                         else peer[4]) * (1 + rng.normal(0, 0.05)),
                       "resolution": ("x".join(str(v) for v in json.loads(r[ARCHIVE.genome])
                                               ["resolution"]) if r is not None else "64x96"),
                       DISTILL.energy: 1e-4 * (1 + n), DISTILL.co2: 4e-5 * (1 + n),
                       "energy_s": 30.0, DISTILL.train_s: 28.0,
                       DISTILL.wall_s: 31.0, "onnx": False, DISTILL.model_dir: model_dir,
                       DISTILL.genome: r[ARCHIVE.genome] if r is not None else ""}
                if r is not None:
                    row.update({DISTILL.search_prefix + m: float(r[m]) for m in ORACLE_METRICS})
                rows.append(row)
                if models and kind == "pareto" and n < 2 and seed == 0:
                    genome = Genome.from_json(r[ARCHIVE.genome], space)
                    torch.manual_seed(n)
                    net = Supernet(space, pretrained=False).extract(genome).eval()
                    (ddir / model_dir).mkdir(parents=True, exist_ok=True)
                    save_subnet(ddir / model_dir / "model.pt", net, genome, config_obj,
                                arch=arch, arm=arm, seed=0, kd=kd)
                    (ddir / model_dir / "result.json").write_text(json.dumps({"row": {}}))
    results = pd.DataFrame(rows)
    results.to_csv(ddir / RESULTS_CSV, index=False)
    write_json_atomic(ddir / RANK_FIDELITY_JSON, {**rank_fidelity(results, n_resamples=999),
                                                  "fidelity_epochs": 1})
    write_json_atomic(ddir / DISTILL_JSON, {
        "status": Status.DONE.value, "select": "crowding:3", "seeds": list(SEEDS),
        "arms": [DISTILL.selfkd, DISTILL.baseline, DISTILL.teacher], "teacher": teacher,
        "wall_s": 31.0 * len(rows), "provenance": provenance(stage="distill")})


# One full fake run and its report per test session, shared by the report test modules
# (building the report is the expensive part: a few seconds on a loaded 2-core machine).
INJECTED = "<script>alert('x')</script> & co"  # a config value every page must escape
RUN_NAME = "run <img src=x onerror=alert(1)> & co"  # a folder name likewise (no '/' in it)
_BUILT: dict[Path, tuple[Path, Any]] = {}


def built_report(base: Path) -> tuple[Path, Any]:
    """(report.html, its Page) of the full fake run under ``base``, built once."""
    from salnas.analysis.report import write_report

    if base not in _BUILT:
        run = make_fake_run(base, RUN_NAME, config={"search": {"study_name": INJECTED}})
        _BUILT[base] = write_report(run)
    return _BUILT[base]
