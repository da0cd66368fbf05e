"""Parameter and FLOP counts of (extracted) models with fvcore.

fvcore counts one fused multiply-add as one flop, so "FLOPs" here are MACs, as in most NAS
papers (EfficientNet-Lite0 at 224x224: about 0.39 G). Counted: convolutions, linear layers,
matmuls (the dynamic conv's kernel aggregation ``pi @ W``), bilinear upsampling (4 per output
element) and global average pooling (1 per input element). Batch norm (folded into the conv at
inference) and element-wise ops (activations, residual adds, input normalisation, padding,
softmax) count as 0. A dynamic conv traced with batch 1 is one ordinary conv
(``Cout * Cin * k^2`` per output pixel) plus ``K * Cout * Cin * k^2`` to mix its K kernels and
its small attention MLP.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

with warnings.catch_warnings():  # fvcore scripts a helper at import; torch 2.13 deprecates jit
    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import elementwise_flop_counter

__all__ = ["ZERO_FLOP_OPS", "count_params_flops", "flop_analysis"]

ZERO_FLOP_OPS = (
    "aten::batch_norm", "aten::add", "aten::add_", "aten::sub", "aten::rsub", "aten::mul",
    "aten::div", "aten::relu", "aten::relu_", "aten::relu6", "aten::hardtanh",
    "aten::hardtanh_", "aten::pad", "aten::softmax", "aten::sigmoid",
)


def flop_analysis(model: nn.Module, resolution: tuple[int, int]) -> FlopCountAnalysis:
    """fvcore analysis of ``model`` on one (1, 3, H, W) input, with this module's op handles."""
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, *resolution, device=device)
    analysis = FlopCountAnalysis(model, x)
    analysis.set_op_handle(**dict.fromkeys(ZERO_FLOP_OPS))
    analysis.set_op_handle("aten::mean", elementwise_flop_counter(1, 0))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis


def count_params_flops(model: nn.Module, resolution: tuple[int, int]) -> tuple[int, int]:
    """(number of parameters, FLOPs = multiply-adds) of ``model`` for one image of size
    ``resolution`` = (H, W), evaluated in eval mode (the mode is restored).

    Warns with the op names if the trace meets an op that has no handle (it would count 0).
    """
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = flop_analysis(model, (int(resolution[0]), int(resolution[1])))
            flops = int(analysis.total())
            unsupported = analysis.unsupported_ops()
    finally:
        model.train(training)
    if unsupported:
        warnings.warn(f"fvcore has no flop handle for {dict(unsupported)}; counted as 0",
                      stacklevel=2)
    return sum(p.numel() for p in model.parameters()), flops
