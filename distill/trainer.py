"""Train one standalone saliency model on the train split, with or without Self-KD.

Self-KD (SalNAS): the teacher is the *same architecture* whose weights are the equal-weight
running average of the student's weights at the epochs where the validation score improved
(the "best weights chosen by cross-validation"). The teacher runs in eval mode under
``torch.no_grad()``: it receives no gradient and its BatchNorm statistics never move. The
training target of the distribution terms (KLD, CC, SIM) is
``alpha * ground_truth + (1 - alpha) * teacher`` on sum-to-1 densities; NSS always scores the
real fixations. Until the first improving epoch there is no teacher and the target is the
ground truth, so both arms see the same first epoch.

K-fold option (``kfold = K >= 2``): "improved" for the teacher is decided on held-out data
the deciding models never trained on. The train split is cut into K folds; K fold students
(each trained on K-1 folds, with its own Self-KD teacher) train in lockstep with the main
student, and an epoch improves when the mean over the K fold students of their held-out fold
score improves. Every teacher (main and fold ones) then adds its student's snapshot. The val
split is left to model selection only. This costs K extra trainings; the energy columns show it.

Model selection: the returned model is the student at its best val epoch (both arms).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from salnas.config import DistillConfig
from salnas.datasets.batches import iterate_batches
from salnas.datasets.prepare import SaliencyDataset
from salnas.datasets.training import TrainingData
from salnas.errors import ConfigError
from salnas.losses import NonFiniteError, SaliencyLoss, logits_to_density, non_finite_loss
from salnas.metrics import HIGHER_IS_BETTER
from salnas.supernet.evaluate import forward_at, validate
from salnas.supernet.optim import lr_factor, make_optimizer, set_lr

__all__ = [
    "Learner",
    "Regulariser",
    "SelfKDTeacher",
    "Teacher",
    "TrainResult",
    "alpha_at",
    "kfold_stems",
    "mix_target",
    "train_standalone",
    "validate",
]


def alpha_at(epoch: int, cfg: DistillConfig) -> float:
    """Ground-truth weight of the target at ``epoch`` (constant, or linear start -> end)."""
    if cfg.alpha_schedule is None:
        return cfg.alpha
    start, end = cfg.alpha_schedule
    return start + (end - start) * epoch / max(cfg.epochs - 1, 1)


def mix_target(ground_truth: torch.Tensor, teacher: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * ground_truth + (1 - alpha) * teacher``, both first normalised to sum 1 per map.

    Shapes (B, H, W) or (B, 1, H, W); the result has the shape of ``ground_truth``.
    """
    gt = ground_truth.float()
    flat_gt = gt.reshape(gt.shape[0], -1)
    flat_t = teacher.float().reshape(gt.shape[0], -1)
    if flat_t.shape != flat_gt.shape:
        raise ValueError(
            f"teacher {tuple(teacher.shape)} and ground truth "
            f"{tuple(ground_truth.shape)} maps differ in size"
        )
    flat_gt = flat_gt / flat_gt.sum(1, keepdim=True).clamp_min(1e-30)
    flat_t = flat_t / flat_t.sum(1, keepdim=True).clamp_min(1e-30)
    if alpha == 1.0:  # exact: no rounding from a zero-weighted term
        return flat_gt.reshape(gt.shape)
    if alpha == 0.0:
        return flat_t.reshape(gt.shape)
    return (alpha * flat_gt + (1.0 - alpha) * flat_t).reshape(gt.shape)


class SelfKDTeacher:
    """Equal-weight running average of student snapshots, used frozen in eval mode."""

    def __init__(self, student: nn.Module) -> None:
        self.model = copy.deepcopy(student).eval()
        self.model.requires_grad_(False)
        self.snapshots = 0
        self.epochs: list[int] = []

    @property
    def ready(self) -> bool:
        return self.snapshots > 0

    @torch.no_grad()
    def update(self, student: nn.Module, epoch: int | None = None) -> None:
        """Add the student's current weights: ``avg += (w - avg) / n`` (float tensors,
        BN running statistics included); integer buffers take the latest value."""
        n = self.snapshots + 1
        mine = self.model.state_dict()
        for key, value in student.state_dict().items():
            if n == 1 or not torch.is_floating_point(value):
                mine[key].copy_(value)
            else:
                mine[key].add_(value.to(mine[key].dtype) - mine[key], alpha=1.0 / n)
        self.snapshots = n
        if epoch is not None:
            self.epochs.append(epoch)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, resolution: Sequence[int]) -> torch.Tensor:
        """(B, H, W) density at the images' size; eval mode, no graph."""
        self.model.eval()  # a caller's .train() on a parent module must not reach BN here
        return logits_to_density(forward_at(self.model, images, resolution))

    def target(self, batch: dict[str, torch.Tensor], images: torch.Tensor,
               resolution: Sequence[int]) -> torch.Tensor:
        """The teacher's density of ``images`` (the :class:`Teacher` interface)."""
        return self.predict(images, resolution)


