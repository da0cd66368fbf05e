"""The fitness oracle: genome -> archive record (metrics on a fixed validation subset, costs).

For a genome not yet in the archive:

1. extract a standalone subnet (``Supernet.extract``): the shared supernet, its BN statistics
   included, is never modified;
2. cheap costs first: parameters and FLOPs (fvcore, one fused multiply-add = one flop, see
   :mod:`supernet.costs`); over a ``params``/``flops`` budget -> infeasible, not scored;
3. latency, when an objective or budget uses it: measured (batch 1, fixed threads, warm-up,
   median) or predicted from a LUT; over the ``latency_ms`` budget -> infeasible, not scored;
4. BN recalibration on training batches prepared once per resolution, then the validation
   subset (decoded once, its tensors kept in memory per resolution) is scored with
   :func:`salnas.metrics.compute_metrics` (CC, KLD, NSS, SIM, AUC_Judd, all recorded).

Scoring is :func:`salnas.supernet.evaluate.score_batches`, the validation loop the supernet
uses each epoch, on BN batches from :func:`salnas.datasets.batches.training_images_at`; the
AUC jitter generator is re-seeded per genome, so a record does not depend on what was
evaluated before it (which is what makes replay-based resume exact).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from salnas.config import LatencyConfig
from salnas.datasets.batches import training_images_at
from salnas.datasets.prepare import SaliencyDataset
from salnas.datasets.training import TrainingData
from salnas.errors import ConfigError, SalnasError
from salnas.layout import ORACLE_METRICS
from salnas.search.archive import Archive, worker_id
from salnas.supernet.bn import recalibrate_bn
from salnas.supernet.costs import count_params_flops
from salnas.supernet.evaluate import ValBatch, at_resolution, score_batches, val_batches
from salnas.supernet.model import Supernet
from salnas.supernet.space import Genome

__all__ = ["FitnessOracle", "LatencyModel", "LutLatency", "MeasuredLatency", "latency_model"]


class LatencyModel(Protocol):
    """Latency in ms of one subnet (``net`` is the extracted model, possibly unused)."""

    source: str

    def __call__(self, genome: Genome, net: nn.Module) -> float: ...


class MeasuredLatency:
    """Median batch-1 latency at the genome's resolution (``search.latency.measure_latency_ms``)."""

    source = "measured"

    def __init__(self, cfg: LatencyConfig) -> None:
        from salnas.search.latency import measure_latency_ms  # the latency engineer's module

        self._measure = measure_latency_ms
        self.cfg = cfg

    def __call__(self, genome: Genome, net: nn.Module) -> float:
        threads = torch.get_num_threads()
        try:
            return float(self._measure(net, genome.resolution, device=self.cfg.device,
                                       threads=self.cfg.threads, warmup=self.cfg.warmup,
                                       repeats=self.cfg.repeats, backend=self.cfg.backend))
        finally:
            torch.set_num_threads(threads)  # measuring pins its own thread count


class LutLatency:
    """Latency predicted from a lookup table of ``salnas latency profile`` (no forward pass)."""

    source = "lut"

    def __init__(self, path: str, space: Any, backend: str | None = None) -> None:
        from salnas.search.latency import LatencyTable

        try:
            self.table = LatencyTable.load(path, space=space, backend=backend)
        except SalnasError as e:
            raise ConfigError(f"search.latency.lut: {e}") from None

    def __call__(self, genome: Genome, net: nn.Module) -> float:
        return float(self.table.predict_ms(genome))


def latency_model(cfg: LatencyConfig, space: Any) -> LatencyModel:
    """The latency model ``search.latency`` asks for (errors name the setting)."""
    if cfg.mode == "lut":
        if not cfg.lut:
            raise ConfigError("search.latency.mode is 'lut' but search.latency.lut is not set")
        return LutLatency(cfg.lut, space, cfg.backend)
    return MeasuredLatency(cfg)


