"""Latency of subnets on one device: measurement, a lookup table of blocks, and its predictor.

A :class:`LatencyTable` holds the measured latency (ms, batch 1) of every building block of a
search space on one device and thread count, per input resolution:

* ``stem``: input normalisation, stem conv, BN, ReLU6;
* ``block``: one MBConv variant per (stage, first/rest, kernel, expand). The first block of a
  stage changes stride and channels; the later ones all have the same shapes, so one entry
  per (stage, ``rest``, k, e) covers them;
* ``level``: one decoder level per (level, op, width, skip on/off, previous width), including
  its bilinear upsampling of the previous level and the concatenation;
* ``fpn``: with the FPN decoder (``decoder_types``), its top lateral per width, each level per
  (width, lateral on/off) including the upsampling and the sum, and its head op per (level
  where it can run, op, width);
* ``readout``: the 1x1 read-out per (input width, prior on/off), including the upsampling of
  the prior maps and of the logits to the input size; after a level other than the space's
  last (``decoder_depths``), per that level too.

A genome's latency is predicted as ``a * sum(entries) + b``: the fitted overhead ``(a, b)``
corrects what the sum misses (Python dispatch between modules, cache effects of a whole
network) and is fitted by relative least squares on a handful of whole subnets measured in
the same run. Shared machines drift (up to 2x within minutes here), so every measurement is
*interleaved*: all candidates (blocks and whole subnets) are timed in round-robin passes in a
fresh random order per pass, and each candidate's latency is its median over the passes, so a
slow minute slows every candidate alike instead of a few.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import gc
import itertools
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from salnas.errors import SalnasError
from salnas.io import provenance, write_json_atomic
from salnas.search.backends import check_backend, compile_module
from salnas.supernet.model import Supernet
from salnas.supernet.plan import (
    FpnHeadPlan,
    FpnLevelPlan,
    FpnTopPlan,
    LevelPlan,
    MBConvPlan,
    PlanPart,
    ReadoutPlan,
    StemPlan,
)
from salnas.supernet.space import Genome, GenomeError, SearchSpace

__all__ = [
    "LUT_FORMAT",
    "LatencyTable",
    "busy_warning",
    "device_description",
    "entry_keys",
    "genome_entry_keys",
    "load_average",
    "measure_latency_ms",
    "pinned_threads",
    "profile_latency",
    "sample_interleaved",
    "time_interleaved",
    "validate_table",
    "validation_report",
]

LUT_FORMAT = "salnas-latency-lut-v1"
# Blocks faster than this are timed as several back-to-back calls per sample (timer and
# dispatch jitter would swamp one call); whole subnets are far slower and run once per sample.
# Against one call per sample, validation RMSE was lower in 4 of 4 paired runs here.
MIN_SAMPLE_MS = 1.0
MAX_INNER = 32
_VALIDATION_STREAM, _FIT_STREAM = 1, 0  # separate seeds: validation never reuses fit subnets
# How a candidate's samples become its latency. "median" is the documented measure of a
# subnet. Contention only ever adds time: on our 2-core VM at load ~3 the run-to-run spread
# of 20 subnets was 4-9 % rms with the median and 2 % with the minimum. At load ~5 both
# spread 6-9 %.
STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "median": lambda x: np.median(x, axis=0),
    "min": lambda x: np.min(x, axis=0),
}


# --- measurement ----------------------------------------------------------------------------
@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Run with ``torch.set_num_threads(threads)``; the previous count is restored."""
    if threads < 1:
        raise SalnasError(f"threads must be >= 1, got {threads}")
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise SalnasError(f"device must be cpu or cuda, got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SalnasError("device cuda requested but torch sees no CUDA GPU")
    return dev


def time_interleaved(
    benches: Sequence[Callable[[], object]],
    *,
    device: str | torch.device = "cpu",
    threads: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    min_sample_ms: float = MIN_SAMPLE_MS,
    seed: int = 0,
    progress: bool = False,
    desc: str = "timing",
    statistic: str = "median",
) -> np.ndarray:
    """Median (or ``statistic``) latency in ms per call of each zero-argument callable,
    measured interleaved.

    Each candidate first runs ``warmup`` calls back to back (allocations, kernel choice).
    Then ``repeats`` passes each time every candidate once, in a new random order per pass;
    the result is the per-candidate median (or min) over the passes. A candidate faster than
    ``min_sample_ms`` runs several calls per sample (at most :data:`MAX_INNER`).
    """
    if statistic not in STATISTICS:
        raise SalnasError(f"statistic must be one of {sorted(STATISTICS)}, got {statistic!r}")
    return STATISTICS[statistic](sample_interleaved(
        benches, device=device, threads=threads, warmup=warmup, repeats=repeats,
        min_sample_ms=min_sample_ms, seed=seed, progress=progress, desc=desc))


def sample_interleaved(
    benches: Sequence[Callable[[], object]],
    *,
    device: str | torch.device = "cpu",
    threads: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    min_sample_ms: float = MIN_SAMPLE_MS,
    seed: int = 0,
    progress: bool = False,
    desc: str = "timing",
) -> np.ndarray:
    """The samples behind :func:`time_interleaved`: ms per call, shape (repeats, candidates)."""
    if repeats < 1 or warmup < 0:
        raise SalnasError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    dev = _device(device)
    sync: Callable[[], None] = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rng = np.random.default_rng(seed)
    n = len(benches)
    samples = np.empty((repeats, n))
    inner = np.ones(n, dtype=np.int64)
    gc_was_enabled = gc.isenabled()
    bar = tqdm(total=n * (repeats + 1), desc=desc, disable=not progress, mininterval=0.5,
               unit="timing", leave=False)
    with pinned_threads(threads), torch.inference_mode(), bar:
        try:
            for i, fn in enumerate(benches):
                best = math.inf
                for _ in range(max(warmup, 1 if min_sample_ms > 0 else 0)):
                    sync()
                    t0 = time.perf_counter()
                    fn()
                    sync()
                    best = min(best, time.perf_counter() - t0)
                if min_sample_ms > 0 and best < math.inf:
                    inner[i] = min(MAX_INNER, max(1, math.ceil(min_sample_ms / 1e3 / best)))
                bar.update()
            gc.disable()  # a collection inside a sample would be an outlier of one candidate
            for p in range(repeats):
                for i in rng.permutation(n):
                    fn, k = benches[i], int(inner[i])
                    sync()
                    t0 = time.perf_counter()
                    for _ in range(k):
                        fn()
                    sync()
                    samples[p, i] = (time.perf_counter() - t0) / k
                    bar.update()
                if n > 1:  # between passes, where it times nothing (one candidate: no
                    gc.collect()  # sample of another can be hit; a collect costs ~0.4 s)
        finally:
            if gc_was_enabled:
                gc.enable()
    return samples * 1e3


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): a busy machine skews timings."""
    with contextlib.suppress(OSError, AttributeError):
        return round(os.getloadavg()[0], 2)
    return None


def busy_warning(loads: Sequence[float | None], device: dict[str, Any]) -> str | None:
    """A warning when the CPU load during a measurement exceeded the usable CPUs."""
    cpus = device.get("usable_cpus") or 0
    top = max((x for x in loads if x is not None), default=None)
    if device.get("type") != "cpu" or top is None or not cpus or top <= cpus:
        return None
    return (f"the machine was busy (1-minute load up to {top:.1f} on {cpus} CPUs): other "
            "processes skewed these timings; re-run on an idle machine")


def _on_device(model: nn.Module, dev: torch.device) -> nn.Module:
    """``model`` itself if it lives on ``dev``, else a copy there (the caller's is untouched)."""
    p = next(model.parameters(), None)
    if p is None or p.device == dev or (dev.type == "cuda" and p.device.type == "cuda"
                                        and dev.index is None):
        return model
    return copy.deepcopy(model).to(dev)


def _input(shape: Sequence[int], dev: torch.device, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)).to(dev)


