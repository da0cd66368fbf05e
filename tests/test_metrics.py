"""Tests of salnas.metrics against the MIT reference fixture, hand values and properties."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from salnas import metrics as M

FIXTURES = Path(__file__).parent / "fixtures"


def _load_generator():
    # The fixture generator renders the inputs from the stored parameters; it imports only
    # numpy at module level.
    spec = importlib.util.spec_from_file_location(
        "make_metrics_reference", FIXTURES / "make_metrics_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REF = _load_generator()
DATA = json.loads((FIXTURES / "metrics_reference.json").read_text())
CASES = DATA["cases"]
NAMES = [c["name"] for c in CASES]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _arrays(case):
    pred, gt, fix, other, base = REF.case_arrays(case)
    return tuple(_t(a)[None] for a in (pred, gt, fix, other, base))


def _batch():
    """All fixture cases stacked into one batch (varying fixation counts)."""
    arrays = [REF.case_arrays(c) for c in CASES]
    return tuple(torch.stack([_t(a[i]) for a in arrays]) for i in range(5))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Replay:
    """A :class:`salnas.metrics.RandomSource` answering with given draws, in order."""

    def __init__(self, integers=(), random=()):
        self.ints = [torch.as_tensor(x) for x in integers]
        self.floats = [torch.as_tensor(x, dtype=torch.float64) for x in random]

    @staticmethod
    def _shaped(x, shape):
        return x.reshape(shape) if x.numel() == math.prod(shape) else x  # wrong: left as is

    def integers(self, high, shape):
        x = self.ints.pop(0)
        assert int(x.max()) < high
        return self._shaped(x, shape)

    def random(self, shape):
        return self._shaped(self.floats.pop(0), shape)

    def done(self):
        return not self.ints and not self.floats


def _shuffle_draws(picks, m):
    """The uniforms that make the metrics' Fisher-Yates shuffle of range(m) start with
    ``picks`` (splits, k): one (1, splits) tensor per step, as sAUC draws them."""
    steps: list[list[float]] = [[] for _ in picks[0]]
    for split in picks:
        perm = list(range(m))
        for j, want in enumerate(split):
            p = perm.index(want)  # p >= j: the pick of step j is j + floor(u * (m - j))
            steps[j].append((p - j + 0.5) / (m - j))
            perm[j], perm[p] = perm[p], perm[j]
    return [torch.tensor([u], dtype=torch.float64) for u in steps]


# ------------------------------------------------------------------ reference fixture

TOL = 1e-6  # the implementations agree to ~1e-15; slack only for numpy/libm differences


@pytest.mark.parametrize("case", CASES, ids=NAMES)
def test_reference_deterministic_metrics(case):
    pred, gt, fix, _, base = _arrays(case)
    v = case["values"]
    assert M.cc(pred, gt).item() == pytest.approx(v["CC"], abs=TOL)
    assert M.nss(pred, fix).item() == pytest.approx(v["NSS"], abs=TOL)
    assert M.sim(pred, gt).item() == pytest.approx(v["SIM"], abs=TOL)
    assert M.auc_judd(pred, fix, jitter=False).item() == pytest.approx(
        v["AUC_Judd_nojitter"], abs=TOL
    )
    assert M.information_gain(pred, fix, base).item() == pytest.approx(v["IG"], abs=TOL)
    if v["KLD"] is None:  # a map with negative values
        with pytest.raises(ValueError, match="non-negative"):
            M.kld(pred, gt)
    else:
        assert M.kld(pred, gt).item() == pytest.approx(v["KLD"], abs=TOL)
    if v["IG_summed"] is not None:
        got = M.information_gain(pred, fix, base, minmax=False).item()
        assert got == pytest.approx(v["IG_summed"], abs=TOL)


def test_reference_whole_batch_at_once():
    """Every image of one batch scored at once equals its reference value."""
    pred, gt, fix, other, base = _batch()
    res = M.compute_metrics(
        pred, None, fix, baseline=base, other_fixmap=other, names=["NSS", "IG"]
    )
    for name, key in (("NSS", "NSS"), ("IG", "IG")):
        want = torch.tensor([c["values"][key] for c in CASES], dtype=torch.float64)
        torch.testing.assert_close(res[name], want, atol=TOL, rtol=0)
    for fn, key in ((M.cc, "CC"), (M.sim, "SIM")):
        want = torch.tensor([c["values"][key] for c in CASES], dtype=torch.float64)
        torch.testing.assert_close(fn(pred, gt), want, atol=TOL, rtol=0)
    want = torch.tensor([c["values"]["AUC_Judd_nojitter"] for c in CASES], dtype=torch.float64)
    torch.testing.assert_close(M.auc_judd(pred, fix, jitter=False), want, atol=TOL, rtol=0)
    keep = [i for i, c in enumerate(CASES) if c["values"]["KLD"] is not None]
    want = torch.tensor([CASES[i]["values"]["KLD"] for i in keep], dtype=torch.float64)
    torch.testing.assert_close(M.kld(pred[keep], gt[keep]), want, atol=TOL, rtol=0)


def test_reference_auc_judd_with_jitter():
    pred, _, fix, _, _ = _batch()
    got = M.auc_judd(pred, fix, jitter=True, generator=_gen(3))
    for g, case in zip(got.tolist(), CASES, strict=True):
        v = case["values"]
        # Smooth maps: the jitter changes nothing (std 0). Plateaus: the jitter breaks ties
        # at random, so compare with the reference's mean over 100 jitters.
        assert g == pytest.approx(v["AUC_Judd"], abs=max(1e-3, 4 * v["AUC_Judd_jitter_std"]))


def _sampled_cases():
    return [c for c in CASES if c["draws"]]


@pytest.mark.parametrize("case", _sampled_cases(), ids=[c["name"] for c in _sampled_cases()])
def test_reference_borji_and_shuffled_with_the_reference_draws(case):
    """Fed the reference's random pixels, both sampled AUCs match AUC_Borji.m/AUC_shuffled.m."""
    pred, _, fix, other, _ = _arrays(case)
    borji = torch.tensor(case["draws"]["borji"])  # (splits, nfix) flat pixel indices
    chosen = case["draws"]["shuffled"]  # (splits, n_neg) flat indices of other pixels
    n_splits = borji.shape[0]

    source = Replay(integers=[borji])
    got = M.auc_borji(pred, fix, n_splits=n_splits, generator=source).item()
    assert got == pytest.approx(case["values"]["AUC_Borji_draws"], abs=1e-9)
    assert source.done()

    # sAUC shuffles the positions in the image's list of other-fixated pixels (flat
    # order): hand it the uniforms that pick the positions of the reference's picks.
    other_pixels = np.flatnonzero(other.numpy().ravel() > 0).tolist()
    slots = [[other_pixels.index(q) for q in picks] for picks in chosen]
    source = Replay(random=_shuffle_draws(slots, len(other_pixels)))
    got = M.auc_shuffled(pred, fix, other, n_splits=n_splits, generator=source).item()
    assert got == pytest.approx(case["values"]["sAUC_draws"], abs=1e-9)
    assert source.done()


