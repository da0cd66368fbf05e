"""Do the retrained Pareto models dominate the hand-designed peers? Measured side by side.

Reads ``RUN/distill/results.csv``: test CC per architecture and arm (mean over seeds) of the
Pareto models and the peers (the rank-fidelity sample, trained at a shorter budget, is left
out). Then
measures every architecture's batch-1 CPU latency in one interleaved run in the deployment
runtime (``--backend``, default the run's ``search.latency.backend``; same machine, same
thread count, each model at its own input resolution, median of ``--repeats`` passes), so
latencies compare as ratios whatever the machine's drift. A Pareto model dominates a peer
when its CC is at least the peer's and its latency at most the peer's, one of them strictly
(compared within each arm: Self-KD with Self-KD, baseline with baseline). For each peer and
arm it also names the fastest Pareto model at least as accurate (its latency ratio to the
peer's) and the most accurate Pareto model at most as slow (its CC margin), also within
half and a third of the peer's latency (``latency_budgets``). Prints JSON.

    python benchmarks/pareto_vs_peers.py --run runs/osie > pareto_vs_peers.json
    python benchmarks/pareto_vs_peers.py --table pareto_vs_peers.json  # Markdown, no timing
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# benchmarks/distill.py and benchmarks/supernet.py shadow the packages of the same names.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import pandas as pd  # noqa: E402

from salnas.config import load_config  # noqa: E402
from salnas.distill.export import load_any_model  # noqa: E402
from salnas.layout import CONFIG_YAML, DISTILL, ORACLE_METRICS, RESULTS_CSV  # noqa: E402
from salnas.search.backends import BACKENDS, compile_for_timing  # noqa: E402
from salnas.search.latency import time_interleaved  # noqa: E402

METRICS = ORACLE_METRICS
# Fractions of a peer's latency a user may budget for: "as fast", "twice", "three times as fast".
LATENCY_BUDGETS = (1.0, 0.5, 1 / 3)


def most_accurate_within(table: dict, candidates: list[str], peer: str, arm: str,
                         budget: float = 1.0) -> dict | None:
    """The most accurate candidate at most ``budget`` x the peer's latency (same arm)."""
    peer_cc, peer_lat = table[peer]["test"][arm]["CC"], table[peer]["latency_ms"]
    fits = [p for p in candidates if table[p]["latency_ms"] <= budget * peer_lat]
    top = max(fits, key=lambda p: table[p]["test"][arm]["CC"], default=None)
    return None if top is None else {
        "arch": top, "CC_minus_peer": round(table[top]["test"][arm]["CC"] - peer_cc, 4),
        "latency_ratio": round(table[top]["latency_ms"] / peer_lat, 3)}