def measure_latency_ms(
    model: nn.Module,
    resolution: tuple[int, int],
    *,
    device: str = "cpu",
    threads: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    backend: str = "torch",
) -> float:
    """Median latency in ms of ``model`` on one (1, 3, H, W) image in ``backend`` (eager
    torch, TorchScript or onnxruntime: :mod:`salnas.search.backends`): eval mode,
    ``torch.inference_mode``, ``threads`` pinned (restored after; onnxruntime's session uses
    as many intra-op threads), CUDA synchronised around each timing. The model's train/eval
    mode is restored afterwards."""
    dev = _device(device)
    net = _on_device(model, dev)
    training = net.training
    net.eval()
    try:
        x = _input((1, 3, *resolution), dev)
        fn = compile_module(net, (x,), backend, threads)
        return float(time_interleaved([fn], device=dev, threads=threads,
                                      warmup=warmup, repeats=repeats, min_sample_ms=0)[0])
    finally:
        net.train(training)


def device_description(device: str | torch.device = "cpu") -> dict[str, Any]:
    """What the device is: CPU model (``/proc/cpuinfo``) and core counts, or the GPU's name."""
    dev = _device(device)
    if dev.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(dev),
                "cuda": torch.version.cuda}
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"type": "cpu", "name": name, "logical_cpus": os.cpu_count(), "usable_cpus": usable}