def test_reference_borji_and_shuffled_expectation():
    """Many splits: the means approach the exact expectations of the reference."""
    pred, _, fix, other, _ = _batch()
    n = 2000
    borji = M.auc_borji(pred, fix, n_splits=n, generator=_gen(11))
    sauc = M.auc_shuffled(pred, fix, other, n_splits=n, generator=_gen(12))
    for i, case in enumerate(CASES):
        v = case["values"]
        for got, key in ((borji[i], "AUC_Borji"), (sauc[i], "sAUC")):
            se = v.get(f"{key}_split_std", 0.0) / math.sqrt(n)
            assert got.item() == pytest.approx(v[f"{key}_expected"], abs=5 * se + 1e-9), key


# ------------------------------------------------------------------ hand-computed

P23 = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]])
F23 = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])  # values 3 and 5 fixated


def test_hand_cc():
    # centred pred -2.5..2.5 (ss 17.5), centred gt -1/3 or 2/3 (ss 4/3), cross sum 1
    assert M.cc(P23, F23).item() == pytest.approx(1 / math.sqrt(17.5 * 4 / 3), abs=1e-12)


def test_hand_kld():
    # P = x/21, Q = 1/2 at the two fixated pixels
    want = 0.5 * math.log(0.5 / (3 / 21)) + 0.5 * math.log(0.5 / (5 / 21))
    assert M.kld(P23, F23).item() == pytest.approx(want, abs=1e-12)


