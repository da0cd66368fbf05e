"""``salnas distill``: a thin shell over :func:`distill.run.run_distill`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

__all__ = ["distill_cmd"]

out = Console()


def distill_cmd(
    search: Annotated[
        Path,
        typer.Option(
            "--search", help="search folder (RUN_DIR/search) holding pareto.csv and search.json"
        ),
    ],
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out", help="output folder (RUN_DIR/distill); rerun the same command to resume"
        ),
    ],
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML config (section distill)")
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="dataset spec (default: the supernet run's)")
    ] = None,
    supernet: Annotated[
        Path | None,
        typer.Option("--supernet", help="supernet checkpoint (default: the one search.json names)"),
    ] = None,
    ids: Annotated[
        str | None,
        typer.Option(
            "--ids",
            help="comma-separated architecture ids of pareto.csv (sets distill.select to ids)",
        ),
    ] = None,
    select: Annotated[
        str | None,
        typer.Option("--select", help="all | crowding:K | ids (overrides distill.select)"),
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option("--time-budget", help="seconds; no new architecture starts after it"),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="override distill.epochs")] = None,
    no_peers: Annotated[
        bool, typer.Option("--no-peers", help="skip the max-subnet and CSNet peers")
    ] = False,
) -> None:
    """Train Pareto architectures standalone: Self-KD and baseline arms, peers, energy, export."""
    from salnas.config import load_config
    from salnas.metrics import HIGHER_IS_BETTER

    from .run import run_distill

    overrides: dict[str, object] = {}
    if ids is not None:
        overrides["distill.ids"] = [i.strip() for i in ids.split(",") if i.strip()]
        overrides["distill.select"] = "ids"
    if select is not None:
        overrides["distill.select"] = select
    if time_budget is not None:
        overrides["distill.time_budget_s"] = time_budget
    if epochs is not None:
        overrides["distill.epochs"] = epochs
    if no_peers:
        overrides["distill.peers"] = False
    cfg = load_config(config, overrides)
    results = run_distill(cfg, search, out_dir, data_spec=data, supernet=supernet)
    if results.empty:
        out.print(f"no finished architecture in {out_dir}")
        return
    table = Table(
        title=f"{out_dir / 'results.csv'} (test split, original size)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    columns = (  # header, column, format: compact enough for an 80-column terminal
        ("arch", "arch", str),
        ("arm", "arm", str),
        ("seed", "seed", str),
        ("CC", "test_CC", "{:.3f}".format),
        ("NSS", "test_NSS", "{:.3f}".format),
        ("KLD", "test_KLD", "{:.3f}".format),
        ("params", "params", lambda v: f"{v / 1e6:.2f}M"),
        ("FLOPs", "flops", lambda v: f"{v / 1e6:.0f}M"),
        ("ms", "latency_ms", "{:.1f}".format),
        ("Wh", "energy_kwh", lambda v: f"{v * 1e3:.3f}"),
    )
    shown = [
        c
        for c in columns
        if c[1] in results.columns and (c[1] != "seed" or results["seed"].nunique() > 1)
    ]
    for header, name, _ in shown:
        table.add_column(
            header, justify="left" if name in ("arch", "arm") else "right", no_wrap=True
        )
    for _, row in results.iterrows():
        table.add_row(*(fmt(row[name]) for _, name, fmt in shown))
    out.print(table)
    if "test_CC" in results.columns:
        pairs = results.pivot_table(index=["arch", "seed"], columns="arm", values="test_CC")
        if {"selfkd", "baseline"} <= set(pairs.columns):
            gain = (pairs["selfkd"] - pairs["baseline"]).dropna()
            arrow = "higher" if HIGHER_IS_BETTER["CC"] else "lower"
            out.print(
                f"Self-KD - baseline test CC ({arrow} is better): mean {gain.mean():+.4f} "
                f"over {len(gain)} pair(s)"
            )
    out.print(f"wrote {out_dir / 'results.csv'}")


def predict_cmd(
    model_path: Annotated[
        Path, typer.Argument(help="model.pt (salnas model or peer), .ts or .onnx")
    ],
    data: Annotated[str, typer.Option("--data", help="dataset spec")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for <stem>.png|.npy maps")],
    split: Annotated[str, typer.Option("--split", help="all, train, val or test")] = "test",
    split_file: Annotated[
        Path | None,
        typer.Option(
            "--split-file",
            help="a run's split.json (default: the model's own split "
            "settings, else the dataset's default split with seed 0)",
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="png (16-bit) or npy")] = "png",
) -> None:
    """Write one saliency map per image, at the image's original size."""
    from salnas.datasets import open_source, resolve_split, split_stems
    from salnas.distill.export import load_any_model, model_data_settings
    from salnas.supernet.subnet import predict_stems

    model, resolution = load_any_model(model_path)
    source = open_source(data)
    stems = source.stems()
    settings = {} if split_file is not None else (model_data_settings(model_path) or {})
    parts = resolve_split(
        stems,
        source.default_split,
        split_file,
        int(settings.get("split_seed", 0)),
        settings.get("val"),
        settings.get("test"),
    )
    stems = split_stems(parts, stems, split)
    written = predict_stems(model, resolution, source, stems, out_dir, fmt)
    typer.echo(f"wrote {len(written)} maps to {out_dir}")
