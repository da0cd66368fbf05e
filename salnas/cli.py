"""The ``salnas`` command line. Each command is a thin shell over the library.

The stage commands (``supernet``, ``search``, ``latency``, ``distill``, ``predict``,
``report``, ``compare``) are imported when they are run, not when the CLI starts: ``salnas
--help`` and ``salnas --version`` never import torch. Errors print one line (naming the file
or setting) and exit 2; user text (paths, specs) is printed as it is, never read as rich
markup or emoji codes.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from salnas.cli_options import ProgressOpt, SetOpt
from salnas.errors import SalnasError

# Every command's --help ends with an example (command path -> example lines).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "": ("salnas run --config configs/quickstart.yaml --out runs/quickstart",),
    "run": ("salnas run --config configs/quickstart.yaml --out runs/quickstart",
            "salnas run --config configs/osie.yaml --out runs/osie --set supernet.epochs=4"),
    "data": ("salnas data check osie:../shared/data/osie",),
    "data check": ("salnas data check folder:/data/mine --json check.json",),
    "config": ("salnas config show configs/quickstart.yaml",),
    "config show": ("salnas config show configs/osie.yaml",),
    "evaluate": ("salnas evaluate --data osie:../shared/data/osie --predictions preds/ "
                 "--json scores.json",),
    "baselines": ("salnas baselines --data osie:../shared/data/osie --json baselines.json",),
    "supernet": ("salnas supernet train --config configs/quickstart.yaml --out runs/sn",),
    "supernet space": ("salnas supernet space --config configs/osie.yaml",),
    "supernet train": ("salnas supernet train --config configs/osie.yaml --out runs/osie/supernet",
                       "salnas supernet train --config c.yaml --out runs/sn --resume "
                       "--set supernet.epochs=12"),
    "supernet extract": ("salnas supernet extract runs/osie/supernet/supernet.pt --genome max "
                         "--out max.pt --verify",),
    "search": ("salnas search --config configs/osie.yaml --supernet "
               "runs/osie/supernet/supernet.pt --out runs/osie/search",
               "salnas search --config c.yaml --supernet runs/sn/supernet.pt --out runs/s "
               "--set search.generations=20"),
    "latency": ("salnas latency profile --out lut.json",),
    "latency profile": ("salnas latency profile --config configs/osie.yaml --out lut.json",),
    "latency validate": ("salnas latency validate --lut lut.json",),
    "latency predict": ("salnas latency predict --lut lut.json --genome max",),
    "distill": ("salnas distill --config configs/osie.yaml --search runs/osie/search "
                "--out runs/osie/distill",
                "salnas distill --search runs/osie/search --out runs/osie/distill "
                "--set distill.epochs=2"),
    "arms": ("salnas arms results/osie/kd/results.csv --kind pareto",),
    "predict": ("salnas predict runs/osie/distill/ARCH/selfkd/model.pt "
                "--data osie:../shared/data/osie --out preds/",),
    "export": ("salnas export runs/osie/distill/ARCH/selfkd/model.pt --format onnx "
               "--out model.onnx",),
    "report": ("salnas report runs/osie",),
    "compare": ("salnas compare runs/a runs/b --out compare.html",),
}


def example(path: str) -> str | None:
    """The epilog of command ``path``: its examples, one paragraph each."""
    lines = EXAMPLES.get(path)
    return None if not lines else "Example:\n\n" + "\n\n".join(lines)


# name -> (module, attribute, short help): imported only when the command runs or its own
# --help is asked for; the short help is what `salnas --help` lists (the command's own
# docstring says more).
STAGE_COMMANDS: dict[str, tuple[str, str, str]] = {
    "supernet": ("salnas.supernet.cli", "app",
                 "Search space, supernet training and subnet extraction."),
    "search": ("salnas.search.cli", "search_cmd",
               "Multi-objective architecture search on a trained supernet (resumable, "
               "distributable)."),
    "latency": ("salnas.search.latency_cli", "app",
                "Latency lookup tables per device: profile, validate, predict."),
    "distill": ("salnas.distill.cli", "distill_cmd",
                "Train Pareto architectures standalone: Self-KD and baseline arms, peers, "
                "energy, export."),
    "arms": ("salnas.distill.cli", "arms_cmd",
             "Paired arm-minus-baseline differences of a distill results.csv, as Markdown."),
    "predict": ("salnas.distill.cli", "predict_cmd",
                "Write one saliency map per image, at the image's original size."),
    "export": ("salnas.distill.export_cli", "export_cmd",
               "Export a model for deployment (ONNX or TorchScript), checked against PyTorch."),
    "report": ("salnas.analysis.cli", "report_cmd",
               "One self-contained HTML report of a run (RUN_DIR/report.html)."),
    "compare": ("salnas.analysis.cli", "compare_cmd",
                "One HTML report overlaying the fronts and hypervolumes of several runs."),
}


def _with_examples(cmd: Any, path: str) -> Any:
    """Give ``cmd`` (a click command of typer's) and its subcommands their example epilogs,
    where they have none."""
    if not cmd.epilog:
        cmd.epilog = example(path)
    for name, sub in getattr(cmd, "commands", {}).items():
        _with_examples(sub, f"{path} {name}".strip())
    return cmd


def load_stage_command(name: str) -> Any:
    """Import stage command ``name`` and convert it to a click command."""
    module, attr, _ = STAGE_COMMANDS[name]
    obj = getattr(importlib.import_module(module), attr)
    if isinstance(obj, typer.Typer):
        cmd = typer.main.get_command(obj)
    else:
        holder = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        holder.command(name)(obj)
        cmd = typer.main.get_command(holder)
    cmd.name = name
    return _with_examples(cmd, name)


class LazyStages(TyperGroup):
    """The root group: stage commands are imported on first use (help lists them from
    :data:`STAGE_COMMANDS` without importing anything)."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        eager = super().list_commands(ctx)
        return [*eager, *(n for n in STAGE_COMMANDS if n not in eager)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None or cmd_name not in STAGE_COMMANDS:
            return cmd
        if self._listing:  # `salnas --help`: a stand-in with the short help
            short = STAGE_COMMANDS[cmd_name][2]
            return TyperCommand(cmd_name, help=short, short_help=short)
        loaded = load_stage_command(cmd_name)
        self.add_command(loaded, cmd_name)
        return loaded

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="salnas",
    cls=LazyStages,
    help="Evolutionary multi-objective NAS for visual saliency prediction.",
    epilog=example(""),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Inspect and check datasets.", no_args_is_help=True, epilog=example("data")
)
config_app = typer.Typer(
    help="Show the configuration schema and resolved configs.", no_args_is_help=True,
    epilog=example("config"),
)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")


def plain_console(stderr: bool = False) -> Console:
    """A console that prints user text as it is: no markup, no emoji codes, no highlighting."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False)


out = plain_console()
err = plain_console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        import importlib.metadata

        try:
            version = importlib.metadata.version("salnas")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        typer.echo(f"salnas {version}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True,
                     help="print the version and exit"),
    ] = False,
    no_progress: Annotated[
        bool,
        typer.Option("--no-progress", help="no progress bars in any command (they are off "
                     "anyway when stderr is not a terminal)"),
    ] = False,
) -> None:
    """Evolutionary multi-objective NAS for visual saliency prediction."""
    from salnas.io import git_commit, set_progress

    set_progress(False if no_progress else None)
    git_commit()  # the commit of the code this process runs, before any stage starts


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
        "original image, > 0 and <= 1000 (default: the dataset's, else 3% of max side)",
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


@data_app.command("check", epilog=example("data check"))
def data_check(
    spec: Annotated[str, typer.Argument(help="dataset spec, e.g. osie:../shared/data/osie")],
    split_seed: SplitSeedOpt = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the report as JSON")
    ] = None,
) -> None:
    """Decode every file of a dataset; print what it holds and every problem, naming files."""
    from salnas.datasets import check_source, open_source, resolve_split
    from salnas.io import progress_enabled, write_json_atomic

    source = open_source(spec)
    report = check_source(source, progress=progress_enabled())
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
            err.print(Text("problem: ", style="red") + Text(p), soft_wrap=True)
        err.print(f"{len(report.problems)} problem(s) in {spec}", soft_wrap=True)
        raise typer.Exit(1)
    out.print(Text("no problems found", style="green"))


def _stems_for(
    source, split: str, split_file: Path | None, split_seed: int
) -> tuple[list[str], list[str]]:
    """(stems of the requested split, training stems for the centre bias)."""
    from salnas.datasets import resolve_split, split_stems

    stems = source.stems()
    parts = resolve_split(stems, source.default_split, split_file, split_seed)
    return split_stems(parts, stems, split), parts["train"]


@app.command("evaluate", epilog=example("evaluate"))
def evaluate(
    data: SpecArg,
    predictions: Annotated[
        Path, typer.Option("--predictions", help="folder of <stem>.png|.npy maps")
    ],
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="also write the mean metrics (JSON) and a per-image CSV "
                     "beside it"),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option("--split", help="all, train, val or test; default: test, or every image "
                     "with a prediction when the folder holds more than the test split"),
    ] = None,
    sigma_px: SigmaOpt = None,
    split_file: SplitFileOpt = None,
    split_seed: SplitSeedOpt = 0,
    seed: Annotated[int, typer.Option("--seed", help="seed of the AUC jitter and negatives")] = 0,
) -> None:
    """Score saved prediction maps against a dataset (MIT benchmark protocol)."""
    from salnas.config import check_sigma_px
    from salnas.datasets import open_source, resolve_split, split_stems
    from salnas.evaluation import centre_bias_map, load_targets, score_maps, summarise
    from salnas.io import atomic_open, progress_enabled, provenance, write_json_atomic
    from salnas.predictions import find_prediction, predicted_stems, read_prediction

    sigma_px = check_sigma_px(sigma_px, "--sigma-px")
    if not predictions.is_dir():
        raise SalnasError(f"--predictions {predictions} is not a folder")
    source = open_source(data)
    every = source.stems()
    parts = resolve_split(every, source.default_split, split_file, split_seed)
    train = parts["train"]
    if split is None:
        # A folder of predictions for more than the test split (a whole dataset, another
        # split) is scored whole rather than silently cut to the seeded test split.
        predicted = predicted_stems(predictions, every)
        if set(predicted) - set(parts["test"]):
            stems, label = predicted, "every image with a prediction"
        else:
            stems, label = parts["test"], "test"
    else:
        stems, label = split_stems(parts, every, split), split
    paths = [find_prediction(predictions, s) for s in stems]  # fail before any work
    maps = [read_prediction(p) for p in paths]
    overlap = len(set(stems) & set(train))
    note = (f"; {overlap} of them are training images, whose mean is the centre bias of IG"
            if overlap and label != "train" else "")
    err.print(f"scoring {len(stems)} images of {source.spec} ({label}; split seed "
              f"{split_seed}{' from ' + str(split_file) if split_file else ''}){note}",
              soft_wrap=True)
    show = progress_enabled()
    targets = load_targets(source, stems, sigma_px, progress=show)
    baseline = centre_bias_map(source, train, sigma_px, progress=show)
    per_image = score_maps(maps, targets, baseline, seed=seed)
    mean = summarise(per_image)
    if json_out is not None:
        csv_path = json_out.with_suffix(".csv")
        with atomic_open(csv_path, "w", newline="") as fh:
            per_image.to_csv(fh, index=False)
        write_json_atomic(
            json_out,
            {
                **mean,
                "n_images": len(stems),
                "split": label,
                "data": source.spec,
                "predictions": str(predictions),
                "per_image_csv": str(csv_path),
                "provenance": provenance(sigma_px=sigma_px, seed=seed, split_seed=split_seed),
            },
        )
    out.print(
        _metrics_table(
            f"{predictions} on {source.spec} ({label}, {len(stems)} images)",
            {predictions.name or str(predictions): mean},
        )
    )
    if json_out is not None:
        out.print(f"wrote {json_out} and {json_out.with_suffix('.csv')}", soft_wrap=True)


@app.command("baselines", epilog=example("baselines"))
def baselines(
    data: SpecArg,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write both baselines' metrics (JSON)")
    ] = None,
    sigma_px: SigmaOpt = None,
    split_file: SplitFileOpt = None,
    split_seed: SplitSeedOpt = 0,
    seed: Annotated[
        int, typer.Option("--seed", help="seed of observer halves and AUC sampling")
    ] = 0,
) -> None:
    """Centre bias (floor) and split-half inter-observer consistency (ceiling) on the test split."""
    from salnas.config import check_sigma_px
    from salnas.datasets import open_source
    from salnas.evaluation import compute_baselines
    from salnas.io import progress_enabled, provenance, write_json_atomic

    sigma_px = check_sigma_px(sigma_px, "--sigma-px")
    source = open_source(data)
    test, train = _stems_for(source, "test", split_file, split_seed)
    report = compute_baselines(source, train, test, sigma_px, seed, progress=progress_enabled())
    if "inter_observer" not in report:
        err.print("inter-observer consistency skipped: this dataset records no observer ids")
    report["provenance"] = provenance(sigma_px=sigma_px, seed=seed, split_seed=split_seed)
    if json_out is not None:
        write_json_atomic(json_out, report)
    results = {k: cast(dict[str, float], report[k]) for k in BASELINE_MODELS if k in report}
    out.print(_metrics_table(f"baselines on {source.spec} (test, {len(test)} images)", results))
    if json_out is not None:
        out.print(f"wrote {json_out}", soft_wrap=True)


@app.command("run", epilog=example("run"))
def run(
    config: Annotated[Path, typer.Option("--config", help="YAML config of the whole run")],
    out_dir: Annotated[Path, typer.Option("--out", help="run directory (rerun to resume)")],
    overrides: SetOpt = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="stop after this stage: supernet, baselines, search, distill or "
        "report (rerun without it to go on)")] = None,
    progress: ProgressOpt = None,
) -> None:
    """Every stage end to end: supernet, baselines, search, Self-KD, report (resumable).

    The pipeline's log lines also go to RUN_DIR/run.log.
    """
    from salnas.config import load_config, parse_set_options
    from salnas.io import ensure_dir, progress_enabled
    from salnas.pipeline import run_pipeline

    cfg = load_config(config, parse_set_options(overrides))
    ensure_dir(out_dir)
    stages = run_pipeline(cfg, out_dir, progress=progress_enabled(progress),
                          log=lambda m: out.print(m, soft_wrap=True), until=until)
    total = sum(s.get("wall_s", 0.0) for s in stages.values())
    if until is None or until == "report":
        out.print(f"run finished: {out_dir / 'report.html'} (stages {total:.0f} s in all)",
                  soft_wrap=True)


@config_app.command("show", epilog=example("config show"))
def config_show(
    path: Annotated[
        Path | None, typer.Argument(help="a YAML config; omitted: the defaults")
    ] = None,
) -> None:
    """Print a config with every default filled in; unknown keys, bad values and an invalid
    search space (supernet.space) are errors."""
    from salnas.config import dump_config, load_config

    out.print(dump_config(load_config(path)), soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """The ``salnas`` entry point: every error is one line on stderr and exit status 2."""
    from salnas.io import os_error_message

    try:
        app(args=argv)
    except SalnasError as e:
        _fail(str(e))
    except OSError as e:  # a read or write no stage wrapped: still one line naming the path
        _fail(os_error_message(e))
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


def _fail(message: str) -> None:
    err.print(Text("error: ", style="red") + Text(message), soft_wrap=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
