"""CSNet's learned channel counts end to end: train with dynamic weight decay, prune, fine-tune.

The pipeline of the authors' code (SOD100K, ``CSNet_training``: ``train.py`` with the
``Adam_dynamic_weight_decay`` solver, then ``finetune.py`` on the pruned network). The total
budget is ``distill.epochs``, as for every peer: the last ``distill.csnet_finetune_epochs``
of them (at most all but one) fine-tune the pruned network without the decay, the others train
the full one with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from salnas.config import DistillConfig
from salnas.datasets.training import TrainingData

from .peers import CSNet, DynamicWeightDecay, prune_csnet
from .trainer import Teacher, TrainResult, train_standalone

__all__ = ["train_pruned_csnet"]


def train_pruned_csnet(
    model: CSNet,
    resolution: Sequence[int],
    data: TrainingData,
    cfg: DistillConfig,
    *,
    seed: int,
    kd: bool,
    strength: float | None = None,
    teacher: Teacher | None = None,
    device: torch.device | None = None,
    progress: bool = True,
    desc: str = "csnet-dwd",
) -> TrainResult:
    """Train ``model`` with dynamic weight decay (``strength``, default ``distill.csnet_dwd``),
    prune it (``distill.csnet_prune``) and fine-tune the smaller network, within
    ``distill.epochs`` in all; the arm's Self-KD or teacher applies to both phases.

    The result holds the pruned network (eval mode), the history of both phases (a ``phase``
    column, epochs numbered on), the best epoch and val scores of the last phase, the Self-KD
    teacher of the decayed phase (the fine-tuning's starts again on the smaller network), the
    seconds of both, and ``extra["params_unpruned"]``."""
    strength = cfg.csnet_dwd if strength is None else strength
    tune = min(cfg.csnet_finetune_epochs, cfg.epochs - 1)  # the decay needs an epoch
    decayed = train_standalone(
        model, resolution, data, cfg.model_copy(update={"epochs": cfg.epochs - tune}),
        seed=seed, kd=kd, pretrained=False, device=device, progress=progress,
        desc=f"{desc} (decay)", teacher=teacher,
        regulariser=lambda m, opt: DynamicWeightDecay(m, strength, opt, cfg.csnet_dwd_lr_scale))
    unpruned = sum(p.numel() for p in decayed.model.parameters())
    pruned = prune_csnet(decayed.model.cpu().eval(), cfg.csnet_prune)  # type: ignore[arg-type]
    history = [{**row, "phase": "decay"} for row in decayed.history]
    best_epoch, best_val, seconds = decayed.best_epoch, decayed.best_val, decayed.seconds
    if tune:
        tuned = train_standalone(
            pruned, resolution, data, cfg.model_copy(update={"epochs": tune, "kfold": 0}),
            seed=seed, kd=kd, pretrained=False, device=device, progress=progress,
            desc=f"{desc} (fine-tune)", teacher=teacher)
        offset = len(history)
        history += [{**row, "epoch": row["epoch"] + offset, "phase": "finetune"}
                    for row in tuned.history]
        pruned = tuned.model  # type: ignore[assignment]
        best_epoch, best_val = offset + tuned.best_epoch, tuned.best_val
        seconds += tuned.seconds
    pruned = pruned.cpu().eval()
    return TrainResult(pruned, history, best_epoch, best_val, decayed.teacher, seconds,
                       {**decayed.extra, "finetune_epochs": tune, "params_unpruned": unpruned})
