"""Hand-designed peers trained beside the searched models with the same recipe and budget.

* ``max``: the supernet's max subnet (full Lite0-style encoder, every block at kernel 5 and
  expand 6, widest decoder with all skips and the centre-bias prior), extracted like any other
  architecture and started as ``distill.init`` says.
* ``fpn``: the plain reference a person designs in five minutes: the EfficientNet-Lite0
  encoder exactly as published (its kernels, expand 6, every block) started from ImageNet
  weights, and a small decoder of the space (every skip on, the narrowest widths,
  depthwise-separable 3x3 convolutions, the learned centre-bias prior), at the largest input
  resolution of the space. It is a point of the search space (:func:`fpn_genome`) but never
  inherits supernet weights: it stands for what one gets without NAS.
* ``csnet``: a CSNet-style network of about 100k parameters trained from scratch (after Gao
  et al., "Highly Efficient Salient Object Detection with 100K Parameters", ECCV 2020). Its
  building block is a multi-scale depthwise block in the spirit of gOctConv: a 1x1 conv
  expands the input, the channels are split into three groups processed at full, 1/2 and 1/4
  resolution (bilinear 2x downsampling, which at exactly half size is 2x2 average pooling),
  each by a 3x3 depthwise conv with BN and ReLU, the groups are upsampled back and
  concatenated, and a 1x1 conv with BN projects them (residual when the shapes match).
  Layout (input H x W, channels):

  ====================  =======  ========
  part                  stride   channels
  ====================  =======  ========
  stem 3x3 conv         2        16
  stage 1: 1 block      4        24
  stage 2: 2 blocks     8        40
  stage 3: 3 blocks     16       64
  stage 4: 1 block      32       80
  decoder: 1x1 lateral  4..32    32 each
  top-down: up + add + one multi-scale block per level (32 channels)
  read-out 1x1 conv     4        1, bilinear to H x W
  ====================  =======  ========

  101,470 parameters; ``tests/test_distill_peers.py`` checks 80k-120k.

Peer model files (``model.pt``) of ``csnet`` use the format ``salnas-peer-v1`` (name,
constructor arguments, weights, resolution, config); :func:`distill.export.load_any_model`
reads them beside ``save_subnet``'s files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salnas.config import Config
from salnas.errors import SalnasError
from salnas.io import save_torch_atomic
from salnas.supernet.space import Genome, SearchSpace

__all__ = ["PEERS", "PEER_FORMAT", "CSNet", "MultiScaleBlock", "fpn_genome", "load_peer",
           "save_peer"]

PEER_FORMAT = "salnas-peer-v1"
PEERS = ("max", "fpn", "csnet")


def fpn_genome(space: SearchSpace) -> Genome:
    """The plain reference's architecture as a genome of ``space`` (see the ``fpn`` peer)."""
    lite = space.lite0_genome()
    levels = len(space.decoder_widths)
    return Genome.from_json({
        **lite.to_dict(),
        "resolution": list(space.max_genome().resolution),
        "skips": [True] * levels,
        "ops": ["dwsep3x3" if "dwsep3x3" in space.decoder_ops else space.decoder_ops[0]]
        * levels,
        "widths": [min(w) for w in space.decoder_widths],
        "centre_bias": space.prior_channels > 0,
    }, space)
