"""The resolved architecture of a genome: what every layer of its network gets.

:meth:`SearchSpace.plan <salnas.supernet.space.SearchSpace.plan>` decodes a genome once into a
:class:`BlockPlan` (in the spirit of timm's ``decode_arch_def``): stem, every active MBConv
block, every decoder level and the read-out, each with its channels, stride, operator and
feature size. The supernet is built from the space's maximal plan, extraction and
:meth:`Supernet.set_active <salnas.supernet.model.Supernet.set_active>` walk a genome's plan,
and the latency table keys and profiles the parts of plans.

Feature sizes follow the model's TF "SAME" padding of strided convs: ``ceil(size / stride)``.
Sizes are (height, width).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .space import Genome, SearchSpace

__all__ = ["BlockPlan", "FpnHeadPlan", "FpnLevelPlan", "FpnPlan", "FpnTopPlan", "LevelPlan",
           "MBConvPlan", "PlanPart", "ReadoutPlan", "StemPlan", "build_plan", "strided_size"]

Size = tuple[int, int]


def strided_size(size: Size, stride: int) -> Size:
    """Output size of a conv with ``stride`` and TF "SAME" padding (stride 1: unchanged)."""
    return math.ceil(size[0] / stride), math.ceil(size[1] / stride)


@dataclass(frozen=True)
class StemPlan:
    """The stem conv (then BN, ReLU6)."""

    cin: int
    cout: int
    kernel: int
    stride: int
    in_size: Size
    size: Size


@dataclass(frozen=True)
class MBConvPlan:
    """One active MBConv block: block ``index`` of encoder stage ``stage``.

    ``hidden`` = ``cin * expand`` channels; ``first`` blocks carry the stage's stride and
    channel change, the later ones have equal shapes (the latency table's ``rest``).
    """

    stage: int
    index: int
    cin: int
    cout: int
    stride: int
    kernel: int
    expand: int
    hidden: int
    in_size: Size
    size: Size

    @property
    def first(self) -> bool:
        return self.index == 0

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.cin == self.cout


@dataclass(frozen=True)
class LevelPlan:
    """Decoder level ``level``: upsample the level below to ``size``, concatenate
    ``[skip | prev]`` when ``use_skip``, apply ``op`` with ``width`` output channels."""

    level: int
    skip_stage: int
    skip_channels: int
    prev_channels: int
    op: str
    width: int
    use_skip: bool
    prev_size: Size
    size: Size

    @property
    def cin(self) -> int:
        """Channels entering the op."""
        return self.prev_channels + (self.skip_channels if self.use_skip else 0)


@dataclass(frozen=True)
class FpnTopPlan:
    """FPN decoder: the 1x1 lateral (conv, BN) of the deepest stage's output (``cin``
    channels) to ``width``, at ``size``: the start of the top-down sum."""

    cin: int
    width: int
    size: Size


@dataclass(frozen=True)
class FpnLevelPlan:
    """FPN level ``level``: upsample the top-down sum (``width`` channels) from ``prev_size``
    to ``size`` (that of stage ``skip_stage``) and, when ``use_skip``, add the 1x1 lateral
    (conv, BN) of that stage's output (``skip_channels``) to ``width``."""

    level: int
    skip_stage: int
    skip_channels: int
    width: int
    use_skip: bool
    prev_size: Size
    size: Size


@dataclass(frozen=True)
class FpnHeadPlan:
    """FPN decoder: ``op`` (``width`` -> ``width`` channels) once, on the sum at ``size``
    (the output stride of the last active level ``level``)."""

    level: int
    op: str
    width: int
    size: Size


@dataclass(frozen=True)
class FpnPlan:
    """The FPN decoder of a plan: ``top``, the active ``levels`` (deepest first), ``head``."""

    top: FpnTopPlan
    levels: tuple[FpnLevelPlan, ...]
    head: FpnHeadPlan


@dataclass(frozen=True)
class ReadoutPlan:
    """The 1x1 read-out on ``[prior maps | cin decoder channels]`` at ``in_size``, one logit
    map upsampled bilinearly to ``size`` (the input resolution). ``prior_channels`` is 0
    without prior. It reads decoder level ``level`` (the last active one); ``final``: that is
    the space's last level (the decoder runs every level)."""

    cin: int
    prior: bool
    prior_channels: int
    in_size: Size
    size: Size
    level: int
    final: bool


