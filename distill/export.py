"""Export of final models to TorchScript and ONNX, and one loader for every model format.

* ``model.ts``: ``torch.jit.trace`` of the model in eval mode on one (1, 3, H, W) image at
  its input resolution; ``_extra_files["salnas.json"]`` holds the metadata (resolution,
  batch, id, ...). Tracing fixes the input resolution.
* ``model.onnx`` (when the ``onnx`` package is installed): torch's TorchScript-based exporter
  (the newer dynamo exporter needs ``onnxscript``), opset 17, input ``image`` (N, 3, H, W) in
  [0, 1], output ``logits`` (N, 1, H, W); ``metadata_props["salnas.json"]`` holds the
  metadata.
* Batch: free (``"batch": null`` in the metadata), except for models with a dynamic
  convolution: eager PyTorch runs its per-sample kernels as one grouped conv with
  ``groups = N``, whose kernel shape ONNX cannot infer. Those models are exported with the
  batch fixed to 1 (``"batch": 1``, what prediction uses), the aggregated kernel reshaped
  with constant sizes and applied as a plain conv: the same arithmetic, static shapes.

Each export is checked against the PyTorch model right after writing (relative difference
<= 1e-4; ONNX through onnxruntime when installed). :func:`load_any_model` opens ``.pt`` model
files (``save_subnet``'s and the CSNet peer's), ``.ts`` and ``.onnx`` alike and returns a
callable ``logits = model(images)`` with its input resolution, so ``salnas predict`` can take
any of them.
"""

from __future__ import annotations

import importlib.util
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from salnas.errors import SalnasError
from salnas.io import atomic_open, load_torch_safe
from salnas.supernet.export import (
    example_input,
    onnx_bytes,
    onnx_session,
    quiet_export,
    trace_torchscript,
)
from salnas.supernet.subnet import relative_difference

__all__ = [
    "META_KEY",
    "OnnxModel",
    "check_export",
    "export_metadata",
    "export_onnx",
    "export_torchscript",
    "load_any_model",
    "onnx_available",
]

META_KEY = "salnas.json"
TOLERANCE = 1e-4

ModelFn = Callable[[torch.Tensor], torch.Tensor]


def onnx_available() -> bool:
    """Whether ONNX export can run (the optional ``onnx`` package is installed)."""
    return importlib.util.find_spec("onnx") is not None


def _meta(resolution: tuple[int, int], batch: int | None, meta: dict[str, Any]) -> str:
    return json.dumps({"resolution": list(resolution), "batch": batch, **meta}, default=str)


def check_export(
    reference: nn.Module,
    exported: ModelFn,
    resolution: tuple[int, int],
    path: Path,
    batch: int = 1,
    tolerance: float = TOLERANCE,
) -> float:
    """Relative difference of ``exported`` and ``reference`` logits; raises above tolerance."""
    x = example_input(resolution, batch)
    with torch.no_grad():
        diff = relative_difference(exported(x), reference.eval()(x))
    if not diff <= tolerance:
        raise SalnasError(
            f"{path}: exported model differs from the PyTorch model by "
            f"{diff:.2e} (relative) > {tolerance:g}"
        )
    return diff


def export_torchscript(
    model: nn.Module, resolution: tuple[int, int], path: Path, **meta: Any
) -> float:
    """Trace ``model`` to ``path`` (atomic) with metadata; returns the checked difference."""
    resolution = (int(resolution[0]), int(resolution[1]))
    model = model.eval()
    traced, batch = trace_torchscript(model, resolution)
    buf = io.BytesIO()
    with quiet_export():
        torch.jit.save(traced, buf, _extra_files={META_KEY: _meta(resolution, batch, meta)})
    with atomic_open(path, "wb") as fh:
        fh.write(buf.getvalue())
    loaded, _ = load_any_model(path)
    return check_export(model, loaded, resolution, path, batch=batch or 2)


def export_onnx(
    model: nn.Module, resolution: tuple[int, int], path: Path, **meta: Any
) -> float | None:
    """Export ``model`` to ONNX at ``path`` (atomic) with metadata.

    Returns the checked difference (NaN when onnxruntime is missing to check it), or None
    when ``onnx`` is not installed (nothing written).
    """
    if not onnx_available():
        return None
    import onnx

    resolution = (int(resolution[0]), int(resolution[1]))
    model = model.eval()
    data, batch = onnx_bytes(model, resolution)
    proto = onnx.load_from_string(data)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, _meta(resolution, batch, meta)
    with atomic_open(path, "wb") as fh:
        fh.write(proto.SerializeToString())
    if importlib.util.find_spec("onnxruntime") is None:
        warnings.warn(
            f"{path}: onnxruntime is not installed, the export is not checked", stacklevel=2
        )
        return float("nan")
    loaded, _ = load_any_model(path)
    return check_export(model, loaded, resolution, path, batch=batch or 2)


