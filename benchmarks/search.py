"""Search engines compared on one supernet and one oracle, at the same evaluation budget.

For each engine (pymoo NSGA-II, Optuna NSGA-II, Optuna TPE, random search) and each seed, a
search of ``--population`` x ``--generations`` proposals runs on its own archive; the final
hypervolume uses the fixed normalisation of ``salnas search`` (bounds and reference point
printed), so the numbers compare across engines and runs. Prints one JSON object:

* ``hypervolume``: per engine, the final hypervolume per seed, mean, std, and the ratio of
  means to random search (goal: NSGA-II >= 1.1x random); every engine, random search
  included, starts from the same anchors (max and min genome, ``search.anchors``), and with
  ``--anchors both`` (default) each is also run without them (``nsga2-unanchored``...; plain
  ``random`` is the anchored random search) so their share is visible;
* ``gain_over_anchors``: per anchored engine, the hypervolume it adds to that of the two
  anchors alone, and its ratio to random search's gain: the anchors' staircase is common to
  every anchored run, so this is the share of the front that the engine itself found;
* ``union_front``: the hypervolume of every architecture any run scored (all engines and
  seeds together), the best front this benchmark knows of, and its ratio to random search:
  no engine at this budget can beat random search by more than this ratio unless it finds
  architectures that no run found;
* ``oracle``: architectures per minute of the fitness oracle, cold (extract, FLOPs, BN
  recalibration, scoring) and cached (answered by the archive);
* ``latency_predictor``: error of a latency lookup table against measured latencies
  (``--lut FILE``, or a quick profile of the space), when ``search/latency.py`` is there.

    python benchmarks/search.py --supernet RUN/supernet.pt --config configs/smoke.yaml

Identical genomes give identical records, so runs share one in-memory record memo: it saves
wall time and changes no result. Without ``--supernet`` a smoke supernet is trained first.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the search package, when run from a checkout

from salnas.config import load_config  # noqa: E402
from salnas.datasets.training import load_training_data  # noqa: E402
from salnas.search.archive import Archive  # noqa: E402
from salnas.search.engines import ENGINES, RunContext, make_engine  # noqa: E402
from salnas.search.engines.base import anchor_genomes  # noqa: E402
from salnas.search.hypervolume import hypervolume  # noqa: E402
from salnas.search.oracle import FitnessOracle  # noqa: E402
from salnas.search.problem import Objectives, SearchProblem  # noqa: E402
from salnas.supernet.checkpoint import load_supernet  # noqa: E402
from salnas.supernet.train import train_supernet  # noqa: E402


def _oracle(args: argparse.Namespace, work: Path):
    config = load_config(args.config)
    if args.no_early_exit:
        config.search.early_exit = type(config.search.early_exit)()
    if args.mutation:
        config.search.mutation = args.mutation
    if args.supernet is None:
        print("no --supernet: training one with the config (a few minutes)", file=sys.stderr)
        args.supernet = train_supernet(config, work / "supernet", progress=False)
    model, sn_config, _ = load_supernet(args.supernet)
    data = load_training_data(sn_config, Path(args.supernet).parent, progress=False)
    cfg = config.search
    objectives = Objectives.from_config(cfg)
    oracle = FitnessOracle(
        model, data, Archive(work / "scratch"), budgets=objectives.budgets,
        val_images=cfg.val_images,
        bn_batches=cfg.bn_batches or sn_config.supernet.bn_recalib_batches,
        batch_size=cfg.batch_size or sn_config.supernet.batch_size, seed=config.seed,
    )
    costs = oracle.max_costs()
    for name in objectives.names:
        if name in costs and name not in cfg.hv_bounds:
            objectives.bounds[name] = (0.0, costs[name])
    return config, oracle, objectives


def _throughput(oracle: FitnessOracle, work: Path, n: int, seed: int) -> dict[str, Any]:
    """Cold: fresh genomes through the whole oracle; cached: the same through a new archive
    object on the same directory (what a resume or another worker sees)."""
    rng = np.random.default_rng([seed, 99])
    genomes = [oracle.space.random_genome(rng) for _ in range(n)]
    oracle.archive = Archive(work / "throughput")
    t0 = time.perf_counter()
    for g in genomes:
        oracle.evaluate(g)
    cold = time.perf_counter() - t0
    oracle.archive = Archive(work / "throughput")
    t0 = time.perf_counter()
    for g in genomes:
        assert oracle.evaluate(g)[1]
    cached = time.perf_counter() - t0
    return {"n": n, "cold_arch_per_min": 60 * n / cold,
            "cached_arch_per_min": 60 * n / max(cached, 1e-9),
            "cold_s_per_arch": cold / n}


def _latency(args: argparse.Namespace, space) -> dict[str, Any]:
    try:
        from salnas.search.latency import LatencyTable, profile_latency, validate_table
    except ImportError as e:
        return {"skipped": f"search/latency.py not importable ({e})"}
    if args.lut:
        table = LatencyTable.load(args.lut, space=space)
        source = str(args.lut)
    else:
        t0 = time.perf_counter()
        table = profile_latency(space, threads=1, warmup=1, repeats=args.lut_repeats, fit=8,
                                progress=False)
        source = f"quick profile ({time.perf_counter() - t0:.0f} s, repeats {args.lut_repeats})"
    report = validate_table(table, n=args.lut_validate, repeats=args.lut_repeats, progress=False)
    keys = ("n", "rmse_pct", "mean_error_pct", "max_abs_error_pct", "share_within_10pct",
            "kendall_tau", "measured_max_over_min")
    return {"table": source, **{k: report[k] for k in keys}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supernet", type=Path, default=None)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "smoke.yaml")
    parser.add_argument("--population", type=int, default=10)
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--throughput-n", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lut", type=Path, default=None, help="a LUT of this space")
    parser.add_argument("--lut-repeats", type=int, default=5)
    parser.add_argument("--lut-validate", type=int, default=10)
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--mutation", choices=("pm", "reset"), default=None,
                        help="override search.mutation (NSGA-II)")
    parser.add_argument("--no-early-exit", action="store_true",
                        help="ignore the config's search.early_exit (uniform first population)")
    parser.add_argument("--anchors", choices=("on", "off", "both"), default="both",
                        help="max/min genomes in the first population of NSGA-II/Optuna; "
                        "'both' also reports each engine unanchored as ENGINE-unanchored")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="salnas-bench-search-"))
    config, oracle, objectives = _oracle(args, work)

    memo: dict[str, dict[str, Any]] = {}
    compute = oracle.compute

    def shared_compute(genome):
        if genome.id not in memo:
            memo[genome.id] = compute(genome)
        return dict(memo[genome.id])

    oracle.compute = shared_compute
    budget = args.population * args.generations
    runs: dict[str, dict[str, Any]] = {}
    t_all = time.perf_counter()
    variants = []  # (label, engine, anchors): equal anchors for every engine
    for engine in args.engines:
        if args.anchors in ("on", "both"):
            variants.append((engine, engine, True))
        if args.anchors in ("off", "both"):
            label = engine if args.anchors == "off" else f"{engine}-unanchored"
            variants.append((label, engine, False))
    for label, engine, anchors in variants:
        hvs, sizes = [], []
        for seed in args.seeds:
            cfg = config.search.model_copy(update={
                "engine": engine, "population": args.population, "anchors": anchors,
                "generations": args.generations, "trials": budget})
            oracle.archive = Archive(work / f"{label}-{seed}")
            problem = SearchProblem(objectives, oracle.evaluate, oracle.space)
            context = RunContext(cfg, seed, params=oracle.params, costs=oracle.costs)
            make_engine(engine, problem, context).run()
            records = oracle.archive.records()
            hvs.append(hypervolume(records, objectives))
            sizes.append(len(records))
            print(f"{label} seed {seed}: HV {hvs[-1]:.4f}, {sizes[-1]} architectures",
                  file=sys.stderr)
        runs[label] = {"per_seed": hvs, "mean": statistics.mean(hvs),
                        "std": statistics.stdev(hvs) if len(hvs) > 1 else 0.0,
                        "unique_architectures_mean": statistics.mean(sizes)}
    oracle.compute = compute
    if "random" in runs:
        for r in runs.values():
            r["ratio_to_random"] = r["mean"] / runs["random"]["mean"]
    anchored_cfg = config.search.model_copy(update={"anchors": True})
    anchors = anchor_genomes(oracle.space, RunContext(anchored_cfg, config.seed,
                                                      params=oracle.params, costs=oracle.costs))
    anchor_records = [memo[g.id] for g in anchors if g.id in memo]
    anchors_hv = hypervolume(anchor_records, objectives) if anchor_records else None
    gains: dict[str, Any] = {"anchors_hypervolume": anchors_hv}
    if anchors_hv is not None:
        for label, _, anchored in variants:
            if anchored:
                gains[label] = {"per_seed": [h - anchors_hv for h in runs[label]["per_seed"]],
                                "mean": runs[label]["mean"] - anchors_hv}
        if "random" in gains and gains["random"]["mean"] > 0:
            for gain in gains.values():
                if isinstance(gain, dict):
                    gain["ratio_to_random"] = gain["mean"] / gains["random"]["mean"]
    union_hv = hypervolume(list(memo.values()), objectives)
    union: dict[str, Any] = {"architectures": len(memo), "hypervolume": union_hv}
    if "random" in runs:
        union["ratio_to_random"] = union_hv / runs["random"]["mean"]
    result: dict[str, Any] = {
        "setup": {
            "supernet": str(args.supernet), "config": str(args.config),
            "objectives": list(objectives.names), "constraints": objectives.budgets,
            "population": args.population, "generations": args.generations,
            "budget_per_run": budget, "seeds": args.seeds,
            "random_anchors": args.anchors != "off",
            "early_exit": config.search.early_exit.model_dump(),
            "nsga2_mutation": config.search.mutation,
            "hv_bounds": {k: list(v) for k, v in objectives.bounds.items()},
            "reference_point": objectives.reference_point.tolist(),
            "val_images": config.search.val_images, "threads": args.threads,
            "distinct_architectures_scored": len(memo),
            "search_wall_s": round(time.perf_counter() - t_all, 1),
        },
        "hypervolume": runs,
        "gain_over_anchors": gains,
        "union_front": union,
    }
    if "nsga2" in runs and "random" in runs:
        result["nsga2_over_random_goal_1.1_met"] = runs["nsga2"]["ratio_to_random"] >= 1.1
    result["oracle"] = _throughput(oracle, work, args.throughput_n, config.seed)
    result["latency_predictor"] = ({"skipped": "--no-latency"} if args.no_latency
                                   else _latency(args, oracle.space))
    print(json.dumps(result, indent=2, default=lambda o: None if isinstance(o, float)
                     and math.isnan(o) else str(o)))


if __name__ == "__main__":
    main()