def markdown_table(report: dict) -> str:
    """The JSON's architectures as a Markdown table, fastest first, one column per arm's CC."""
    archs = report["architectures"]
    arms = sorted({arm for a in archs.values() for arm in a["test"]})
    lines = ["| model | input | MFLOPs | params | latency (ms) | "
             + " | ".join(f"test CC ({arm})" for arm in arms) + " |",
             "| --- " * (5 + len(arms)) + "|"]
    for name, a in sorted(archs.items(), key=lambda item: item[1]["latency_ms"]):
        label = f"Pareto `{name}`" if a["kind"] == DISTILL.pareto_kind else f"peer `{name}`"
        ccs = [f"{a['test'][arm]['CC']:.3f}" if arm in a["test"] else "" for arm in arms]
        lines.append(f"| {label} | {a['resolution'][0]}x{a['resolution'][1]} | "
                     f"{a['flops'] / 1e6:.0f} | {a['params'] / 1e6:.2f} M | "
                     f"{a['latency_ms']:.1f} | " + " | ".join(ccs) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="run directory (or its distill/)")
    source.add_argument("--table", type=Path,
                        help="print this script's earlier JSON output as a Markdown table")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="runtime to time in (default: the run's search.latency.backend)")
    args = parser.parse_args()
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    distill_dir = args.run / "distill" if (args.run / "distill").is_dir() else args.run
    backend = args.backend
    if backend is None:
        config_file = distill_dir.parent / CONFIG_YAML
        backend = (load_config(config_file).search.latency.backend if config_file.is_file()
                   else "torch")
    results = pd.read_csv(distill_dir / RESULTS_CSV)
    # Pareto models and peers share one recipe and budget; the rank-fidelity sample
    # (distill.fidelity_epochs) does not, so it is left out of the comparison.
    results = results[results[DISTILL.kind].isin([DISTILL.pareto_kind, DISTILL.peer_kind])]

    # One model file per architecture: latency depends on the architecture, not the weights.
    first = results.sort_values([DISTILL.seed, DISTILL.arm]).groupby(DISTILL.arch).first()
    archs = list(first.index)
    models = [load_any_model(distill_dir / first.loc[a, "model_dir"] / "model.pt") for a in archs]
    benches = [compile_for_timing(net, res, backend, args.threads)  # type: ignore[arg-type]
               for net, res in models]
    latency = time_interleaved(benches, threads=args.threads, warmup=args.warmup,
                               repeats=args.repeats, desc="latency")

    cols = [DISTILL.test_prefix + m for m in METRICS]
    means = results.groupby([DISTILL.arch, DISTILL.arm])[cols].mean()
    seeds = results.groupby([DISTILL.arch, DISTILL.arm])[DISTILL.seed].nunique()
    table = {}
    for i, arch in enumerate(archs):
        row = first.loc[arch]
        table[arch] = {
            "kind": row[DISTILL.kind], "resolution": [models[i][1][0], models[i][1][1]],
            "params": int(row[DISTILL.params]), "flops": int(row[DISTILL.flops]),
            "latency_ms": round(float(latency[i]), 3),
            "test": {arm: {"seeds": int(seeds[arch, arm]),
                           **{m: round(float(means.loc[(arch, arm), DISTILL.test_prefix + m]), 4)
                              for m in METRICS}}
                     for arm in means.loc[arch].index},
        }

    def dominates(a: str, b: str, arm: str) -> bool:
        cc_a, cc_b = table[a]["test"][arm]["CC"], table[b]["test"][arm]["CC"]
        lat_a, lat_b = table[a]["latency_ms"], table[b]["latency_ms"]
        return cc_a >= cc_b and lat_a <= lat_b and (cc_a > cc_b or lat_a < lat_b)

    pareto = [a for a in archs if table[a]["kind"] == DISTILL.pareto_kind]
    verdicts = {}
    for peer in (a for a in archs if table[a]["kind"] == DISTILL.peer_kind):
        for arm in table[peer]["test"]:
            winners = [p for p in pareto if arm in table[p]["test"] and dominates(p, peer, arm)]
            losers = [p for p in pareto if arm in table[p]["test"] and dominates(peer, p, arm)]
            same_arm = [p for p in pareto if arm in table[p]["test"]]
            cc = {p: table[p]["test"][arm]["CC"] for p in same_arm}
            peer_cc, peer_lat = table[peer]["test"][arm]["CC"], table[peer]["latency_ms"]
            # The two questions a user asks of a hand design: how much faster can NAS match
            # its accuracy, and how much more accurate is NAS at its speed?
            matching = [p for p in same_arm if cc[p] >= peer_cc]
            fastest = min(matching, key=lambda p: table[p]["latency_ms"], default=None)
            verdicts[f"{peer}/{arm}"] = {
                "dominated_by": winners, "dominates": losers,
                "fastest_at_least_as_accurate": None if fastest is None else {
                    "arch": fastest, "CC": cc[fastest],
                    "latency_ratio": round(table[fastest]["latency_ms"] / peer_lat, 3)},
                "most_accurate_at_most_as_slow": most_accurate_within(table, same_arm, peer, arm),
                "latency_budgets": {f"{budget:.3f}": most_accurate_within(
                    table, same_arm, peer, arm, budget) for budget in LATENCY_BUDGETS},
            }
    print(json.dumps({
        "run": str(args.run), "backend": backend, "threads": args.threads,
        "repeats": args.repeats,
        "architectures": table, "peers": verdicts,
    }, indent=2))


if __name__ == "__main__":
    main()