class Teacher(Protocol):
    """What a student learns from besides the ground truth: Self-KD's average of the student
    (:class:`SelfKDTeacher`) or a frozen model (:class:`~salnas.distill.teacher.CachedTeacher`)."""

    @property
    def ready(self) -> bool: ...

    def target(self, batch: dict[str, torch.Tensor], images: torch.Tensor,
               resolution: Sequence[int]) -> torch.Tensor: ...


class Regulariser(Protocol):
    """A training-time term added to each step's loss (built once per student, with its
    optimiser, before the first step)."""

    def penalty(self) -> torch.Tensor: ...

    def remove(self) -> None: ...


@dataclass
class Learner:
    """One model in training: the student, its optimiser, its teacher and its data."""

    model: nn.Module
    optimiser: torch.optim.Optimizer
    train: SaliencyDataset
    teacher: Teacher | None
    holdout: SaliencyDataset | None = None  # K-fold students only
    penalty: Callable[[], torch.Tensor] | None = None  # e.g. dynamic weight decay


@dataclass
class TrainResult:
    model: nn.Module  # the student at its best val epoch, eval mode
    history: list[dict[str, Any]]
    best_epoch: int
    best_val: dict[str, float]
    teacher: SelfKDTeacher | None  # the Self-KD teacher (None for the other arms)
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def _better(new: float, best: float, metric: str) -> bool:
    if math.isnan(new):
        return False
    if math.isnan(best):
        return True
    return new > best if HIGHER_IS_BETTER[metric] else new < best


def kfold_stems(stems: Sequence[str], k: int, seed: int) -> list[list[str]]:
    """The train stems cut into ``k`` seeded folds of near-equal size."""
    order = np.random.default_rng([seed, 11]).permutation(len(stems))
    return [[stems[i] for i in part] for part in np.array_split(order, k)]


def train_step(
    learner: Learner,
    batch: dict[str, torch.Tensor],
    resolution: Sequence[int],
    loss_fn: SaliencyLoss,
    alpha: float,
    grad_clip: float | None,
    device: torch.device,
) -> float:
    """One optimiser step of ``learner`` (Self-KD target when its teacher is ready)."""
    images = batch["image"].to(device)
    density, fixmap = batch["density"].to(device), batch["fixmap"].to(device)
    if learner.teacher is not None and learner.teacher.ready:
        guess = learner.teacher.target(batch, images, resolution).to(device)
        density = mix_target(density, guess, alpha)
    learner.model.train()
    learner.optimiser.zero_grad(set_to_none=True)
    try:  # a NaN/inf stops training at this step, before the optimiser applies it
        loss, _ = loss_fn(forward_at(learner.model, images, resolution), density, fixmap)
    except NonFiniteError as e:
        raise non_finite_loss(learner.model, "distill training step", "distill",
                              learner.optimiser.param_groups[0]["lr"], str(e),
                              first_step=not learner.optimiser.state) from None
    if learner.penalty is not None:
        (loss + learner.penalty()).backward()  # the logged loss stays the task's
    else:
        loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(learner.model.parameters(), grad_clip)
    learner.optimiser.step()
    return float(loss.detach())