# ImageNet statistics: the peer is trained from scratch, any fixed standardisation will do.
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _conv_bn(
    cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, relu: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _half(x: Tensor) -> Tensor:
    # Bilinear to half size (= 2x2 average pooling for even sizes; fvcore counts it, 4 per
    # output); never below 1 pixel, so tiny inputs still run.
    h, w = x.shape[-2:]
    return F.interpolate(
        x, size=(max(1, h // 2), max(1, w // 2)), mode="bilinear", align_corners=False
    )


class MultiScaleBlock(nn.Module):
    """gOctConv-like block: expand, depthwise 3x3 at three scales, concatenate, project."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 2) -> None:
        super().__init__()
        hidden = max(3, cin * expand // 3 * 3)  # divisible into three scale groups
        self.down = _conv_bn(cin, cin, 3, 2, groups=cin, relu=False) if stride == 2 else None
        self.expand = _conv_bn(cin, hidden, 1)
        self.split = [hidden // 3] * 3
        self.branches = nn.ModuleList(_conv_bn(c, c, 3, groups=c) for c in self.split)
        self.project = _conv_bn(hidden, cout, 1, relu=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        if self.down is not None:
            x = self.down(x)
        y = self.expand(x)
        outs = []
        for level, (part, branch) in enumerate(
            zip(y.split(self.split, 1), self.branches, strict=True)
        ):
            z = part
            for _ in range(level):
                z = _half(z)
            z = branch(z)
            if level:
                z = F.interpolate(z, size=y.shape[-2:], mode="bilinear", align_corners=False)
            outs.append(z)
        out = self.project(torch.cat(outs, 1))
        return out + x if self.residual else out


class CSNet(nn.Module):
    """CSNet-style saliency network (~100k parameters): logits (B, 1, H, W) for RGB in [0, 1]."""

    def __init__(
        self,
        stages: tuple[tuple[int, int], ...] = ((24, 1), (40, 2), (64, 3), (80, 1)),
        stem: int = 16,
        decoder: int = 32,
    ) -> None:
        super().__init__()
        self.config = {"stages": [list(s) for s in stages], "stem": stem, "decoder": decoder}
        self.stem = _conv_bn(3, stem, 3, 2)
        blocks, cin = [], stem
        for cout, repeats in stages:
            blocks.append(
                nn.Sequential(
                    *(
                        MultiScaleBlock(cin if j == 0 else cout, cout, 2 if j == 0 else 1)
                        for j in range(repeats)
                    )
                )
            )
            cin = cout
        self.stages = nn.ModuleList(blocks)
        self.lateral = nn.ModuleList(_conv_bn(c, decoder, 1) for c, _ in stages)
        self.fuse = nn.ModuleList(MultiScaleBlock(decoder, decoder) for _ in stages[:-1])
        self.readout = nn.Conv2d(decoder, 1, 1)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.readout.weight, std=0.01)  # start near a uniform density
        nn.init.zeros_(self.readout.bias)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        y = self.stem((x - self.mean) / self.std)  # type: ignore[operator]
        feats = []
        for stage in self.stages:
            y = stage(y)
            feats.append(y)
        top = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):  # deepest to shallowest
            lat = self.lateral[i](feats[i])
            top = lat + F.interpolate(
                top, size=lat.shape[-2:], mode="bilinear", align_corners=False
            )
            top = self.fuse[i](top)
        logits = self.readout(top)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def save_peer(
    path: Path, model: CSNet, resolution: tuple[int, int], config: Config, **meta: Any
) -> None:
    """Write a peer model file (atomic): name, constructor arguments, weights, resolution."""
    payload = {
        "format": PEER_FORMAT,
        "name": "csnet",
        "kwargs": json.dumps(model.config),
        "resolution": list(resolution),
        "config": config.model_dump(mode="json"),
        "state_dict": model.state_dict(),
        "meta": json.dumps(meta, default=str),
    }
    save_torch_atomic(path, payload)


def load_peer(payload: dict[str, Any], path: Path) -> tuple[CSNet, tuple[int, int]]:
    """Rebuild a peer from a loaded ``salnas-peer-v1`` payload."""
    if payload.get("name") != "csnet":
        raise SalnasError(f"{path}: unknown peer model {payload.get('name')!r}")
    kwargs = json.loads(payload["kwargs"])
    net = CSNet(tuple(tuple(s) for s in kwargs["stages"]), kwargs["stem"], kwargs["decoder"])
    net.load_state_dict(payload["state_dict"])
    h, w = payload["resolution"]
    return net.eval(), (int(h), int(w))
