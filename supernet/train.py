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

import contextlib
import csv
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from salnas import metrics
from salnas.config import Config, dump_config
from salnas.datasets import (
    PreparedDataset,
    SaliencyDataset,
    load_split,
    open_source,
    prepare,
    resolve_split,
    save_split,
)
from salnas.errors import ConfigError, SalnasError
from salnas.io import (
    atomic_open,
    load_torch_safe,
    provenance,
    save_torch_atomic,
    write_json_atomic,
    write_text_atomic,
)
from salnas.losses import SaliencyLoss, logits_to_density
from salnas.supernet.bn import recalibrate_bn
from salnas.supernet.model import Supernet
from salnas.supernet.space import Genome, SearchSpace

CHECKPOINT_FORMAT = "salnas-supernet-v1"
VAL_METRICS = ("CC", "KLD", "NSS", "SIM", "AUC_Judd")
KEPT_EPOCH = "kept_epoch"  # train_log.csv: the epoch whose weights load_supernet returns


# ---------------------------------------------------------------- distributed helpers
@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join a ``torchrun`` process group when one is set up in the environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def _average_gradients(params: Sequence[nn.Parameter], world: int) -> None:
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


# ---------------------------------------------------------------- data
@dataclass
class TrainingData:
    prepared: PreparedDataset
    split: dict[str, list[str]]
    train: SaliencyDataset
    val: SaliencyDataset


def load_training_data(config: Config, out_dir: Path | None, progress: bool = True) -> TrainingData:
    """Open, check and cache the dataset; reuse the run's split.json when there is one."""
    source = open_source(config.data.spec)
    prepared = prepare(
        source,
        config.data.resolution,
        config.data.sigma_px,
        Path(config.data.cache_dir) if config.data.cache_dir else None,
        progress,
    )
    split_path = out_dir / "split.json" if out_dir is not None else None
    if split_path is not None and split_path.is_file():
        split = load_split(split_path, prepared.stems)
    else:
        split = resolve_split(
            prepared.stems,
            source.default_split,
            None,
            config.data.split_seed,
            config.data.val,
            config.data.test,
        )
        if split_path is not None:
            save_split(
                split_path,
                split,
                data=source.spec,
                seed=config.data.split_seed,
                fingerprint=source.fingerprint(),
            )
    val_stems = (
        split["val"][: config.supernet.val_images] if config.supernet.val_images else split["val"]
    )
    return TrainingData(
        prepared,
        split,
        SaliencyDataset(prepared, split["train"], hflip=config.data.hflip, seed=config.seed),
        SaliencyDataset(prepared, val_stems),
    )