# --- the entries of a space -----------------------------------------------------------------
def _res(resolution: Sequence[int]) -> str:
    return f"{resolution[0]}x{resolution[1]}"


def stem_key(resolution: Sequence[int]) -> str:
    return f"stem@{_res(resolution)}"


def block_key(resolution: Sequence[int], stage: int, first: bool, kernel: int,
              expand: int) -> str:
    return f"block@{_res(resolution)}/s{stage}/{'first' if first else 'rest'}/k{kernel}/e{expand}"


def level_key(resolution: Sequence[int], level: int, op: str, width: int, skip: bool,
              prev: int) -> str:
    return f"level@{_res(resolution)}/d{level}/{op}/w{width}/skip{int(skip)}/prev{prev}"


def readout_key(resolution: Sequence[int], width: int, prior: bool,
                level: int | None = None) -> str:
    """Key of the read-out after decoder level ``level`` (None: the space's last level, the
    key of a decoder that runs every level, as before the decoder depth was a gene)."""
    at = "" if level is None else f"/d{level}"
    return f"readout@{_res(resolution)}{at}/w{width}/prior{int(prior)}"


def fpn_top_key(resolution: Sequence[int], width: int) -> str:
    return f"fpn@{_res(resolution)}/top/w{width}"


def fpn_level_key(resolution: Sequence[int], level: int, width: int, skip: bool) -> str:
    return f"fpn@{_res(resolution)}/d{level}/w{width}/skip{int(skip)}"


def fpn_head_key(resolution: Sequence[int], level: int, op: str, width: int) -> str:
    return f"fpn@{_res(resolution)}/head/d{level}/{op}/w{width}"


def part_key(resolution: Sequence[int], part: PlanPart) -> str:
    """The table entry of one part of a :class:`~salnas.supernet.plan.BlockPlan`."""
    if isinstance(part, StemPlan):
        return stem_key(resolution)
    if isinstance(part, MBConvPlan):
        return block_key(resolution, part.stage, part.first, part.kernel, part.expand)
    if isinstance(part, LevelPlan):
        return level_key(resolution, part.level, part.op, part.width, part.use_skip,
                         part.prev_channels)
    if isinstance(part, FpnTopPlan):
        return fpn_top_key(resolution, part.width)
    if isinstance(part, FpnLevelPlan):
        return fpn_level_key(resolution, part.level, part.width, part.use_skip)
    if isinstance(part, FpnHeadPlan):
        return fpn_head_key(resolution, part.level, part.op, part.width)
    return readout_key(resolution, part.cin, part.prior, None if part.final else part.level)


def genome_entry_keys(genome: Genome) -> list[str]:
    """The table entries whose sum is the (uncorrected) latency of ``genome``."""
    plan = genome.space.plan(genome)
    return [part_key(plan.resolution, p) for p in plan.parts()]


_Part = StemPlan | MBConvPlan | LevelPlan | ReadoutPlan
_FpnPart = FpnTopPlan | FpnLevelPlan | FpnHeadPlan


