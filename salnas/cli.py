"""The ``salnas`` command line. Each command is a thin shell over the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from salnas.errors import SalnasError

app = typer.Typer(
    name="salnas",
    help="Evolutionary multi-objective NAS for visual saliency prediction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect and check datasets.", no_args_is_help=True)
config_app = typer.Typer(
    help="Show the configuration schema and resolved configs.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")

out = Console()
err = Console(stderr=True)

BASELINE_MODELS = ("centre_bias", "inter_observer", "generating_map")
SpecArg = Annotated[
    str,
    typer.Option(
        "--data",
        help="dataset spec: synthetic[:N], osie:PATH, "
        "salicon:PATH, mit1003:PATH, cat2000:PATH, folder:PATH",
    ),
]
SigmaOpt = Annotated[
    float | None,
    typer.Option(
        "--sigma-px",
        help="ground-truth blur in pixels of the "
        "original image (default: the dataset's, else 3% of max side)",
    ),
]
SplitFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--split-file", help="split.json of a run (default: a fresh split from --split-seed)"
    ),
]
SplitSeedOpt = Annotated[int, typer.Option("--split-seed", help="seed of the train/val/test split")]


def _metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    """Metrics down, models across: fits a terminal whatever the number of metrics."""
    from salnas.metrics import HIGHER_IS_BETTER, METRIC_NAMES

    table = Table(title=title)
    table.add_column("metric")
    for model in rows:
        table.add_column(model, justify="right")
    for n in METRIC_NAMES:
        if any(n in r for r in rows.values()):
            arrow = "↑" if HIGHER_IS_BETTER[n] else "↓"
            table.add_row(
                f"{n} {arrow}", *(f"{r[n]:.4f}" if n in r else "–" for r in rows.values())
            )
    return table


@data_app.command("check")
def data_check(
    spec: Annotated[str, typer.Argument(help="dataset spec, e.g. osie:../shared/data/osie")],
    split_seed: SplitSeedOpt = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the report as JSON")
    ] = None,
) -> None:
    """Decode every file of a dataset; print what it holds and every problem, naming files."""
    from salnas.datasets import check_source, open_source, resolve_split
    from salnas.io import write_json_atomic

    source = open_source(spec)
    report = check_source(source)
    summary = report.summary()
    if report.ok:
        split = resolve_split(source.stems(), source.default_split, seed=split_seed)
        summary["split sizes (train/val/test)"] = "/".join(
            str(len(split[k])) for k in ("train", "val", "test")
        )
    table = Table(title=f"salnas data check {spec}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, str(value))
    out.print(table)
    if json_out is not None:
        write_json_atomic(json_out, {**summary, "problem_list": report.problems})
    if not report.ok:
        for p in report.problems:
            err.print(f"[red]problem:[/red] {p}", markup=True, highlight=False, soft_wrap=True)
        err.print(f"{len(report.problems)} problem(s) in {spec}")
        raise typer.Exit(1)
    out.print("[green]no problems found[/green]")


def _stems_for(
    source, split: str, split_file: Path | None, split_seed: int
) -> tuple[list[str], list[str]]:
    """(stems of the requested split, training stems for the centre bias)."""
    from salnas.datasets import resolve_split, split_stems

    stems = source.stems()
    parts = resolve_split(stems, source.default_split, split_file, split_seed)
    return split_stems(parts, stems, split), parts["train"]


@app.command("evaluate")
def evaluate(
    data: SpecArg,
    predictions: Annotated[
        Path, typer.Option("--predictions", help="folder of <stem>.png|.npy maps")
    ],
    json_out: Annotated[
        Path, typer.Option("--json", help="mean metrics (JSON); per-image CSV beside it")
    ],
    split: Annotated[str, typer.Option("--split", help="all, train, val or test")] = "test",
    sigma_px: SigmaOpt = None,
    split_file: SplitFileOpt = None,
    split_seed: SplitSeedOpt = 0,
    seed: Annotated[int, typer.Option("--seed", help="seed of the AUC jitter and negatives")] = 0,
) -> None:
    """Score saved prediction maps against a dataset (MIT benchmark protocol)."""
    from salnas.datasets import open_source
    from salnas.evaluation import centre_bias_map, load_targets, score_maps, summarise
    from salnas.io import atomic_open, provenance, write_json_atomic
    from salnas.predictions import find_prediction, read_prediction

    if not predictions.is_dir():
        raise SalnasError(f"--predictions {predictions} is not a folder")
    source = open_source(data)
    stems, train = _stems_for(source, split, split_file, split_seed)
    paths = [find_prediction(predictions, s) for s in stems]  # fail before any work
    maps = [read_prediction(p) for p in paths]
    targets = load_targets(source, stems, sigma_px)
    baseline = centre_bias_map(source, train, sigma_px)
    per_image = score_maps(maps, targets, baseline, seed=seed)
    mean = summarise(per_image)
    csv_path = json_out.with_suffix(".csv")
    with atomic_open(csv_path, "w", newline="") as fh:
        per_image.to_csv(fh, index=False)
    write_json_atomic(
        json_out,
        {
            **mean,
            "n_images": len(stems),
            "split": split,
            "data": source.spec,
            "predictions": str(predictions),
            "per_image_csv": str(csv_path),
            "provenance": provenance(sigma_px=sigma_px, seed=seed),
        },
    )
    out.print(
        _metrics_table(
            f"{predictions} on {source.spec} ({split}, {len(stems)} images)",
            {predictions.name or str(predictions): mean},
        )
    )
    out.print(f"wrote {json_out} and {csv_path}")


@app.command("baselines")
def baselines(
    data: SpecArg,
    json_out: Annotated[
        Path, typer.Option("--json", help="where to write both baselines' metrics")
    ],
    sigma_px: SigmaOpt = None,
    split_file: SplitFileOpt = None,
    split_seed: SplitSeedOpt = 0,
    seed: Annotated[
        int, typer.Option("--seed", help="seed of observer halves and AUC sampling")
    ] = 0,
) -> None:
    """Centre bias (floor) and split-half inter-observer consistency (ceiling) on the test split."""
    from salnas.datasets import open_source
    from salnas.evaluation import compute_baselines
    from salnas.io import provenance, write_json_atomic

    source = open_source(data)
    test, train = _stems_for(source, "test", split_file, split_seed)
    report = compute_baselines(source, train, test, sigma_px, seed)
    if "inter_observer" not in report:
        err.print("inter-observer consistency skipped: this dataset records no observer ids")
    report["provenance"] = provenance(sigma_px=sigma_px, seed=seed, split_seed=split_seed)
    write_json_atomic(json_out, report)
    results = {k: cast(dict[str, float], report[k]) for k in BASELINE_MODELS if k in report}
    out.print(_metrics_table(f"baselines on {source.spec} (test, {len(test)} images)", results))
    out.print(f"wrote {json_out}")


@app.command("run")
def run(
    config: Annotated[Path, typer.Option("--config", help="YAML config of the whole run")],
    out_dir: Annotated[Path, typer.Option("--out", help="run directory (rerun to resume)")],
) -> None:
    """Every stage end to end: supernet, baselines, search, Self-KD, report (resumable)."""
    from salnas.config import load_config
    from salnas.pipeline import run_pipeline

    stages = run_pipeline(load_config(config), out_dir, log=lambda m: out.print(m, markup=False))
    total = sum(s.get("wall_s", 0.0) for s in stages.values())
    out.print(f"run finished: {out_dir / 'report.html'} (stages {total:.0f} s in all)")


@config_app.command("show")
def config_show(
    path: Annotated[
        Path | None, typer.Argument(help="a YAML config; omitted: the defaults")
    ] = None,
) -> None:
    """Print a config with every default filled in (unknown keys are errors)."""
    from salnas.config import dump_config, load_config

    out.print(dump_config(load_config(path)), highlight=False, markup=False)


def _register_stages() -> None:
    """Stage packages add their commands here (the CLI is the one place that composes them)."""
    from salnas.analysis.cli import compare_cmd, report_cmd
    from salnas.distill.cli import distill_cmd, predict_cmd
    from salnas.distill.export_cli import export_cmd
    from salnas.search.cli import search_cmd
    from salnas.search.latency_cli import app as latency_app
    from salnas.supernet.cli import app as supernet_app

    app.add_typer(supernet_app, name="supernet")
    app.command("search")(search_cmd)
    app.add_typer(latency_app, name="latency")
    app.command("distill")(distill_cmd)
    app.command("predict")(predict_cmd)
    app.command("export")(export_cmd)
    app.command("report")(report_cmd)
    app.command("compare")(compare_cmd)


_register_stages()


def main() -> None:
    try:
        app()
    except SalnasError as e:
        err.print(f"[red]error:[/red] {e}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
