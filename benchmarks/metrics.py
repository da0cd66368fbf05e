"""Throughput of salnas.metrics against the loop-based numpy MIT reference (and pysaliency).

Scores the same random smooth maps with our batched torch metrics and, image by image,
with the numpy transcription of the MIT code in ``tests/fixtures/make_metrics_reference.py``
(and pysaliency's per-image functions when it is importable). Prints one JSON object:
images per second per metric (median over ``--repeats``) and the largest difference of
the deterministic metrics between the two implementations.

    python benchmarks/metrics.py --n-images 64 --size 96x128 --repeats 5

Our side runs on the CPU with float32 inputs (computed in float64 inside), like a
network's output; the reference gets the same maps in float64.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from salnas import metrics as M

ROOT = Path(__file__).resolve().parents[1]


def _load_reference():
    path = ROOT / "tests" / "fixtures" / "make_metrics_reference.py"
    spec = importlib.util.spec_from_file_location("make_metrics_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _make_maps(ref, n: int, shape: tuple[int, int], n_fix: int, seed: int):
    """Random smooth predictions, fixations around a few centres, their density, the
    union of other images' fixations and a centre-bias baseline (numpy float64)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    scale = max(h, w) / 64  # blob sizes relative to the fixture's 48x64 maps
    preds, gts, fixs = [], [], []
    points_all = []
    for _ in range(n):
        blobs = [[rng.uniform(0, h - 1), rng.uniform(0, w - 1), rng.uniform(3, 12) * scale,
                  rng.uniform(3, 14) * scale, rng.uniform(0.3, 1.0)] for _ in range(8)]
        preds.append(ref.render_blobs(shape, blobs))
        centres = rng.uniform(0.2, 0.8, size=(3, 2)) * (h, w)
        pts = []
        for _ in range(n_fix):
            cy, cx = centres[rng.integers(3)]
            pts.append([int(np.clip(round(rng.normal(cy, 6 * scale)), 0, h - 1)),
                        int(np.clip(round(rng.normal(cx, 6 * scale)), 0, w - 1))])
        points_all.append(pts)
        fixs.append(ref.count_map(shape, pts))
        gts.append(ref.density_from_points(shape, pts, 0.03 * max(h, w)))
    others = []
    for i in range(n):
        # union of the fixations of up to 10 other images of the set (Borji's shuffled AUC)
        picks = [j for j in rng.permutation(n)[:11] if j != i][:10] or [i]
        others.append(ref.count_map(shape, [p for j in picks for p in points_all[j]]))
    base = ref.render_blobs(shape, [[(h - 1) / 2, (w - 1) / 2, h / 4, w / 4, 1.0]], 0.05)
    return (np.stack(preds), np.stack(gts), np.stack(fixs), np.stack(others),
            np.broadcast_to(base, (n, h, w)).copy())


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _ours(pred, gt, fix, other, base) -> dict[str, Callable[[], object]]:
    g = torch.Generator().manual_seed(0)
    return {
        "CC": lambda: M.cc(pred, gt),
        "KLD": lambda: M.kld(pred, gt),
        "NSS": lambda: M.nss(pred, fix),
        "SIM": lambda: M.sim(pred, gt),
        "AUC_Judd": lambda: M.auc_judd(pred, fix, generator=g),
        "AUC_Borji": lambda: M.auc_borji(pred, fix, generator=g),
        "sAUC": lambda: M.auc_shuffled(pred, fix, other, generator=g),
        "IG": lambda: M.information_gain(pred, fix, base),
        "all": lambda: M.compute_metrics(pred, gt, fix, baseline=base, other_fixmap=other,
                                         generator=g),
    }


