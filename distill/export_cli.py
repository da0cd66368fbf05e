"""``salnas export``: a model file to ONNX or TorchScript, a thin shell over
:func:`salnas.distill.export.export_onnx` / :func:`~salnas.distill.export.export_torchscript`
(both built on :mod:`salnas.supernet.export`, which the latency backends use too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["FORMATS", "export_cmd", "export_model"]

FORMATS = {"onnx": ".onnx", "torchscript": ".ts"}
_ALIASES = {"ts": "torchscript", "jit": "torchscript"}


def _load(path: Path) -> tuple[Any, tuple[int, int], dict[str, Any]]:
    """``(module, (H, W), metadata)`` of a ``.pt`` model file (subnet or peer)."""
    from salnas.distill.peers import PEER_FORMAT, load_peer
    from salnas.errors import SalnasError
    from salnas.io import load_torch_safe
    from salnas.supernet.subnet import MODEL_FORMAT, load_subnet

    if path.suffix.lower() in (".ts", ".onnx"):
        raise SalnasError(f"{path} is already an export; export from the .pt model file "
                          "(salnas supernet extract, or RUN/distill/<arch>/<arm>/model.pt)")
    payload = load_torch_safe(
        path, "model file", (MODEL_FORMAT, PEER_FORMAT),
        "make one with `salnas supernet extract` or take a distilled model.pt")
    try:
        meta = json.loads(payload.get("meta") or "{}")
    except (TypeError, ValueError):
        meta = {}
    config = payload.get("config")
    net: Any
    data = config.get("data") if isinstance(config, dict) else None
    if payload["format"] == PEER_FORMAT:
        net, resolution = load_peer(payload, path)
        genome = None
        arch = meta.get("arch") or f"peer-{payload.get('name')}"
    else:
        net, g, _, _ = load_subnet(path, payload)
        resolution = (int(g.resolution[0]), int(g.resolution[1]))
        genome = g.to_json()
        arch = meta.get("arch") or g.id
    return net, resolution, {**meta, "arch": arch, "genome": genome, "data": data,
                             "source": str(path)}


def export_model(model_path: Path, fmt: str, out: Path) -> dict[str, Any]:
    """Export a ``.pt`` model file to ``out`` and check it against PyTorch; returns what was
    written: format, path, resolution, batch (None: dynamic), max relative difference."""
    from salnas.distill.export import export_metadata, export_onnx, export_torchscript
    from salnas.errors import SalnasError

    fmt = _ALIASES.get(fmt.lower(), fmt.lower())
    if fmt not in FORMATS:
        raise SalnasError(f"--format must be onnx or torchscript, got '{fmt}'")
    if out.suffix.lower() != FORMATS[fmt]:
        raise SalnasError(f"--out {out}: a {fmt} model must end in {FORMATS[fmt]} "
                          "(salnas predict tells the model types apart by suffix)")
    if out.is_dir():
        raise SalnasError(f"--out {out} is a folder; give the file to write")
    net, resolution, meta = _load(model_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        diff = export_onnx(net, resolution, out, **meta)
        if diff is None:
            raise SalnasError("--format onnx needs the onnx package: pip install 'salnas[onnx]' "
                              "(onnx and onnxruntime)")
    else:
        diff = export_torchscript(net, resolution, out, **meta)
    written = export_metadata(out)
    return {"format": fmt, "path": str(out), "resolution": list(resolution),
            "batch": written.get("batch"), "arch": meta["arch"], "max_relative_difference": diff}


def export_cmd(
    model_path: Annotated[
        Path,
        typer.Argument(help="a .pt model file: an extracted subnet (salnas supernet extract) "
                       "or a distilled model or peer (RUN/distill/<arch>/<arm>/model.pt)"),
    ],
    fmt: Annotated[str, typer.Option("--format", help="onnx or torchscript")],
    out: Annotated[Path, typer.Option("--out", help="file to write: .onnx or .ts")],
) -> None:
    """Export a model for deployment (ONNX or TorchScript), checked against PyTorch.

    I/O contract of the exported model:

    * input `image`: float32 (N, 3, H, W), RGB scaled to [0, 1] (no mean/std
      normalisation), H x W the model's input resolution (printed, and in the metadata);
    * output `logits`: float32 (N, 1, H, W) logits; a softmax over the H x W pixels gives
      the density (sums to 1); resize it to the image and renormalise for the image's size;
    * N, the batch axis, is dynamic, except for models with a dynamic convolution: fixed
      to 1 ("batch": 1 in the metadata);
    * metadata `salnas.json` (ONNX metadata_props, TorchScript extra file): resolution,
      batch, arch, genome and the data settings; `salnas predict` reads it.

    The export is checked right after writing (relative difference of the logits to
    PyTorch <= 1e-4; ONNX through onnxruntime). See docs/export.md.

    Example: salnas export runs/quickstart/distill/<arch>/selfkd/model.pt --format onnx
    --out model.onnx
    """
    info = export_model(model_path, fmt, out)
    h, w = info["resolution"]
    n = "N" if info["batch"] is None else str(info["batch"])
    diff = info["max_relative_difference"]
    check = "not checked (onnxruntime missing)" if diff != diff else f"checked, {diff:.1e}"
    typer.echo(
        f"wrote {out} ({info['format']}, {info['arch']}): input 'image' ({n}, 3, {h}, {w}) "
        f"RGB in [0, 1] -> output 'logits' ({n}, 1, {h}, {w}); softmax over the pixels for a "
        f"density; {check} relative difference to PyTorch"
    )