PlanPart = (StemPlan | MBConvPlan | LevelPlan | FpnTopPlan | FpnLevelPlan | FpnHeadPlan
            | ReadoutPlan)


@dataclass(frozen=True)
class BlockPlan:
    """A genome's network, resolved: ``blocks`` in execution order (active ones only),
    ``levels`` deepest first (active ones only: the first ``genome.decoder_depth``) for the
    U-Net decoder, or ``fpn`` (and no ``levels``) for the FPN decoder.
    ``stage_channels[i]`` / ``stage_sizes[i]`` are the output of encoder stage ``i``."""

    resolution: Size
    stem: StemPlan
    blocks: tuple[MBConvPlan, ...]
    levels: tuple[LevelPlan, ...]
    readout: ReadoutPlan
    stage_channels: tuple[int, ...]
    stage_sizes: tuple[Size, ...]
    fpn: FpnPlan | None = None

    @property
    def decoder_type(self) -> str:
        """``unet`` or ``fpn``."""
        return "unet" if self.fpn is None else "fpn"

    def stage_blocks(self, stage: int) -> tuple[MBConvPlan, ...]:
        """The active blocks of encoder stage ``stage``."""
        return tuple(b for b in self.blocks if b.stage == stage)

    def parts(self) -> Iterator[PlanPart]:
        """Stem, blocks, decoder parts and read-out, in execution order."""
        yield self.stem
        yield from self.blocks
        yield from self.levels
        if self.fpn is not None:
            yield self.fpn.top
            yield from self.fpn.levels
            yield self.fpn.head
        yield self.readout


STEM_KERNEL, STEM_STRIDE, IMAGE_CHANNELS = 3, 2, 3


def build_plan(space: SearchSpace, genome: Genome) -> BlockPlan:
    """The plan of ``genome`` in ``space`` (validated); see :meth:`SearchSpace.plan`."""
    space.validate(genome)
    res = (int(genome.resolution[0]), int(genome.resolution[1]))
    size = strided_size(res, STEM_STRIDE)
    stem = StemPlan(IMAGE_CHANNELS, space.stem, STEM_KERNEL, STEM_STRIDE, res, size)
    blocks: list[MBConvPlan] = []
    stage_channels: list[int] = []
    stage_sizes: list[Size] = []
    cin = space.stem
    for i, (stage, ks, es) in enumerate(zip(space.stages, genome.kernels, genome.expands,
                                            strict=True)):
        for j, (k, e) in enumerate(zip(ks, es, strict=True)):
            stride = stage.stride if j == 0 else 1
            out = strided_size(size, stride)
            blocks.append(MBConvPlan(i, j, cin, stage.channels, stride, k, e, cin * e, size,
                                     out))
            cin, size = stage.channels, out
        stage_channels.append(stage.channels)
        stage_sizes.append(size)
    levels: list[LevelPlan] = []
    prev, prev_size = stage_channels[-1], stage_sizes[-1]
    depth = genome.decoder_depth
    fpn: FpnPlan | None = None
    if genome.decoder_type == "fpn":
        width = prev = genome.widths[0]
        top = FpnTopPlan(stage_channels[-1], width, prev_size)
        merges: list[FpnLevelPlan] = []
        for lvl, (s, skip) in enumerate(zip(space.skip_stages[:depth], genome.skips,
                                            strict=True)):
            merges.append(FpnLevelPlan(lvl, s, stage_channels[s], width, skip, prev_size,
                                       stage_sizes[s]))
            prev_size = stage_sizes[s]
        fpn = FpnPlan(top, tuple(merges), FpnHeadPlan(depth - 1, genome.ops[0], width,
                                                      prev_size))
    else:
        for lvl, (s, skip, op, width) in enumerate(zip(space.skip_stages[:depth], genome.skips,
                                                       genome.ops, genome.widths, strict=True)):
            levels.append(LevelPlan(lvl, s, stage_channels[s], prev, op, width, skip, prev_size,
                                    stage_sizes[s]))
            prev, prev_size = width, stage_sizes[s]
    readout = ReadoutPlan(prev, genome.centre_bias,
                          space.prior_channels if genome.centre_bias else 0, prev_size, res,
                          depth - 1, depth == len(space.skip_stages))
    return BlockPlan(res, stem, tuple(blocks), tuple(levels), readout, tuple(stage_channels),
                     tuple(stage_sizes), fpn)