def test_hand_nss():
    # mean 3.5, N-1 std sqrt(3.5); z-scores -0.5/sd and 1.5/sd
    assert M.nss(P23, F23).item() == pytest.approx(0.5 / math.sqrt(3.5), abs=1e-12)


def test_hand_sim():
    # pred -> [0 1 2 3 4 5]/15, gt -> [0 0 .5 0 .5 0]; minima 2/15 + 4/15
    assert M.sim(P23, F23).item() == pytest.approx(6 / 15, abs=1e-12)


def test_hand_auc_judd():
    # normalised map 0 .2 .4 .6 .8 1, fixated .4 and .8, 4 unfixated pixels:
    # thresholds .8 -> (fp 1/4, tp 1/2), .4 -> (2/4, 1); area 1/16 + 3/16 + 1/2
    assert M.auc_judd(P23, F23, jitter=False).item() == pytest.approx(0.75, abs=1e-12)
    assert M.auc_judd(P23, F23, generator=_gen()).item() == pytest.approx(0.75, abs=1e-12)


def test_hand_auc_borji():
    pred = torch.tensor([[[0.0, 1.0]]])
    fix = torch.tensor([[[0.0, 1.0]]])
    # split 1 samples the 0 pixel (AUC 1), split 2 the fixated 1 pixel (AUC 0.5)
    source = Replay(integers=[[[0, 1]]])
    got = M.auc_borji(pred, fix, n_splits=2, generator=source).item()
    assert got == pytest.approx(0.75, abs=1e-12)
    with pytest.raises(ValueError, match=r"generator.integers returned shape \(1, 3\)"):
        M.auc_borji(pred, fix, n_splits=2, generator=Replay(integers=[[[0, 1, 1]]]))


def test_hand_auc_shuffled_replayed_picks():
    """The shuffle picks exactly the replayed positions, without replacement."""
    pred = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]])
    fix = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]])  # value 6: above every other
    other = torch.tensor([[[1.0, 1.0, 1.0, 0.0, 0.0, 1.0]]])  # other pixels 0, 1, 2, 5
    # split 1 picks other pixel 5 (the fixated one: AUC 0.5), split 2 pixel 0 (AUC 1)
    source = Replay(random=_shuffle_draws([[3], [0]], 4))
    got = M.auc_shuffled(pred, fix, other, n_splits=2, generator=source).item()
    assert got == pytest.approx(0.75, abs=1e-12) and source.done()


def test_hand_auc_borji_statistics():
    pred = torch.tensor([[[0.0, 1.0]]])
    fix = torch.tensor([[[0.0, 1.0]]])
    got = M.auc_borji(pred, fix, n_splits=4000, generator=_gen(5)).item()
    assert got == pytest.approx(0.75, abs=5 * 0.25 / math.sqrt(4000))


def test_hand_auc_shuffled():
    # as many other pixels as fixations, so every split takes all of them
    low = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])  # values 1, 2: below both
    assert M.auc_shuffled(P23, F23, low, generator=_gen()).item() == pytest.approx(1.0)
    mixed = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # values 1 and 6
    assert M.auc_shuffled(P23, F23, mixed, generator=_gen()).item() == pytest.approx(0.5)


def test_hand_information_gain():
    base = torch.tensor([[[1.0, 1.0, 1.0], [1.0, 1.0, 2.0]]])
    # min-max makes the baseline 0 at both fixations: log2(eps) = -52 bits (InfoGain.m)
    want = 52 + (math.log2(2 / 15) + math.log2(4 / 15)) / 2
    assert M.information_gain(P23, F23, base).item() == pytest.approx(want, abs=1e-9)
    # sum-normalised only: P = x/21, B = [1 1 1 1 1 2]/7
    want = 0.5 * math.log2((5 / 21) / (1 / 7))
    got = M.information_gain(P23, F23, base, minmax=False).item()
    assert got == pytest.approx(want, abs=1e-9)