def _components(space: SearchSpace) -> Iterator[tuple[str, tuple[int, int], _Part]]:
    """Every entry of the space's table but the FPN decoder's (:func:`_fpn_components`):
    (key, resolution, the plan part it times).

    Parts come from the max plan at each resolution (which has every block, so every
    channel count and feature size), with the searched choices swapped in. Blocks after a
    stage's second have the second's shapes, so they share its ``rest`` entry. The read-out
    has entries after every level that can be the last (``decoder_depths``), at its size, per
    width that level can have (with an FPN decoder: also the level-0 widths; one entry where
    the U-Net's and the FPN's widths are equal).
    """
    priors = (False, True) if space.prior_channels > 0 else (False,)
    for r in space.resolutions:
        plan = space.max_plan(r)
        yield stem_key(r), r, plan.stem
        for b in plan.blocks:
            if b.index > 1:
                continue
            ks, es = space.block_choices(space.stages[b.stage])
            for k in ks:
                for e in es:
                    block = replace(b, kernel=k, expand=e, hidden=b.cin * e)
                    yield part_key(r, block), r, block
        prevs: tuple[int, ...] = (plan.stage_channels[-1],)
        for lv in plan.levels:
            widths = space.decoder_widths[lv.level]
            for op in space.decoder_ops:
                for w in widths:
                    for skip in (False, True):
                        for prev in prevs:
                            level = replace(lv, op=op, width=w, use_skip=skip,
                                            prev_channels=prev)
                            yield part_key(r, level), r, level
            prevs = widths
        sizes = [plan.stage_sizes[s] for s in space.skip_stages]
        fpn_widths = space.decoder_widths[0] if "fpn" in space.decoder_types else ()
        for d in space.decoder_depths:
            unet = space.decoder_widths[d - 1] if "unet" in space.decoder_types else ()
            for w in dict.fromkeys((*unet, *fpn_widths)):
                for prior in priors:
                    readout = ReadoutPlan(w, prior, space.prior_channels if prior else 0,
                                          sizes[d - 1], r, d - 1, d == len(sizes))
                    yield part_key(r, readout), r, readout


def _fpn_components(space: SearchSpace) -> Iterator[tuple[str, tuple[int, int], _FpnPart]]:
    """The FPN decoder's entries (none without ``fpn`` in ``decoder_types``), per resolution
    and level-0 width: the top lateral; each level with and without its lateral (upsampling
    included); the head op at each level that can be the last. A plain module of each part:
    :meth:`Supernet.export_part <salnas.supernet.model.Supernet.export_part>`."""
    if "fpn" not in space.decoder_types:
        return
    widths = space.decoder_widths[0]
    for r in space.resolutions:
        plan = space.max_plan(r)
        channels, sizes = plan.stage_channels, plan.stage_sizes
        for w in widths:
            top = FpnTopPlan(channels[-1], w, sizes[-1])
            yield part_key(r, top), r, top
        prev = sizes[-1]
        for lvl, s in enumerate(space.skip_stages):
            for w in widths:
                for skip in (False, True):
                    level = FpnLevelPlan(lvl, s, channels[s], w, skip, prev, sizes[s])
                    yield part_key(r, level), r, level
            if lvl + 1 in space.decoder_depths:
                for op in space.decoder_ops:
                    for w in widths:
                        head = FpnHeadPlan(lvl, op, w, sizes[s])
                        yield part_key(r, head), r, head
            prev = sizes[s]


def entry_keys(space: SearchSpace) -> list[str]:
    """Keys of every entry a complete table of ``space`` holds."""
    return [c[0] for c in _components(space)] + [c[0] for c in _fpn_components(space)]


