"""Latency backends: run a network, or one part of it, the way it is deployed, for timing.

``search.latency.backend`` chooses one:

* ``torch``: eager PyTorch (``torch.inference_mode``);
* ``torchscript``: the traced and frozen module;
* ``onnxruntime``: the ONNX export in onnxruntime's CPU execution provider with a fixed
  number of intra-op threads and sequential execution.

Eager PyTorch at batch 1 is dominated by per-operator overhead for small models, so its
order of models can differ from the runtime a hardware team ships; time in that runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from salnas.errors import SalnasError
from salnas.supernet.export import (
    example_input,
    export_ready,
    module_onnx_bytes,
    onnx_session,
    quiet_export,
)

__all__ = ["BACKENDS", "check_backend", "compile_for_timing", "compile_module"]

BACKENDS = ("torch", "torchscript", "onnxruntime")


def check_backend(backend: str, device: str | torch.device = "cpu") -> None:
    """Refuse an unknown backend, or onnxruntime on a GPU (it times the CPU provider)."""
    if backend not in BACKENDS:
        raise SalnasError(f"latency backend must be one of {', '.join(BACKENDS)}, "
                          f"got {backend!r}")
    if backend == "onnxruntime" and torch.device(device).type != "cpu":
        raise SalnasError("the onnxruntime latency backend times the CPU execution provider; "
                          "use device cpu or another backend")


def compile_module(module: nn.Module, inputs: tuple[torch.Tensor, ...], backend: str,
                   threads: int = 1) -> Callable[[], object]:
    """A zero-argument callable that runs ``module`` once on ``inputs`` in ``backend`` (the
    callable holds the converted module and its inputs; shapes are those of ``inputs``)."""
    check_backend(backend, inputs[0].device)
    module = module.eval()
    if backend == "onnxruntime":
        session = onnx_session(module_onnx_bytes(module, inputs), threads)
        used = {i.name for i in session.get_inputs()}  # the exporter drops unused inputs
        feed = {f"in{i}": x.detach().cpu().numpy() for i, x in enumerate(inputs)
                if f"in{i}" in used}
        return partial(session.run, None, feed)
    if backend == "torchscript":
        with quiet_export(), torch.no_grad(), export_ready(module):
            traced = torch.jit.trace(module, inputs, check_trace=False)
            frozen = torch.jit.freeze(traced)
        return partial(frozen, *inputs)
    return partial(module, *inputs)


def compile_for_timing(model: nn.Module, resolution: tuple[int, int], backend: str,
                       threads: int = 1, device: str | torch.device = "cpu"
                       ) -> Callable[[], object]:
    """:func:`compile_module` of a whole network on one (1, 3, H, W) image."""
    check_backend(backend, device)
    x = example_input((int(resolution[0]), int(resolution[1]))).to(device)
    return compile_module(model.to(device), (x,), backend, threads)
