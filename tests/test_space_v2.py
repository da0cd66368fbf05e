"""Search space v2 (issue 13): a searchable decoder depth.

* ``decoder_depth``: the decoder may stop after 1..len(skip_stages) levels; genes of levels
  beyond the depth are inactive and canonicalised (equal architectures, equal ids), the
  read-out reads the last active level, and plan, supernet, extraction, latency keys and
  ``size()`` follow. Spaces without the gene keep their genomes, ids, state dicts and keys.
* Decoder widths down to 16 (8 at the finest level) and input resolutions from 96x128 to
  288x384 are config values that build, extract, run and count; ``configs/osie.yaml`` searches
  them.
* ``decoder_type``: a lateral-sum FPN decoder beside the U-Net (inactive genes canonicalised,
  own elastic laterals and heads in the supernet, plan parts, latency keys); the plain
  reference and a CSNet-cost genome are points of the space, with the figures of the
  space's docstring.
* ``base``: lite0, lite1 or lite2 encoders whose stage strings match the shipped ImageNet state
  dicts, loaded by ``Supernet(pretrained=True)``; each classifies skimage's cat photo with its
  own ImageNet head.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from salnas.config import load_config
from salnas.search.latency import entry_keys, genome_entry_keys, profile_latency
from salnas.supernet.checkpoint import build_supernet
from salnas.supernet.costs import count_params_flops
from salnas.supernet.export import trace_torchscript
from salnas.supernet.model import FpnDecoder, Supernet
from salnas.supernet.plan import FpnHeadPlan, FpnLevelPlan, FpnTopPlan
from salnas.supernet.space import Genome, GenomeError, SearchSpace, default_space

# Three decoder levels (strides 8, 4, 2) over a four-stage encoder; depth 1, 2 or 3.
DEPTH = SearchSpace({
    "stem": 8,
    "stages": ["e1_k3_s1_c8_r1", "e6_k3_s2_c8_r2", "e6_k3_s2_c16_r1", "e6_k3_s2_c16_r1"],
    "kernels": [3],
    "expands": [3, 6],
    "depths": [[1], [1, 2], [1], [1]],
    "resolutions": [[32, 48]],
    "skip_stages": [2, 1, 0],
    "decoder_widths": [[8, 16], [8], [4, 8]],
    "decoder_ops": ["conv3x3"],
    "decoder_depths": [1, 2, 3],
    "prior_channels": 0,
})
RICH = SearchSpace({**DEPTH.to_config(), "resolutions": [[32, 48], [40, 56]],
                    "decoder_ops": ["dwsep3x3", "dynconv"], "prior_channels": 2})


def with_depth(genome: Genome, depth: int) -> Genome:
    """``genome`` with its decoder cut (or padded with the last choices) to ``depth``."""
    space = genome.space
    pad = range(genome.decoder_depth, depth)
    return Genome.from_json({
        **genome.to_dict(),
        "skips": [*genome.skips, *(True for _ in pad)][:depth],
        "ops": [*genome.ops, *(space.decoder_ops[-1] for _ in pad)][:depth],
        "widths": [*genome.widths, *(space.decoder_widths[lvl][-1] for lvl in pad)][:depth],
    }, space)


def test_default_space_has_no_depth_choice() -> None:
    space = default_space()
    assert space.decoder_depths == (4,) and "decoder_depth" not in space.gene_names()
    assert space.to_config()["decoder_depths"] == [4]
    assert SearchSpace({"decoder_depths": None}) == space == SearchSpace({"decoder_depths": [4]})
    # A saved config from before the gene (no key) builds the same space.
    old = {k: v for k, v in space.to_config().items() if k != "decoder_depths"}
    assert SearchSpace(old) == space
    g = space.max_genome()
    assert g.decoder_depth == 4 and "decoder_depth" not in g.to_dict()


def test_depth_gene_bounds_and_extremes() -> None:
    names = DEPTH.gene_names()
    assert "decoder_depth" in names and DEPTH.gene_group("decoder_depth") == "decoder"
    assert names.index("decoder_depth") < names.index("d0.skip")
    big, small = DEPTH.max_genome(), DEPTH.min_genome()
    assert big.decoder_depth == 3 and big.widths == (16, 8, 8)
    assert small.decoder_depth == 1 and small.skips == (False,) and small.widths == (8,)
    assert small.values()["decoder_depth"] == 1 and "d1.skip" not in small.values()


def test_genes_of_inactive_levels_are_canonicalised() -> None:
    names = DEPTH.gene_names()
    _, hi = DEPTH.bounds()
    vec = hi.copy()
    vec[names.index("decoder_depth")] = 0  # depth 1: levels 1 and 2 inactive
    other = vec.copy()
    for name in ("d1.skip", "d2.skip", "d2.width"):
        other[names.index(name)] = 0
    a, b = DEPTH.decode(vec), DEPTH.decode(other)
    assert a == b and a.id == b.id and a.decoder_depth == 1
    canon = a.to_vector()
    assert canon[names.index("d1.skip")] == 0 and canon[names.index("d2.width")] == 0
    assert DEPTH.decode(canon) == a
    assert json.loads(a.to_json())["skips"] == [True]
    assert Genome.from_json(a.to_json(), DEPTH) == a


def test_size_counts_distinct_canonical_genomes() -> None:
    seen = {DEPTH.decode(v).id for v in DEPTH.enumerate_vectors()}
    # encoder 6 * 2 * 2; decoder depth 1: 4, 2: 4 * 2, 3: 4 * 2 * 4
    assert len(seen) == DEPTH.size() == 24 * (4 + 8 + 32)


def test_full_depth_ids_do_not_depend_on_the_depth_gene() -> None:
    fixed = SearchSpace({**DEPTH.to_config(), "decoder_depths": [3]})
    for seed in range(5):
        g = fixed.random_genome(seed)
        same = Genome.from_json(g.to_json(), DEPTH)
        assert same.id == g.id and same.decoder_depth == 3


def test_skip_choices_restrict_the_skip_genes() -> None:
    always = SearchSpace({**DEPTH.to_config(), "decoder_skips": [True]})
    assert all(not n.endswith(".skip") for n in always.gene_names())
    assert always.min_genome().skips == (True,) and always.max_genome().skips == (True,) * 3
    seen = {always.decode(v).id for v in always.enumerate_vectors()}
    # encoder 24 as above; decoder depth 1: d0's 2 widths, 2: * d1's 1 width, 3: * d2's 2
    assert len(seen) == always.size() == 24 * (2 + 2 + 4)
    with pytest.raises(GenomeError, match=r"'d0\.skip': False"):
        Genome.from_json({**always.min_genome().to_dict(), "skips": [False]}, always)
    same = SearchSpace({**DEPTH.to_config(), "decoder_skips": [True, False]})
    assert same == DEPTH and same.size() == DEPTH.size()
    for bad in ([], ["yes"], [1]):
        with pytest.raises(GenomeError, match="decoder_skips"):
            SearchSpace({**DEPTH.to_config(), "decoder_skips": bad})


def test_invalid_depths_name_the_gene() -> None:
    with pytest.raises(GenomeError, match="decoder_depths"):
        SearchSpace({**DEPTH.to_config(), "decoder_depths": [1, 2]})  # max must be all levels
    with pytest.raises(GenomeError, match="decoder_depths"):
        SearchSpace({**DEPTH.to_config(), "decoder_depths": [0, 3]})
    fields = {**DEPTH.max_genome().to_dict(), "skips": [True, True]}
    with pytest.raises(GenomeError, match="ops has 3 entries"):
        Genome.from_json(fields, DEPTH)
    fixed = SearchSpace({**DEPTH.to_config(), "decoder_depths": [1, 3]})
    with pytest.raises(GenomeError, match="'decoder_depth': 2"):
        Genome.from_json(with_depth(DEPTH.max_genome(), 2).to_dict(), fixed)
    with pytest.raises(GenomeError, match=r"genome\.skips has 1 entries, the space needs 4"):
        Genome.from_json({**default_space().min_genome().to_dict(), "skips": [False]},
                         default_space())


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_plan_reads_out_the_last_active_level(depth: int) -> None:
    g = with_depth(RICH.max_genome(), depth)
    plan = RICH.plan(g)
    assert [lv.level for lv in plan.levels] == list(range(depth))
    last = plan.levels[-1]
    ro = plan.readout
    assert (ro.level, ro.final, ro.cin, ro.in_size) == (depth - 1, depth == 3, last.width,
                                                        last.size)
    assert ro.size == g.resolution
    # output stride 8, 4, 2 = the skip stage's
    assert g.resolution[1] // ro.in_size[1] == {1: 8, 2: 4, 3: 2}[depth]


@pytest.fixture(scope="module")
def rich_net() -> Supernet:
    torch.manual_seed(0)
    return Supernet(RICH, pretrained=False).eval()


def test_supernet_and_extracted_subnets_agree_at_every_depth(rich_net: Supernet) -> None:
    # One read-out for every depth, as wide as the widest level that can be the last.
    assert rich_net.readout.conv.weight.shape[1] == 2 + 16
    x = torch.rand(2, 3, 40, 56)
    for depth in (1, 2, 3):
        for seed in range(3):
            g = with_depth(RICH.random_genome(seed), depth)
            g = Genome.from_json({**g.to_dict(), "resolution": [40, 56]}, RICH)
            rich_net.set_active(g)
            with torch.no_grad():
                a = rich_net(x)
                net = rich_net.extract(g).eval()
                b = net(x)
            assert a.shape == b.shape == (2, 1, 40, 56)
            assert torch.allclose(a, b, atol=1e-5)
            assert len(net.decoder) == len(net.skip_stages) == depth
            assert net.readout.conv.weight.shape[1] == g.widths[-1] + 2 * g.centre_bias


def test_a_trained_supernet_state_loads_into_one_with_the_same_space(rich_net) -> None:
    again = Supernet(RICH, pretrained=False)
    again.load_state_dict(rich_net.state_dict())
    g = RICH.min_genome()
    x = torch.rand(1, 3, *g.resolution)
    again.eval().set_active(g)
    rich_net.set_active(g)
    with torch.no_grad():
        assert torch.equal(again(x), rich_net(x))
    rich_net.set_active(RICH.max_genome())


def test_latency_keys_follow_the_depth() -> None:
    keys = entry_keys(RICH)
    assert len(keys) == len(set(keys))
    for depth in (1, 2, 3):
        for seed in range(4):
            g = with_depth(RICH.random_genome(seed), depth)
            gk = genome_entry_keys(g)
            assert set(gk) <= set(keys)
            assert sum(k.startswith("level@") for k in gk) == depth
            readout = [k for k in gk if k.startswith("readout@")]
            tag = "" if depth == 3 else f"/d{depth - 1}"
            assert readout == [f"readout@{g.resolution[0]}x{g.resolution[1]}{tag}"
                               f"/w{g.widths[-1]}/prior{int(g.centre_bias)}"]


def test_a_table_of_a_depth_space_profiles_and_predicts() -> None:
    table = profile_latency(DEPTH, fit=2, progress=False, warmup=0, repeats=1)
    assert set(table.entries) == set(entry_keys(DEPTH))
    preds = [table.predict_ms(with_depth(DEPTH.max_genome(), d)) for d in (1, 2, 3)]
    assert all(np.isfinite(preds)) and min(preds) > 0


# --- widths down to 16 (8), resolutions 96x128 .. 288x384 -----------------------------------
WIDE = SearchSpace({
    "resolutions": [[96, 128], [144, 192], [192, 256], [240, 320], [288, 384]],
    "decoder_widths": [[16, 32, 64, 128], [16, 32, 64, 96], [16, 32, 48, 64], [8, 16, 24, 32]],
    "decoder_depths": [1, 2, 3, 4],
})
OSIE = Path(__file__).resolve().parents[1] / "configs" / "osie.yaml"


def at(genome: Genome, resolution: tuple[int, int]) -> Genome:
    return Genome.from_json({**genome.to_dict(), "resolution": list(resolution)}, genome.space)


@pytest.fixture(scope="module")
def wide_net() -> Supernet:
    torch.manual_seed(0)
    return Supernet(WIDE, pretrained=False).eval()


def test_narrow_decoders_and_small_inputs_build_run_and_count(wide_net: Supernet) -> None:
    small = WIDE.min_genome()
    assert small.widths == (16,) and small.resolution == (96, 128)
    narrowest = with_depth(small, 4)
    narrowest = Genome.from_json({**narrowest.to_dict(), "widths": [16, 16, 16, 8]}, WIDE)
    flops: dict[tuple[str, tuple[int, int]], int] = {}
    for name, g in [("min", small), ("narrow", narrowest), ("max", WIDE.max_genome())]:
        for res in ((96, 128), (288, 384)):
            g = at(g, res)
            net = wide_net.extract(g).eval()
            x = torch.rand(1, 3, *res)
            wide_net.set_active(g)
            with torch.no_grad():
                a, b = wide_net(x), net(x)
            assert a.shape == b.shape == (1, 1, *res)
            assert torch.allclose(a, b, atol=1e-5)
            params, flops[name, res] = count_params_flops(net, res)
            assert params > 0 and flops[name, res] > 0
    wide_net.set_active(WIDE.max_genome())
    for name in ("min", "narrow", "max"):
        assert flops[name, (96, 128)] < flops[name, (288, 384)]
    assert flops["min", (96, 128)] < flops["narrow", (96, 128)] < flops["max", (96, 128)]
    assert flops["min", (96, 128)] < 30e6 < 1.5e9 < flops["max", (288, 384)]


def test_osie_config_searches_the_v2_space() -> None:
    config = load_config(OSIE)
    space = SearchSpace(config.supernet.space)
    areas = [h * w for h, w in space.resolutions]
    assert len(space.resolutions) >= 3 and min(areas) <= 128 * 171
    assert all(h <= config.data.resolution[0] and w <= config.data.resolution[1]
               for h, w in space.resolutions)
    assert min(min(ws) for ws in space.decoder_widths[:-1]) == 16
    assert min(space.decoder_widths[-1]) == 8
    # Every level reads its encoder stage and the read-out is at stride 8 or finer: the first
    # OSIE supernet's min subnet (stride 16, no skip: stride-32 features only) stayed at val
    # CC 0.38, and trained alone for 3 epochs at 96x128 it reached 0.38 against 0.58 at
    # depth 2 with skips. The reference genomes (every skip, depth >= 2) stay in the space:
    # test_reference_genomes_are_points_of_the_osie_space.
    assert space.decoder_depths == (2, 3, 4) and space.decoder_skips == (True,)
    net = build_supernet(config, pretrained=False)
    g = space.min_genome()
    with torch.no_grad():
        assert net.extract(g).eval()(torch.rand(1, 3, *g.resolution)).shape == (
            1, 1, *g.resolution)


# --- the FPN decoder ------------------------------------------------------------------------
FPN = SearchSpace({**RICH.to_config(), "decoder_types": ["unet", "fpn"]})
SMALL_FPN = SearchSpace({**DEPTH.to_config(), "decoder_types": ["fpn", "unet"]})


def fpn(genome: Genome, depth: int, width: int, op: str, skips: list[bool] | None = None
        ) -> Genome:
    return Genome.from_json({**genome.to_dict(), "decoder_type": "fpn",
                             "skips": skips or [True] * depth, "ops": [op],
                             "widths": [width]}, genome.space)


def test_default_space_has_no_decoder_type_choice() -> None:
    space = default_space()
    assert space.decoder_types == ("unet",) and "decoder_type" not in space.gene_names()
    assert space.max_genome().decoder_type == "unet"
    assert "decoder_type" not in space.max_genome().to_dict()
    assert Supernet(space, pretrained=False).fpn is None
    with pytest.raises(GenomeError, match="decoder_types"):
        SearchSpace({"decoder_types": ["unet", "transformer"]})
    with pytest.raises(GenomeError, match="'decoder_type': 'fpn'"):
        fpn(DEPTH.max_genome(), 1, 8, "conv3x3")


def test_fpn_gene_extremes_and_canonical_form() -> None:
    assert FPN.decoder_types == ("fpn", "unet")  # config order does not matter
    names = FPN.gene_names()
    assert names.index("decoder_type") < names.index("decoder_depth") < names.index("d0.skip")
    assert FPN.max_genome().decoder_type == "unet" and FPN.max_genome() == RICH.max_genome()
    small = FPN.min_genome()
    assert (small.decoder_type, small.decoder_depth, small.widths) == ("fpn", 1, (8,))
    assert json.loads(small.to_json())["decoder_type"] == "fpn"
    # Only level 0's width and the last level's op are active in an fpn genome.
    _, hi = FPN.bounds()
    vec = hi.copy()
    vec[names.index("decoder_type")] = 0
    other = vec.copy()
    for name in ("d0.op", "d1.op", "d2.width"):
        other[names.index(name)] = 0
    a, b = FPN.decode(vec), FPN.decode(other)
    assert a == b and a.id == b.id
    assert (a.decoder_depth, a.ops, a.widths) == (3, ("dynconv",), (16,))
    assert a.values()["d2.op"] == "dynconv" and "d2.width" not in a.values()
    assert FPN.decode(a.to_vector()) == a and Genome.from_json(a.to_json(), FPN) == a
    # U-Net genomes have the ids they have in a space without the fpn choice.
    for seed in range(5):
        g = RICH.random_genome(seed)
        assert Genome.from_json(g.to_json(), FPN).id == g.id
    with pytest.raises(GenomeError, match="fpn: one op, one width"):
        Genome.from_json({**a.to_dict(), "widths": [16, 8, 8]}, FPN)


def test_fpn_size_counts_distinct_canonical_genomes() -> None:
    seen = {SMALL_FPN.decode(v).id for v in SMALL_FPN.enumerate_vectors()}
    # fpn: 2 widths * 1 op * 2^d skips for d = 1, 2, 3, beside the U-Net's 4 + 8 + 32
    assert len(seen) == SMALL_FPN.size() == 24 * (4 + 8 + 32 + 2 * (2 + 4 + 8))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_fpn_plan_parts(depth: int) -> None:
    unet = Genome.from_json(RICH.random_genome(depth).to_json(), FPN)
    g = fpn(unet, depth, 8, "dwsep3x3", [True, False, True][:depth])
    plan = FPN.plan(g)
    assert plan.decoder_type == "fpn" and plan.levels == () and plan.fpn is not None
    kinds = [type(p).__name__ for p in plan.parts()]
    assert kinds[-depth - 3:] == (["FpnTopPlan"] + ["FpnLevelPlan"] * depth
                                  + ["FpnHeadPlan", "ReadoutPlan"])
    top, levels, head = plan.fpn.top, plan.fpn.levels, plan.fpn.head
    assert (top.cin, top.width, top.size) == (plan.stage_channels[-1], 8, plan.stage_sizes[-1])
    assert [lv.use_skip for lv in levels] == list(g.skips)
    assert levels[0].prev_size == top.size
    for a, b in itertools.pairwise(levels):
        assert b.prev_size == a.size
    for lv in levels:
        assert lv.size == plan.stage_sizes[lv.skip_stage] and lv.width == 8
    assert (head.level, head.op, head.width, head.size) == (depth - 1, "dwsep3x3", 8,
                                                            levels[-1].size)
    ro = plan.readout
    assert (ro.cin, ro.in_size, ro.level, ro.final) == (8, head.size, depth - 1, depth == 3)


@pytest.fixture(scope="module")
def fpn_net() -> Supernet:
    torch.manual_seed(0)
    return Supernet(FPN, pretrained=False).eval()


def fpn_genomes() -> list[Genome]:
    out = []
    for seed in range(40):
        g = FPN.random_genome(seed)
        if g.decoder_type == "fpn":
            out.append(Genome.from_json({**g.to_dict(), "resolution": [40, 56]}, FPN))
    base = at(FPN.max_genome(), (40, 56))
    chosen = [fpn(base, 2, 16, "dynconv", [False, True]),
              fpn(base, 3, 8, "dwsep3x3", [True, False, False])]
    return [*out[:4], *chosen, at(FPN.min_genome(), (40, 56))]


def test_fpn_supernet_and_extracted_subnets_agree(fpn_net: Supernet) -> None:
    assert fpn_net.fpn is not None
    # Own elastic laterals at the max level-0 width; heads per level and op (w -> w).
    assert fpn_net.fpn.top[0].weight.shape == (16, 16, 1, 1)
    assert [m.lateral[0].weight.shape[:2] for m in fpn_net.fpn.merges] == [(16, 16), (16, 8),
                                                                          (16, 8)]
    x = torch.rand(2, 3, 40, 56)
    genomes = fpn_genomes()
    assert {g.decoder_depth for g in genomes} == {1, 2, 3}
    for g in genomes:
        fpn_net.set_active(g)
        with torch.no_grad():
            a = fpn_net(x)
            net = fpn_net.extract(g).eval()
            b = net(x)
        assert a.shape == b.shape == (2, 1, 40, 56)
        assert torch.allclose(a, b, atol=1e-5)
        assert isinstance(net.fpn, FpnDecoder) and len(net.decoder) == 0
        assert len(net.fpn.merges) == g.decoder_depth
        w = g.widths[0]
        assert net.fpn.top[0].weight.shape[0] == w
        assert torch.equal(net.fpn.top[0].weight, fpn_net.fpn.top[0].weight[:w])
        assert [m.lateral is not None for m in net.fpn.merges] == list(g.skips)
        assert net.readout.conv.weight.shape[1] == w + 2 * g.centre_bias
        again = Supernet(FPN, pretrained=False).extract(g)  # what load_subnet does
        again.load_state_dict(net.state_dict())
        with torch.no_grad():
            assert torch.equal(again.eval()(x), b)
        traced, _ = trace_torchscript(net, (40, 56))
        with torch.no_grad():
            assert torch.allclose(traced(x[:1]), b[:1], atol=1e-5)
    # U-Net genomes of the same supernet still agree.
    g = at(Genome.from_json(RICH.random_genome(1).to_json(), FPN), (40, 56))
    fpn_net.set_active(g)
    with torch.no_grad():
        assert torch.allclose(fpn_net(x), fpn_net.extract(g).eval()(x), atol=1e-5)
    fpn_net.set_active(FPN.max_genome())


def test_fpn_parts_export_and_latency_keys(fpn_net: Supernet) -> None:
    keys = entry_keys(FPN)
    assert len(keys) == len(set(keys))
    for g in fpn_genomes():
        plan = FPN.plan(g)
        gk = genome_entry_keys(g)
        assert set(gk) <= set(keys)
        assert sum(k.startswith("fpn@") for k in gk) == g.decoder_depth + 2
        assert not any(k.startswith("level@") for k in gk)
        fpn_net.set_active(g)
        for part in plan.parts():
            if not isinstance(part, FpnTopPlan | FpnLevelPlan | FpnHeadPlan):
                continue
            module, shapes = fpn_net.export_part(part)
            with torch.no_grad():
                out = module.eval()(*(torch.rand(s) for s in shapes))
            size = part.size
            assert out.shape == (1, part.width, *size)
            assert fpn_net.genome == g  # the active subnet is left as it was
    fpn_net.set_active(FPN.max_genome())


# Figures of the space's docstring (fvcore), in configs/osie.yaml's space with the fpn choice.
REFERENCES = {  # name: (id, params, MFLOPs)
    "plain reference (U-Net)": ("914c5a6a58", 3.004e6, 410.0),
    "Lite0 + FPN": ("3687fdc19b", 3.028e6, 402.9),
    "CSNet-like cost": ("8c83de1807", 0.8136e6, 50.16),
}


def test_reference_genomes_are_points_of_the_osie_space() -> None:
    config = load_config(OSIE)
    space = SearchSpace({**config.supernet.space, "decoder_types": ["unet", "fpn"]})
    lite = space.lite0_genome().to_dict()
    genomes = {
        "plain reference (U-Net)": {"resolution": [192, 256], "skips": [True] * 4,
                                    "ops": ["dwsep3x3"] * 4, "widths": [64, 48, 32, 16]},
        "Lite0 + FPN": {"resolution": [192, 256], "skips": [True] * 2, "ops": ["conv3x3"],
                        "widths": [64], "decoder_type": "fpn"},
        # 120x160, the space's smallest input; shallow stages at kernel 3, expand 3
        "CSNet-like cost": {"resolution": [120, 160], "skips": [True] * 3, "ops": ["dwsep3x3"],
                            "widths": [32], "decoder_type": "fpn",
                            "depths": [1, 1, 1, 1, 2, 2, 1],
                            "kernels": [[3] * d for d in (1, 1, 1, 1, 2, 2, 1)],
                            "expands": [[1]] + [[3] * d for d in (1, 1, 1, 2, 2, 1)]},
    }
    net = Supernet(space, pretrained=False)
    for name, fields in genomes.items():
        g = Genome.from_json({**lite, "centre_bias": True, **fields}, space)
        params, flops = count_params_flops(net.extract(g), g.resolution)
        gid, want_params, want_mflops = REFERENCES[name]
        assert g.id == gid, name
        assert params == pytest.approx(want_params, rel=1e-3), name
        assert flops / 1e6 == pytest.approx(want_mflops, rel=1e-3), name


# --- larger bases ---------------------------------------------------------------------------
def stages_of(sd: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
    """(stem, stage strings) read off an efficientnet_pytorch state dict (Lite strides)."""
    strides = [1, 2, 2, 2, 1, 2, 1]
    blocks = []
    n = 0
    while f"_blocks.{n}._depthwise_conv.weight" in sd:
        dw = sd[f"_blocks.{n}._depthwise_conv.weight"]
        expand = sd.get(f"_blocks.{n}._expand_conv.weight")
        cin = dw.shape[0] if expand is None else expand.shape[1]
        blocks.append((dw.shape[0] // cin, dw.shape[-1], sd[f"_blocks.{n}._project_conv.weight"]
                       .shape[0]))
        n += 1
    stages: list[list[tuple[int, int, int]]] = []
    for b in blocks:  # a stage = a run of blocks with the same output channels
        if stages and stages[-1][-1][2] == b[2]:
            stages[-1].append(b)
        else:
            stages.append([b])
    return sd["_conv_stem.weight"].shape[0], [
        f"e{s[0][0]}_k{s[0][1]}_s{stride}_c{s[0][2]}_r{len(s)}"
        for s, stride in zip(stages, strides, strict=True)]


@pytest.mark.parametrize("base", ["lite0", "lite1", "lite2"])
def test_base_stages_follow_the_shipped_weights(base: str) -> None:
    from salnas.supernet.pretrained import lite_state_dict
    from salnas.supernet.space import BASES

    stem, stages = stages_of(lite_state_dict(base))
    assert (stem, stages) == (BASES[base]["stem"], BASES[base]["stages"])
    space = SearchSpace({"base": base})
    assert space.base == base and space.stem == stem
    assert space.to_config()["stages"] == stages
    assert SearchSpace(space.to_config()) == space


def test_spaces_without_a_base_are_lite0() -> None:
    old = {k: v for k, v in default_space().to_config().items() if k != "base"}
    assert SearchSpace(old) == default_space() and default_space().base == "lite0"
    assert SearchSpace({"base": "lite0"}) == default_space()
    with pytest.raises(GenomeError, match="base"):
        SearchSpace({"base": "lite4"})
    custom = SearchSpace({"base": "lite2", "stem": 8, "stages": DEPTH.to_config()["stages"],
                          "depths": DEPTH.to_config()["depths"], "skip_stages": [2, 1, 0],
                          "decoder_widths": [[8], [8], [8]]})
    assert custom.stem == 8 and len(custom.stages) == 4
    with pytest.raises(ValueError, match="not EfficientNet-Lite2"):
        Supernet(custom, pretrained=True)


@pytest.mark.parametrize("base,size", [("lite1", 240), ("lite2", 260)])
def test_larger_bases_load_their_weights_and_classify_a_cat(base: str, size: int) -> None:
    """As tests/test_supernet_model.py does for Lite0: the package's own ImageNet head on the
    supernet's encoder (the base's published kernels, expand 6) names the cat."""
    skimage = pytest.importorskip("skimage")
    from salnas.supernet.pretrained import imagenet_classifier, lite0_key_map, lite_state_dict

    space = SearchSpace({"base": base, "resolutions": [[size, size]]})
    sd = lite_state_dict(base)
    model = Supernet(space, pretrained=True).eval()
    keys = lite0_key_map([s.repeats for s in space.stages], [s.expand for s in space.stages])
    assert set(keys.values()) == {k for k in model.state_dict() if k.startswith("encoder.")}
    img = skimage.transform.resize(skimage.data.chelsea(), (size, size), anti_aliasing=True)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    head = imagenet_classifier(sd)
    with torch.no_grad():
        model.set_active(space.lite0_genome())
        feats = model.encode(x)[-1]
        top5 = head(feats).softmax(1).topk(5)
    assert feats.shape[1] == space.stages[-1].channels
    assert top5.indices[0, 0].item() in range(281, 286) and top5.values[0, 0] > 0.5, top5
