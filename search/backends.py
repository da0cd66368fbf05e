"""Latency backends: run a network the way it is deployed, for timing.

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
    INPUT_NAME,
    example_input,
    onnx_bytes,
    onnx_session,
    quiet_export,
    trace_torchscript,
)

__all__ = ["BACKENDS", "compile_for_timing"]

BACKENDS = ("torch", "torchscript", "onnxruntime")


def compile_for_timing(model: nn.Module, resolution: tuple[int, int], backend: str,
                       threads: int = 1, device: str | torch.device = "cpu"
                       ) -> Callable[[], object]:
    """A zero-argument callable that runs ``model`` once on a (1, 3, H, W) image in
    ``backend`` (the callable holds the converted model and its input)."""
    if backend not in BACKENDS:
        raise SalnasError(f"latency backend must be one of {', '.join(BACKENDS)}, "
                          f"got {backend!r}")
    resolution = (int(resolution[0]), int(resolution[1]))
    model = model.eval()
    dev = torch.device(device)
    if backend == "onnxruntime":
        if dev.type != "cpu":
            raise SalnasError("the onnxruntime latency backend times the CPU execution "
                              "provider; use device cpu or another backend")
        data, _ = onnx_bytes(model.cpu(), resolution)
        session = onnx_session(data, threads)
        feed = {INPUT_NAME: example_input(resolution).numpy()}
        return partial(session.run, None, feed)
    x = example_input(resolution).to(dev)
    if backend == "torchscript":
        traced, _ = trace_torchscript(model, resolution)
        with quiet_export():
            frozen = torch.jit.freeze(traced)
        return partial(frozen.to(dev), x)
    return partial(model.to(dev), x)