class FitnessOracle:
    """Archive-backed evaluation of genomes on a trained supernet.

    ``budgets`` (``params``, ``flops``, ``latency_ms``) reject genomes before scoring;
    ``latency`` is None when nothing needs latency.
    """

    def __init__(
        self,
        supernet: Supernet,
        data: TrainingData,
        archive: Archive,
        *,
        budgets: dict[str, float] | None = None,
        latency: LatencyModel | None = None,
        val_images: int | None = None,
        bn_batches: int = 4,
        batch_size: int = 8,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.supernet = supernet.eval()
        self.space = supernet.space
        self.archive = archive
        self.budgets = dict(budgets or {})
        self.latency = latency
        self.bn_batches = bn_batches
        self.batch_size = batch_size
        self.seed = seed
        self.device = torch.device(device)
        self.train_data = data.train
        stems = data.split["val"][:val_images] if val_images else data.split["val"]
        if not stems:
            raise SalnasError("the validation split is empty: the oracle has nothing to score")
        self.val_stems = list(stems)
        # The fixed validation subset, decoded once (in order, no flips).
        self._val = list(val_batches(SaliencyDataset(data.prepared, self.val_stems), batch_size))
        self._val_at: dict[tuple[int, int], list[ValBatch]] = {}
        self._bn_at: dict[tuple[int, int], list[Tensor]] = {}
        self._costs: dict[str, tuple[int, int]] = {}
        self._params: dict[str, int] = {}
        self.evaluated = 0  # fresh evaluations (scored or rejected) by this process
        self.hits = 0  # answered by the archive

    # ------------------------------------------------------------------ per-resolution caches
    def val_batches_at(self, resolution: Sequence[int]) -> list[ValBatch]:
        """The validation subset with images resized to ``resolution``, cached."""
        res = (int(resolution[0]), int(resolution[1]))
        if res not in self._val_at:
            self._val_at[res] = at_resolution(self._val, res, self.device)
        return self._val_at[res]

    def bn_batches_at(self, resolution: Sequence[int]) -> list[Tensor]:
        """BN recalibration batches at ``resolution`` (as ``calibrated_subnet`` builds), cached."""
        res = (int(resolution[0]), int(resolution[1]))
        if res not in self._bn_at:
            self._bn_at[res] = training_images_at(self.train_data, res, self.bn_batches,
                                                  self.batch_size, self.seed, self.device)
        return self._bn_at[res]

    # ------------------------------------------------------------------ costs
    def params(self, genome: Genome) -> int:
        """Parameter count of ``genome`` (extraction only, no FLOP trace), memoised."""
        got = self._params.get(genome.id)
        if got is None:
            got = self._costs[genome.id][0] if genome.id in self._costs else sum(
                p.numel() for p in self.supernet.extract(genome).parameters())
            self._params[genome.id] = got
        return got

    def costs(self, genome: Genome, net: nn.Module | None = None) -> tuple[int, int]:
        """(params, FLOPs) of ``genome``, memoised (early-exit sampling asks for many)."""
        got = self._costs.get(genome.id)
        if got is None:
            net = net if net is not None else self.supernet.extract(genome)
            got = count_params_flops(net, genome.resolution)
            self._costs[genome.id] = got
        return got

    def max_costs(self) -> dict[str, float]:
        """Costs of the largest genome: the upper normalisation bounds of cost objectives."""
        genome = self.space.max_genome()
        net = self.supernet.extract(genome)
        params, flops = self.costs(genome, net)
        out: dict[str, float] = {"params": float(params), "flops": float(flops)}
        if self.latency is not None:
            out["latency_ms"] = float(self.latency(genome, net))
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self, genome: Genome, *, engine: str = "", generation: int = 0
    ) -> tuple[dict[str, Any], bool]:
        """(archive record, whether it came from the archive). Never evaluates twice."""
        row = self.archive.acquire(genome.id)
        if row is not None:
            self.hits += 1
            return row, True
        try:
            t0 = time.perf_counter()
            record = self.compute(genome)
            record.update(
                engine=engine,
                generation=generation,
                worker=worker_id(),
                wall_s=time.perf_counter() - t0,
                finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
        except BaseException:
            self.archive.release(genome.id)
            raise
        self.evaluated += 1
        # The stored row (read back from the file) is returned, so fresh and cached answers
        # are bit-identical.
        return self.archive.add(record), False

    def compute(self, genome: Genome) -> dict[str, Any]:
        """Evaluate ``genome`` now (no archive): costs, then latency, then scores if feasible."""
        net = self.supernet.extract(genome)
        params, flops = self.costs(genome, net)
        record: dict[str, Any] = {
            "id": genome.id,
            "genome": genome.to_json(),
            **dict.fromkeys(ORACLE_METRICS, math.nan),
            "params": params,
            "flops": flops,
            "latency_ms": math.nan,
            "latency_source": "",
            "scored": False,
        }
        feasible = all(record[k] <= self.budgets[k] for k in ("params", "flops")
                       if k in self.budgets)
        if feasible and self.latency is not None:
            record["latency_ms"] = float(self.latency(genome, net))
            record["latency_source"] = self.latency.source
            feasible = record["latency_ms"] <= self.budgets.get("latency_ms", math.inf)
        record["feasible"] = feasible
        if feasible:
            record.update(self.score(genome, net))
            record["scored"] = True
        return record

    def score(self, genome: Genome, net: nn.Module) -> dict[str, float]:
        """Mean metrics of the (extracted) ``net`` after BN recalibration."""
        net = recalibrate_bn(net.to(self.device), self.bn_batches_at(genome.resolution))
        return score_batches(net, self.val_batches_at(genome.resolution), ORACLE_METRICS)