# ------------------------------------------------------------------ edge cases


def test_constant_prediction():
    pred = torch.full((2, 4, 5), 0.3)
    gt = torch.rand(2, 4, 5, generator=_gen())
    fix = torch.zeros(2, 4, 5)
    fix[:, 1, 2] = 1
    fix[1, 3, 4] = 2
    other = torch.zeros(2, 4, 5)
    other[:, 0, :] = 1
    res = M.compute_metrics(pred, gt, fix, baseline=gt, other_fixmap=other, generator=_gen())
    for name in ("CC", "NSS"):
        assert res[name].tolist() == [0.0, 0.0]
    for name in ("AUC_Judd", "AUC_Borji", "sAUC"):
        assert res[name].tolist() == [0.5, 0.5]
    assert all(torch.isfinite(v).all() for v in res.values())


def test_zero_prediction_is_uniform():
    gt = torch.rand(2, 4, 5, generator=_gen()) + 0.1
    fix = (gt > 0.6).float()
    fix[:, 0, 0] = 1
    base = torch.rand(2, 4, 5, generator=_gen(1))
    zero, ones = torch.zeros(2, 4, 5), torch.ones(2, 4, 5)
    torch.testing.assert_close(M.kld(zero, gt), M.kld(ones, gt))
    torch.testing.assert_close(M.sim(zero, gt), M.sim(ones, gt))
    torch.testing.assert_close(M.information_gain(zero, fix, base),
                               M.information_gain(ones, fix, base))
    u = torch.full((2, 20), 1 / 20, dtype=torch.float64)
    q = gt.reshape(2, -1).double() / gt.reshape(2, -1).double().sum(1, keepdim=True)
    want = (q * torch.log(M.EPS + q / (u + M.EPS))).sum(1)
    torch.testing.assert_close(M.kld(zero, gt), want)


def test_single_fixation():
    pred = torch.arange(12.0).reshape(1, 3, 4)
    fix = torch.zeros(1, 3, 4)
    fix[0, 2, 3] = 1  # the maximum
    assert M.auc_judd(pred, fix, jitter=False).item() == pytest.approx(1.0)
    z = (11 - 5.5) / torch.arange(12.0).double().std().item()
    assert M.nss(pred, fix).item() == pytest.approx(z)


def test_duplicate_fixations_count_once():
    pred = torch.rand(1, 6, 7, generator=_gen(2))
    once = torch.zeros(1, 6, 7)
    once[0, 1, 1] = once[0, 4, 5] = 1
    many = once.clone()
    many[0, 1, 1] = 5
    base = torch.rand(1, 6, 7, generator=_gen(3))
    for fn in (M.nss, lambda p, f: M.auc_judd(p, f, jitter=False),
               lambda p, f: M.information_gain(p, f, base)):
        torch.testing.assert_close(fn(pred, many), fn(pred, once))


def test_empty_fixations_raise_with_index():
    pred = torch.rand(3, 4, 4, generator=_gen())
    fix = torch.zeros(3, 4, 4)
    fix[0, 1, 1] = fix[2, 0, 0] = 1
    for fn in (M.nss, M.auc_judd, M.auc_borji,
               lambda p, f: M.information_gain(p, f, p)):
        with pytest.raises(ValueError, match="batch index 1"):
            fn(pred, fix)
    with pytest.raises(ValueError, match="other_fixmap has no fixation"):
        M.auc_shuffled(pred, torch.ones(3, 4, 4), fix)


def test_zero_density_raises():
    pred = torch.rand(2, 4, 4, generator=_gen())
    gt = torch.rand(2, 4, 4, generator=_gen(1))
    gt[1] = 0
    for fn in (M.cc, M.kld, M.sim):
        with pytest.raises(ValueError, match=r"all zero.*batch index 1"):
            fn(pred, gt)


