"""Saliency training losses, built on the metric implementations (one definition each).

Models output logits (B, 1, H, W); a spatial softmax turns them into a density that
sums to 1, which is what every distribution term compares against the ground truth.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from salnas import metrics
from salnas.config import LOSS_TERMS
from salnas.errors import SalnasError

__all__ = ["DEFAULT_WEIGHTS", "LOSS_TERMS", "NonFiniteError", "SaliencyLoss", "logits_to_density",
           "loss_terms", "non_finite_loss"]
DEFAULT_WEIGHTS: dict[str, float] = {"kld": 1.0, "cc": 1.0, "nss": 0.1}


def logits_to_density(logits: torch.Tensor) -> torch.Tensor:
    """Spatial softmax: (B, 1, H, W) or (B, H, W) logits -> (B, H, W) density summing to 1."""
    flat = logits.reshape(logits.shape[0], -1).float()
    return torch.softmax(flat, dim=1).reshape(logits.shape[0], *logits.shape[-2:])


def loss_terms(
    logits: torch.Tensor,
    density: torch.Tensor,
    fixmap: torch.Tensor | None = None,
    terms: tuple[str, ...] = LOSS_TERMS,
) -> dict[str, torch.Tensor]:
    """Each term as a batch mean, oriented so that lower is better: KLD, 1-CC, -NSS, 1-SIM."""
    pred = logits_to_density(logits)
    density = density.reshape(pred.shape).float()
    out: dict[str, torch.Tensor] = {}
    if "kld" in terms:
        out["kld"] = metrics.kld(pred, density).mean()
    if "cc" in terms:
        out["cc"] = 1.0 - metrics.cc(pred, density).mean()
    if "sim" in terms:
        out["sim"] = 1.0 - metrics.sim(pred, density).mean()
    if "nss" in terms:
        if fixmap is None:
            raise ValueError("the NSS loss term needs the fixation map")
        out["nss"] = -metrics.nss(pred, fixmap.reshape(pred.shape)).mean()
    return out


class SaliencyLoss(nn.Module):
    """Weighted sum of KLD, 1-CC, -NSS and 1-SIM terms.

    ``density`` may be any target density (e.g. the Self-KD mixture of ground truth and
    teacher); NSS always uses the real fixations.
    """

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        unknown = set(self.weights) - set(LOSS_TERMS)
        if unknown:
            raise ValueError(f"unknown loss term(s) {sorted(unknown)}; choose from {LOSS_TERMS}")
        self.active = tuple(k for k, w in self.weights.items() if w != 0)

    def forward(
        self, logits: torch.Tensor, density: torch.Tensor, fixmap: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not bool(torch.isfinite(logits).all()):
            raise NonFiniteError("the model's output holds NaN/inf")
        parts = loss_terms(logits, density, fixmap, self.active)
        total = sum(
            (self.weights[k] * v for k, v in parts.items()), torch.zeros((), device=logits.device)
        )
        if not bool(torch.isfinite(total)):
            raise NonFiniteError(f"the training loss is {float(total)}")
        return total, {k: v.detach() for k, v in parts.items()}


class NonFiniteError(SalnasError):
    """NaN or inf met while training (model output or loss); the trainer adds where and why."""


def non_finite_loss(model: nn.Module, where: str, section: str, lr: float, what: str,
                    first_step: bool = False) -> SalnasError:
    """The error that stops a training at the step where ``what`` (the loss, the output, the
    weights) became NaN or inf, naming the cause: starting weights that hold NaN/inf, else a
    learning rate ``section.lr`` that is too high."""
    bad = next((n for n, p in model.named_parameters() if not torch.isfinite(p).all()), None)
    if bad is not None and first_step:
        cause = (f"the starting weights hold NaN/inf (e.g. {bad}): the checkpoint or model it "
                 "started from is damaged")
    else:
        cause = (f"{section}.lr = {lr:g} is too high for this model (lower it, or set "
                 f"{section}.grad_clip)")
    return SalnasError(f"{where}: {what}, so training stopped here: {cause}")