class _Normalised(nn.Module):
    """The stem behind the input normalisation, as one module (so it exports as one)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, stem: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.stem = stem
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem((x - self.mean) / self.std)


class _AtSize(nn.Module):
    """A read-out with its output size bound (its size argument is no tensor)."""

    def __init__(self, readout: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        self.readout, self.size = readout, size

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.readout(y, self.size)


def _component_benches(net: Supernet, dev: torch.device, backend: str = "torch",
                       threads: int = 1) -> tuple[list[str], list[Callable[[], object]]]:
    """A zero-argument callable per entry: the exported plain module on an input of its size,
    in ``backend``.

    Eager modules do not depend on the resolution, so each is exported once and shared
    (TorchScript and ONNX conversions are per input size).
    """
    modules: dict[tuple[Any, ...], nn.Module] = {}
    inputs: dict[tuple[int, ...], torch.Tensor] = {}

    def module(key: tuple[Any, ...], make: Callable[[], nn.Module]) -> nn.Module:
        if key not in modules:
            modules[key] = make().to(dev).eval()
        return modules[key]

    def tensor(*shape: int) -> torch.Tensor:
        if shape not in inputs:
            inputs[shape] = _input(shape, dev, seed=len(inputs))
        return inputs[shape]

    def export(m: Any, *active: Any) -> nn.Module:
        m.set_active(*active)
        return m.export()

    mean, std = net.mean.to(dev), net.std.to(dev)
    stem = module(("stem",), lambda: _Normalised(copy.deepcopy(net.encoder.stem), mean, std))
    keys: list[str] = []
    benches: list[Callable[[], object]] = []
    parts: Iterator[tuple[str, tuple[int, int], Any]] = itertools.chain(
        _components(net.space), _fpn_components(net.space))
    for key, r, part in parts:
        fn: Callable[[], object]
        if isinstance(part, FpnTopPlan | FpnLevelPlan | FpnHeadPlan):
            m, shapes = net.export_part(part)
            fn = compile_module(m.to(dev).eval(), tuple(tensor(*sh) for sh in shapes), backend,
                                threads)
        elif isinstance(part, StemPlan):
            fn = compile_module(stem, (tensor(1, part.cin, *part.in_size),), backend, threads)
        elif isinstance(part, MBConvPlan):
            args: tuple[Any, ...] = (part.kernel, part.expand)
            m = module(("block", part.stage, part.first, *args),
                       partial(export, net.block(part), *args))
            fn = compile_module(m, (tensor(1, part.cin, *part.in_size),), backend, threads)
        elif isinstance(part, LevelPlan):
            args = (part.op, part.width, part.use_skip, part.prev_channels)
            m = module(("level", part.level, *args),
                       partial(export, net.level(part.level), *args))
            fn = compile_module(m, (tensor(1, part.prev_channels, *part.prev_size),
                                    tensor(1, part.skip_channels, *part.size)),
                                backend, threads)
        else:
            m = module(("readout", part.cin, part.prior),
                       partial(export, net.readout, part.prior, part.cin))
            fn = compile_module(_AtSize(m, (int(r[0]), int(r[1]))),
                                (tensor(1, part.cin, *part.in_size),), backend, threads)
        keys.append(key)
        benches.append(fn)
    return keys, benches


# --- the table ------------------------------------------------------------------------------
def _fit_overhead(sums: np.ndarray, measured: np.ndarray, floor_sum: float) -> dict[str, Any]:
    """Fit ``measured ≈ a * sum + b`` minimising *relative* squared error (errors are judged
    in %). Falls back to a pure ratio (b = 0) when the fit is degenerate or would predict a
    non-positive latency for the cheapest possible sum ``floor_sum``."""
    method = "relative least squares: measured ≈ a * sum + b"
    a, b = float("nan"), 0.0
    if len(sums) >= 2 and np.ptp(sums) > 1e-9 * max(sums.max(), 1e-12):
        design = np.stack([sums, np.ones_like(sums)], 1) / measured[:, None]
        (a, b), *_ = np.linalg.lstsq(design, np.ones_like(sums), rcond=None)
    if not (np.isfinite(a) and a > 0 and a * floor_sum + b > 0):
        method = "ratio (b = 0): median of measured / sum"
        a, b = float(np.median(measured / sums)), 0.0
    return {"a": float(a), "b": float(b), "method": method}


class LatencyTable:
    """Latency lookup table of one search space on one device and thread count.

    ``predict_ms(genome) = a * sum(entries of genome) + b``; see the module docstring.
    """

    def __init__(self, space: SearchSpace, entries: dict[str, float], overhead: dict[str, Any],
                 meta: dict[str, Any], validation: dict[str, Any] | None = None,
                 path: Path | None = None) -> None:
        self.space, self.entries, self.overhead = space, dict(entries), dict(overhead)
        self.meta, self.validation, self.path = dict(meta), validation, path
        self.a, self.b = float(overhead["a"]), float(overhead["b"])
        self._checked_space: SearchSpace | None = space  # last space found equal (cheap check)

    @property
    def backend(self) -> str:
        """The runtime the entries were measured in (tables before backends: torch)."""
        return str(self.meta.get("backend", "torch"))

    @property
    def _name(self) -> str:
        return str(self.path) if self.path else "this latency table"

    def _check_space(self, space: SearchSpace) -> None:
        if space is self._checked_space:
            return
        if space != self.space:
            diff = _config_diff(self.space.to_config(), space.to_config())
            raise SalnasError(
                f"{self._name} was profiled for another search space (differs in {diff}); "
                "profile this space with `salnas latency profile --config ...`")
        self._checked_space = space

    def component_sum_ms(self, genome: Genome) -> float:
        """Sum of the genome's entries (ms), before the fitted overhead."""
        self._check_space(genome.space)
        try:
            return float(sum(self.entries[k] for k in genome_entry_keys(genome)))
        except KeyError as e:
            raise SalnasError(f"{self._name} has no entry {e.args[0]!r}") from None

    def predict_ms(self, genome: Genome) -> float:
        """Predicted latency (ms, batch 1) of ``genome`` on this table's device and threads."""
        return self.a * self.component_sum_ms(genome) + self.b

    def breakdown(self, genome: Genome) -> dict[str, float]:
        """Entry sums per part (stem, block, level, readout) and the overhead, in ms."""
        parts: dict[str, float] = {}
        for k in genome_entry_keys(genome):
            kind = k.split("@", 1)[0]
            parts[kind] = parts.get(kind, 0.0) + self.entries[k]
        parts["overhead"] = self.predict_ms(genome) - sum(parts.values())
        return parts

    # --- files ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": LUT_FORMAT, **self.meta, "space": self.space.to_config(),
                "entries": self.entries, "overhead": self.overhead,
                "validation": self.validation}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the table as JSON, atomically."""
        write_json_atomic(path, self.to_dict())
        self.path = Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *,
             space: SearchSpace | None = None, backend: str | None = None) -> LatencyTable:
        """Read a table; with ``space``, reject a table made for another space, and with
        ``backend``, one measured in another runtime. Every problem raises
        :class:`SalnasError` naming the file."""
        path = Path(path)
        hint = f"make one with `salnas latency profile --out {path}`"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SalnasError(f"latency table {path} does not exist; {hint}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SalnasError(f"latency table {path} is not readable JSON ({e}); {hint}") from None
        if not isinstance(data, dict) or data.get("format") != LUT_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise SalnasError(f"{path} is not a salnas latency table (format {found!r}, "
                              f"expected {LUT_FORMAT!r}); {hint}")
        missing = {"space", "entries", "overhead", "device", "threads"} - set(data)
        if missing:
            raise SalnasError(f"latency table {path} lacks {sorted(missing)}; {hint}")
        try:
            table_space = SearchSpace(data["space"])
        except (GenomeError, TypeError, ValueError, KeyError) as e:
            raise SalnasError(f"latency table {path}: invalid search space ({e})") from None
        entries, overhead = data["entries"], data["overhead"]
        try:
            entries = {str(k): float(v) for k, v in entries.items()}
            a, b = float(overhead["a"]), float(overhead["b"])
        except (AttributeError, TypeError, ValueError, KeyError) as e:
            raise SalnasError(f"latency table {path}: invalid entries or overhead ({e})") from None
        bad = [k for k, v in entries.items() if not (math.isfinite(v) and v > 0)]
        absent = [k for k in entry_keys(table_space) if k not in entries]
        if bad or absent or not (math.isfinite(a) and a > 0 and math.isfinite(b)):
            raise SalnasError(
                f"latency table {path} is incomplete or corrupt ({len(absent)} entries missing, "
                f"{len(bad)} not positive, overhead a={a}, b={b}; first: "
                f"{(absent + bad)[:1]}); {hint}")
        meta = {k: v for k, v in data.items()
                if k not in ("format", "space", "entries", "overhead", "validation")}
        table = cls(table_space, entries, overhead, meta, data.get("validation"), path)
        if space is not None:
            table._check_space(space)
        if backend is not None and table.backend != backend:
            raise SalnasError(
                f"{path} was measured in the {table.backend} backend, not {backend}; profile "
                f"with `salnas latency profile --backend {backend}` or set "
                f"search.latency.backend: {table.backend}")
        return table


def _config_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return ", ".join(f"{k}: table {a.get(k)} vs {b.get(k)}" for k in keys) or "nothing?"


# --- profiling and validation ---------------------------------------------------------------
def _fit_genomes(space: SearchSpace, n: int, seed: int) -> list[Genome]:
    """The cheapest genome at the smallest resolution, the largest at the largest, n random."""
    area = sorted(space.resolutions, key=lambda r: r[0] * r[1])
    lo, hi = space.min_genome(), space.max_genome()
    anchors = [Genome(**{**_fields(lo), "resolution": area[0]}, space=space),
               Genome(**{**_fields(hi), "resolution": area[-1]}, space=space)]
    rng = np.random.default_rng([seed, _FIT_STREAM])
    return anchors + [space.random_genome(rng) for _ in range(n)]


def _validation_genomes(space: SearchSpace, n: int, seed: int) -> list[Genome]:
    rng = np.random.default_rng([seed, _VALIDATION_STREAM])
    return [space.random_genome(rng) for _ in range(n)]


def _fields(g: Genome) -> dict[str, Any]:
    return {k: getattr(g, k) for k in g.__dataclass_fields__ if k != "space"}


def _subnet_benches(net: Supernet, genomes: Sequence[Genome], dev: torch.device,
                    backend: str = "torch", threads: int = 1) -> list[Callable[[], object]]:
    """Whole standalone subnets (extracted, eval mode) on one image each, in ``backend``."""
    benches: list[Callable[[], object]] = []
    for i, g in enumerate(genomes):
        model = net.extract(g).to(dev).eval()
        x = _input((1, 3, *g.resolution), dev, seed=i)
        benches.append(compile_module(model, (x,), backend, threads))
    return benches


def validation_report(table: LatencyTable, genomes: Sequence[Genome],
                      measured: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Predicted vs measured latency of ``genomes``.

    Keys: ``n``, ``rmse_pct`` (root mean square of the relative error, %),
    ``share_within_10pct`` (fraction of subnets with |error| <= 10 %), ``mean_error_pct``
    (bias; > 0: predictions too slow), ``max_abs_error_pct``, ``kendall_tau`` (rank agreement,
    what a search needs), ``measured_max_over_min`` (spread of the subnets' latencies, a ratio),
    and ``subnets``: per subnet ``id``, ``resolution``, ``measured_ms``, ``predicted_ms``,
    ``ratio`` (predicted / measured).
    """
    from scipy.stats import kendalltau

    meas = np.asarray(measured, dtype=np.float64)
    pred = np.array([table.predict_ms(g) for g in genomes])
    err = (pred - meas) / meas * 100
    tau = float(kendalltau(pred, meas).statistic) if len(meas) >= 2 else float("nan")
    return {
        "n": len(meas),
        "rmse_pct": float(np.sqrt(np.mean(err**2))),
        "share_within_10pct": float(np.mean(np.abs(err) <= 10.0)),
        "mean_error_pct": float(err.mean()),
        "max_abs_error_pct": float(np.abs(err).max()),
        "kendall_tau": tau if math.isfinite(tau) else None,
        "measured_max_over_min": float(meas.max() / meas.min()),
        "subnets": [{"id": g.id, "resolution": list(g.resolution), "measured_ms": float(m),
                     "predicted_ms": float(p), "ratio": float(p / m)}
                    for g, m, p in zip(genomes, meas, pred, strict=True)],
    }


