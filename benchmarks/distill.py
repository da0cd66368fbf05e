"""Self-KD training step against the baseline step, timed interleaved; prints JSON.

Both arms train the same architecture (default: the Lite0 genome with the max decoder of the
default space, at 96x128) on the same fixed batch; the Self-KD step adds the teacher's
forward pass (eval mode, no_grad) and the target mixing. Steps are timed with the search
stage's interleaved timer (round-robin, new random order per round, medians), so a slow
minute on a shared machine slows both arms alike. Goal: overhead < 40 %.

    python benchmarks/distill.py [--batch 8] [--rounds 7] [--threads 1] [--res 96 128]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

# This file is named like the package it measures: keep its folder off the import path, and
# the repository root on it (for the stage packages an older editable install may not map).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402

from salnas.config import DistillConfig  # noqa: E402
from salnas.distill.trainer import Learner, SelfKDTeacher, train_step  # noqa: E402
from salnas.losses import SaliencyLoss  # noqa: E402
from salnas.search.latency import device_description, time_interleaved  # noqa: E402
from salnas.supernet.model import Supernet  # noqa: E402
from salnas.supernet.optim import make_optimizer  # noqa: E402
from salnas.supernet.space import SearchSpace  # noqa: E402


def _with_grad(fn: Callable[[], object]) -> Callable[[], object]:
    """The timer runs candidates under inference_mode; a training step needs autograd."""

    def run() -> object:
        with torch.inference_mode(False), torch.enable_grad():
            return fn()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--res", type=int, nargs=2, default=(96, 128), metavar=("H", "W"))
    ap.add_argument("--genome", choices=("lite0", "max", "min"), default="lite0")
    args = ap.parse_args()
    res = tuple(args.res)

    torch.manual_seed(0)
    space = SearchSpace({"resolutions": [list(res)]})
    genome = {"lite0": space.lite0_genome, "max": space.max_genome,
              "min": space.min_genome}[args.genome]()
    supernet = Supernet(space, pretrained=False)
    cfg = DistillConfig(batch_size=args.batch)
    loss_fn = SaliencyLoss(cfg.loss)
    g = torch.Generator().manual_seed(0)
    density = torch.rand(args.batch, 1, *res, generator=g)
    batch = {
        "image": torch.rand(args.batch, 3, *res, generator=g),
        "density": density / density.sum((-2, -1), keepdim=True),
        "fixmap": (torch.rand(args.batch, 1, *res, generator=g) > 0.995).float(),
    }
    learners = {}
    for arm in ("baseline", "selfkd"):
        net = supernet.extract(genome)
        teacher = SelfKDTeacher(net) if arm == "selfkd" else None
        if teacher is not None:
            teacher.update(net)  # ready: the Self-KD step runs the teacher
        learners[arm] = Learner(net, make_optimizer(net, cfg, pretrained=True), None, teacher)  # type: ignore[arg-type]
    steps = [_with_grad(partial(train_step, learners[arm], batch, res, loss_fn, cfg.alpha,
                                cfg.grad_clip, torch.device("cpu")))
             for arm in ("baseline", "selfkd")]
    teacher = learners["selfkd"].teacher
    assert teacher is not None
    steps.append(partial(teacher.predict, batch["image"], res))
    base, kd, fwd = time_interleaved(steps, threads=args.threads, warmup=args.warmup,
                                     repeats=args.rounds, min_sample_ms=0)
    print(json.dumps({
        "benchmark": "Self-KD training step vs baseline step (same architecture, same batch)",
        "genome": args.genome,
        "genome_id": genome.id,
        "resolution": list(res),
        "batch": args.batch,
        "threads": args.threads,
        "rounds": args.rounds,
        "baseline_step_ms": round(float(base), 2),
        "selfkd_step_ms": round(float(kd), 2),
        "teacher_forward_ms": round(float(fwd), 2),
        "selfkd_overhead": round(float(kd / base - 1), 4),
        "goal": "selfkd_overhead < 0.40",
        "statistic": "median over interleaved rounds (search.latency.time_interleaved)",
        "device": device_description("cpu"),
    }, indent=2))


if __name__ == "__main__":
    main()