def test_shape_mismatch_says_resize():
    pred = torch.rand(2, 4, 4)
    gt = torch.rand(2, 8, 8)
    with pytest.raises(ValueError, match="resize_to"):
        M.cc(pred, gt)
    with pytest.raises(ValueError, match="resize_to"):
        M.nss(pred, gt)
    with pytest.raises(ValueError, match="2 images"):
        M.cc(pred, torch.rand(3, 4, 4))
    assert torch.isfinite(M.cc(M.resize_to(pred, gt.shape[-2:]), gt)).all()


def test_other_invalid_inputs_raise():
    pred = torch.rand(2, 4, 4, generator=_gen())
    gt = torch.rand(2, 4, 4, generator=_gen(1))
    bad = pred.clone()
    bad[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf.*batch index 1"):
        M.cc(bad, gt)
    with pytest.raises(ValueError, match="non-negative"):
        M.kld(pred - 0.5, gt)
    with pytest.raises(ValueError, match="every pixel is fixated"):
        M.auc_judd(pred, torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="n_splits"):
        M.auc_borji(pred, torch.ones(2, 4, 4), n_splits=0)
    with pytest.raises(ValueError, match="step"):
        M.auc_borji(pred, torch.ones(2, 4, 4), step=0)


# ------------------------------------------------------------------ properties

_DIM = st.integers(2, 6)


@st.composite
def _maps(draw, batch=3):
    h, w = draw(_DIM), draw(_DIM)
    shape = (batch, h, w)
    vals = st.floats(0, 1, allow_nan=False, width=32)
    pred = draw(hnp.arrays(np.float32, shape, elements=vals))
    gt = draw(hnp.arrays(np.float32, shape, elements=vals))
    fix = draw(hnp.arrays(np.int8, shape, elements=st.integers(0, 2)))
    gt[:, 0, 0] += 0.5  # a density with some mass
    fix[:, -1, -1] = 1  # at least one fixated pixel...
    fix[:, 0, 0] = 0  # ...and one unfixated
    return torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(fix)


@settings(max_examples=30, deadline=None)
@given(_maps())
def test_batch_equals_single_images(maps):
    pred, gt, fix = maps
    fns = {
        "cc": lambda p, g, f: M.cc(p, g),
        "kld": lambda p, g, f: M.kld(p, g),
        "nss": lambda p, g, f: M.nss(p, f),
        "sim": lambda p, g, f: M.sim(p, g),
        "judd": lambda p, g, f: M.auc_judd(p, f, jitter=False),
        "ig": lambda p, g, f: M.information_gain(p, f, g),
    }
    for name, fn in fns.items():
        batch = fn(pred, gt, fix)
        assert batch.shape == (pred.shape[0],) and batch.dtype == torch.float64
        assert torch.isfinite(batch).all(), name
        single = torch.cat([fn(pred[i], gt[i], fix[i]) for i in range(pred.shape[0])])
        torch.testing.assert_close(batch, single, rtol=0, atol=1e-12, msg=name)


@settings(max_examples=30, deadline=None)
@given(_maps())
def test_ranges_and_identities(maps):
    pred, gt, fix = maps
    c = M.cc(pred, gt)
    assert ((c >= -1) & (c <= 1)).all()
    if (pred.sum((1, 2)) > 0).all():  # pred is a valid density too: CC is symmetric
        torch.testing.assert_close(c, M.cc(gt, pred), rtol=0, atol=1e-12)
    s = M.sim(pred, gt)
    assert ((s >= 0) & (s <= 1)).all()
    torch.testing.assert_close(M.sim(gt, gt), torch.ones(3, dtype=torch.float64))
    assert M.kld(gt, gt).abs().max() < 1e-9
    assert (M.kld(pred, gt) > -1e-9).all()
    other = 1 - fix.clamp(max=1)
    for a in (M.auc_judd(pred, fix, generator=_gen()),
              M.auc_borji(pred, fix, n_splits=10, generator=_gen()),
              M.auc_shuffled(pred, fix, other, n_splits=10, generator=_gen())):
        assert ((a >= 0) & (a <= 1)).all()


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(np.int64, (2, 3, 4), elements=st.integers(0, 20)),
    st.sampled_from([0.5, 2.0, 3.0, 10.0]),
    st.sampled_from([-5.0, 0.0, 1.5, 100.0]),
)
def test_affine_invariance(x, a, b):
    # small integers: a * x + b is exact, so ranks and ties are kept exactly
    pred = torch.from_numpy(x).double()
    gt = torch.rand(2, 3, 4, generator=_gen(), dtype=torch.float64)
    fix = torch.zeros(2, 3, 4)
    fix[:, 0, 1] = fix[:, 2, 3] = 1
    moved = a * pred + b
    torch.testing.assert_close(M.cc(moved, gt), M.cc(pred, gt), rtol=0, atol=1e-9)
    torch.testing.assert_close(M.nss(moved, fix), M.nss(pred, fix), rtol=0, atol=1e-9)
    torch.testing.assert_close(M.auc_judd(moved, fix, jitter=False),
                               M.auc_judd(pred, fix, jitter=False))
    torch.testing.assert_close(M.auc_borji(moved, fix, n_splits=5, generator=_gen(1)),
                               M.auc_borji(pred, fix, n_splits=5, generator=_gen(1)))
    other = torch.zeros(2, 3, 4)
    other[:, 1, :] = 1
    torch.testing.assert_close(M.auc_shuffled(moved, fix, other, n_splits=5, generator=_gen(2)),
                               M.auc_shuffled(pred, fix, other, n_splits=5, generator=_gen(2)))