def profile_latency(
    space: SearchSpace,
    *,
    device: str = "cpu",
    threads: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    fit: int = 8,
    validate: int = 0,
    seed: int = 0,
    statistic: str = "median",
    progress: bool = True,
    backend: str = "torch",
) -> LatencyTable:
    """Measure every entry of ``space``, fit the overhead on ``fit`` random subnets (plus the
    smallest and the largest) and, with ``validate > 0``, validate on that many other random
    subnets. Everything is timed in the same interleaved passes (see the module docstring);
    ``statistic`` (median or min over the passes) is recorded and reused by validation."""
    dev = _device(device)
    check_backend(backend, dev)
    start, load_start = time.perf_counter(), load_average()
    torch.manual_seed(seed)
    net = Supernet(space, pretrained=False).eval()
    keys, benches = _component_benches(net, dev, backend, threads)
    fit_genomes = _fit_genomes(space, fit, seed)
    val_genomes = _validation_genomes(space, validate, seed)
    benches += _subnet_benches(net, [*fit_genomes, *val_genomes], dev, backend, threads)
    del net
    ms = time_interleaved(benches, device=dev, threads=threads, warmup=warmup, repeats=repeats,
                          seed=seed, progress=progress, desc=f"profiling {len(benches)} items",
                          statistic=statistic)
    entries = dict(zip(keys, (float(v) for v in ms[: len(keys)]), strict=True))
    fit_ms = ms[len(keys): len(keys) + len(fit_genomes)]
    val_ms = ms[len(keys) + len(fit_genomes):]

    meta = {
        "device": device_description(dev),
        "threads": threads,
        "backend": backend,
        "torch": torch.__version__,
        "measurement": {"batch": 1, "warmup": warmup, "repeats": repeats,
                        "min_sample_ms": MIN_SAMPLE_MS, "interleaved": True, "seed": seed,
                        "statistic": statistic,
                        "seconds": None, "load_average": None},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "provenance": provenance(),
    }
    table = LatencyTable(space, entries, {"a": 1.0, "b": 0.0}, meta)
    sums = np.array([table.component_sum_ms(g) for g in fit_genomes])
    overhead = _fit_overhead(sums, fit_ms, _floor_sum(space, entries))
    overhead["points"] = [{"id": g.id, "resolution": list(g.resolution), "sum_ms": float(s),
                           "measured_ms": float(m)}
                          for g, s, m in zip(fit_genomes, sums, fit_ms, strict=True)]
    table = LatencyTable(space, entries, overhead, meta)
    if validate:
        table.validation = {**validation_report(table, val_genomes, val_ms),
                            "when": "profile (same interleaved passes as the entries)",
                            "seed": seed}
    table.meta["measurement"].update(seconds=round(time.perf_counter() - start, 1),
                                     load_average=[load_start, load_average()])
    return table


