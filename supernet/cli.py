"""``salnas supernet ...`` and ``salnas predict``: thin shells over supernet/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from salnas.cli_options import ProgressOpt, SetOpt

app = typer.Typer(
    help="Search space, supernet training and subnet extraction.", no_args_is_help=True
)
out = Console(markup=False, emoji=False, highlight=False)  # user text as it is


@app.command("space")
def space_cmd(
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML config (supernet.space)")
    ] = None,
) -> None:
    """Print the genes of the search space, their choices and the size of the space."""
    from salnas.config import load_config
    from salnas.supernet.space import SearchSpace

    space = SearchSpace(load_config(config).supernet.space or None)
    table = Table(title="search space")
    table.add_column("gene")
    table.add_column("choices")
    for gene in space.genes:
        table.add_row(gene.name, ", ".join(map(str, gene.choices)))
    out.print(table)
    out.print(f"genes in the vector: {len(space.genes)}")
    out.print(f"distinct architectures: {space.size():,} (~{float(space.size()):.3g})")
    out.print(f"max genome id {space.max_genome().id}, min genome id {space.min_genome().id}")


@app.command("train")
def train_cmd(
    config: Annotated[Path | None, typer.Option("--config", help="YAML config file")] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="dataset spec (overrides data.spec)")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="run directory")] = Path("runs/supernet"),
    resume: Annotated[
        bool, typer.Option("--resume", help="continue the checkpoint in --out")
    ] = False,
    epochs: Annotated[int | None, typer.Option("--epochs", help="override supernet.epochs")] = None,
    sigma_px: Annotated[
        float | None, typer.Option("--sigma-px", help="override data.sigma_px")
    ] = None,
    sets: SetOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Train the supernet with the sandwich rule (torchrun for several processes)."""
    from salnas.config import check_sigma_px, load_config, parse_set_options
    from salnas.io import ensure_dir, progress_enabled
    from salnas.supernet.train import train_supernet

    overrides: dict[str, object] = {}
    if data is not None:
        overrides["data.spec"] = data
    if epochs is not None:
        overrides["supernet.epochs"] = epochs
    if sigma_px is not None:
        overrides["data.sigma_px"] = check_sigma_px(sigma_px, "--sigma-px")
    cfg = load_config(config, {**overrides, **parse_set_options(sets)})
    ensure_dir(out_dir)
    path = train_supernet(cfg, out_dir, resume=resume, progress=progress_enabled(progress))
    out.print(f"supernet checkpoint: {path}")


@app.command("extract")
def extract_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="RUN_DIR/supernet.pt")],
    genome: Annotated[str, typer.Option("--genome", help="max, min, random:SEED or FILE.json")],
    out_path: Annotated[Path, typer.Option("--out", help="standalone model file to write")],
    verify: Annotated[
        bool, typer.Option("--verify", help="check outputs equal the supernet's")
    ] = False,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="dataset for BN recalibration (default: the one the supernet was trained on)",
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            help="best (the epoch with the best val CC) or last (default: the run's "
            "supernet.keep)",
        ),
    ] = None,
) -> None:
    """Build a standalone model of one subnet (plain Conv/BN, recalibrated BatchNorm)."""
    from salnas.config import load_config  # noqa: F401  (keeps import errors early)
    from salnas.datasets.batches import training_images_at
    from salnas.datasets.training import load_training_data
    from salnas.layout import SPLIT_JSON
    from salnas.supernet.bn import recalibrate_bn
    from salnas.supernet.checkpoint import load_supernet
    from salnas.supernet.costs import count_params_flops
    from salnas.supernet.subnet import parse_genome, save_subnet, verify_extraction

    model, config, _ = load_supernet(checkpoint, weights)
    if data is not None:
        config = config.model_copy(update={"data": config.data.model_copy(update={"spec": data})})
    g = parse_genome(model.space, genome)
    run_dir = checkpoint.parent if (checkpoint.parent / SPLIT_JSON).is_file() else None
    training = load_training_data(config, run_dir)
    net = model.extract(g)
    cfg = config.supernet
    if verify:
        images = training_images_at(
            training.val, g.resolution, 1, cfg.batch_size, 0, net_device(net)
        )[0]
        diff = verify_extraction(model, net, g, images)
        out.print(f"verify: supernet vs standalone relative difference {diff:.2e} (<= 1e-4)")
    recalibrate_bn(
        net,
        training_images_at(
            training.train,
            g.resolution,
            cfg.bn_recalib_batches,
            cfg.batch_size,
            config.seed,
            net_device(net),
        ),
    )
    params, flops = count_params_flops(net, g.resolution)
    save_subnet(out_path, net, g, config, params=params, flops=flops, checkpoint=str(checkpoint))
    out.print(
        f"{g.id}: {params / 1e6:.3f} M params, {flops / 1e9:.3f} GFLOPs (fvcore, 1 MAC = 1 "
        f"flop) at {g.resolution[0]}x{g.resolution[1]} -> {out_path}"
    )


def net_device(net):
    return next(net.parameters()).device
