"""Sandwich-rule supernet training with in-place distillation, exact resume and DDP.

Every source of randomness (batch order, flips, sampled subnets) is derived from
``(seed, epoch)``, and a checkpoint is written atomically after each epoch, so a run
killed at any moment and resumed with ``--resume`` ends bit-identical (on CPU) to one
that was never interrupted, and loses at most the epoch in progress.

Multi-process training (``torchrun --nproc-per-node N salnas supernet train ...``)
shards each epoch's batches over the processes and averages gradients with one
all-reduce per step. All processes sample the same subnets (same seeds), so every
shared weight receives the same set of contributions; DistributedDataParallel's
reducer is not used because a sandwich step runs several different subnets before
one optimiser step.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from salnas import metrics
from salnas.config import Config, SupernetConfig, dump_config
from salnas.datasets.batches import Shard, iterate_batches
from salnas.datasets.training import TrainingData, load_training_data
from salnas.errors import ConfigError, SalnasError
from salnas.io import (
    atomic_open,
    provenance,
    remove_stale_tmp,
    write_json_atomic,
    write_text_atomic,
)
from salnas.layout import (
    CONFIG_YAML,
    PROVENANCE_JSON,
    SUPERNET_CKPT,
    TRAIN_LOG,
    TRAIN_LOG_COLUMNS,
    TRAIN_LOG_CSV,
    check_fingerprint,
)
from salnas.losses import NonFiniteError, SaliencyLoss, logits_to_density, non_finite_loss
from salnas.supernet.checkpoint import (
    CHECKPOINT_FORMAT,
    build_supernet,
    load_checkpoint,
    save_checkpoint,
)
from salnas.supernet.evaluate import calibrated_subnet, forward_at, validate
from salnas.supernet.model import Supernet
from salnas.supernet.optim import lr_factor, make_optimizer, set_lr
from salnas.supernet.runtime import (
    average_gradients,
    close_distributed,
    init_distributed,
    resolve_device,
)
from salnas.supernet.space import Genome, SearchSpace

__all__ = ["PROGRESSIVE_PHASES", "VAL_RANDOM_SUBNETS", "elastic_groups_at", "sample_subnets",
           "selection_score", "temperature_at", "train_supernet", "validation_subnets"]

# ---------------------------------------------------------------- sampling
VAL_RANDOM_SUBNETS = 4  # default of supernet.val_random
PROGRESSIVE_PHASES = (
    ("resolution", "kernel"),
    ("resolution", "kernel", "depth"),
    ("resolution", "kernel", "depth", "expand", "decoder"),
)


def elastic_groups_at(epoch: int, cfg: SupernetConfig) -> tuple[str, ...] | None:
    """The gene groups that vary at ``epoch`` under progressive shrinking (None: all)."""
    if not cfg.progressive:
        return None
    phase = min(epoch * len(PROGRESSIVE_PHASES) // cfg.epochs, len(PROGRESSIVE_PHASES) - 1)
    return PROGRESSIVE_PHASES[phase]


def sample_subnets(
    space: SearchSpace,
    n_random: int,
    seed: int,
    epoch: int,
    step: int,
    elastic_groups: tuple[str, ...] | None,
    sandwich: str = "space",
) -> list[Genome]:
    """The sandwich: max, min and ``n_random`` random subnets for one step.

    With progressive shrinking only the gene groups in ``elastic_groups`` vary; the others
    stay at their maximum (and the min subnet is the smallest within those groups).
    ``sandwich`` is ``supernet.sandwich`` (without progressive shrinking): ``space`` takes
    the space's max and min every step; ``alternate_types`` takes the max and min of one
    decoder type per step, in turn (a space with U-Net and FPN decoders has two largest
    networks, and the space's max, a U-Net, never trains the wide FPN decoders);
    ``alternate_max`` alternates the max only and keeps the space's min every step, so the
    smallest network keeps its full share of steps. Step 0 of each epoch is the plain
    sandwich.
    """
    rng = np.random.default_rng([seed, epoch, step])
    if elastic_groups is None and sandwich != "space" and len(space.decoder_types) > 1:
        types = space.decoder_types  # cheapest type first: max of the last, min of the first
        turn = step % len(types)
        smallest = (space.min_genome(types[turn]) if sandwich == "alternate_types"
                    else space.min_genome())
        genomes = [space.max_genome(types[-1 - turn]), smallest]
        return genomes + [space.random_genome(rng) for _ in range(n_random)]
    genomes = [space.max_genome()]
    if elastic_groups is None:
        genomes.append(space.min_genome())
        genomes += [space.random_genome(rng) for _ in range(n_random)]
        return genomes
    names = space.gene_names()
    lo, _ = space.bounds()
    top = space.encode(space.max_genome())
    varies = np.array([space.gene_group(n) in elastic_groups for n in names])
    genomes.append(space.decode(np.where(varies, lo, top)))
    for _ in range(n_random):
        rand = space.encode(space.random_genome(rng))
        genomes.append(space.decode(np.where(varies, rand, top)))
    return genomes


def temperature_at(epoch: int, cfg: SupernetConfig) -> float:
    """Dynamic-conv temperature, annealed linearly from the first to the last epoch."""
    start, end = cfg.temperature
    return start + (end - start) * (epoch / max(cfg.epochs - 1, 1))


def selection_score(row: dict[str, Any]) -> float:
    """What ``supernet.keep: best`` maximises: val CC averaged over the max and min subnets,
    so the kept weights serve the whole space rather than the max subnet alone."""
    return float(np.mean([row[TRAIN_LOG.val("max", "CC")], row[TRAIN_LOG.val("min", "CC")]]))


def resume_fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    """What must not change for a supernet run to be resumed: the seed, the data and the
    supernet sections but the epochs (the search and distill sections never reach it)."""
    return {"seed": config.get("seed"), "data": config.get("data"),
            "supernet": {**config["supernet"], "epochs": None}}


# ---------------------------------------------------------------- one run's state
@dataclass
class TrainingState:
    """What a checkpoint restores: the weights, the optimiser, the epochs done, the log and
    the best epoch's weights."""

    model: Supernet
    optimiser: torch.optim.Optimizer
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] | None = None

    def payload(self, config: Config, data: TrainingData) -> dict[str, Any]:
        """The checkpoint dictionary (tensors and plain values only: ``weights_only``)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimiser.state_dict(),
            "config": config.model_dump(mode="json"),
            "space": self.model.space.to_config(),
            "history": self.history,
            "best": self.best,
            "data": {
                "spec": data.prepared.source.spec,
                "resolution": list(config.data.resolution),
                "fingerprint": data.prepared.source.fingerprint(),
            },
        }


def new_state(config: Config, ckpt_path: Path, resume: bool,
              device: torch.device) -> TrainingState:
    """A fresh supernet and optimiser (seeded), restored from ``ckpt_path`` on resume."""
    torch.manual_seed(config.seed)
    model = build_supernet(config).to(device)
    cfg = config.supernet
    state = TrainingState(model, make_optimizer(model, cfg, pretrained=cfg.pretrained))
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        check_fingerprint(ckpt_path, resume_fingerprint(ckpt["config"]),
                          resume_fingerprint(config.model_dump(mode="json")),
                          what="a supernet", may_change=["supernet.epochs"])
        model.load_state_dict(ckpt["model"])
        state.optimiser.load_state_dict(ckpt["optimizer"])
        state.epoch, state.history = int(ckpt["epoch"]), list(ckpt["history"])
        state.best = ckpt.get("best")
    return state


# ---------------------------------------------------------------- one epoch
@dataclass
class StepHook:
    """Stops a run after ``stop_after`` optimiser steps (tests use it to simulate a kill)."""

    stop_after: int | None = None
    done: int = 0

    def step(self) -> None:
        self.done += 1
        if self.stop_after is not None and self.done >= self.stop_after:
            raise KeyboardInterrupt(f"stopped after {self.done} steps (test hook)")


def sandwich_step(
    model: Supernet,
    genomes: list[Genome],
    batch: dict[str, torch.Tensor],
    loss_fn: SaliencyLoss,
    cfg: SupernetConfig,
    scaler: torch.amp.GradScaler,
    device: torch.device,
) -> list[float]:
    """Accumulate the gradients of every subnet of one sandwich step; returns their losses.

    The first genome is the max subnet; with in-place distillation the others also match its
    detached density.
    """
    use_amp = scaler.is_enabled()
    images = batch["image"].to(device)
    density, fixmap = batch["density"].to(device), batch["fixmap"].to(device)
    teacher: torch.Tensor | None = None
    losses = []
    for genome in genomes:
        model.set_active(genome)
        with torch.autocast(device.type, enabled=use_amp):
            logits = forward_at(model, images, genome.resolution)
        loss, _ = loss_fn(logits.float(), density, fixmap)
        if teacher is None:
            teacher = logits_to_density(logits.detach().float())
        elif cfg.inplace_distill and cfg.distill_weight > 0:
            kd = metrics.kld(logits_to_density(logits.float()), teacher).mean()
            loss = loss + cfg.distill_weight * kd
        scaler.scale(loss).backward()
        losses.append(float(loss.detach()))
    return losses


def train_epoch(
    state: TrainingState,
    config: Config,
    data: TrainingData,
    shard: Shard,
    device: torch.device,
    scaler: torch.amp.GradScaler,
    hook: StepHook,
    progress: bool,
) -> dict[str, Any]:
    """One epoch of sandwich steps; returns its train_log.csv row (without validation)."""
    cfg, model, epoch = config.supernet, state.model, state.epoch
    torch.manual_seed(config.seed * 100_003 + epoch)
    factor = lr_factor(epoch, cfg)
    set_lr(state.optimiser, cfg.lr, factor)
    temperature = temperature_at(epoch, cfg)
    model.set_temperature(temperature)
    phase = elastic_groups_at(epoch, cfg)
    loss_fn = SaliencyLoss(cfg.loss)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    sums, count, seen, t0 = np.zeros(3), 0, 0, time.perf_counter()
    n_steps = len(data.train) // (cfg.batch_size * shard.world)
    if n_steps == 0:
        raise ConfigError(
            f"the training split ({len(data.train)} images) is smaller than one "
            f"batch ({cfg.batch_size} x {shard.world} processes); lower supernet.batch_size"
        )
    batches: Iterator[dict[str, torch.Tensor]] = iterate_batches(
        data.train, cfg.batch_size, config.seed, epoch, shard)
    bar = tqdm(batches, total=n_steps, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not (progress and shard.main))
    for step, batch in enumerate(bar):
        state.optimiser.zero_grad(set_to_none=True)
        genomes = sample_subnets(model.space, cfg.n_random, config.seed, epoch, step, phase,
                                 sandwich=cfg.sandwich)
        try:  # a NaN/inf stops training at this step, before the optimiser applies it
            losses = sandwich_step(model, genomes, batch, loss_fn, cfg, scaler, device)
        except NonFiniteError as e:
            raise non_finite_loss(model, f"supernet epoch {epoch + 1}, step {step + 1}",
                                  "supernet", cfg.lr * factor, str(e),
                                  first_step=step == 0) from None
        if shard.world > 1:
            average_gradients(params, shard.world)
        if cfg.grad_clip:
            scaler.unscale_(state.optimiser)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(state.optimiser)
        scaler.update()
        sums += np.array([losses[0], losses[1], np.mean(losses[2:]) if cfg.n_random else 0.0])
        count += 1
        seen += batch["image"].shape[0] * shard.world
        bar.set_postfix(loss=f"{losses[0]:.3f}", img_s=f"{seen / (time.perf_counter() - t0):.1f}")
        hook.step()
    if not all(bool(torch.isfinite(p).all()) for p in params):  # the last step's update
        raise non_finite_loss(model, f"supernet epoch {epoch + 1}, step {count}", "supernet",
                              cfg.lr * factor, "the weights became NaN/inf")
    seconds = time.perf_counter() - t0
    return dict(zip(TRAIN_LOG_COLUMNS, (
        epoch + 1, cfg.lr * factor, temperature, sums[0] / count, sums[1] / count,
        sums[2] / count, seen / seconds, seconds), strict=True))


def validation_subnets(space: SearchSpace, seed: int,
                       n_random: int = VAL_RANDOM_SUBNETS) -> list[tuple[str, Genome]]:
    """The subnets validated after every epoch: ``max``, ``min`` and ``rand0`` ... a fixed,
    seeded set of random ones (the same every epoch, so their curves show how the whole
    space trains, not only its two ends)."""
    rng = np.random.default_rng([seed, 4242])
    return [("max", space.max_genome()), ("min", space.min_genome()),
            *((f"rand{k}", space.random_genome(rng)) for k in range(n_random))]


def validate_epoch(model: Supernet, config: Config, data: TrainingData,
                   device: torch.device) -> dict[str, float]:
    """``val_<tag>_<metric>`` of every :func:`validation_subnets` subnet, BN recalibrated."""
    cfg, space = config.supernet, model.space
    row: dict[str, float] = {}
    for tag, genome in validation_subnets(space, config.seed, cfg.val_random):
        net = calibrated_subnet(model, genome, data.train, cfg.bn_recalib_batches,
                                cfg.batch_size, config.seed, device)
        for k, v in validate(net, genome.resolution, data.val, cfg.batch_size, device).items():
            row[TRAIN_LOG.val(tag, k)] = v
    return row


def keep_best(state: TrainingState, row: dict[str, Any], keep: str) -> None:
    """Record the epoch's selection score; keep a copy of its weights if it is the best."""
    row[TRAIN_LOG.score] = selection_score(row)
    if keep == "best" and (state.best is None or row[TRAIN_LOG.score] > state.best["score"]):
        state.best = {
            "epoch": state.epoch + 1,
            "score": row[TRAIN_LOG.score],
            "model": {k: v.detach().clone() for k, v in state.model.state_dict().items()},
        }
    row[TRAIN_LOG.kept_epoch] = state.best["epoch"] if state.best else state.epoch + 1