def test_cc_is_symmetric():
    x = torch.rand(4, 5, 6, generator=_gen(1))
    y = torch.rand(4, 5, 6, generator=_gen(2))
    torch.testing.assert_close(M.cc(x, y), M.cc(y, x), rtol=0, atol=1e-14)


def test_sampled_aucs_are_deterministic_per_generator():
    pred, _, fix, other, _ = _batch()
    a = M.auc_borji(pred, fix, generator=_gen(4))
    torch.testing.assert_close(a, M.auc_borji(pred, fix, generator=_gen(4)), rtol=0, atol=0)
    s = M.auc_shuffled(pred, fix, other, generator=_gen(4))
    torch.testing.assert_close(s, M.auc_shuffled(pred, fix, other, generator=_gen(4)),
                               rtol=0, atol=0)


def test_cpu_chunking_changes_nothing(monkeypatch):
    """Scores do not depend on the CPU chunk plan, random metrics included."""
    pred, gt, fix, other, base = _batch()
    keep = [i for i, c in enumerate(CASES) if c["values"]["KLD"] is not None]
    args = [t[keep] for t in (pred, gt, fix, other, base)]

    def run():
        return M.compute_metrics(*args[:3], baseline=args[4], other_fixmap=args[3],
                                 generator=_gen(8))

    whole = run()
    monkeypatch.setattr(M, "_CPU_CHUNK_ELEMENTS", 2 * 48 * 64 + 1)  # chunks of 2 images
    chunked = run()
    for name in whole:
        torch.testing.assert_close(chunked[name], whole[name], rtol=0, atol=1e-15, msg=name)


def test_sampled_aucs_chunked_batches(monkeypatch):
    """Memory chunking over images does not change the statistics."""
    pred, _, fix, other, _ = _batch()
    monkeypatch.setattr(M, "_CHUNK_ELEMENTS", 1)  # one image per chunk
    got = M.auc_shuffled(pred, fix, other, n_splits=2000, generator=_gen(9))
    for i, case in enumerate(CASES):
        v = case["values"]
        se = v.get("sAUC_split_std", 0.0) / math.sqrt(2000)
        assert got[i].item() == pytest.approx(v["sAUC_expected"], abs=5 * se + 1e-9)


# ------------------------------------------------------------------ API, autograd, CUDA


