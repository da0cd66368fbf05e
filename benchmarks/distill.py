"""Self-KD and teacher-KD training steps against the baseline step, timed interleaved; JSON.

All arms train the same architecture (default: the Lite0 genome with the max decoder of the
default space, at 96x128) on the same batch of the synthetic dataset; the Self-KD step adds
the teacher's forward pass (eval mode, no_grad) and the target mixing; the teacher step
reads the max subnet's cached densities (``distill.teacher: max``: computed once before
training) and mixes them. Steps are timed with the search stage's interleaved timer
(round-robin, new random order per round, medians), so a slow minute on a shared machine
slows every arm alike. Goals: Self-KD overhead < 40 %, teacher overhead < 10 %.

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

from salnas.config import DistillConfig, config_from_dict  # noqa: E402
from salnas.datasets.batches import iterate_batches  # noqa: E402
from salnas.datasets.training import load_training_data  # noqa: E402
from salnas.distill.teacher import CachedTeacher  # noqa: E402
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
    data = load_training_data(config_from_dict({"data": {
        "spec": f"synthetic:{args.batch + 8}", "resolution": list(res), "val": 4, "test": 4,
        "hflip": True}, "supernet": {"space": {"resolutions": [list(res)]}}}), None, False)
    batch = next(iterate_batches(data.train, args.batch))
    torch.set_num_threads(args.threads)
    cached = CachedTeacher(supernet.extract(space.max_genome()), data.train, res,
                           batch_size=args.batch)
    arms = ("baseline", "selfkd", "teacher")
    learners = {}
    for arm in arms:
        net = supernet.extract(genome)
        teacher = SelfKDTeacher(net) if arm == "selfkd" else cached if arm == "teacher" else None
        if isinstance(teacher, SelfKDTeacher):
            teacher.update(net)  # ready: the Self-KD step runs the teacher
        learners[arm] = Learner(net, make_optimizer(net, cfg, pretrained=True), None, teacher)  # type: ignore[arg-type]
    steps = [_with_grad(partial(train_step, learners[arm], batch, res, loss_fn, cfg.alpha,
                                cfg.grad_clip, torch.device("cpu")))
             for arm in arms]
    selfkd_teacher = learners["selfkd"].teacher
    assert isinstance(selfkd_teacher, SelfKDTeacher)
    steps.append(partial(selfkd_teacher.predict, batch["image"], res))
    base, kd, fixed, fwd = time_interleaved(steps, threads=args.threads, warmup=args.warmup,
                                            repeats=args.rounds, min_sample_ms=0)
    print(json.dumps({
        "benchmark": "Self-KD and teacher-KD training steps vs the baseline step (same "
                     "architecture, same batch)",
        "genome": args.genome,
        "genome_id": genome.id,
        "resolution": list(res),
        "batch": args.batch,
        "threads": args.threads,
        "rounds": args.rounds,
        "baseline_step_ms": round(float(base), 2),
        "selfkd_step_ms": round(float(kd), 2),
        "teacher_forward_ms": round(float(fwd), 2),
        "teacher_step_ms": round(float(fixed), 2),
        "selfkd_overhead": round(float(kd / base - 1), 4),
        "teacher_overhead": round(float(fixed / base - 1), 4),
        "teacher": "max subnet of the space, densities cached before training",
        "goal": "selfkd_overhead < 0.40, teacher_overhead < 0.10",
        "statistic": "median over interleaved rounds (search.latency.time_interleaved)",
        "device": device_description("cpu"),
    }, indent=2))


if __name__ == "__main__":
    main()
