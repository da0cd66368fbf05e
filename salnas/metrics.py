"""Saliency metrics of the MIT saliency benchmark, batched in torch.

Definitions transcribe the MIT benchmark code (``code_forMetrics``: ``CC.m``,
``KLdiv.m``, ``NSS.m``, ``similarity.m``, ``AUC_Judd.m``, ``AUC_Borji.m``,
``AUC_shuffled.m``, ``InfoGain.m``); ``tests/fixtures/metrics_reference.json`` pins them
to a loop-based numpy transcription cross-checked against pysaliency.

Conventions (the one place that defines them):

* **Shapes.** Every map is ``(B, H, W)``; ``(H, W)`` is read as a batch of one and
  ``(B, 1, H, W)`` drops the channel. Every function returns a float64 tensor of shape
  ``(B,)`` on the prediction's device, one score per image; nothing is averaged.
  Computation runs in float64 (the MIT code is double precision throughout).
* **Resizing.** A prediction whose size differs from the ground truth raises
  ``ValueError``: resize it first with :func:`resize_to` (bilinear,
  ``align_corners=False``, no antialiasing). The MIT code resizes inside each metric
  with ``imresize`` (bicubic, antialiased), so resized maps score slightly differently.
* **Fixation maps** hold fixation counts per pixel. As in the MIT code
  (``logical(fixationMap)``), a pixel counts **once** however many fixations fell on it:
  NSS, IG and the AUCs average over fixated *pixels*, not fixations.
* ``EPS = 2.220446049250313e-16`` is MATLAB's ``eps`` (printed ``2.2204e-16``).
* **Standard deviation.** NSS z-scores with the N-1 std of MATLAB's ``std``
  (pysaliency uses N: its NSS is larger by ``sqrt(N / (N - 1))``). CC is the Pearson
  coefficient, which is the same whichever std one uses.
* **IG** follows ``InfoGain.m``: both maps are min-max normalised *and then*
  sum-normalised; ``minmax=False`` skips the min-max step (plain sum normalisation).
* **Randomness** (AUC-Judd jitter, AUC-Borji and sAUC negatives) comes from
  ``generator``, consumed in ``METRIC_NAMES`` order: a ``torch.Generator`` (None: torch's
  global one) or any :class:`RandomSource`, e.g. one replaying given draws. Numbers are
  drawn on the generator's device and moved to the data, and how they are laid out does
  not depend on the device, so a CPU generator gives the same scores for CPU and CUDA
  data. The same generator state gives the same scores. The draws, in order: AUC-Judd
  one ``random((B, N))`` (the jitter, before scaling by ``JUDD_JITTER``); AUC-Borji per
  block of images one ``integers(N, (b, n_splits * kmax))``, the flat pixel indices of
  the negatives, split-major, image i using the first ``#fixated_i`` of each split's
  ``kmax``; sAUC per block of images, for each of the ``k = max min(#fixated, #other)``
  steps of a Fisher-Yates shuffle of each image's other-fixated pixels (in flat order)
  one ``random((b, n_splits))``, the pick of step j being ``j + floor(u * (#other - j))``.
  Blocks hold about ``_CHUNK_ELEMENTS`` draws (a single block for small batches).
* **Speed.** Inputs are validated with reductions only; on the CPU the dense work runs
  in chunks of images of about ``_CPU_CHUNK_ELEMENTS`` pixels, so float64 temporaries
  stay in cache instead of being allocated (and page-faulted) at full batch size. The
  AUCs only touch the fixated and sampled pixels besides one pass for AUC-Judd.

Edge cases never yield NaN: each has a defined value or raises ``ValueError``
(what the MIT code gives is in brackets):

* constant prediction (all zero included): CC 0 and NSS 0 [NaN, the std is 0];
  AUC-Judd, AUC-Borji and sAUC 0.5 [AUC-Judd with jitter: the jitter alone ranks the
  pixels, a random value about 0.5; without jitter, and AUC-Borji/sAUC: NaN from the
  0/0 min-max]. The test is exact (max == min), made before any jitter.
* all-zero or constant prediction: KLD, SIM and IG use the uniform map 1/N [KLD: an
  all-zero map stays zero, a huge score ``sum Q log(EPS + Q/EPS)``, a constant one is
  uniform anyway; SIM: all-zero gives 0, constant NaN; IG: NaN].
* constant (uniform) ground-truth density: CC 0, SIM uses the uniform map [NaN].
* an image without fixations: ``ValueError`` naming the batch index [NaN].
* ground-truth density all zero: ``ValueError`` naming the batch index [CC NaN, KLD 0,
  SIM 0].
* AUC-Judd with every pixel fixated (no negatives): ``ValueError`` [NaN].
* sAUC with an empty ``other_fixmap``: ``ValueError`` naming the batch index [NaN].
* a negative prediction in KLD (or in IG with ``minmax=False``): ``ValueError``.
* NaN or inf in any input: ``ValueError`` naming the batch index [NaN].

``cc``, ``kld``, ``nss`` and ``sim`` are differentiable (the training losses reuse
them); the AUCs and IG are evaluation-only and ignore gradients.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "EPS",
    "HIGHER_IS_BETTER",
    "METRIC_NAMES",
    "RandomSource",
    "Randomness",
    "auc_borji",
    "auc_judd",
    "auc_shuffled",
    "cc",
    "compute_metrics",
    "information_gain",
    "kld",
    "nss",
    "resize_to",
    "sim",
]

EPS = 2.220446049250313e-16  # MATLAB eps, as in KLdiv.m and InfoGain.m
JUDD_JITTER = 1e-7  # AUC_Judd.m: rand(size(map)) / 10000000

METRIC_NAMES: tuple[str, ...] = ("CC", "KLD", "NSS", "SIM", "AUC_Judd", "AUC_Borji", "sAUC", "IG")
HIGHER_IS_BETTER: dict[str, bool] = {
    "CC": True,
    "KLD": False,
    "NSS": True,
    "SIM": True,
    "AUC_Judd": True,
    "AUC_Borji": True,
    "sAUC": True,
    "IG": True,
}

# CPU only: dense float64 work runs on chunks of about this many pixels (1 MiB per
# temporary), which keeps temporaries in cache and out of fresh, page-faulting memory.
_CPU_CHUNK_ELEMENTS = 1 << 17
# Sampled AUCs: bound on the (images x splits x samples) elements of one block; the same
# on every device so that the random draws, and thus the scores, do not depend on it.
_CHUNK_ELEMENTS = 1 << 20

_NEEDS: dict[str, tuple[str, ...]] = {
    "CC": ("gt_density",),
    "KLD": ("gt_density",),
    "NSS": ("fixmap",),
    "SIM": ("gt_density",),
    "AUC_Judd": ("fixmap",),
    "AUC_Borji": ("fixmap",),
    "sAUC": ("fixmap", "other_fixmap"),
    "IG": ("fixmap", "baseline"),
}
_DENSE = ("CC", "KLD", "NSS", "SIM", "AUC_Judd", "IG")

_T = TypeVar("_T")


class RandomSource(Protocol):
    """A source of the sampled metrics' random numbers besides a ``torch.Generator``.

    Both methods return tensors of exactly ``shape`` (on any device; they are moved to
    the data): ``random`` float uniforms in [0, 1), ``integers`` integer uniforms in
    [0, high). The module docstring ("Randomness") says which calls each metric makes, so
    a source can replay given draws (a reference implementation's) or adapt another
    generator, e.g. ``torch.from_numpy(rng.random(shape))`` of a numpy ``Generator``.
    """

    def random(self, shape: tuple[int, ...]) -> Tensor: ...

    def integers(self, high: int, shape: tuple[int, ...]) -> Tensor: ...


Randomness = torch.Generator | RandomSource | None


# --------------------------------------------------------------------------- inputs


def resize_to(pred: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinearly resize ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)`` maps to ``size=(h, w)``.

    ``align_corners=False`` and no antialiasing; the rank of ``pred`` is kept. This is the
    resizing policy for scoring: resize predictions to the ground-truth size first.
    """
    h, w = (int(s) for s in tuple(size)[-2:])
    if pred.dim() not in (2, 3, 4) or (pred.dim() == 4 and pred.shape[1] != 1):
        raise ValueError(
            f"expected (H, W), (B, H, W) or (B, 1, H, W) maps, got shape {tuple(pred.shape)}"
        )
    if tuple(pred.shape[-2:]) == (h, w):
        return pred
    x = pred if pred.is_floating_point() else pred.to(torch.float32)
    x4 = x.reshape(-1, 1, *x.shape[-2:])
    out = F.interpolate(x4, size=(h, w), mode="bilinear", align_corners=False)
    return out.reshape(*x.shape[:-2], h, w)


def _batched(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 2:
        return x.unsqueeze(0)
    if x.dim() == 3:
        return x
    if x.dim() == 4 and x.shape[1] == 1:
        return x[:, 0]
    raise ValueError(
        f"{name} must be (B, H, W), (H, W) or (B, 1, H, W); got shape {tuple(x.shape)}"
    )


def _indices(bad: Tensor) -> str:
    idx = torch.nonzero(bad).flatten().tolist()
    return f"batch index {idx[0]}" if len(idx) == 1 else f"batch indices {idx}"


def _given(x: _T | None, name: str) -> _T:
    """``x``, which the metric being computed needs."""
    if x is None:
        raise ValueError(f"{name} is required")
    return x


def _align(pred_shape: torch.Size, other: Tensor | None, name: str,
           device: torch.device) -> Tensor:
    """``other`` as (B, N) on ``device``, checked against the prediction's (B, H, W); a
    single map is broadcast (a view, no copy)."""
    other = _batched(_given(other, name), name)
    if tuple(other.shape[-2:]) != tuple(pred_shape[-2:]):
        h, w = other.shape[-2:]
        raise ValueError(
            f"pred is {pred_shape[-2]}x{pred_shape[-1]} but {name} is {h}x{w}; resize the "
            f"prediction first with salnas.metrics.resize_to(pred, {name}.shape[-2:])"
        )
    if other.shape[0] != pred_shape[0]:
        if other.shape[0] != 1:
            raise ValueError(f"pred has {pred_shape[0]} images but {name} has {other.shape[0]}")
        other = other.expand(pred_shape[0], -1, -1)
    return other.to(device).reshape(pred_shape[0], -1)


def _check_finite(x: Tensor, name: str) -> None:
    """Raise on NaN/inf in the rows of a (B, N) tensor."""
    x = x.detach()
    if not x.is_floating_point():
        return
    # A row sum is finite unless the row holds NaN/inf (or overflows): one cheap
    # reduction, and the elementwise test only when it fails.
    if bool(torch.isfinite(x.sum(dim=1)).all()):
        return
    bad = ~torch.isfinite(x).all(dim=1)
    if bool(bad.any()):
        raise ValueError(f"{name} contains NaN or inf ({_indices(bad)})")


def _check_nonnegative(x: Tensor, name: str, why: str) -> None:
    neg = x.detach().amin(dim=1) < 0
    if bool(neg.any()):
        raise ValueError(f"{name} has negative values ({_indices(neg)}); {why}")


def _check_density(g: Tensor, name: str) -> None:
    _check_finite(g, name)
    _check_nonnegative(g, name, "a density cannot")
    zero = g.detach().sum(dim=1) == 0
    if bool(zero.any()):
        raise ValueError(f"{name} is all zero ({_indices(zero)}); a density needs some mass")


class _Fix(NamedTuple):
    """Fixated pixels of a batch; a pixel with several fixations counts once."""

    row: Tensor  # (M,) image of each fixated pixel, images in order
    pix: Tensor  # (M,) flat pixel index
    pos: Tensor  # (M,) rank of the pixel among its image's fixated pixels
    counts: Tensor  # (B,) int64 fixated pixels per image (``count`` is tuple's method)
    bounds: list[int]  # image i owns entries bounds[i]:bounds[i + 1]
    kmax: int  # largest count

    def images(self, c: slice) -> _Fix:
        """The fixations of images ``c`` (a contiguous range), renumbered from 0."""
        if c.start == 0 and c.stop == self.counts.numel():
            return self
        a, b = self.bounds[c.start], self.bounds[c.stop]
        count = self.counts[c]
        return _Fix(self.row[a:b] - c.start, self.pix[a:b], self.pos[a:b], count,
                    [x - a for x in self.bounds[c.start:c.stop + 1]], int(count.max()))


def _fixations(f: Tensor, name: str) -> _Fix:
    """Fixated pixels of a (B, N) count map."""
    f = f.detach()
    if f.dtype != torch.bool:
        _check_finite(f, name)
        _check_nonnegative(f, name, "fixation maps hold counts")
        f = f > 0  # binary, as logical(fixationMap) in the MIT code
    count = f.sum(dim=1)
    empty = count == 0
    if bool(empty.any()):
        raise ValueError(
            f"{name} has no fixation ({_indices(empty)}); these metrics need at least one"
        )
    # Fixations are sparse: the metrics work on the M fixated pixels, not on (B, N) masks.
    row, pix = f.nonzero(as_tuple=True)
    ends = count.cumsum(0)
    pos = torch.arange(row.numel(), device=f.device) - (ends - count)[row]
    return _Fix(row, pix, pos, count, [0, *ends.tolist()], int(count.max()))


def _padded(fx: _Fix, values: Tensor, fill: float) -> Tensor:
    """Per-pixel ``values`` (M,) laid out as (B, kmax), ``fill`` past each image's count."""
    out = torch.full((fx.counts.numel(), fx.kmax), fill, dtype=values.dtype, device=values.device)
    out[fx.row, fx.pos] = values
    return out


def _fixation_mean(fx: _Fix, values: Tensor) -> Tensor:
    """Mean of per-pixel ``values`` (M,) over each image's fixated pixels. Differentiable."""
    total = torch.zeros(fx.counts.numel(), dtype=values.dtype, device=values.device)
    return total.index_add(0, fx.row, values) / fx.counts.to(values.dtype)


def _drawn(x: Tensor, shape: tuple[int, ...], dtype: torch.dtype, what: str,
           device: torch.device) -> Tensor:
    """A :class:`RandomSource`'s answer, checked and converted."""
    x = torch.as_tensor(x)
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"generator.{what} returned shape {tuple(x.shape)}, "
                         f"expected {tuple(shape)}")
    return x.to(device=device, dtype=dtype)


def _rand(shape: tuple[int, ...], generator: Randomness, device: torch.device) -> Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        src = generator.device if generator is not None else device
        return torch.rand(shape, generator=generator, device=src, dtype=torch.float64).to(device)
    return _drawn(generator.random(shape), shape, torch.float64, "random", device)


def _randint(high: int, shape: tuple[int, ...], generator: Randomness,
             device: torch.device) -> Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        src = generator.device if generator is not None else device
        return torch.randint(high, shape, generator=generator, device=src).to(device)
    return _drawn(generator.integers(high, shape), shape, torch.int64, "integers", device)


def _dense_chunks(b: int, n: int, device: torch.device) -> list[slice]:
    step = max(1, _CPU_CHUNK_ELEMENTS // max(n, 1)) if device.type == "cpu" else b
    return [slice(i, min(i + step, b)) for i in range(0, b, step)]


# --------------------------------------------------------------------------- helpers


def _constant(x: Tensor) -> Tensor:
    """(B,) bool: the map has a single value (exact test, no tolerance)."""
    x = x.detach()
    return x.amax(dim=1) == x.amin(dim=1)


def _sum_normalise(x: Tensor) -> Tensor:
    """Divide by the sum; an all-zero map becomes the uniform map 1/N."""
    s = x.sum(dim=1, keepdim=True)
    # (0 + 1) / (0 + N) on all-zero rows; no 0/0 anywhere, so the backward pass stays finite.
    zero = (s == 0).to(x.dtype)
    return (x + zero) / (s + zero * x.shape[1])


def _minmax_sum_normalise(x: Tensor) -> Tensor:
    """Min-max to [0, 1], then sum to 1 (similarity.m, InfoGain.m); constant -> 1/N.

    ``((x - lo) / span) / sum(...)`` equals ``(x - lo) / sum(x - lo)``: one division.
    """
    d = x - x.amin(dim=1, keepdim=True)
    s = d.sum(dim=1, keepdim=True)
    const = (s == 0).to(x.dtype)  # s > 0 as soon as max > min
    return (d + const) / (s + const * x.shape[1])


def _span(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """float64 row minimum, max - min (1 for constant rows) and the constant mask."""
    x = x.detach()
    lo = x.amin(dim=1).to(torch.float64)
    span = x.amax(dim=1).to(torch.float64) - lo
    const = span == 0
    return lo, torch.where(const, torch.ones_like(span), span), const


# --------------------------------------------------------------------------- dense cores
# p, g, b: float64 (B, N) chunks; fx: the chunk's fixations.


def _cc(p: Tensor, g: Tensor) -> Tensor:
    pc = p - p.mean(dim=1, keepdim=True)
    gc = g - g.mean(dim=1, keepdim=True)
    spp = (pc * pc).sum(dim=1)
    sgg = (gc * gc).sum(dim=1)
    degenerate = _constant(p) | _constant(g) | (spp.detach() == 0) | (sgg.detach() == 0)
    one = torch.ones_like(spp)
    # sqrt of a guarded value: sqrt'(0) = inf would turn the masked branch's grad into NaN.
    den = torch.sqrt(torch.where(degenerate, one, spp))
    den = den * torch.sqrt(torch.where(degenerate, one, sgg))
    r = torch.where(degenerate, torch.zeros_like(spp), (pc * gc).sum(dim=1) / den)
    return r.clamp(-1.0, 1.0)  # rounding can leave |r| a few ulp above 1


def _kld(p: Tensor, g: Tensor) -> Tensor:
    P = _sum_normalise(p)
    Q = g / g.sum(dim=1, keepdim=True)
    return (Q * torch.log(EPS + Q / (P + EPS))).sum(dim=1)


def _nss(p: Tensor, fx: _Fix) -> Tensor:
    n = p.shape[1]
    c = p - p.mean(dim=1, keepdim=True)
    var = (c * c).sum(dim=1) / max(n - 1, 1)  # N-1, as MATLAB std
    const = _constant(p) | (var.detach() == 0)
    std = torch.sqrt(torch.where(const, torch.ones_like(var), var))
    val = _fixation_mean(fx, c[fx.row, fx.pix]) / std
    return torch.where(const, torch.zeros_like(val), val)


def _sim(p: Tensor, g: Tensor) -> Tensor:
    inter = torch.minimum(_minmax_sum_normalise(p), _minmax_sum_normalise(g)).sum(dim=1)
    return inter.clamp(0.0, 1.0)


def _normalised_at(x: Tensor, fx: _Fix, minmax: bool) -> Tensor:
    """The normalised map of IG at the fixated pixels only (M,): no full-map log."""
    n = x.shape[1]
    if minmax:
        lo = x.amin(dim=1)
        s = (x - lo.unsqueeze(1)).sum(dim=1)
        at = x[fx.row, fx.pix] - lo[fx.row]
    else:
        s = x.sum(dim=1)
        at = x[fx.row, fx.pix]
    const = (s == 0).to(x.dtype)  # constant (minmax) or all-zero map -> uniform
    return (at + const[fx.row]) / (s + const * n)[fx.row]


def _ig(p: Tensor, fx: _Fix, b: Tensor, minmax: bool) -> Tensor:
    P = _normalised_at(p, fx, minmax)
    Bm = _normalised_at(b, fx, minmax)
    return _fixation_mean(fx, torch.log2(EPS + P) - torch.log2(EPS + Bm))


def _auc_judd(p: Tensor, fx: _Fix, jitter: Tensor | None) -> Tensor:
    """AUC_Judd.m on a chunk; ``jitter`` (B, N) is already scaled, or None."""
    b, n = p.shape
    const = _constant(p)  # decided before the jitter, which would make any map non-constant
    x = p.detach() if jitter is None else p.detach() + jitter
    lo, span, _ = _span(x)
    s = (x - lo.unsqueeze(1)) / span.unsqueeze(1)
    k = fx.kmax
    # Thresholds: the fixated values, ascending, -inf padding first.
    thr = _padded(fx, s[fx.row, fx.pix], -torch.inf).sort(dim=1).values
    # #pixels >= thr[:, j] from one pass: bin every pixel by the number of thresholds
    # <= its value (O(N log k), no sort of the N pixels), then cumulate the histogram.
    hist = _row_bincount(torch.searchsorted(thr, s, right=True), k + 1)
    above = (n - hist.cumsum(dim=1)[:, :k]).flip(1)  # descending thresholds
    i = torch.arange(1, k + 1, device=p.device, dtype=torch.float64).expand(b, k)
    nf = fx.counts.to(torch.float64).unsqueeze(1)
    valid = i <= nf
    # Padded thresholds become the final (1, 1) point, which adds no area.
    tp = torch.where(valid, i / nf, 1.0)
    fp = torch.where(valid, (above - i) / (n - nf), 1.0)
    return torch.where(const, 0.5, _trapz_with_ends(fp, tp))


def _row_bincount(idx: Tensor, bins: int) -> Tensor:
    """Histogram of each row of ``idx`` (R, K) with values in [0, bins): (R, bins)."""
    r = idx.shape[0]
    offset = torch.arange(r, device=idx.device).unsqueeze(1) * bins
    return torch.bincount((idx + offset).flatten(), minlength=r * bins).view(r, bins)


def _trapz_with_ends(fp: Tensor, tp: Tensor) -> Tensor:
    """Trapezoid area of the ROC (0,0) -> points -> (1,1), over the last dimension."""
    zeros = torch.zeros_like(fp[..., :1])
    fp = torch.cat([zeros, fp, zeros + 1], dim=-1)
    tp = torch.cat([zeros, tp, zeros + 1], dim=-1)
    return ((fp[..., 1:] - fp[..., :-1]) * (tp[..., 1:] + tp[..., :-1]) * 0.5).sum(dim=-1)


# --------------------------------------------------------------------------- sampled AUCs
# These read the prediction only at fixated and sampled pixels: x is the raw (B, N)
# prediction, lo/span its float64 min-max, so no full-size float64 map is built.


def _thresholds(step: float, device: torch.device) -> Tensor:
    """MATLAB ``0:step:1`` ascending. Thresholds above the largest sampled value give the
    (0, 0) point, which adds no area, so one grid up to 1 serves every split."""
    count = int(1.0 / step + 1e-9) + 1
    return torch.arange(count, device=device, dtype=torch.float64) * step


def _count_at_least(values: Tensor, thr: Tensor, step: float) -> Tensor:
    """``counts[..., t] = #(values[...] >= thr[t])`` for the grid ``thr = arange(T) * step``.

    values (..., K) lie in [0, 1] or are -inf (padding). The bin comes from a division,
    then two exact comparisons fix the rare off-by-one at bin edges; no sort needed.
    """
    t = thr.numel()
    lead = values.shape[:-1]
    v = values.reshape(-1, values.shape[-1])
    real = v >= 0
    b0 = torch.floor(torch.where(real, v, 0.0) / step).clamp(0, t - 1).long()
    idx = b0 + (v >= thr[b0]).long()  # = #thresholds <= v if b0 is exact or one too high
    nxt = (b0 + 1).clamp(max=t - 1)
    idx = idx + ((b0 + 1 < t) & (v >= thr[nxt])).long()  # b0 one too low
    hist = _row_bincount(torch.where(real, idx, 0), t + 1)
    return (v.shape[1] - hist.cumsum(dim=1)[:, :t]).view(*lead, t)


def _stepped_auc(pos: Tensor, npos: Tensor, neg: Tensor, nneg: Tensor, step: float) -> Tensor:
    """Mean over splits of the step-threshold AUC of AUC_Borji.m / AUC_shuffled.m.

    pos (B, P) and neg (B, S, K) hold values in [0, 1] padded with -inf; npos, nneg (B,)
    are the real counts. Returns (B,).
    """
    b, s, _ = neg.shape
    thr = _thresholds(step, neg.device)
    tp = _count_at_least(pos, thr, step).to(torch.float64) / npos.to(torch.float64).unsqueeze(1)
    fp = _count_at_least(neg, thr, step).to(torch.float64) / nneg.to(torch.float64).view(b, 1, 1)
    # The ROC runs from the highest threshold down.
    auc = _trapz_with_ends(fp.flip(-1), tp.flip(-1).unsqueeze(1).expand(b, s, thr.numel()))
    return auc.mean(dim=1)


def _sample_chunks(b: int, per_image: int) -> list[slice]:
    step = max(1, _CHUNK_ELEMENTS // max(per_image, 1))
    return [slice(i, min(i + step, b)) for i in range(0, b, step)]


def _normalised_gather(x: Tensor, lo: Tensor, span: Tensor, idx: Tensor) -> Tensor:
    """Min-max normalised values of the rows of x at idx (same row count), float64."""
    return (x.gather(1, idx).to(torch.float64) - lo.unsqueeze(1)) / span.unsqueeze(1)


def _fixated_values(x: Tensor, fx: _Fix, lo: Tensor, span: Tensor) -> Tensor:
    """Normalised values at the fixated pixels as (B, kmax), -inf padded."""
    at = (x[fx.row, fx.pix].to(torch.float64) - lo[fx.row]) / span[fx.row]
    return _padded(fx, at, -torch.inf)


def _auc_borji(x: Tensor, fx: _Fix, n_splits: int, step: float,
               generator: Randomness) -> Tensor:
    b, n = x.shape
    lo, span, const = _span(x)
    pos = _fixated_values(x, fx, lo, span)
    k = fx.kmax
    out = []
    for c in _sample_chunks(b, n_splits * k):
        bc = c.stop - c.start
        # As many uniform random pixels (with replacement, fixated ones included) as
        # fixated pixels, per split.
        idx = _randint(n, (bc, n_splits * k), generator, x.device)
        neg = _normalised_gather(x[c], lo[c], span[c], idx).view(bc, n_splits, k)
        keep = torch.arange(k, device=x.device).view(1, 1, k) < fx.counts[c].view(bc, 1, 1)
        neg = torch.where(keep, neg, -torch.inf)
        out.append(_stepped_auc(pos[c], fx.counts[c], neg, fx.counts[c], step))
    return torch.where(const, 0.5, torch.cat(out))


def _sample_without_replacement(n_from: Tensor, k: int, shape: tuple[int, int],
                                generator: Randomness) -> Tensor:
    """(R, S, k) positions: per row r and split, the first k steps of a Fisher-Yates
    shuffle of ``range(n_from[r])`` (a uniform random ordered subset; exact, and
    O(R·S·(m + k)) instead of sorting random keys)."""
    r, s = shape
    m = int(n_from.max())
    device = n_from.device
    # Position-major (m, R, S) so that step j reads and writes one contiguous slice;
    # int32 halves the memory traffic.
    perm = torch.arange(m, device=device, dtype=torch.int32).view(m, 1, 1).expand(m, r, s)
    perm = perm.contiguous()
    avail = n_from.to(torch.float64).view(r, 1)
    for j in range(k):
        u = _rand((r, s), generator, device)
        pick = j + torch.floor(u * (avail - j)).long()
        pick = torch.where(avail > j, pick, j).unsqueeze(0)  # rows already exhausted
        here = perm[j].clone()
        perm[j] = perm.gather(0, pick).squeeze(0)
        perm.scatter_(0, pick, here.unsqueeze(0))
    return perm[:k].permute(1, 2, 0).long()


def _auc_shuffled(x: Tensor, fx: _Fix, other: _Fix, n_splits: int, step: float,
                  generator: Randomness) -> Tensor:
    b = x.shape[0]
    lo, span, const = _span(x)
    pos = _fixated_values(x, fx, lo, span)
    other_pix = _padded(other, other.pix, 0)  # (B, m) pixel indices of other fixations
    n_neg = torch.minimum(fx.counts, other.counts)  # Nfixations_oth = min(Nfixations, #other)
    out = []
    for c in _sample_chunks(b, n_splits * other.kmax):
        bc = c.stop - c.start
        k = int(n_neg[c].max())
        # randperm(#other)(1:Nfixations_oth) per split
        slot = _sample_without_replacement(other.counts[c], k, (bc, n_splits), generator)
        pix = other_pix[c].gather(1, slot.reshape(bc, -1))
        neg = _normalised_gather(x[c], lo[c], span[c], pix).view(bc, n_splits, k)
        keep = torch.arange(k, device=x.device).view(1, 1, k) < n_neg[c].view(bc, 1, 1)
        neg = torch.where(keep, neg, -torch.inf)
        out.append(_stepped_auc(pos[c], fx.counts[c], neg, n_neg[c], step))
    return torch.where(const, 0.5, torch.cat(out))


# --------------------------------------------------------------------------- driver


def _compute(
    pred: Tensor,
    wanted: Sequence[str],
    *,
    gt_density: Tensor | None = None,
    fixmap: Tensor | None = None,
    baseline: Tensor | None = None,
    other_fixmap: Tensor | None = None,
    jitter: bool = True,
    n_splits: int = 100,
    step: float = 0.1,
    minmax: bool = True,
    generator: Randomness = None,
) -> dict[str, Tensor]:
    """Validate the whole batch once (reductions only), then score ``wanted``."""
    p3 = _batched(pred, "pred")
    shape = p3.shape
    b, n = shape[0], shape[1] * shape[2]
    if b == 0 or n == 0:
        raise ValueError(f"pred is empty (shape {tuple(shape)})")
    device = p3.device
    x = p3.reshape(b, n)
    _check_finite(x, "pred")
    used = {k for m in wanted for k in _NEEDS[m]}
    g = base = fx = other = None
    if "gt_density" in used:
        g = _align(shape, gt_density, "gt_density", device)
        _check_density(g, "gt_density")
    if "fixmap" in used:
        fx = _fixations(_align(shape, fixmap, "fixmap", device), "fixmap")
    if "other_fixmap" in used:
        other = _fixations(_align(shape, other_fixmap, "other_fixmap", device), "other_fixmap")
    if "baseline" in used:
        base = _align(shape, baseline, "baseline", device)
        _check_finite(base, "baseline")
    if "KLD" in wanted:
        _check_nonnegative(x, "pred", "KLD needs a non-negative prediction")
    if "IG" in wanted and not minmax:
        _check_nonnegative(x, "pred", "use minmax=True")
        _check_nonnegative(_given(base, "baseline"), "baseline", "use minmax=True")
    if "AUC_Borji" in wanted or "sAUC" in wanted:
        if int(n_splits) < 1:
            raise ValueError(f"n_splits must be >= 1, got {n_splits}")
        if not step > 0:
            raise ValueError(f"step must be positive, got {step}")

    noise = None
    if "AUC_Judd" in wanted:
        full = _given(fx, "fixmap").counts == n
        if bool(full.any()):
            raise ValueError(
                f"AUC-Judd needs unfixated pixels; every pixel is fixated ({_indices(full)})"
            )
        if jitter:  # drawn for the whole batch, so the chunk plan cannot change it
            noise = _rand((b, n), generator, device) * JUDD_JITTER

    dense = [m for m in _DENSE if m in wanted]
    parts: dict[str, list[Tensor]] = {m: [] for m in dense}
    for c in _dense_chunks(b, n, device) if dense else []:
        p = x[c].to(torch.float64)
        gc = g[c].to(torch.float64) if g is not None else None
        fc = fx.images(c) if fx is not None else None
        for m in dense:
            if m == "CC":
                parts[m].append(_cc(p, _given(gc, "gt_density")))
            elif m == "KLD":
                parts[m].append(_kld(p, _given(gc, "gt_density")))
            elif m == "NSS":
                parts[m].append(_nss(p, _given(fc, "fixmap")))
            elif m == "SIM":
                parts[m].append(_sim(p, _given(gc, "gt_density")))
            elif m == "AUC_Judd":
                parts[m].append(_auc_judd(p, _given(fc, "fixmap"),
                                          None if noise is None else noise[c]))
            elif m == "IG":
                with torch.no_grad():
                    bc = _given(base, "baseline")[c].to(torch.float64)
                    parts[m].append(_ig(p.detach(), _given(fc, "fixmap"), bc, minmax))
    out = {m: torch.cat(v) for m, v in parts.items()}
    with torch.no_grad():
        if "AUC_Borji" in wanted:
            out["AUC_Borji"] = _auc_borji(x.detach(), _given(fx, "fixmap"), int(n_splits),
                                          step, generator)
        if "sAUC" in wanted:
            out["sAUC"] = _auc_shuffled(x.detach(), _given(fx, "fixmap"),
                                        _given(other, "other_fixmap"), int(n_splits), step,
                                        generator)
    return {m: out[m] for m in METRIC_NAMES if m in out}


# --------------------------------------------------------------------------- public API


def cc(pred: Tensor, gt_density: Tensor) -> Tensor:
    """Pearson correlation of the two maps (CC.m), in [-1, 1]; 0 if either is constant."""
    return _compute(pred, ["CC"], gt_density=gt_density)["CC"]


def kld(pred: Tensor, gt_density: Tensor) -> Tensor:
    """KL(gt || pred) of the sum-normalised maps, ``sum Q log(EPS + Q / (P + EPS))`` (KLdiv.m).

    ``pred`` must be non-negative; an all-zero prediction is read as the uniform map.
    """
    return _compute(pred, ["KLD"], gt_density=gt_density)["KLD"]


def nss(pred: Tensor, fixmap: Tensor) -> Tensor:
    """Mean of the z-scored prediction (N-1 std) over fixated pixels (NSS.m); 0 if constant."""
    return _compute(pred, ["NSS"], fixmap=fixmap)["NSS"]


def sim(pred: Tensor, gt_density: Tensor) -> Tensor:
    """Histogram intersection of the min-max then sum-normalised maps (similarity.m), in [0, 1]."""
    return _compute(pred, ["SIM"], gt_density=gt_density)["SIM"]


def auc_judd(pred: Tensor, fixmap: Tensor, jitter: bool = True,
             generator: Randomness = None) -> Tensor:
    """AUC with the fixated pixels' values as thresholds (AUC_Judd.m).

    ``jitter`` adds ``uniform * 1e-7`` to the raw map to break ties, drawn from
    ``generator``; the map is then min-max normalised. Without jitter ties follow the MIT
    formula ``fp = (#pixels >= t - i) / (#unfixated)`` literally.
    """
    return _compute(pred, ["AUC_Judd"], fixmap=fixmap, jitter=jitter,
                    generator=generator)["AUC_Judd"]


def auc_borji(pred: Tensor, fixmap: Tensor, n_splits: int = 100, step: float = 0.1,
              generator: Randomness = None) -> Tensor:
    """AUC against uniformly sampled pixels (AUC_Borji.m), mean over ``n_splits`` splits.

    Each split draws as many pixels (with replacement) as there are fixated pixels;
    thresholds run over ``0:step:1`` of the min-max normalised map.
    """
    return _compute(pred, ["AUC_Borji"], fixmap=fixmap, n_splits=n_splits, step=step,
                    generator=generator)["AUC_Borji"]


def auc_shuffled(pred: Tensor, fixmap: Tensor, other_fixmap: Tensor, n_splits: int = 100,
                 step: float = 0.1, generator: Randomness = None) -> Tensor:
    """Shuffled AUC (AUC_shuffled.m): negatives are fixated pixels of ``other_fixmap``.

    ``other_fixmap`` (B, H, W) is, per image, the union of other images' fixations of the
    same set (the caller builds it). Each split draws ``min(#fixated, #other)`` of them
    without replacement.
    """
    return _compute(pred, ["sAUC"], fixmap=fixmap, other_fixmap=other_fixmap,
                    n_splits=n_splits, step=step, generator=generator)["sAUC"]


def information_gain(
    pred: Tensor, fixmap: Tensor, baseline: Tensor, *, minmax: bool = True
) -> Tensor:
    """Information gain over ``baseline`` in bits per fixated pixel (InfoGain.m).

    ``mean over fixated pixels of log2(EPS + P) - log2(EPS + B)`` where P and B are the
    maps min-max normalised then sum-normalised (``minmax=False``: sum-normalised only).
    ``baseline`` may be one (H, W) map for the whole batch.
    """
    return _compute(pred, ["IG"], fixmap=fixmap, baseline=baseline, minmax=minmax)["IG"]


def compute_metrics(
    pred: Tensor,
    gt_density: Tensor | None,
    fixmap: Tensor | None,
    *,
    baseline: Tensor | None = None,
    other_fixmap: Tensor | None = None,
    names: Iterable[str] | None = None,
    generator: Randomness = None,
) -> dict[str, Tensor]:
    """Compute the metrics ``names`` (default: every one whose inputs are given).

    CC, KLD and SIM need ``gt_density``; NSS, AUC_Judd and AUC_Borji need ``fixmap``;
    sAUC also needs ``other_fixmap`` and IG ``baseline``. Inputs are validated once and
    the metrics use their defaults (jitter on, 100 splits, step 0.1, min-max IG).
    Returns ``{name: (B,) float64}`` in ``METRIC_NAMES`` order; the random metrics draw
    from ``generator`` in that order, so each equals its function called in turn.
    """
    given = {"gt_density": gt_density, "fixmap": fixmap, "baseline": baseline,
             "other_fixmap": other_fixmap}
    if names is None:
        wanted = [m for m in METRIC_NAMES if all(given[k] is not None for k in _NEEDS[m])]
    else:
        wanted = list(dict.fromkeys(names))
        unknown = [m for m in wanted if m not in _NEEDS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRIC_NAMES)}")
        for m in wanted:
            missing = [k for k in _NEEDS[m] if given[k] is None]
            if missing:
                raise ValueError(f"{m} needs {' and '.join(missing)}")
    return _compute(pred, wanted, gt_density=gt_density, fixmap=fixmap, baseline=baseline,
                    other_fixmap=other_fixmap, generator=generator)
