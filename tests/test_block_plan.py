"""The block plan (``SearchSpace.plan``): what it says is what the networks do.

* Channels and feature sizes of every part of a plan equal the shapes that an extracted
  network's forward pass produces (hooks), for max, min and random genomes of the default and
  a tiny space.
* The supernet and the subnets built from plans keep their state_dict keys and shapes: the
  digests below were computed from the code before the plan existed (checkpoints saved
  then still load), and so were the latency table's entry keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch
from spaces import TINY_SPACE
from torch import nn

from salnas.search.latency import entry_keys, genome_entry_keys
from salnas.supernet.model import SalNet, Supernet
from salnas.supernet.plan import BlockPlan, strided_size
from salnas.supernet.space import (
    DECODER_OPS,
    GENOME_LIST_GENES,
    Genome,
    GenomeError,
    SearchSpace,
    default_space,
    genome_list_gene,
)

TINY = SearchSpace(TINY_SPACE)
# Odd sizes: strided convs pad like TF "SAME", so sizes are ceil(size / stride).
ODD = SearchSpace({**TINY.to_config(), "resolutions": [[33, 47], [50, 70]]})
SPACES = {"default": default_space(), "tiny": TINY, "odd": ODD}

# sha256[:16] of "key shape" lines of the sorted state_dict, recorded before the plan:
# (supernet, supernet with kernel_transform, extracted max, min, random_genome(3)).
STATE_DIGESTS = {
    "default": ("618834edce5d17a1", "d7dd677cdd52a2a9", "33b0110ba9a22f99", "6f1dbe719dc8e07a",
                "d6f89f0ee8eed43d"),
    "tiny": ("979d0a028fc17188", "d027e95c32724718", "2a1bb48b0d3bf803", "6c4e8bfbb124624a",
             "9d498fa7832f295b"),
}
# sha256[:16] of json.dumps(entry_keys(space)), recorded before the plan.
ENTRY_KEY_DIGESTS = {"default": "8fce754bfee3167d", "tiny": "ff49e6242bffe1ea"}


def digest(model: nn.Module) -> str:
    text = "\n".join(f"{k} {tuple(v.shape)}" for k, v in sorted(model.state_dict().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def genomes(space: SearchSpace) -> dict[str, Genome]:
    return {"max": space.max_genome(), "min": space.min_genome(),
            **{f"random{i}": space.random_genome(i) for i in range(3)}}


@pytest.fixture(scope="module")
def nets() -> dict[str, Supernet]:
    torch.manual_seed(0)
    return {name: Supernet(space, pretrained=False).eval() for name, space in SPACES.items()}


def shapes_of(net: SalNet, resolution: tuple[int, int]) -> dict[str, list[tuple[int, ...]]]:
    """Input and output shapes of every module of interest in one forward pass."""
    seen: dict[str, list[tuple[int, ...]]] = {}

    def hook(name: str):
        def record(_m: nn.Module, args: tuple, out: torch.Tensor) -> None:
            seen[name] = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
            seen[name].append(tuple(out.shape))
        return record

    modules = {"stem": net.encoder.stem, "readout.conv": net.readout.conv,
               "readout": net.readout}
    for i, stage in enumerate(net.encoder.stages):
        modules |= {f"block{i}.{j}": block for j, block in enumerate(stage)}
    for lvl, level in enumerate(net.decoder):
        modules |= {f"level{lvl}": level, f"level{lvl}.op": level.op}
    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    try:
        with torch.no_grad():
            net(torch.rand(1, 3, *resolution))
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("space_name", list(SPACES))
@pytest.mark.parametrize("genome_name", ["max", "min", "random0", "random1", "random2"])
def test_plan_matches_the_extracted_network(nets, space_name: str, genome_name: str) -> None:
    space = SPACES[space_name]
    genome = genomes(space)[genome_name]
    plan = space.plan(genome)
    net = nets[space_name].extract(genome)
    seen = shapes_of(net, genome.resolution)

    assert plan.resolution == genome.resolution
    st = plan.stem
    assert (st.cin, st.cout, st.stride, st.in_size) == (3, space.stem, 2, genome.resolution)
    assert seen["stem"] == [(1, 3, *st.in_size), (1, st.cout, *st.size)]

    assert [len(plan.stage_blocks(i)) for i in range(len(space.stages))] == list(genome.depths)
    for b in plan.blocks:
        block = net.encoder.stages[b.stage][b.index]
        assert seen[f"block{b.stage}.{b.index}"] == [(1, b.cin, *b.in_size),
                                                     (1, b.cout, *b.size)]
        assert block.dw_conv.weight.shape[0] == b.hidden == b.cin * b.expand
        assert block.dw_conv.kernel_size == (b.kernel, b.kernel)
        assert block.dw_conv.stride == (b.stride, b.stride)
        assert block.residual == b.residual and b.first == (b.index == 0)
        assert b.kernel == genome.kernels[b.stage][b.index]
        assert b.expand == genome.expands[b.stage][b.index]
        assert b.size == strided_size(b.in_size, b.stride)
    for i, (c, size) in enumerate(zip(plan.stage_channels, plan.stage_sizes, strict=True)):
        assert plan.stage_blocks(i)[-1].size == size and c == space.stages[i].channels

    for lv in plan.levels:
        assert lv.skip_stage == space.skip_stages[lv.level]
        assert (lv.op, lv.width, lv.use_skip) == (genome.ops[lv.level], genome.widths[lv.level],
                                                  genome.skips[lv.level])
        prev_in, skip_in, out = seen[f"level{lv.level}"]
        assert prev_in == (1, lv.prev_channels, *lv.prev_size)
        assert skip_in == (1, lv.skip_channels, *lv.size) and out == (1, lv.width, *lv.size)
        assert seen[f"level{lv.level}.op"][0] == (1, lv.cin, *lv.size)

    ro = plan.readout
    assert ro.prior == genome.centre_bias and ro.cin == genome.widths[-1]
    assert ro.prior_channels == (space.prior_channels if genome.centre_bias else 0)
    assert seen["readout.conv"] == [(1, ro.prior_channels + ro.cin, *ro.in_size),
                                    (1, 1, *ro.in_size)]
    assert seen["readout"][-1] == (1, 1, *ro.size) and ro.size == genome.resolution
    assert [type(p).__name__ for p in plan.parts()] == (
        ["StemPlan"] + ["MBConvPlan"] * len(plan.blocks) + ["LevelPlan"] * len(plan.levels)
        + ["ReadoutPlan"])


@pytest.mark.parametrize("space_name", list(STATE_DIGESTS))
def test_state_dicts_are_unchanged(nets, space_name: str) -> None:
    space = SPACES[space_name]
    net = nets[space_name]
    torch.manual_seed(1)
    found = (digest(net), digest(Supernet(space, pretrained=False, kernel_transform=True)),
             digest(net.extract(space.max_genome())), digest(net.extract(space.min_genome())),
             digest(net.extract(space.random_genome(3))))
    assert found == STATE_DIGESTS[space_name]


@pytest.mark.parametrize("space_name", list(ENTRY_KEY_DIGESTS))
def test_latency_entry_keys_are_unchanged(space_name: str) -> None:
    space = SPACES[space_name]
    keys = entry_keys(space)
    assert hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16] == \
        ENTRY_KEY_DIGESTS[space_name]
    for g in genomes(space).values():
        assert set(genome_entry_keys(g)) <= set(keys)
    assert genome_entry_keys(TINY.min_genome()) == [
        "stem@32x32", "block@32x32/s0/first/k3/e1", "block@32x32/s1/first/k3/e3",
        "block@32x32/s2/first/k3/e3", "level@32x32/d0/conv3x3/w8/skip0/prev16",
        "readout@32x32/w8/prior0"]
    assert genome_entry_keys(TINY.max_genome()) == [
        "stem@64x64", "block@64x64/s0/first/k3/e1", "block@64x64/s1/first/k5/e6",
        "block@64x64/s1/rest/k5/e6", "block@64x64/s2/first/k5/e6",
        "level@64x64/d0/dynconv/w16/skip1/prev16", "readout@64x64/w16/prior1"]


def test_max_plan_is_the_supernets_shape() -> None:
    space = default_space()
    plan = space.max_plan()
    assert plan == space.plan(space.max_genome())
    assert len(plan.blocks) == sum(s.repeats for s in space.stages)
    assert [lv.width for lv in plan.levels] == [max(w) for w in space.decoder_widths]
    assert all(b.hidden == b.cin * (max(space.expands) if space.stages[b.stage].elastic
                                    else space.stages[b.stage].expand) for b in plan.blocks)
    small = space.max_plan((192, 256))
    assert small.resolution == (192, 256) and small.stem.size == (96, 128)
    assert small.stage_sizes[-1] == (6, 8) and small.readout.size == (192, 256)
    with pytest.raises(GenomeError, match="resolution"):
        space.max_plan((100, 100))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.stem.cout = 1  # type: ignore[misc]
    assert isinstance(hash(plan), int) and isinstance(plan, BlockPlan)


def test_plan_validates_the_genome_against_its_space() -> None:
    with pytest.raises(GenomeError):
        TINY.plan(default_space().max_genome())


def test_genome_list_gene_names_follow_the_genes() -> None:
    g = default_space().max_genome()
    names = set(g.values())
    for key, value in g.to_dict().items():
        if key not in GENOME_LIST_GENES:
            assert genome_list_gene(key, 0) is None
            continue
        for i in range(len(value)):
            name = genome_list_gene(key, i)
            assert name is not None
            # kernels/expands name the stage's group of per-block genes s{i}.b{j}.kernel
            group = name.rsplit(".", 1)[-1]
            assert name in names or any(n.startswith(f"s{i}.b") and n.endswith(f".{group}")
                                        for n in names)
    assert DECODER_OPS == ("dwsep3x3", "dwsep5x5", "conv3x3", "dynconv")  # cheapest first