def train_standalone(
    model: nn.Module,
    resolution: Sequence[int],
    data: TrainingData,
    cfg: DistillConfig,
    *,
    seed: int,
    kd: bool,
    pretrained: bool = True,
    device: torch.device | None = None,
    progress: bool = True,
    desc: str = "train",
    regulariser: Callable[[nn.Module, torch.optim.Optimizer], Regulariser] | None = None,
    teacher: Teacher | None = None,
) -> TrainResult:
    """Train ``model`` (modified in place) for ``cfg.epochs``; Self-KD when ``kd``, KD from
    the frozen ``teacher`` when one is given (not both).

    ``pretrained`` says whether the encoder starts from learned weights (it then learns at
    ``cfg.encoder_lr_scale`` times the lr). The data's train stems are ``data.split['train']``.
    """
    if kd and teacher is not None:
        raise ValueError("train_standalone: Self-KD (kd) and a fixed teacher exclude each other")
    device = device or torch.device("cpu")
    resolution = tuple(resolution)
    train_stems = list(data.split["train"])
    bs = cfg.batch_size
    if len(train_stems) < bs:
        raise ConfigError(
            f"the training split ({len(train_stems)} images) is smaller than one "
            f"batch; lower distill.batch_size ({bs})"
        )
    hflip = data.train.hflip
    torch.manual_seed(seed)
    model = model.to(device)
    start = copy.deepcopy(model.state_dict())  # fold students start where the main one does

    def learner(stems: list[str], holdout: list[str] | None) -> Learner:
        net = model if holdout is None else copy.deepcopy(model)
        net.load_state_dict(start)
        return Learner(
            net,
            make_optimizer(net, cfg, pretrained=pretrained),
            SaliencyDataset(data.prepared, stems, hflip=hflip, seed=seed),
            SelfKDTeacher(net) if kd else teacher,
            None if holdout is None else SaliencyDataset(data.prepared, holdout),
        )

    main = learner(train_stems, None)
    learners = [main]
    if kd and cfg.kfold:
        folds = kfold_stems(train_stems, cfg.kfold, seed)
        if min(len(f) for f in folds) < 1 or len(train_stems) - max(map(len, folds)) < bs:
            raise ConfigError(
                f"distill.kfold {cfg.kfold}: the training split "
                f"({len(train_stems)} images) is too small for K folds of "
                f"batches of {bs}"
            )
        for k, fold in enumerate(folds):
            rest = [s for j, f in enumerate(folds) if j != k for s in f]
            learners.append(learner(rest, fold))
    # Regularisers hook into the students only once every copy (fold students, teachers) exists.
    regularisers = ([regulariser(lrn.model, lrn.optimiser) for lrn in learners]
                    if regulariser else [])
    for lrn, reg in zip(learners, regularisers, strict=False):
        lrn.penalty = reg.penalty
    loss_fn = SaliencyLoss(cfg.loss)
    metric = cfg.monitor
    best, best_cv, best_epoch = math.nan, math.nan, 0
    best_state = copy.deepcopy(main.model.state_dict())
    best_val: dict[str, float] = {}
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc=desc, disable=not progress, leave=False, unit="epoch")
    for epoch in bar:
        torch.manual_seed(seed * 100_003 + epoch)
        factor = lr_factor(epoch, cfg)
        alpha = alpha_at(epoch, cfg)
        losses = []
        for i, lrn in enumerate(learners):
            set_lr(lrn.optimiser, cfg.lr, factor)
            step_losses = [
                train_step(lrn, batch, resolution, loss_fn, alpha, cfg.grad_clip, device)
                for batch in iterate_batches(lrn.train, bs, seed, epoch)
            ]
            if i == 0:
                losses = step_losses
        val = validate(main.model, resolution, data.val, bs, device)
        improved = _better(val[metric], best, metric)
        if improved:
            best, best_epoch, best_val = val[metric], epoch + 1, val
            best_state = copy.deepcopy(main.model.state_dict())
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": cfg.lr * factor,
            "alpha": alpha if kd else 1.0,
            "loss": float(np.mean(losses)) if losses else math.nan,
            **{f"val_{k}": v for k, v in val.items()},
            "improved": improved,
        }
        teacher_improved = improved
        if len(learners) > 1:
            held_out = [(lrn.model, lrn.holdout) for lrn in learners[1:] if lrn.holdout]
            cv = float(
                np.mean([validate(m, resolution, d, bs, device)[metric] for m, d in held_out])
            )
            teacher_improved = _better(cv, best_cv, metric)
            if teacher_improved:
                best_cv = cv
            row[f"cv_{metric}"] = cv
        if kd and teacher_improved:
            for lrn in learners:
                if isinstance(lrn.teacher, SelfKDTeacher):
                    lrn.teacher.update(lrn.model, epoch + 1)
        self_kd = main.teacher if isinstance(main.teacher, SelfKDTeacher) else None
        row["teacher_snapshots"] = self_kd.snapshots if self_kd else 0
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", **{f"val_{metric}": f"{val[metric]:.3f}"})
    for reg in regularisers:
        reg.remove()
    main.model.load_state_dict(best_state)
    return TrainResult(
        main.model.eval(),
        history,
        best_epoch,
        best_val,
        main.teacher if isinstance(main.teacher, SelfKDTeacher) else None,
        time.perf_counter() - t0,
        {"fold_students": len(learners) - 1},
    )
