"""Batch-norm recalibration for subnets (stats of the shared supernet do not fit a subnet)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["recalibrate_bn"]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Tensor]) -> nn.Module:
    """Re-estimate every BN's running stats as the exact average over ``batches``.

    Stats are reset, momentum set to None (cumulative average), the batches are forwarded in
    train mode without gradients, momenta are restored and the model is left in eval mode.
    Meant for an extracted subnet (on a supernet it would overwrite the shared stats).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    try:
        for x in batches:
            model(x)
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        model.eval()
    return model