def _floor_sum(space: SearchSpace, entries: dict[str, float]) -> float:
    """A lower bound on any genome's entry sum: the cheapest entry of each part, min depths."""
    best = math.inf
    for r in space.resolutions:
        tag = f"@{_res(r)}/"
        total = entries[stem_key(r)]
        for i, depths in enumerate(space.depth_choices):
            for first, count in ((True, 1), (False, depths[0] - 1)):
                pre = f"block{tag}s{i}/{'first' if first else 'rest'}/"
                if count:
                    total += count * min(v for k, v in entries.items() if k.startswith(pre))
        def cheapest(prefix: str) -> float:
            return min(v for k, v in entries.items() if k.startswith(prefix))

        levels = range(space.decoder_depths[0])  # every genome runs at least these
        decoders = []
        if "unet" in space.decoder_types:
            decoders.append(sum(cheapest(f"level{tag}d{lvl}/") for lvl in levels))
        if "fpn" in space.decoder_types:
            decoders.append(cheapest(f"fpn{tag}top/") + cheapest(f"fpn{tag}head/")
                            + sum(cheapest(f"fpn{tag}d{lvl}/") for lvl in levels))
        total += min(decoders)
        total += min(v for k, v in entries.items() if k.startswith(f"readout{tag}"))
        best = min(best, total)
    return best


