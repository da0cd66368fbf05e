"""Conversion of saliency networks to the deployment runtimes, in memory.

* TorchScript: ``torch.jit.trace`` in eval mode on one (1, 3, H, W) image (tracing fixes the
  input resolution).
* ONNX: torch's TorchScript-based exporter (the dynamo exporter needs ``onnxscript``), opset
  17, input ``image`` (N, 3, H, W) RGB in [0, 1], output ``logits`` (N, 1, H, W). The batch
  axis is dynamic, except for models with a dynamic convolution: eager PyTorch runs its
  per-sample kernels as one grouped conv with ``groups = N``, whose kernel shape ONNX cannot
  infer, so those are exported with the batch fixed to 1 (the aggregated kernel reshaped with
  constant sizes and applied as a plain conv: the same arithmetic, static shapes).
* onnxruntime: a CPU session with a fixed number of intra-op threads.

The latency backends of the search and the exported model files of the distill stage are both
built on these functions, so what is timed is what is shipped.
"""

from __future__ import annotations

import contextlib
import io
import types
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["INPUT_NAME", "OPSET", "OUTPUT_NAME", "example_input", "export_ready",
           "module_onnx_bytes", "onnx_bytes", "onnx_session", "quiet_export",
           "trace_torchscript"]

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence the tracer's and exporter's warnings.

    torch 2.13 deprecates jit tracing and the TorchScript ONNX exporter; both still work and
    are what fixed-resolution CPU deployment needs. Trace warnings are about shapes turned
    into constants, which is what we want at a fixed resolution.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding", UserWarning)
        yield


def example_input(resolution: tuple[int, int], batch: int = 1) -> torch.Tensor:
    """A fixed (seeded) random image batch in [0, 1]."""
    return torch.rand(batch, 3, *resolution, generator=torch.Generator().manual_seed(0))


def _dynconv_batch1(self: Any, x: torch.Tensor) -> torch.Tensor:
    """DynamicConv2d.forward for one image, with constant kernel sizes (traceable to ONNX)."""
    kernel = (self.attention(x) @ self._weight().flatten(1)).reshape(
        self.cout, self.cin, self.k, self.k
    )
    return torch.nn.functional.conv2d(x, kernel, None, 1, self.k // 2)


@contextlib.contextmanager
def export_ready(model: nn.Module) -> Iterator[int | None]:
    """Temporarily give dynamic convs their batch-1 export forward; yields the fixed batch
    (1) or None when the batch may stay free."""
    from salnas.supernet.ops import DynamicConv2d

    patched = [m for m in model.modules() if isinstance(m, DynamicConv2d)]
    for m in patched:
        m.forward = types.MethodType(_dynconv_batch1, m)  # type: ignore[method-assign]
    try:
        yield 1 if patched else None
    finally:
        for m in patched:
            del m.forward


def trace_torchscript(model: nn.Module,
                      resolution: tuple[int, int]) -> tuple[torch.jit.ScriptModule, int | None]:
    """``(traced module, fixed batch or None)`` of ``model`` in eval mode."""
    model = model.eval()
    with quiet_export(), torch.no_grad(), export_ready(model) as batch:
        traced = torch.jit.trace(model, example_input(resolution), check_trace=False)
    return traced, batch


def onnx_bytes(model: nn.Module, resolution: tuple[int, int]) -> tuple[bytes, int | None]:
    """``(serialised ONNX model, fixed batch or None)`` of ``model`` in eval mode."""
    model = model.eval()
    buf = io.BytesIO()
    with quiet_export(), torch.no_grad(), export_ready(model) as batch:
        torch.onnx.export(
            model,
            (example_input(resolution),),
            buf,  # type: ignore[arg-type]  # legacy exporter: a file-like object is fine
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=None if batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    return buf.getvalue(), batch


def module_onnx_bytes(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> bytes:
    """A serialised ONNX model of any module on example ``inputs`` (static shapes; inputs
    named ``in0``, ``in1``, ...). For timing parts of networks, e.g. one block."""
    module = module.eval()
    buf = io.BytesIO()
    with quiet_export(), torch.no_grad(), export_ready(module):
        torch.onnx.export(
            module, inputs, buf,  # type: ignore[arg-type]  # legacy exporter: file-like
            dynamo=False, opset_version=OPSET,
            input_names=[f"in{i}" for i in range(len(inputs))],
        )
    return buf.getvalue()


def onnx_session(model: bytes | str, threads: int | None = None) -> Any:
    """An onnxruntime CPU session of a serialised model or a file path, with ``threads``
    intra-op threads (None: onnxruntime's default) and sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
