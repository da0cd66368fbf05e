"""``salnas report`` and ``salnas compare``: thin shells over :mod:`analysis.report`."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["PlotlyJs", "compare_cmd", "report_cmd"]

out = Console(soft_wrap=True, highlight=False, markup=False, emoji=False)
err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False, emoji=False)


class PlotlyJs(enum.StrEnum):
    """Where a report's plotly.js lives (analysis.report.PLOTLYJS_MODES)."""

    inline = "inline"
    directory = "directory"


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="run directory (supernet, search/, distill/)")],
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="HTML file to write (default RUN_DIR/report.html)")] = None,
    gallery: Annotated[int, typer.Option(
        "--gallery", min=0, help="test images in the saliency gallery (0: none)")] = 4,
    gallery_models: Annotated[int, typer.Option(
        "--gallery-models", min=1, help="distilled Pareto models in the gallery")] = 4,
    plotlyjs: Annotated[PlotlyJs, typer.Option(
        "--plotlyjs", help="inline: plotly.js inside the file (self-contained, about 5 MB); "
        "directory: one shared plotly.min.js beside it, for a folder of many reports")
    ] = PlotlyJs.inline,
) -> None:
    """One self-contained HTML report of a run: which model to use, summary, fronts, genes,
    retraining, arms, latency."""
    from salnas.analysis.report import write_report

    path, page = write_report(run_dir, out_file, gallery, gallery_models, plotlyjs.value)
    for p in page.problems:
        err.print(f"warning: {p}")
    n = page.n_figures
    out.print(f"wrote {path} ({n} figure{'' if n == 1 else 's'}, "
              f"{path.stat().st_size / 1e6:.1f} MB)")


def compare_cmd(
    run_dirs: Annotated[list[Path], typer.Argument(help="two or more run directories")],
    out_file: Annotated[Path, typer.Option("--out", help="HTML file to write")] = Path(
        "compare.html"),
    plotlyjs: Annotated[PlotlyJs, typer.Option(
        "--plotlyjs", help="inline: plotly.js inside the file; directory: one shared "
        "plotly.min.js beside it")] = PlotlyJs.inline,
) -> None:
    """One HTML report overlaying the fronts and hypervolumes of several runs."""
    from salnas.analysis.report import write_compare

    path, page = write_compare(run_dirs, out_file, plotlyjs.value)
    for p in page.problems:
        err.print(f"warning: {p}")
    out.print(f"wrote {path} ({page.n_figures} figure{'' if page.n_figures == 1 else 's'})")