def test_compute_metrics_names_and_defaults():
    pred, gt, fix, other, base = _batch()
    pred, gt, fix, other, base = pred[:3], gt[:3], fix[:3], other[:3], base[:3]
    assert list(M.compute_metrics(pred, gt, fix)) == [
        "CC", "KLD", "NSS", "SIM", "AUC_Judd", "AUC_Borji"
    ]
    res = M.compute_metrics(pred, gt, fix, baseline=base, other_fixmap=other, generator=_gen())
    assert tuple(res) == M.METRIC_NAMES
    assert set(M.HIGHER_IS_BETTER) == set(M.METRIC_NAMES) and not M.HIGHER_IS_BETTER["KLD"]
    torch.testing.assert_close(res["CC"], M.cc(pred, gt))
    torch.testing.assert_close(res["IG"], M.information_gain(pred, fix, base))
    assert list(M.compute_metrics(pred, gt, None, names=["SIM", "CC"])) == ["CC", "SIM"]
    with pytest.raises(ValueError, match="unknown"):
        M.compute_metrics(pred, gt, fix, names=["AUC"])
    with pytest.raises(ValueError, match="sAUC needs other_fixmap"):
        M.compute_metrics(pred, gt, fix, names=["sAUC"])
    # the random metrics draw in METRIC_NAMES order: same as calling them in turn
    g = _gen(21)
    one_by_one = [M.auc_judd(pred, fix, generator=g), M.auc_borji(pred, fix, generator=g),
                  M.auc_shuffled(pred, fix, other, generator=g)]
    res = M.compute_metrics(pred, gt, fix, baseline=base, other_fixmap=other, generator=_gen(21))
    for got, name in zip(one_by_one, ("AUC_Judd", "AUC_Borji", "sAUC"), strict=True):
        torch.testing.assert_close(res[name], got, rtol=0, atol=0)
    # one baseline map shared by the batch
    one = M.information_gain(pred, fix, base[0])
    torch.testing.assert_close(one, M.information_gain(pred, fix, base[:1].expand(3, -1, -1)))


def test_resize_to():
    x = torch.rand(2, 6, 8, generator=_gen())
    assert M.resize_to(x, (12, 16)).shape == (2, 12, 16)
    assert M.resize_to(x[0], torch.Size([3, 4])).shape == (3, 4)
    assert M.resize_to(x, (6, 8)) is x
    torch.testing.assert_close(M.resize_to(torch.full((1, 3, 3), 2.0), (7, 5)),
                               torch.full((1, 7, 5), 2.0))


@pytest.mark.parametrize("name", ["cc", "kld", "nss", "sim"])
def test_gradients_flow(name):
    torch.manual_seed(0)
    pred = (torch.rand(2, 3, 4, dtype=torch.float64) + 0.1).requires_grad_()
    gt = torch.rand(2, 3, 4, dtype=torch.float64) + 0.05
    fix = (gt > 0.5).double()
    fix[:, 0, 0] = 1
    other = fix if name == "nss" else gt
    fn = getattr(M, name)
    assert torch.autograd.gradcheck(lambda p: fn(p, other), (pred,))
    out = fn(pred.float(), other)
    out.sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("name", ["cc", "kld", "nss", "sim"])
def test_gradients_finite_on_constant_maps(name):
    pred = torch.ones(2, 3, 4, requires_grad=True)
    gt = torch.rand(2, 3, 4, generator=_gen())
    fix = torch.zeros(2, 3, 4)
    fix[:, 1, 1] = 1
    getattr(M, name)(pred, fix if name == "nss" else gt).sum().backward()
    assert torch.isfinite(pred.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    pred, gt, fix, other, base = _batch()
    keep = [i for i, c in enumerate(CASES) if c["values"]["KLD"] is not None]
    args = [t[keep] for t in (pred, gt, fix, other, base)]
    cpu = M.compute_metrics(*args[:3], baseline=args[4], other_fixmap=args[3], generator=_gen(1))
    dev = [t.cuda() for t in args]
    gpu = M.compute_metrics(*dev[:3], baseline=dev[4], other_fixmap=dev[3], generator=_gen(1))
    for name in cpu:
        assert gpu[name].is_cuda
        torch.testing.assert_close(gpu[name].cpu(), cpu[name], rtol=0, atol=1e-9, msg=name)