class OnnxModel:
    """An ONNX model behind the torch-style call ``logits = model(images)`` (CPU)."""

    def __init__(self, path: Path) -> None:
        if importlib.util.find_spec("onnxruntime") is None:
            raise SalnasError(
                f"{path}: reading .onnx models needs onnxruntime (pip install onnxruntime)"
            )
        try:
            self.session = onnx_session(str(path))
        except Exception as e:
            raise SalnasError(f"{path}: not a readable ONNX model ({e})") from e
        self.input = self.session.get_inputs()[0].name
        self.meta = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().cpu().float().numpy()
        (out,) = self.session.run(None, {self.input: np.ascontiguousarray(x)})
        return torch.from_numpy(out).to(images.device)

    def eval(self) -> OnnxModel:  # so callers may treat it like an nn.Module
        return self


def _resolution(meta: str | None, path: Path) -> tuple[int, int]:
    try:
        h, w = json.loads(meta or "")["resolution"]
        return int(h), int(w)
    except (ValueError, KeyError, TypeError):
        raise SalnasError(
            f"{path}: no salnas metadata ({META_KEY} with the input resolution); "
            "export it with distill.export"
        ) from None


def export_metadata(path: str | Path) -> dict[str, Any]:
    """The ``salnas.json`` metadata of a ``.ts`` or ``.onnx`` export (resolution, batch, arch,
    arm, seed, data settings, genome)."""
    path = Path(path)
    if not path.is_file():
        raise SalnasError(f"model file {path} does not exist")
    if path.suffix.lower() == ".onnx":
        import onnx

        props = {
            p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
        }
        text = props.get(META_KEY)
    elif path.suffix.lower() == ".ts":
        extra = {META_KEY: ""}
        with quiet_export():
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        text = extra[META_KEY]
    else:
        raise SalnasError(f"{path}: metadata is stored in .ts and .onnx exports only")
    _resolution(text, path)  # same error when it is missing
    return json.loads(text or "")


def load_any_model(path: str | Path) -> tuple[ModelFn, tuple[int, int]]:
    """``(model, (H, W))`` for a ``.pt`` model file, a ``.ts`` or a ``.onnx`` export.

    ``model(images)`` maps (N, 3, H, W) RGB in [0, 1] to logits (N, 1, H, W); modules are in
    eval mode. Use ``(H, W)`` as the input size (e.g. ``supernet.subnet.predict_image``).
    """
    path = Path(path)
    if not path.is_file():
        raise SalnasError(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        model = OnnxModel(path)
        return model, _resolution(model.meta.get(META_KEY), path)
    if suffix == ".ts":
        extra = {META_KEY: ""}
        try:
            with quiet_export():
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as e:
            raise SalnasError(f"{path}: not a readable TorchScript model ({e})") from e
        return module.eval(), _resolution(extra[META_KEY], path)
    if suffix == ".pt":
        from salnas.distill.peers import PEER_FORMAT, load_peer
        from salnas.supernet.subnet import MODEL_FORMAT, load_subnet

        payload = load_torch_safe(path, "model file", (MODEL_FORMAT, PEER_FORMAT))
        if payload["format"] == PEER_FORMAT:
            return load_peer(payload, path)
        net, genome, _, _ = load_subnet(path, payload)
        return net, tuple(genome.resolution)  # type: ignore[return-value]
    raise SalnasError(f"{path}: unknown model type '{path.suffix}'; use .pt, .ts or .onnx")


def model_data_settings(path: str | Path) -> dict[str, Any] | None:
    """The ``data`` config a model was trained with (split seed and sizes), if it records it."""
    path = Path(path)
    if path.suffix.lower() in (".ts", ".onnx"):
        return export_metadata(path).get("data")
    payload = load_torch_safe(path, "model file")
    config = payload.get("config") if isinstance(payload, dict) else None
    if isinstance(config, str):
        config = json.loads(config)
    return config.get("data") if isinstance(config, dict) else None
