"""``salnas report`` and ``salnas compare``: thin shells over :mod:`analysis.report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["compare_cmd", "report_cmd"]

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="run directory (supernet, search/, distill/)")],
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="HTML file to write (default RUN_DIR/report.html)")] = None,
    gallery: Annotated[int, typer.Option(
        "--gallery", min=0, help="test images in the saliency gallery (0: none)")] = 4,
    gallery_models: Annotated[int, typer.Option(
        "--gallery-models", min=1, help="distilled Pareto models in the gallery")] = 4,
) -> None:
    """One self-contained HTML report of a run: summary, fronts, genes, retraining, latency."""
    from salnas.analysis.report import write_report

    path, page = write_report(run_dir, out_file, gallery, gallery_models)
    for p in page.problems:
        err.print(f"[yellow]warning:[/yellow] {p}", markup=True)
    n = page.n_figures
    out.print(f"wrote {path} ({n} figure{'' if n == 1 else 's'}, "
              f"{path.stat().st_size / 1e6:.1f} MB)")


def compare_cmd(
    run_dirs: Annotated[list[Path], typer.Argument(help="two or more run directories")],
    out_file: Annotated[Path, typer.Option("--out", help="HTML file to write")] = Path(
        "compare.html"),
) -> None:
    """One HTML report overlaying the fronts and hypervolumes of several runs."""
    from salnas.analysis.report import write_compare

    path, page = write_compare(run_dirs, out_file)
    for p in page.problems:
        err.print(f"[yellow]warning:[/yellow] {p}", markup=True)
    out.print(f"wrote {path} ({page.n_figures} figure{'' if page.n_figures == 1 else 's'})")
