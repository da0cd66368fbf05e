"""The CSNet-style peer with fixed channels against the one with learned channels, side by side.

Both start from the same seeded initialisation and train with the same recipe (the config's
``distill`` section: optimiser, lr, batch, epochs) on the same split; the second adds CSNet's
dynamic weight decay on the per-scale branch channels (``distill.csnet_dwd``), is pruned
(``distill.csnet_prune``) and fine-tuned for the last ``distill.csnet_finetune_epochs`` of the
same epochs, as the distill stage's ``peer-csnet-dwd`` (``distill.pruning``). Both are scored
on the test split at the original image size (MIT protocol); params and FLOPs are counted with
fvcore; latency is batch 1 in ``--backend`` (default onnxruntime), 1 thread, interleaved,
median of ``--repeats`` passes. Prints JSON.

    python benchmarks/csnet_peers.py --config configs/osie.yaml [--epochs 10] [--dwd 3 10]
        [--prune 0.2 0.3]

Several ``--dwd`` strengths and ``--prune`` thresholds train one pruned peer per pair
(``csnet-dwd-<strength>-<threshold>``) beside the one fixed peer, all timed in the same
interleaved loop.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from salnas.config import load_config
from salnas.datasets import open_source
from salnas.datasets.training import load_training_data
from salnas.distill.peers import CSNet
from salnas.distill.pruning import train_pruned_csnet
from salnas.distill.trainer import train_standalone
from salnas.evaluation import centre_bias_map, load_targets, score_maps, summarise
from salnas.search.backends import BACKENDS, compile_for_timing
from salnas.search.latency import time_interleaved
from salnas.supernet.costs import count_params_flops
from salnas.supernet.subnet import predict_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/osie.yaml"))
    parser.add_argument("--run", type=Path, default=None,
                        help="a supernet run directory whose split.json is reused")
    parser.add_argument("--epochs", type=int, default=None, help="default: distill.epochs")
    parser.add_argument("--dwd", type=float, nargs="+", default=None,
                        help="one or more strengths (default: distill.csnet_dwd)")
    parser.add_argument("--prune", type=float, nargs="+", default=None,
                        help="one or more thresholds (default: distill.csnet_prune)")
    parser.add_argument("--lr-scale", type=float, default=None,
                        help="lr factor of the decayed BN scales (default: "
                        "distill.csnet_dwd_lr_scale)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", choices=BACKENDS, default="onnxruntime")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    cfg = config.distill.model_copy(update={
        k: v for k, v in (("epochs", args.epochs), ("csnet_dwd_lr_scale", args.lr_scale))
        if v is not None})
    strengths = args.dwd or [cfg.csnet_dwd]
    thresholds = args.prune or [cfg.csnet_prune]
    if any(s <= 0 for s in strengths):
        parser.error(f"--dwd {strengths}: every strength must be > 0")
    if any(not 0 < t < 1 for t in thresholds):
        parser.error(f"--prune {thresholds}: every threshold must be in (0, 1)")
    resolution = tuple(config.data.resolution)
    data = load_training_data(config, args.run, progress=False)
    source = open_source(config.data.spec)
    targets = load_targets(source, data.split["test"], config.data.sigma_px, progress=False)
    bias = centre_bias_map(source, data.split["train"], config.data.sigma_px, progress=False)
    models, rows = {}, {}
    arms = [("csnet", 0.0, 0.0)] + [
        ("csnet-dwd" if len(strengths) * len(thresholds) == 1 else f"csnet-dwd-{s:g}-{t:g}",
         s, t) for s in strengths for t in thresholds]
    for name, strength, threshold in arms:
        torch.manual_seed(config.seed)
        start = time.perf_counter()
        if strength:
            result = train_pruned_csnet(
                CSNet(), resolution, data, cfg.model_copy(update={"csnet_prune": threshold}),
                seed=config.seed, kd=False, strength=strength, desc=name)
        else:
            result = train_standalone(CSNet(), resolution, data, cfg, seed=config.seed,
                                      kd=False, pretrained=False, desc=name)
        net = result.model.cpu().eval()
        unpruned = result.extra.get("params_unpruned", sum(p.numel() for p in net.parameters()))
        best_epoch = result.best_epoch
        params, flops = count_params_flops(net, resolution)
        maps = [predict_image(net, source.load_image(t.stem), resolution) for t in targets]
        models[name] = net
        rows[name] = {"params": params, "params_before_pruning": unpruned, "flops": flops,
                      "train_seconds": round(time.perf_counter() - start, 1),
                      "best_epoch": best_epoch, "csnet_dwd": strength,
                      "csnet_prune": threshold if strength else None,
                      "splits": net.config["splits"] if strength else None,  # type: ignore
                      "test": summarise(score_maps(maps, targets, bias))}
    benches = [compile_for_timing(m, resolution, args.backend, 1)  # type: ignore[arg-type]
               for m in models.values()]
    latency = time_interleaved(benches, threads=1, repeats=args.repeats, desc="latency")
    for name, ms in zip(models, latency, strict=True):
        rows[name]["latency_ms"] = round(float(ms), 3)
    print(json.dumps({
        "benchmark": "CSNet-style peer: fixed channels vs dynamic weight decay + pruning",
        "data": config.data.spec, "resolution": list(resolution), "n_test": len(targets),
        "epochs": cfg.epochs, "csnet_dwd": strengths, "csnet_prune": thresholds,
        "csnet_dwd_lr_scale": cfg.csnet_dwd_lr_scale,
        "csnet_finetune_epochs": cfg.csnet_finetune_epochs,
        "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": config.seed,
        "backend": args.backend, "threads_train": args.threads, "threads_latency": 1,
        "models": rows,
    }, indent=2))


if __name__ == "__main__":
    main()
