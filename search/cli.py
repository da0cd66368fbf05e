"""``salnas search``: the command line of :mod:`salnas.search.run`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from salnas.cli_options import ProgressOpt, SetOpt
from salnas.config import load_config, parse_set_options

__all__ = ["search_cmd"]


def search_cmd(
    config: Annotated[Path | None, typer.Option("--config", help="YAML config (search)")] = None,
    supernet: Annotated[
        Path, typer.Option("--supernet", help="RUN_DIR/supernet.pt of `salnas supernet train`")
    ] = Path("runs/supernet/supernet.pt"),
    out_dir: Annotated[Path, typer.Option("--out", help="search directory (rerun to resume)")] = (
        Path("runs/search")
    ),
    engine: Annotated[
        str | None,
        typer.Option("--engine", help="nsga2, optuna-nsga2, optuna-tpe, random or surrogate"),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Optuna storage shared by workers: sqlite:///F, "
                     "postgresql://..., or a journal file path"),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option("--study-name", help="override search.study_name")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="override seed")] = None,
    sets: SetOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Multi-objective architecture search on a trained supernet (resumable, distributable)."""
    from rich.console import Console

    from salnas.io import ensure_dir, progress_enabled
    from salnas.search.run import run_search

    overrides: dict[str, Any] = {}
    for key, value in (("search.engine", engine), ("search.storage", storage),
                       ("search.study_name", study_name), ("seed", seed)):
        if value is not None:
            overrides[key] = value
    cfg = load_config(config, {**overrides, **parse_set_options(sets)})
    ensure_dir(out_dir)
    summary = run_search(cfg, supernet, out_dir, progress=progress_enabled(progress))
    Console(soft_wrap=True, highlight=False, markup=False, emoji=False).print(
        f"search: {summary['archive_size']} architectures in the archive "
        f"({summary['feasible']} feasible), {summary['pareto_size']} on the Pareto front, "
        f"hypervolume {summary['hypervolume']:.4f} -> {out_dir}; this process: "
        f"{summary['evaluated_by_this_process']} evaluated, "
        f"{summary['cache_hits_of_this_process']} from the archive, "
        f"{summary['wall_s_of_this_process']:.1f} s"
    )
