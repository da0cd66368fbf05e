"""``salnas latency ...``: profile a device into a lookup table, validate it, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from salnas.errors import ConfigError, SalnasError

app = typer.Typer(
    help="Latency lookup tables per device: profile, validate, predict.", no_args_is_help=True
)
out = Console(highlight=False, markup=False, emoji=False)

ThreadsOpt = Annotated[int, typer.Option("--threads", help="torch CPU threads, pinned")]
WarmupOpt = Annotated[int, typer.Option("--warmup", help="untimed calls per item first")]
RepeatsOpt = Annotated[
    int, typer.Option("--repeats", help="interleaved timing passes; each item's median is kept")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="seed of the random subnets")]
JsonOpt = Annotated[
    Path | None, typer.Option("--json", help="also write the validation report as JSON")
]


def _space(config: Path | None):
    from salnas.config import load_config
    from salnas.supernet.space import GenomeError, SearchSpace

    try:
        return SearchSpace(load_config(config).supernet.space or None)
    except GenomeError as e:
        raise ConfigError(f"{config or 'defaults'}: supernet.space: {e}") from None


def _print_validation(report: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    for col, justify in (("subnet", "left"), ("resolution", "left"), ("measured ms", "right"),
                         ("predicted ms", "right"), ("pred / meas", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for s in report["subnets"]:
        table.add_row(s["id"], "x".join(map(str, s["resolution"])), f"{s['measured_ms']:.2f}",
                      f"{s['predicted_ms']:.2f}", f"{s['ratio']:.3f}")
    out.print(table)
    tau = report["kendall_tau"]
    out.print(
        f"n {report['n']}: RMSE {report['rmse_pct']:.1f} %, within ±10 % "
        f"{100 * report['share_within_10pct']:.0f} %, bias {report['mean_error_pct']:+.1f} %, "
        f"max |error| {report['max_abs_error_pct']:.1f} %, Kendall tau "
        f"{'n/a' if tau is None else f'{tau:.2f}'}; measured latencies span "
        f"{report['measured_max_over_min']:.2f}x"
    )


def _warn_if_busy(loads: list[float | None], device: dict[str, Any]) -> None:
    from salnas.search.latency import busy_warning

    warning = busy_warning(loads, device)
    if warning:
        out.print(f"warning: {warning}")


@app.command("profile")
def profile_cmd(
    out_path: Annotated[Path, typer.Option("--out", help="lookup table to write (JSON)")],
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML config (supernet.space)")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda")] = "cpu",
    threads: ThreadsOpt = 1,
    warmup: WarmupOpt = 3,
    repeats: RepeatsOpt = 10,
    fit: Annotated[
        int, typer.Option("--fit", help="random subnets (plus min and max) for the overhead fit")
    ] = 8,
    validate: Annotated[
        int, typer.Option("--validate-subnets", "--validate",
                          help="also validate on N other random subnets, same run (as "
                          "`latency validate --subnets N`)")
    ] = 0,
    seed: SeedOpt = 0,
    statistic: Annotated[
        str,
        typer.Option(
            "--statistic",
            help="median or min of each item's timings over the passes; min is steadier on "
            "a loaded machine (validation reuses the table's choice)",
        ),
    ] = "median",
    json_out: JsonOpt = None,
    progress: Annotated[bool, typer.Option(help="progress bar")] = True,
    backend: Annotated[
        str, typer.Option("--backend", help="runtime to time in: torch, torchscript or "
                          "onnxruntime (what you deploy); recorded in the table")
    ] = "torch",
) -> None:
    """Measure every block of the search space on this device; write the lookup table.

    The default space (3 resolutions, about 1000 entries) takes minutes at the default
    repeats; a config restricting supernet.space.resolutions is proportionally faster.
    """
    from salnas.search.latency import profile_latency

    if device not in ("cpu", "cuda"):
        raise SalnasError(f"--device must be cpu or cuda, got {device!r}")
    if fit < 0 or validate < 0:
        raise SalnasError("--fit and --validate-subnets must be >= 0")
    if statistic not in ("median", "min"):
        raise SalnasError(f"--statistic must be median or min, got {statistic!r}")
    space = _space(config)
    table = profile_latency(space, device=device, threads=threads, warmup=warmup,
                            repeats=repeats, fit=fit, validate=validate, seed=seed,
                            statistic=statistic, progress=progress, backend=backend)
    table.save(out_path)
    _warn_if_busy(table.meta["measurement"]["load_average"], table.meta["device"])
    lo, hi = space.min_genome(), space.max_genome()
    p_lo, p_hi = table.predict_ms(lo), table.predict_ms(hi)
    dev = table.meta["device"]
    out.print(
        f"{len(table.entries)} entries on {dev['name']} ({dev['type']}, {threads} thread(s), "
        f"{table.backend}) in "
        f"{table.meta['measurement']['seconds']} s; overhead a={table.a:.3f}, b={table.b:.3f} ms "
        f"({table.overhead['method']})"
    )
    out.print(f"predicted: min genome {p_lo:.2f} ms, max genome {p_hi:.2f} ms "
              f"(max / min {p_hi / p_lo:.2f}x)")
    if table.validation is not None:
        _print_validation(table.validation, f"validation on {validate} random subnets")
        if json_out is not None:
            from salnas.io import write_json_atomic

            write_json_atomic(json_out, table.validation)
    out.print(f"wrote {out_path}")


@app.command("validate")
def validate_cmd(
    lut: Annotated[Path, typer.Option("--lut", help="lookup table from `latency profile`")],
    n: Annotated[int, typer.Option("--subnets", "--n", help="random subnets to measure")] = 20,
    warmup: WarmupOpt = 3,
    repeats: RepeatsOpt = 10,
    seed: SeedOpt = 0,
    json_out: JsonOpt = None,
    store: Annotated[
        bool, typer.Option("--store", help="also record the result in the table's file")
    ] = False,
    progress: Annotated[bool, typer.Option(help="progress bar")] = True,
) -> None:
    """Measure N random subnets; report the table's error (RMSE %, share within ±10 %).

    Uses the table's device, thread count and statistic; also reports rank agreement.
    """
    from salnas.io import write_json_atomic
    from salnas.search.latency import LatencyTable, validate_table

    if n < 1:  # before reading the table: a bad count is the user's first error to fix
        raise SalnasError(f"--subnets must be >= 1, got {n}")
    table = LatencyTable.load(lut)
    report = validate_table(table, n, warmup=warmup, repeats=repeats, seed=seed,
                            progress=progress)
    _warn_if_busy(report["load_average"], report["device"])
    if not report["same_device_name"]:
        out.print(f"warning: {lut} was profiled on "
                  f"{table.meta['device'].get('name')!r}, this is {report['device']['name']!r}")
    _print_validation(report, f"{lut}: validation on {n} random subnets")
    if json_out is not None:
        write_json_atomic(json_out, report)
        out.print(f"wrote {json_out}")
    if store:
        table.validation = report
        table.save(lut)
        out.print(f"stored the result in {lut}")


@app.command("predict")
def predict_cmd(
    lut: Annotated[Path, typer.Option("--lut", help="lookup table from `latency profile`")],
    genome: Annotated[str, typer.Option("--genome", help="max, min, random:SEED or FILE.json")],
) -> None:
    """Predicted latency of one genome, with its breakdown by part."""
    from salnas.search.latency import LatencyTable
    from salnas.supernet.subnet import parse_genome

    table = LatencyTable.load(lut)
    g = parse_genome(table.space, genome)
    parts = table.breakdown(g)
    dev = table.meta["device"]
    out.print(f"{g.id} at {g.resolution[0]}x{g.resolution[1]}: {table.predict_ms(g):.2f} ms on "
              f"{dev['name']} ({table.meta['threads']} thread(s)); "
              + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