def _batches(
    dataset: SaliencyDataset,
    batch_size: int,
    seed: int,
    epoch: int,
    shard: Dist,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    dataset.set_epoch(epoch)
    order = (
        np.random.default_rng([seed, epoch, 7]).permutation(len(dataset))
        if shuffle
        else np.arange(len(dataset))
    )
    per_step = batch_size * shard.world
    n_steps = len(order) // per_step if drop_last else math.ceil(len(order) / per_step)
    for step in range(n_steps):
        chunk = order[step * per_step : (step + 1) * per_step][shard.rank :: shard.world]
        if len(chunk) == 0:
            continue
        items = [dataset[int(i)] for i in chunk]
        yield {k: torch.stack([it[k] for it in items]) for k in items[0]}


# ---------------------------------------------------------------- forward at a genome's resolution
def forward_at(model: nn.Module, images: torch.Tensor, resolution: Sequence[int]) -> torch.Tensor:
    """Logits at the data resolution for a subnet that runs at ``resolution``."""
    size = images.shape[-2:]
    x = (
        images
        if tuple(resolution) == tuple(size)
        else F.interpolate(
            images, size=tuple(resolution), mode="bilinear", align_corners=False, antialias=True
        )
    )
    logits = model(x)
    if logits.shape[-2:] != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return logits


def _resized_batches(
    data: SaliencyDataset,
    resolution: Sequence[int],
    n_batches: int,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> list[torch.Tensor]:
    out = []
    for i, batch in enumerate(_batches(data, batch_size, seed, 0, Dist(), shuffle=True)):
        if i >= n_batches:
            break
        img = batch["image"].to(device)
        if tuple(resolution) != tuple(img.shape[-2:]):
            img = F.interpolate(
                img, size=tuple(resolution), mode="bilinear", align_corners=False, antialias=True
            )
        out.append(img)
    return out


def calibrated_subnet(
    model: Supernet,
    genome: Genome,
    data: SaliencyDataset,
    n_batches: int,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> nn.Module:
    """Standalone copy of ``genome`` with BatchNorm statistics re-estimated on training batches.

    The supernet's shared statistics are left untouched.
    """
    net = model.extract(genome).to(device)
    return recalibrate_bn(
        net, _resized_batches(data, genome.resolution, n_batches, batch_size, seed, device)
    )


@torch.no_grad()
def validate(
    model: nn.Module,
    resolution: Sequence[int],
    data: SaliencyDataset,
    batch_size: int,
    device: torch.device,
) -> dict[str, float]:
    """Mean val metrics at the data resolution of ``model`` run at ``resolution`` (eval mode,
    BN statistics as they stand)."""
    model.eval()
    sums: dict[str, float] = dict.fromkeys(VAL_METRICS, 0.0)
    n = 0
    generator = torch.Generator().manual_seed(0)
    for batch in _batches(data, batch_size, 0, 0, Dist(), shuffle=False, drop_last=False):
        logits = forward_at(model, batch["image"].to(device), resolution)
        pred = logits_to_density(logits).cpu()
        scores = metrics.compute_metrics(
            pred,
            batch["density"][:, 0],
            batch["fixmap"][:, 0],
            names=VAL_METRICS,
            generator=generator,
        )
        for k in VAL_METRICS:
            sums[k] += float(scores[k].sum())
        n += pred.shape[0]
    return {k: v / max(n, 1) for k, v in sums.items()}


# ---------------------------------------------------------------- sampling
PROGRESSIVE_PHASES = (
    ("resolution", "kernel"),
    ("resolution", "kernel", "depth"),
    ("resolution", "kernel", "depth", "expand", "decoder"),
)


def sample_subnets(
    space: SearchSpace,
    n_random: int,
    seed: int,
    epoch: int,
    step: int,
    elastic_groups: tuple[str, ...] | None,
) -> list[Genome]:
    """The sandwich: max, min and ``n_random`` random subnets for one step.

    With progressive shrinking only the gene groups in ``elastic_groups`` vary; the others
    stay at their maximum (and the min subnet is the smallest within those groups).
    """
    rng = np.random.default_rng([seed, epoch, step])
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


# ---------------------------------------------------------------- optimisation
def _param_groups(model: Supernet, cfg: Any) -> list[dict[str, Any]]:
    """Weight decay only on conv/linear weights; the pretrained encoder at a lower lr."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim > 1
        encoder = name.startswith("encoder.")
        groups.setdefault((encoder, decay), []).append(p)
    out = []
    for (encoder, decay), params in sorted(groups.items()):
        scale = cfg.encoder_lr_scale if (encoder and cfg.pretrained) else 1.0
        out.append(
            {
                "params": params,
                "lr": cfg.lr * scale,
                "lr_scale": scale,
                "weight_decay": cfg.weight_decay if decay else 0.0,
            }
        )
    return out


def lr_factor(epoch: int, cfg: Any) -> float:
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "constant":
        return 1.0
    span = max(cfg.epochs - cfg.warmup_epochs, 1)
    return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))


def temperature_at(epoch: int, cfg: Any) -> float:
    """Dynamic-conv temperature, annealed linearly from the first to the last epoch."""
    start, end = cfg.temperature
    return start + (end - start) * (epoch / max(cfg.epochs - 1, 1))


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("supernet.device is 'cuda' but no CUDA device is available; use 'auto'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ---------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a supernet checkpoint atomically (the counterpart of :func:`load_checkpoint`)."""
    save_torch_atomic(path, payload)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a supernet checkpoint safely (``weights_only``), with a clear error."""
    return load_torch_safe(
        path,
        "supernet checkpoint",
        (CHECKPOINT_FORMAT,),
        missing_hint="train one with `salnas supernet train`",
    )


def build_supernet(config: Config, pretrained: bool | None = None) -> Supernet:
    space = SearchSpace(config.supernet.space or None)
    res = np.asarray(space.to_config()["resolutions"])
    if (res > np.asarray(config.data.resolution)).any():
        raise ConfigError(
            f"supernet.space resolutions {res.tolist()} exceed data.resolution "
            f"{list(config.data.resolution)}: the data are cached at data.resolution, so every "
            "searched resolution must be at most that"
        )
    return Supernet(
        space, pretrained=config.supernet.pretrained if pretrained is None else pretrained
    )


def load_supernet(
    path: Path, weights: str | None = None
) -> tuple[Supernet, Config, dict[str, Any]]:
    """The trained supernet of a checkpoint, its config, and the checkpoint itself.

    ``weights`` is ``"best"`` (the epoch with the best val CC) or ``"last"``; by default the
    one the run's ``supernet.keep`` names. Checkpoints without a best epoch give the last.
    """
    from salnas.config import config_from_dict

    ckpt = load_checkpoint(path)
    config = config_from_dict(ckpt["config"], f"{path} (embedded config)")
    weights = weights or config.supernet.keep
    if weights not in ("best", "last"):
        raise SalnasError(f"supernet weights must be 'best' or 'last', not {weights!r}")
    model = build_supernet(config, pretrained=False)
    best = ckpt.get("best")
    model.load_state_dict(best["model"] if weights == "best" and best else ckpt["model"])
    return model, config, ckpt


def selection_score(row: dict[str, Any]) -> float:
    """What ``supernet.keep: best`` maximises: val CC averaged over the max and min subnets,
    so the kept weights serve the whole space rather than the max subnet alone."""
    return float(np.mean([row["val_max_CC"], row["val_min_CC"]]))


# ---------------------------------------------------------------- the training loop
LOG_FIELDS = (
    "epoch",
    "lr",
    "temperature",
    "loss_max",
    "loss_min",
    "loss_random",
    "img_per_s",
    "seconds",
)


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
    ckpt_path = out_dir / "supernet.pt"
    if ckpt_path.exists() and not resume:
        raise SalnasError(
            f"{ckpt_path} exists; pass --resume to continue it, or choose a new --out"
        )
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    shard = init_distributed(device)
    torch.manual_seed(config.seed)
    model = build_supernet(config).to(device)
    space = model.space
    params = [p for p in model.parameters() if p.requires_grad]
    groups = _param_groups(model, cfg)
    optimiser: torch.optim.Optimizer = (
        torch.optim.AdamW(groups, lr=cfg.lr)
        if cfg.optimizer == "adamw"
        else torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    )
    start_epoch, history = 0, []
    best: dict[str, Any] | None = None
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        saved = {k: v for k, v in ckpt["config"].items() if k != "supernet"}
        now = {k: v for k, v in config.model_dump(mode="json").items() if k != "supernet"}
        if saved != now or {**ckpt["config"]["supernet"], "epochs": 0} != {
            **config.model_dump(mode="json")["supernet"],
            "epochs": 0,
        }:
            raise SalnasError(
                f"{ckpt_path} was trained with another config; resume with the same "
                "--config and --data (only supernet.epochs may grow)"
            )
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimizer"])
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
        best = ckpt.get("best")
    if shard.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / "config.yaml", dump_config(config))
        write_json_atomic(
            out_dir / "run.json",
            provenance(seed=config.seed, stage="supernet", world_size=shard.world),
        )
    data = load_training_data(config, out_dir if shard.main else None, progress and shard.main)
    if shard.world > 1:
        dist.barrier()
        data = load_training_data(config, out_dir, False) if not shard.main else data
    loss_fn = SaliencyLoss(cfg.loss)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    steps_done = 0

    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(config.seed * 100_003 + epoch)
        factor = lr_factor(epoch, cfg)
        for g in optimiser.param_groups:
            g["lr"] = cfg.lr * g["lr_scale"] * factor
        temperature = temperature_at(epoch, cfg)
        model.set_temperature(temperature)
        phase = None
        if cfg.progressive:
            phase = PROGRESSIVE_PHASES[
                min(epoch * len(PROGRESSIVE_PHASES) // cfg.epochs, len(PROGRESSIVE_PHASES) - 1)
            ]
        model.train()
        sums, count, seen, t0 = np.zeros(3), 0, 0, time.perf_counter()
        n_steps = len(data.train) // (cfg.batch_size * shard.world)
        if n_steps == 0:
            raise ConfigError(
                f"the training split ({len(data.train)} images) is smaller than one "
                f"batch ({cfg.batch_size} x {shard.world} processes); lower "
                "supernet.batch_size"
            )
        bar = tqdm(
            _batches(data.train, cfg.batch_size, config.seed, epoch, shard),
            total=n_steps,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not (progress and shard.main),
        )
        for step, batch in enumerate(bar):
            images = batch["image"].to(device)
            density, fixmap = batch["density"].to(device), batch["fixmap"].to(device)
            optimiser.zero_grad(set_to_none=True)
            teacher = None
            step_losses = []
            for k, genome in enumerate(
                sample_subnets(space, cfg.n_random, config.seed, epoch, step, phase)
            ):
                model.set_active(genome)
                with torch.autocast(device.type, enabled=use_amp):
                    logits = forward_at(model, images, genome.resolution)
                loss, _ = loss_fn(logits.float(), density, fixmap)
                if k == 0:
                    teacher = logits_to_density(logits.detach().float())
                elif cfg.inplace_distill and cfg.distill_weight > 0:
                    loss = (
                        loss
                        + cfg.distill_weight
                        * metrics.kld(logits_to_density(logits.float()), teacher).mean()
                    )
                scaler.scale(loss).backward()
                step_losses.append(float(loss.detach()))
            if shard.world > 1:
                _average_gradients(params, shard.world)
            if cfg.grad_clip:
                scaler.unscale_(optimiser)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(optimiser)
            scaler.update()
            sums += [
                step_losses[0],
                step_losses[1],
                np.mean(step_losses[2:]) if cfg.n_random else 0,
            ]
            count += 1
            seen += images.shape[0] * shard.world
            rate = seen / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{step_losses[0]:.3f}", img_s=f"{rate:.1f}")
            steps_done += 1
            if stop_after_steps is not None and steps_done >= stop_after_steps:
                raise KeyboardInterrupt(f"stopped after {steps_done} steps (test hook)")
        seconds = time.perf_counter() - t0
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": cfg.lr * factor,
            "temperature": temperature,
            "loss_max": sums[0] / count,
            "loss_min": sums[1] / count,
            "loss_random": sums[2] / count,
            "img_per_s": seen / seconds,
            "seconds": seconds,
        }
        if shard.main:
            for tag, genome in (("max", space.max_genome()), ("min", space.min_genome())):
                net = calibrated_subnet(
                    model,
                    genome,
                    data.train,
                    cfg.bn_recalib_batches,
                    cfg.batch_size,
                    config.seed,
                    device,
                )
                for k, v in validate(
                    net, genome.resolution, data.val, cfg.batch_size, device
                ).items():
                    row[f"val_{tag}_{k}"] = v
            row["score"] = selection_score(row)
            if cfg.keep == "best" and (best is None or row["score"] > best["score"]):
                best = {
                    "epoch": epoch + 1,
                    "score": row["score"],
                    "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                }
            row[KEPT_EPOCH] = best["epoch"] if best else epoch + 1
            history.append({k: float(v) for k, v in row.items()})  # plain floats: weights_only
            save_checkpoint(
                ckpt_path,
                {
                    "format": CHECKPOINT_FORMAT,
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimiser.state_dict(),
                    "config": config.model_dump(mode="json"),
                    "space": space.to_config(),
                    "history": history,
                    "best": best,
                    "data": {
                        "spec": data.prepared.source.spec,
                        "resolution": list(config.data.resolution),
                        "fingerprint": data.prepared.source.fingerprint(),
                    },
                },
            )
            _write_log(out_dir / "train_log.csv", history)
            if progress:
                tqdm.write(_format_row(row))
        if shard.world > 1:
            dist.barrier()
    with contextlib.suppress(Exception):
        if shard.world > 1:
            dist.destroy_process_group()
    return ckpt_path


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    fields = list(dict.fromkeys(k for row in history for k in row))
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)


def _format_row(row: dict[str, Any]) -> str:
    parts = [
        f"epoch {row['epoch']}",
        f"loss(max) {row['loss_max']:.4f}",
        f"{row['img_per_s']:.1f} img/s",
    ]
    for tag in ("max", "min"):
        if f"val_{tag}_CC" in row:
            parts.append(
                f"val {tag}: CC {row[f'val_{tag}_CC']:.3f} NSS {row[f'val_{tag}_NSS']:.3f}"
            )
    if KEPT_EPOCH in row:
        parts.append(f"kept epoch {int(row[KEPT_EPOCH])}")
    return " | ".join(parts)
