"""``salnas distill``: a thin shell over :func:`distill.run.run_distill`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from salnas.cli_options import ProgressOpt, SetOpt

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ImageFiles", "arms_cmd", "distill_cmd", "predict_cmd"]

out = Console(markup=False, emoji=False, highlight=False)  # user text as it is


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
    sets: SetOpt = None,
) -> None:
    """Train Pareto architectures standalone: Self-KD and baseline arms, peers, energy, export."""
    from salnas.config import load_config, parse_set_options
    from salnas.io import progress_enabled

    from .run import run_distill
    from .summary import kd_summary

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
    cfg = load_config(config, {**overrides, **parse_set_options(sets)})
    results = run_distill(cfg, search, out_dir, data_spec=data, supernet=supernet,
                          progress=progress_enabled())
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
    for kd in kd_summary(results).itertuples():
        if kd.metric == "CC":
            out.print(
                f"Self-KD - baseline test CC ({kd.better} is better): mean "
                f"{kd.mean_difference:+.4f} over {kd.pairs} pair(s)"
            )
    out.print(f"wrote {out_dir / 'results.csv'}")


ARM_LABELS = {"selfkd": "Self-KD", "teacher": "teacher KD", "baseline": "baseline"}


def _cells(values: list[str]) -> str:
    return "| " + " | ".join(values) + " |"


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join([_cells(header), _cells(["---"] * len(header)), *map(_cells, rows)])


def arms_cmd(
    results_csv: Annotated[Path, typer.Argument(help="a distill results.csv")],
    kind: Annotated[
        str | None, typer.Option("--kind", help="only rows of this kind: pareto | peer")
    ] = None,
    metrics: Annotated[
        str, typer.Option("--metrics", help="comma-separated test metrics of the differences")
    ] = "CC,NSS,KLD",
) -> None:
    """Paired arm-minus-baseline differences and per-architecture scores, as Markdown."""
    import pandas as pd

    from salnas.errors import SalnasError

    from .summary import architecture_summary, arm_summary

    try:
        results = pd.read_csv(results_csv, dtype={"arch": str, "genome_id": str})
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise SalnasError(f"{results_csv}: not a readable results.csv ({e}); give the "
                          "results.csv of a `salnas distill` output folder") from None
    if "arm" not in results or "arch" not in results:
        raise SalnasError(f"{results_csv}: no arch/arm columns; give the results.csv of a "
                          "`salnas distill` output folder")
    if kind is not None:
        results = results[results["kind"] == kind]
    wanted = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = [m for m in wanted if f"test_{m}" not in results]
    if unknown:
        raise SalnasError(f"--metrics: {', '.join(unknown)} not in {results_csv} (it has "
                          f"{', '.join(c[5:] for c in results if c.startswith('test_'))})")
    summary = arm_summary(results, metrics=wanted)
    if summary.empty:
        raise SalnasError(f"{results_csv}: no architecture and seed with a baseline and "
                          "another arm" + (f" among the {kind} rows" if kind else ""))
    rows = []
    for arm, part in summary.groupby("arm", sort=False):
        by = part.set_index("metric")
        rows.append([
            f"{ARM_LABELS.get(str(arm), str(arm))} minus baseline", str(by["pairs"].max()),
            *(f"{by.at[m, 'mean_difference']:+.4f} ({by.at[m, 'std_difference']:.4f})"
              for m in wanted),
            " / ".join(str(by.at[m, "arm_better"]) for m in wanted)
            + f" of {by['pairs'].max()}",
            " / ".join(f"{by.at[m, 'p_value']:.3f}" for m in wanted),
        ])
    out.print(_table(["difference", "pairs", *(f"Δ{m} (std)" for m in wanted),
                      f"arm better in {' / '.join(wanted)}",
                      f"Wilcoxon p ({' / '.join(wanted)})"], rows), soft_wrap=True)
    out.print("")
    archs = architecture_summary(results, wanted[0])
    arms = [a for a in ("baseline", "selfkd", "teacher") if f"{a}_mean" in archs]

    def params(r: pd.Series) -> str:
        lo, hi = int(r["params_min"]), int(r["params_max"])
        return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"

    rows = [[f"`{r['arch']}`", f"{r['flops'] / 1e6:.0f}", params(r), f"{r['latency_ms']:.2f}",
             str(r["seeds"]),
             *(f"{r[f'{a}_mean']:.4f} ({r[f'{a}_std']:.4f})" for a in arms),
             ", ".join(map(str, r["selfkd_epochs"])),
             ", ".join(map(str, r["teacher_snapshots"]))]
            for _, r in archs.iterrows()]
    out.print(_table(["model", "MFLOPs", "params", "latency (ms)", "seeds",
                      *(f"{wanted[0]} {ARM_LABELS[a]}" for a in arms), "Self-KD epochs",
                      "Self-KD teacher snapshots"], rows), soft_wrap=True)


class ImageFiles:
    """Plain images to predict (no fixations): a folder's JPEG/PNG/BMP files or a glob."""

    def __init__(self, spec: str) -> None:
        import glob
        import os

        from salnas.datasets.base import IMAGE_SUFFIXES, scan_files
        from salnas.errors import SalnasError

        self.spec = spec
        folder = Path(spec).expanduser()
        if folder.is_dir():
            self.paths, problems = scan_files(folder, IMAGE_SUFFIXES)
            if problems:
                raise SalnasError(f"--images {spec}: {problems[0]}")
        else:
            if not glob.has_magic(spec) and not folder.exists():
                raise SalnasError(f"--images {spec}: no such folder or file")
            self.paths = {}
            for name in sorted(glob.glob(os.path.expanduser(spec), recursive=True)):
                path = Path(name)
                if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if path.stem in self.paths:
                    raise SalnasError(
                        f"--images {spec}: {path} and {self.paths[path.stem]} have the same "
                        f"stem '{path.stem}' (outputs are named <stem>.png); keep one"
                    )
                self.paths[path.stem] = path
        if not self.paths:
            kinds = "/".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
            raise SalnasError(f"--images {spec}: no {kinds} image found")

    def stems(self) -> list[str]:
        return list(self.paths)

    def load_image(self, stem: str) -> np.ndarray:
        from salnas.datasets.base import ProblemError, read_rgb
        from salnas.errors import SalnasError

        try:
            return read_rgb(self.paths[stem])
        except ProblemError as e:
            raise SalnasError(str(e)) from None


