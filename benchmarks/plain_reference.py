"""The plain reference of the supernet's accuracy goal, trained and scored side by side.

EfficientNet-Lite0 (ImageNet weights) with a small FPN-like decoder (every skip on, the
narrowest widths, depthwise-separable 3x3 convolutions, the learned centre-bias prior before
the read-out unless --no-centre-bias), fine-tuned as one ordinary network (no supernet, no
distillation) with the supernet section's optimiser settings (lr, encoder_lr_scale, batch
size) on the run's split, then scored on the test split at the original image size with the
MIT protocol. Prints JSON.

    python benchmarks/plain_reference.py --config configs/osie.yaml --run runs/osie/supernet

``--resolution 120 160`` trains the same design at a smaller input (its genome at that size).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

# benchmarks/distill.py and benchmarks/supernet.py shadow the packages of the same names.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from salnas.config import DistillConfig, load_config  # noqa: E402
from salnas.datasets import open_source  # noqa: E402
from salnas.datasets.training import load_training_data  # noqa: E402
from salnas.distill.peers import fpn_genome  # noqa: E402
from salnas.distill.trainer import train_standalone  # noqa: E402
from salnas.evaluation import centre_bias_map, load_targets, score_maps, summarise  # noqa: E402
from salnas.supernet.costs import count_params_flops  # noqa: E402
from salnas.supernet.model import Supernet  # noqa: E402
from salnas.supernet.space import SearchSpace  # noqa: E402
from salnas.supernet.subnet import predict_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/osie.yaml"))
    parser.add_argument("--run", type=Path, default=Path("runs/osie/supernet"),
                        help="a supernet run directory whose split.json is reused")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None,
                        help="training seed (default: the config's); the split stays the run's")
    parser.add_argument("--no-centre-bias", dest="centre_bias", action="store_false",
                        help="leave out the learned centre-bias prior channels")
    parser.add_argument("--resolution", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="input size (default: data.resolution)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    seed = config.seed if args.seed is None else args.seed
    resolution = tuple(args.resolution or config.data.resolution)
    space = SearchSpace({**config.supernet.space, "resolutions": [list(resolution)]})
    genome = dataclasses.replace(fpn_genome(space), centre_bias=args.centre_bias)
    torch.manual_seed(seed)  # the decoder's initialisation
    model = Supernet(space, pretrained=True).extract(genome)
    params, flops = count_params_flops(model, resolution)
    data = load_training_data(config, args.run, progress=False)
    cfg = DistillConfig(epochs=args.epochs, batch_size=config.supernet.batch_size,
                        lr=config.supernet.lr, encoder_lr_scale=config.supernet.encoder_lr_scale)
    start = time.perf_counter()
    result = train_standalone(model, resolution, data, cfg, seed=seed, kd=False,
                              pretrained=True, desc="plain reference")
    train_s = time.perf_counter() - start
    source = open_source(config.data.spec)
    targets = load_targets(source, data.split["test"], config.data.sigma_px, progress=False)
    bias = centre_bias_map(source, data.split["train"], config.data.sigma_px, progress=False)
    maps = [predict_image(result.model, source.load_image(t.stem), resolution) for t in targets]
    print(json.dumps({
        "model": "EfficientNet-Lite0 (ImageNet) + small FPN-like decoder, plain fine-tuning",
        "centre_bias_prior": args.centre_bias, "encoder_lr_scale": cfg.encoder_lr_scale,
        "genome_id": genome.id, "params": params, "flops": flops, "resolution": list(resolution),
        "epochs": args.epochs, "best_epoch": result.best_epoch, "train_seconds": train_s,
        "threads": args.threads, "seed": seed, "test": summarise(score_maps(maps, targets, bias)),
        "n_test": len(targets),
    }, indent=2))


if __name__ == "__main__":
    main()
