"""Search space and genome: encodings, ids, canonical form, validation, repair, size."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spaces import TINY_SPACE

from salnas.supernet.space import (
    DEFAULT_CONFIG,
    Genome,
    GenomeError,
    SearchSpace,
    bounds,
    default_space,
    max_genome,
    min_genome,
    random_genome,
    repair,
    space_size,
)

SPACE = default_space()
LO, HI = SPACE.bounds()
MAX_ID = "dbe5418d9b"  # pinned: changes only if the default space or the id scheme changes

TINY = SearchSpace(TINY_SPACE)

vectors = st.lists(st.integers(0, 10), min_size=len(HI), max_size=len(HI)).map(
    lambda v: np.minimum(np.array(v), HI))


def test_default_space_genes_and_bounds() -> None:
    names = SPACE.gene_names()
    assert len(names) == len(set(names)) == len(LO) == len(HI) == 49
    assert names[0] == "resolution" and names[-1] == "centre_bias"
    assert "s0.depth" not in names and "s0.b0.kernel" not in names  # e1 stage is fixed
    assert "s6.depth" not in names and "s6.b0.kernel" in names  # Lite0's r1 stage: depth 1
    assert (LO == 0).all() and HI.min() >= 1
    assert dict(zip(names, HI.tolist(), strict=True))["s5.depth"] == 2  # choices 2, 3, 4
    assert SPACE.depth_choices == ((1,), (1, 2), (1, 2), (1, 2, 3), (1, 2, 3), (2, 3, 4), (1,))
    assert np.array_equal(bounds()[1], HI)
    assert {SPACE.gene_group(n) for n in names} == {"resolution", "depth", "kernel", "expand",
                                                    "decoder"}


def test_max_min_and_lite0_genomes() -> None:
    big, small = max_genome(), min_genome()
    assert big.resolution == (288, 384) and small.resolution == (192, 256)
    assert big.depths == (1, 2, 2, 3, 3, 4, 1) and small.depths == (1, 1, 1, 1, 1, 2, 1)
    assert big.kernels[0] == small.kernels[0] == (3,) and big.expands[0] == (1,)
    assert all(set(k) == {5} for k in big.kernels[1:])
    assert all(set(e) == {6} for e in big.expands[1:])
    assert big.skips == (True,) * 4 and not any(small.skips)
    assert big.widths == (128, 96, 64, 32) and small.widths == (64, 48, 32, 16)
    assert big.centre_bias and not small.centre_bias
    assert np.array_equal(big.to_vector(), HI) and np.array_equal(small.to_vector(), LO)
    lite = SPACE.lite0_genome()
    assert lite.kernels == ((3,), (3, 3), (5, 5), (3, 3, 3), (5, 5, 5), (5, 5, 5, 5), (3,))


@settings(max_examples=150, deadline=None)
@given(vectors)
def test_vector_and_json_round_trip(vec: np.ndarray) -> None:
    g = Genome.from_vector(vec)
    assert Genome.from_vector(g.to_vector()) == g
    assert np.array_equal(Genome.from_vector(g.to_vector()).to_vector(), g.to_vector())
    text = g.to_json()
    assert Genome.from_json(text) == g and Genome.from_json(json.loads(text)) == g
    assert Genome.from_json(text).id == g.id


def test_json_is_readable() -> None:
    d = json.loads(max_genome().to_json(indent=2))
    assert d["resolution"] == [288, 384] and d["ops"][0] == "dynconv" and d["centre_bias"] is True
    assert d["kernels"][1] == [5, 5]


def test_id_is_pinned_stable_and_distinct() -> None:
    g = max_genome()
    assert g.id == MAX_ID and len(g.id) == 10 and int(g.id, 16) >= 0
    assert Genome.from_vector(g.to_vector()).id == MAX_ID
    ids = {random_genome(seed).id for seed in range(50)} | {min_genome().id, MAX_ID}
    assert len(ids) == 52


def test_inactive_genes_are_canonicalised() -> None:
    names = SPACE.gene_names()
    vec = LO.copy()  # s3.depth = 1: blocks 1 and 2 of stage 3 are inactive
    other = vec.copy()
    for n in ("s3.b1.kernel", "s3.b2.expand", "s5.b3.kernel"):
        other[names.index(n)] = HI[names.index(n)]
    a, b = Genome.from_vector(vec), Genome.from_vector(other)
    assert a == b and a.id == b.id and hash(a) == hash(b)
    assert np.array_equal(b.to_vector(), vec)
    assert len(a.kernels[3]) == a.depths[3] == 1


def test_random_genome_is_seeded() -> None:
    assert random_genome(3) == random_genome(3) == SPACE.random_genome(np.random.default_rng(3))
    assert len({random_genome(s) for s in range(20)}) > 15


@pytest.mark.parametrize(("change", "message"), [
    ({"kernels": ((3,), (7, 3), (5, 5), (3, 3, 3), (5, 5, 5), (5, 5, 5, 5), (3,))},
     "gene 's1.b0.kernel': 7 not in allowed values (3, 5)"),
    ({"expands": ((1,), (6, 6), (6, 6), (6, 6, 6), (6, 6, 6), (6, 6, 6, 5), (6,))},
     "gene 's5.b3.expand': 5 not in allowed values (3, 4, 6)"),
    ({"kernels": ((5,), (3, 3), (5, 5), (3, 3, 3), (5, 5, 5), (5, 5, 5, 5), (3,))},
     "gene 's0.b0.kernel': 5 not in allowed values (3,)"),
    ({"depths": (1, 2, 2, 3, 3, 1, 1)}, "gene 's5.depth': 1 not in allowed values (2, 3, 4)"),
    ({"depths": (1, 1, 2, 3, 3, 4, 1)}, "genome.kernels[1] has 2 blocks but s1.depth is 1"),
    ({"resolution": (224, 224)}, "gene 'resolution': (224, 224) not in allowed values"),
    ({"ops": ("conv3x3", "conv7x7", "conv3x3", "conv3x3")}, "gene 'd1.op': 'conv7x7'"),
    ({"widths": (128, 96, 64, 48)}, "gene 'd3.width': 48 not in allowed values (16, 24, 32)"),
    ({"skips": (True, True)}, "genome.skips has 2 entries, the space needs 4"),
])
def test_validation_names_the_gene(change: dict, message: str) -> None:
    fields = {**json.loads(SPACE.lite0_genome().to_json()), **change}
    with pytest.raises(GenomeError) as err:
        Genome(**fields)
    assert message in str(err.value)


def test_decode_and_json_errors() -> None:
    bad = HI.copy()
    bad[1] = HI[1] + 1
    with pytest.raises(GenomeError, match=r"gene 's1\.depth': index 2 outside 0\.\.1"):
        Genome.from_vector(bad)
    with pytest.raises(GenomeError, match="shape"):
        Genome.from_vector(HI[:-1])
    with pytest.raises(GenomeError, match="keys"):
        Genome.from_json('{"resolution": [192, 256]}')


def test_config_errors() -> None:
    with pytest.raises(GenomeError, match="unknown"):
        SearchSpace({"kernel": [3]})
    with pytest.raises(GenomeError, match="depth choices"):
        SearchSpace({"depths": [[1], [1], [1, 2], [1, 2, 3], [1, 2, 3], [2, 3, 4], [1]]})
    with pytest.raises(GenomeError, match="decoder_ops"):
        SearchSpace({"decoder_ops": ["conv3x3", "attention"]})
    with pytest.raises(GenomeError, match="among the choices"):
        SearchSpace({"kernels": [3, 7]})
    assert SearchSpace(DEFAULT_CONFIG) == SPACE == SearchSpace(SPACE.to_config())
    assert TINY != SPACE


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-5, 12), min_size=len(HI), max_size=len(HI)))
def test_repair_always_gives_a_valid_genome(raw: list[int]) -> None:
    g = repair(raw)
    assert isinstance(g, Genome)
    SPACE.validate(g)
    assert repair(g.to_vector()) == g  # idempotent on canonical vectors
    inside = np.clip(raw, LO, HI)
    assert g == Genome.from_vector(inside)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.floats(-3, 9), st.just(float("nan"))), min_size=len(HI),
                max_size=len(HI)))
def test_repair_accepts_real_vectors(raw: list[float]) -> None:
    SPACE.validate(repair(raw))


def test_space_size_counts_distinct_canonical_architectures() -> None:
    distinct = {TINY.decode(v) for v in TINY.enumerate_vectors()}
    # resolution 2 * stage1 (4 + 16) * stage2 4 * decoder (2 * 2 * 2) * centre bias 2
    assert len(distinct) == TINY.size() == 2 * 20 * 4 * 8 * 2
    assert len({g.id for g in distinct}) == len(distinct)
    assert space_size() == SPACE.size() == 3 * 42 * 42 * 258 * 258 * 1548 * 6 * 24**4 * 2


def test_genomes_of_other_spaces() -> None:
    g = TINY.max_genome()
    assert g.space is TINY and g.to_vector().shape == (len(TINY.genes),)
    assert Genome.from_json(g.to_json(), space=TINY) == g
    with pytest.raises(GenomeError):
        Genome.from_json(g.to_json())  # not a genome of the default space