def _model_batch(model_path: Path, requested: int) -> int:
    """The batch size to predict with: exports of models with a dynamic convolution take
    batch 1 only (``"batch": 1`` in their metadata)."""
    from salnas.distill.export import export_metadata

    if model_path.suffix.lower() in (".ts", ".onnx"):
        fixed = export_metadata(model_path).get("batch")
        if isinstance(fixed, int) and fixed > 0:
            return min(requested, fixed)
    return requested


def predict_cmd(
    model_path: Annotated[
        Path, typer.Argument(help="model.pt (salnas model or peer), .ts or .onnx")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="folder for <stem>.png|.npy maps (and overlays/)")
    ],
    images: Annotated[
        str | None,
        typer.Option(
            "--images",
            help="a folder or a glob ('photos/**/*.jpg') of JPEG/PNG images; no fixations "
            "needed",
        ),
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="dataset spec (instead of --images)")
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="with --data: all, train, val or test")
    ] = "test",
    split_file: Annotated[
        Path | None,
        typer.Option(
            "--split-file",
            help="with --data: a run's split.json (default: the model's own split "
            "settings, else the dataset's default split with seed 0)",
        ),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="png (16-bit, min-max scaled) or npy (sums to 1)")
    ] = "png",
    overlay: Annotated[
        bool,
        typer.Option(
            "--overlay", help="also write OUT/overlays/<stem>.png: a heatmap over the image"
        ),
    ] = False,
    alpha: Annotated[
        float, typer.Option("--alpha", help="opacity of the overlay's heatmap, 0 to 1")
    ] = 0.5,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", help="images per forward pass (exports with batch 1 use 1)"
        ),
    ] = 8,
    progress: ProgressOpt = None,
) -> None:
    """Write one saliency map per image, at the image's original size.

    Plain images (a folder or a glob, no fixations) with --images, or a dataset's split with
    --data. OUT/<stem>.png (16-bit) or OUT/<stem>.npy (float32 density summing to 1) is what
    `salnas evaluate --predictions OUT` reads; --overlay adds OUT/overlays/<stem>.png.

    Example: salnas predict runs/quickstart/distill/<arch>/selfkd/model.onnx
    --images photos/ --out maps/ --overlay
    """
    from salnas.distill.export import load_any_model
    from salnas.errors import SalnasError
    from salnas.supernet.subnet import predict_stems

    if (images is None) == (data is None):
        raise SalnasError("salnas predict needs exactly one of --images DIR_OR_GLOB and "
                          "--data SPEC")
    if fmt not in ("png", "npy"):
        raise SalnasError(f"--format must be png or npy, got '{fmt}'")
    model, resolution = load_any_model(model_path)
    source: Any
    if images is not None:
        source = ImageFiles(images)
        stems = source.stems()
    else:
        assert data is not None
        source, stems = _dataset_stems(model_path, data, split, split_file)
    overlays = out_dir / "overlays" if overlay else None
    written = predict_stems(model, resolution, source, stems, out_dir, fmt, progress,
                            batch_size=_model_batch(model_path, batch_size),
                            overlay_dir=overlays, alpha=alpha)
    message = f"wrote {len(written)} maps to {out_dir}"
    if overlays is not None:
        message += f" and {len(written)} overlays to {overlays}"
    typer.echo(message)


def _dataset_stems(
    model_path: Path, data: str, split: str, split_file: Path | None
) -> tuple[Any, list[str]]:
    from salnas.datasets import open_source, resolve_split, split_stems
    from salnas.distill.export import model_data_settings
    from salnas.errors import DatasetError

    source = open_source(data)
    stems = source.stems()
    if split == "all":  # no split to cut
        return source, stems
    settings = {} if split_file is not None else (model_data_settings(model_path) or {})
    try:
        parts = resolve_split(
            stems,
            source.default_split,
            split_file,
            int(settings.get("split_seed", 0)),
            settings.get("val"),
            settings.get("test"),
        )
    except DatasetError as e:
        if split_file is not None:
            raise
        val, test = settings.get("val"), settings.get("test")
        cut = f"val {val}, test {test}" if (val, test) != (None, None) else "the default split"
        raise DatasetError(
            f"{source.spec} ({len(stems)} images) is too small for the split the model was "
            f"trained with ({cut}): use --split all to predict every image, or --split-file "
            "with a split.json of this dataset"
        ) from e
    return source, split_stems(parts, stems, split)