def validate_table(
    table: LatencyTable,
    n: int = 20,
    *,
    warmup: int = 3,
    repeats: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure ``n`` random subnets (interleaved) on the table's device and thread count and
    compare with the predictions; see :func:`validation_report` for the keys."""
    if n < 1:
        raise SalnasError(f"--subnets must be >= 1, got {n}")
    device = table.meta.get("device", {}).get("type", "cpu")
    threads = int(table.meta.get("threads", 1))
    statistic = table.meta.get("measurement", {}).get("statistic", "median")
    here, load_start = device_description(device), load_average()
    torch.manual_seed(seed)
    net = Supernet(table.space, pretrained=False).eval()
    genomes = _validation_genomes(table.space, n, seed)
    benches = _subnet_benches(net, genomes, _device(device), table.backend, threads)
    del net
    ms = time_interleaved(benches, device=device, threads=threads, warmup=warmup,
                          repeats=repeats, seed=seed, progress=progress,
                          desc=f"validating {n} subnets", statistic=statistic)
    report = validation_report(table, genomes, ms)
    report.update(when="validate (separate run)", seed=seed, threads=threads, device=here,
                  warmup=warmup, repeats=repeats, statistic=statistic,
                  same_device_name=here.get("name") == table.meta.get("device", {}).get("name"),
                  load_average=[load_start, load_average()])
    return report