# ---------------------------------------------------------------- the run
def train_supernet(
    config: Config,
    out_dir: Path,
    resume: bool = False,
    progress: bool = True,
    stop_after_steps: int | None = None,
) -> Path:
    """Train (or resume) a supernet into ``out_dir``; returns the checkpoint path.

    ``stop_after_steps`` aborts the run mid-epoch (tests use it to simulate a kill).
    """
    cfg = config.supernet
    out_dir = Path(out_dir)
    ckpt_path = out_dir / SUPERNET_CKPT
    if ckpt_path.exists() and not resume:
        raise SalnasError(
            f"{ckpt_path} exists; pass --resume to continue it, or choose a new --out"
        )
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    shard = init_distributed(device)
    state = new_state(config, ckpt_path, resume, device)
    if shard.main:
        remove_stale_tmp(out_dir, min_age_s=0)  # a kill mid-write left them; one writer here
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / CONFIG_YAML, dump_config(config))
        write_json_atomic(
            out_dir / PROVENANCE_JSON,
            provenance(seed=config.seed, stage="supernet", world_size=shard.world),
        )
    data = load_training_data(config, out_dir if shard.main else None, progress and shard.main)
    if shard.world > 1:
        dist.barrier()  # rank 0 has written split.json: the others read it
        data = load_training_data(config, out_dir, False) if not shard.main else data
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
    hook = StepHook(stop_after_steps)
    while state.epoch < cfg.epochs:
        row = train_epoch(state, config, data, shard, device, scaler, hook, progress)
        if shard.main:
            try:
                row.update(validate_epoch(state.model, config, data, device))
            except ValueError as e:  # weights so large that the predictions overflow
                if "NaN or inf" not in str(e):
                    raise
                raise non_finite_loss(state.model, f"supernet epoch {state.epoch + 1} "
                                      "validation", "supernet", cfg.lr,
                                      "the predictions are NaN/inf") from None
            keep_best(state, row, cfg.keep)
            state.history.append({k: float(v) for k, v in row.items()})  # plain: weights_only
        state.epoch += 1
        if shard.main:
            save_checkpoint(ckpt_path, state.payload(config, data))
            write_train_log(out_dir / TRAIN_LOG_CSV, state.history)
            if progress:
                tqdm.write(format_log_row(row))
        if shard.world > 1:
            dist.barrier()
    close_distributed(shard)
    return ckpt_path


def write_train_log(path: Path, history: list[dict[str, Any]]) -> None:
    """``train_log.csv`` from the epoch rows (atomic)."""
    fields = list(dict.fromkeys(k for row in history for k in row))
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)


def format_log_row(row: dict[str, Any]) -> str:
    """One console line per epoch."""
    parts = [
        f"epoch {row['epoch']}",
        f"loss(max) {row['loss_max']:.4f}",
        f"{row['img_per_s']:.1f} img/s",
    ]
    randoms = [v for k, v in row.items() if k.startswith("val_rand") and k.endswith("_CC")]
    for tag in ("max", "min"):
        if TRAIN_LOG.val(tag, "CC") in row:
            parts.append(f"val {tag}: CC {row[TRAIN_LOG.val(tag, 'CC')]:.3f} "
                         f"NSS {row[TRAIN_LOG.val(tag, 'NSS')]:.3f}")
    if randoms:
        parts.append(f"val random (mean of {len(randoms)}): CC {np.mean(randoms):.3f}")
    if TRAIN_LOG.kept_epoch in row:
        parts.append(f"kept epoch {int(row[TRAIN_LOG.kept_epoch])}")
    return " | ".join(parts)