def _reference(ref, pred, gt, fix, other, base) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    n = len(pred)

    def per_image(f):
        return lambda: [f(i) for i in range(n)]

    def judd(i):
        return ref.mit_auc_judd(pred[i], fix[i], rng.random(pred[i].shape) / 1e7)

    def borji(i):
        draws = ref.draw_borji(rng, pred[i].shape, int((fix[i] > 0).sum()), 100)
        return ref.mit_auc_borji(pred[i], fix[i], draws)

    def sauc(i):
        return ref.mit_auc_shuffled(pred[i], fix[i], other[i],
                                    ref.draw_shuffled(rng, fix[i], other[i], 100))

    fns = {
        "CC": per_image(lambda i: ref.mit_cc(pred[i], gt[i])),
        "KLD": per_image(lambda i: ref.mit_kldiv(pred[i], gt[i])),
        "NSS": per_image(lambda i: ref.mit_nss(pred[i], fix[i])),
        "SIM": per_image(lambda i: ref.mit_similarity(pred[i], gt[i])),
        "AUC_Judd": per_image(judd),
        "AUC_Borji": per_image(borji),
        "sAUC": per_image(sauc),
        "IG": per_image(lambda i: ref.mit_infogain(pred[i], fix[i], base[i])),
    }
    each = list(fns.values())
    fns["all"] = lambda: [f() for f in each]
    return fns


def _pysaliency(pred, gt, fix) -> dict[str, Callable[[], object]] | None:
    try:  # optional: not a project dependency
        from pysaliency import metrics as pm
        from pysaliency.roc import general_roc
    except Exception:
        return None
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # pysaliency 0.2.22 predates numpy 2.4
    n = len(pred)
    fixed = [np.nonzero(f) for f in fix]

    def per_image(f):
        return lambda: [f(i) for i in range(n)]

    def judd(i):
        s = pred[i] + np.random.default_rng(i).standard_normal(pred[i].shape) * 1e-7
        return general_roc(s[fix[i] > 0], s[fix[i] == 0], judd=1)[0]

    return {
        "CC": per_image(lambda i: pm.CC(pred[i], gt[i])),
        "KLD": per_image(lambda i: pm.MIT_KLDiv(pred[i], gt[i])),
        "NSS": per_image(lambda i: np.mean(pm.NSS(pred[i], fixed[i][1], fixed[i][0]))),
        "SIM": per_image(lambda i: pm.SIM(pred[i], gt[i])),
        "AUC_Judd": per_image(judd),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=64)
    ap.add_argument("--size", default="96x128", help="HxW of the maps")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-fix", type=int, default=30, help="fixations per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: like the numpy reference, and stable "
                         "on a shared machine; 0 keeps torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))

    ref = _load_reference()
    arrays = _make_maps(ref, args.n_images, (h, w), args.n_fix, args.seed)
    tensors = [torch.from_numpy(a).float() for a in arrays]
    pred, gt, fix, other, base = arrays

    rates: dict[str, dict[str, float] | None] = {}
    with torch.no_grad():
        ours = _ours(*tensors)
        for f in ours.values():  # warm-up (allocator, lazy init)
            f()
        rates["salnas"] = {k: args.n_images / _median_time(f, args.repeats)
                           for k, f in ours.items()}
        got = {k: ours[k]().numpy() for k in ("CC", "KLD", "NSS", "SIM", "IG")}
    refs = _reference(ref, pred, gt, fix, other, base)
    rates["numpy_reference"] = {k: args.n_images / _median_time(f, args.repeats)
                                for k, f in refs.items()}
    pys = _pysaliency(pred, gt, fix)
    rates["pysaliency"] = (None if pys is None else
                           {k: args.n_images / _median_time(f, args.repeats)
                            for k, f in pys.items()})
    want = {k: np.asarray(refs[k]()) for k in got}
    # The float32 inputs of our side vs the float64 reference bound the agreement.
    diff = {k: float(np.max(np.abs(got[k] - want[k]))) for k in got}

    out = {
        "config": {"n_images": args.n_images, "size": [h, w], "repeats": args.repeats,
                   "n_fix": args.n_fix, "torch": torch.__version__,
                   "torch_threads": torch.get_num_threads(), "device": "cpu"},
        "images_per_s": {k: (None if v is None else {m: round(r, 1) for m, r in v.items()})
                         for k, v in rates.items()},
        "speedup_vs_numpy_reference": {
            m: round(rates["salnas"][m] / rates["numpy_reference"][m], 1)
            for m in rates["numpy_reference"]
        },
        "max_abs_diff_vs_numpy_reference": {
            k: (v if math.isfinite(v) else None) for k, v in diff.items()
        },
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
