"""Supernet overhead and subnet speed, measured side by side; prints JSON.

* training img/s of the supernet with the max subnet active vs the same architecture
  extracted as a plain network (goal: overhead ratio <= 1.3);
* inference img/s of the min and max subnets (extracted, eval mode).

Measurements are interleaved (one timed step of each candidate per round) and reported
as medians over rounds, because timings on shared machines drift within minutes.

    python benchmarks/supernet.py --resolution 192 256 --batch 8 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# This file is named like the package it measures; keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from salnas.losses import SaliencyLoss  # noqa: E402
from salnas.supernet.model import Supernet  # noqa: E402
from salnas.supernet.space import SearchSpace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, nargs=2, default=(192, 256))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    res = tuple(args.resolution)
    space = SearchSpace({"resolutions": [list(res)]})
    supernet = Supernet(space, pretrained=False).to(device)
    big, small = space.max_genome(), space.min_genome()
    supernet.set_active(big)
    plain = supernet.extract(big).to(device)
    infer = {
        "max": supernet.extract(big).to(device).eval(),
        "min": supernet.extract(small).to(device).eval(),
    }
    loss_fn = SaliencyLoss()
    x = torch.rand(args.batch, 3, *res, device=device)
    density = torch.softmax(torch.randn(args.batch, res[0] * res[1], device=device), 1).view(
        args.batch, *res
    )
    fixmap = (torch.rand(args.batch, *res, device=device) > 0.995).float()
    fixmap[:, 0, 0] = 1

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step(model: torch.nn.Module) -> float:
        model.train()
        sync()
        t = time.perf_counter()
        loss, _ = loss_fn(model(x), density, fixmap)
        loss.backward()
        model.zero_grad(set_to_none=True)
        sync()
        return args.batch / (time.perf_counter() - t)

    @torch.inference_mode()
    def infer_step(model: torch.nn.Module) -> float:
        sync()
        t = time.perf_counter()
        model(x)
        sync()
        return args.batch / (time.perf_counter() - t)

    for _ in range(2):  # warm-up
        train_step(supernet), train_step(plain), infer_step(infer["max"]), infer_step(infer["min"])
    rates: dict[str, list[float]] = {
        "train_supernet_max": [],
        "train_plain_max": [],
        "infer_max": [],
        "infer_min": [],
    }
    for _ in range(args.rounds):
        rates["train_supernet_max"].append(train_step(supernet))
        rates["train_plain_max"].append(train_step(plain))
        rates["infer_max"].append(infer_step(infer["max"]))
        rates["infer_min"].append(infer_step(infer["min"]))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        json.dumps(
            {
                "device": str(device),
                "threads": args.threads,
                "resolution": list(res),
                "batch": args.batch,
                "rounds": args.rounds,
                "train_img_per_s": {
                    "supernet_max_active": med["train_supernet_max"],
                    "plain_extracted_max": med["train_plain_max"],
                },
                "supernet_overhead_ratio": med["train_plain_max"] / med["train_supernet_max"],
                "overhead_goal": 1.3,
                "infer_img_per_s": {"max": med["infer_max"], "min": med["infer_min"]},
                "min_over_max_speedup": med["infer_min"] / med["infer_max"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
