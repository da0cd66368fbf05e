"""The one typed configuration schema; every stage reads its section from it.

Unknown keys are errors that name the key, so a typo never silently falls back to a
default. The resolved config (defaults filled in) is written into every output folder.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from salnas.errors import ConfigError
from salnas.layout import ORACLE_METRICS

# The loss terms a config may weight (salnas.losses implements them).
LOSS_TERMS: tuple[str, ...] = ("kld", "cc", "nss", "sim")
# A ground-truth blur wider than this is no saliency map (and its kernel would not fit memory).
MAX_SIGMA_PX = 1000.0


def check_sigma_px(value: float | None, setting: str = "data.sigma_px") -> float | None:
    """``value`` when it is a usable blur in pixels (finite, > 0, <= MAX_SIGMA_PX) or None;
    else a :class:`ConfigError` naming ``setting`` (the config key or the ``--sigma-px`` option).
    """
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{setting} must be a number of pixels, got {value!r}") from None
    if not math.isfinite(v) or v <= 0 or v > MAX_SIGMA_PX:
        raise ConfigError(f"{setting} is {value!r}: the ground-truth blur must be a finite number "
                          f"of pixels > 0 and <= {MAX_SIGMA_PX:g} (omit it for the dataset's own)")
    return v


def check_loss_weights(weights: dict[str, float]) -> dict[str, float]:
    """Loss weights: known terms only, finite and >= 0, at least one of them > 0."""
    unknown = sorted(set(weights) - set(LOSS_TERMS))
    if unknown:
        raise ValueError(f"unknown loss term(s) {unknown}; choose from {', '.join(LOSS_TERMS)}")
    bad = {k: w for k, w in weights.items() if not math.isfinite(w) or w < 0}
    if bad:
        raise ValueError(f"loss weights must be finite and >= 0, got {bad}")
    if not any(w > 0 for w in weights.values()):
        raise ValueError(f"no loss term has a positive weight (got {weights or '{}'}); give at "
                         f"least one of {', '.join(LOSS_TERMS)}, e.g. {{kld: 1.0, cc: 1.0}}")
    return weights


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """Which dataset, at which model resolution, split how."""

    spec: str = Field("synthetic", description="dataset spec, e.g. synthetic:300, osie:PATH")
    resolution: tuple[int, int] = Field((192, 256), description="model input (H, W)")
    sigma_px: float | None = Field(
        None, description="ground-truth blur override, pixels of the original"
    )
    val: float | int | None = Field(
        None, description="val split: count or fraction (None: dataset default)"
    )
    test: float | int | None = Field(None, description="test split: count or fraction")
    split_seed: int = 0
    hflip: bool = True
    cache_dir: str | None = Field(
        None, description="decoded-tensor cache (default $SALNAS_CACHE or ~/.cache/salnas)"
    )

    @field_validator("resolution")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 16 or v[0] % 32 or v[1] % 32:
            raise ValueError(
                f"resolution {v} must be (H, W) with both sides >= 32 and multiples of 32"
            )
        return v

    @field_validator("sigma_px")
    @classmethod
    def _sigma(cls, v: float | None) -> float | None:
        try:
            return check_sigma_px(v, "sigma_px")
        except ConfigError as e:
            raise ValueError(str(e)) from None

    @field_validator("val", "test")
    @classmethod
    def _split_share(cls, v: float | int | None, info: ValidationInfo) -> float | int | None:
        # Every stage validates (val) or tests (test) on these images: none of them may be empty.
        if v is None:
            return v
        if isinstance(v, bool) or not math.isfinite(v) or v <= 0 or (
                isinstance(v, float) and v >= 1 and not v.is_integer()):
            raise ValueError(
                f"{v!r} leaves the {info.field_name} split empty or is no share: give a count "
                f">= 1 or a fraction in (0, 1); the stages validate and test on >= 1 image")
        return v


class SupernetConfig(Section):
    """Supernet and its sandwich training (``salnas supernet train``)."""

    space: dict[str, Any] = Field(
        default_factory=dict, description="overrides of supernet.space.DEFAULT_CONFIG"
    )
    pretrained: bool = Field(True, description="start the encoder from ImageNet weights")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(8, ge=2, description="per process; >= 2 for BatchNorm")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    encoder_lr_scale: float = Field(0.1, ge=0, description="pretrained encoder learns slower")
    weight_decay: float = Field(1e-4, ge=0, description="not applied to BatchNorm and biases")
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    grad_clip: float | None = Field(5.0, description="max gradient norm; null disables")
    n_random: int = Field(2, ge=0, description="sandwich rule: max + min + n random subnets")
    sandwich: Literal["space", "alternate_types", "alternate_max"] = Field(
        "space", description="space: the space's max and min every step; alternate_types: "
        "the max and min of each decoder type in turn; alternate_max: the max of each "
        "decoder type in turn and the space's min every step (both without progressive "
        "shrinking)",
    )
    inplace_distill: bool = Field(True, description="smaller subnets learn the max's prediction")
    distill_weight: float = Field(1.0, ge=0)
    loss: dict[str, float] = Field(default_factory=lambda: {"kld": 1.0, "cc": 1.0, "nss": 0.1})

    @field_validator("loss")
    @classmethod
    def _loss(cls, v: dict[str, float]) -> dict[str, float]:
        return check_loss_weights(v)

    @field_validator("space")
    @classmethod
    def _space(cls, v: dict[str, Any]) -> dict[str, Any]:
        """Build the space now, so a typo or an impossible choice fails at config time."""
        if v:
            # Imported by name, only when a space is set: the core does not depend on the
            # supernet package (nor on torch) otherwise.
            space = importlib.import_module("salnas.supernet.space")
            try:
                space.SearchSpace(v)
            except (ValueError, TypeError, KeyError) as e:  # GenomeError is a ValueError
                raise ValueError(f"not a valid search space: {e}") from None
        return v

    progressive: bool = Field(
        False, description="progressive shrinking: kernel, then depth, then expand/decoder"
    )

    @field_validator("progressive")
    @classmethod
    def _progressive(cls, v: bool, info: ValidationInfo) -> bool:
        sandwich = info.data.get("sandwich")
        if v and sandwich != "space":
            raise ValueError(f"sandwich {sandwich} needs progressive: false (progressive "
                             "shrinking keeps the decoder at its maximum until the last phase)")
        return v

    temperature: tuple[float, float] = Field(
        (30.0, 1.0), description="dynamic-conv softmax temperature, annealed first to last epoch"
    )
    bn_recalib_batches: int = Field(8, ge=1)
    val_images: int | None = Field(None, description="validate on the first N val images")
    val_random: int = Field(
        4, ge=0, description="also validate this many fixed, seeded random subnets each epoch"
    )
    keep: Literal["best", "last"] = Field(
        "best",
        description="weights the later stages inherit: the epoch with the best val CC (mean "
        "of the max and min subnets) or the last epoch",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
    threads: int | None = Field(None, description="torch CPU threads (None: torch default)")


class LatencyConfig(Section):
    """How ``latency_ms`` is obtained when an objective or a constraint uses it."""

    mode: Literal["measured", "lut"] = Field(
        "measured", description="measured on this machine, or predicted from a LUT file"
    )
    lut: str | None = Field(None, description="lut.json of `salnas latency` (mode: lut)")
    backend: Literal["torch", "torchscript", "onnxruntime"] = Field(
        "torch", description="runtime the latency is measured in: eager torch, TorchScript, "
        "or onnxruntime's CPU execution provider (what a deployment ships)",
    )
    device: str = Field("cpu", description="device the latency is measured on")
    threads: int = Field(1, ge=1, description="CPU threads while measuring")
    warmup: int = Field(3, ge=0)
    repeats: int = Field(10, ge=1, description="timed batch-1 forwards; the median is kept")
    record: bool = Field(
        True, description="record latency even when nothing uses it (so pareto.csv and the "
        "report always have it)",
    )


class EarlyExitConfig(Section):
    """EEEA-Net early-exit initial population: only genomes under these costs (no scoring)."""

    max_params: float | None = Field(None, gt=0, description="parameter threshold")
    max_flops: float | None = Field(None, gt=0, description="FLOP (multiply-add) threshold")
    max_draws: int = Field(2_000, ge=1, description="random draws before giving up")

    @property
    def enabled(self) -> bool:
        return self.max_params is not None or self.max_flops is not None


class SurrogateConfig(Section):
    """The inner NSGA-II of ``search.engine: surrogate``, run on predictions only."""

    population: int = Field(64, ge=4, description="population of the search on predictions")
    generations: int = Field(30, ge=1, description="its generations per oracle generation")


class SearchConfig(Section):
    """Multi-objective architecture search on the trained supernet (``salnas search``)."""

    engine: Literal["nsga2", "optuna-nsga2", "optuna-tpe", "random", "surrogate"] = "nsga2"
    objectives: list[str] = Field(
        default_factory=lambda: ["CC", "flops"],
        description="maximise CC/NSS/SIM/AUC_Judd, minimise KLD/flops/params/latency_ms",
    )
    constraints: dict[str, float] = Field(
        default_factory=dict, description="budgets: latency_ms, flops, params (value <= budget)"
    )
    population: int = Field(20, ge=2, description="population (and Optuna generation) size")
    generations: int = Field(10, ge=1, description="NSGA-II generations, initial one included")
    trials: int | None = Field(
        None, ge=1, description="Optuna/random evaluations (default population x generations)"
    )
    crossover_prob: float = Field(0.9, ge=0, le=1)
    # Small integer ranges (2-4 choices) need wide steps to survive rounding: eta 3 as in pymoo's
    # discrete-variable example, not the continuous defaults (15, 20).
    crossover_eta: float = Field(3.0, gt=0, description="SBX distribution index")
    mutation_eta: float = Field(3.0, gt=0, description="polynomial-mutation distribution index")
    mutation: Literal["reset", "pm"] = Field(
        "reset", description="NSGA-II mutation: random reset (a mutated gene takes any of "
        "its choices, as for categories) or polynomial (ordinal steps)",
    )
    early_exit: EarlyExitConfig = EarlyExitConfig()
    surrogate: SurrogateConfig = SurrogateConfig()
    anchors: bool = Field(
        True, description="every engine (random search too) evaluates the max and min genomes "
        "first (the front's two ends)",
    )
    val_images: int | None = Field(
        32, ge=1, description="fixed validation subset: the first N val images (None: all)"
    )
    bn_batches: int | None = Field(
        None, ge=1, description="BN recalibration batches (default supernet.bn_recalib_batches)"
    )
    batch_size: int | None = Field(None, ge=2, description="default supernet.batch_size")
    latency: LatencyConfig = LatencyConfig()
    hv_bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="override the hypervolume normalisation bounds"
    )
    storage: str | None = Field(
        None, description="Optuna storage: sqlite:///..., postgresql://..., or a journal file"
    )
    study_name: str = "salnas-search"
    claim_timeout_s: float = Field(
        3600.0, gt=0, description="a claim older than this is taken over (dead remote worker)"
    )
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: default)")


PEER_NAMES = ("max", "fpn", "csnet")  # distill.peers: true trains all of them


class DistillConfig(Section):
    """Standalone training of the chosen architectures, Self-KD vs baseline (``salnas distill``)."""

    select: str = Field(
        "all", description="all | crowding:K (K spread along the front) | ids (see `ids`) | "
        "none (the peers only)"
    )
    ids: list[str] = Field(default_factory=list, description="genome ids when select is 'ids'")
    time_budget_s: float | None = Field(
        None, gt=0, description="stop starting new architectures after this many seconds"
    )
    peers: bool | list[Literal["max", "fpn", "csnet"]] = Field(
        True, description="hand-designed peers trained beside the front: true (max, fpn and "
        "csnet), false, or a list of those names (csnet brings peer-csnet-dwd along when "
        "csnet_dwd > 0)",
    )
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    selfkd: bool = Field(
        True, description="train the Self-KD arm beside the baseline; false: the baseline "
        "(and the teacher arm, when distill.teacher names one) only",
    )
    init: Literal["inherited", "imagenet", "scratch"] = Field(
        "inherited", description="supernet weights | ImageNet encoder only | random"
    )
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(8, ge=2, description=">= 2 for BatchNorm")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    encoder_lr_scale: float = Field(
        1.0, ge=0, description="lr factor of a pretrained/inherited encoder"
    )
    weight_decay: float = Field(1e-4, ge=0, description="not applied to BatchNorm and biases")
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    grad_clip: float | None = Field(5.0, gt=0, description="max gradient norm; null disables")
    loss: dict[str, float] = Field(default_factory=lambda: {"kld": 1.0, "cc": 1.0, "nss": 0.1})

    @field_validator("loss")
    @classmethod
    def _loss(cls, v: dict[str, float]) -> dict[str, float]:
        return check_loss_weights(v)

    alpha: float = Field(
        0.5, ge=0, le=1, description="target = alpha * ground truth + (1 - alpha) * teacher"
    )
    alpha_schedule: tuple[float, float] | None = Field(
        None, description="[start, end]: alpha linear from the first to the last epoch"
    )
    monitor: str = Field(
        "CC", description="val metric of model selection and of the teacher's 'improved' "
        "(one of the oracle's metrics)"
    )
    kfold: int = Field(
        0, ge=0, description="K >= 2: teacher epochs chosen by K-fold CV of the train split"
    )
    fidelity: int = Field(
        0, ge=0, description="also retrain N more architectures spread along the front "
        "(baseline arm, seed 0, fidelity_epochs) for rank fidelity; a smaller front is filled "
        "from the archive's next non-dominated ranks; 0: off",
    )
    fidelity_epochs: int = Field(2, ge=1, description="training epochs of the fidelity sample")
    min_snapshots: int = Field(
        0, ge=0, description="Self-KD arm: while its teacher averages fewer improving "
        "snapshots than this, retrain it longer (epochs x 1.5, up to distill.max_epochs); the "
        "architecture's other arms of that seed then train as long (paired budgets); 0: off",
    )
    max_epochs: int | None = Field(
        None, ge=1, description="longest training min_snapshots may choose; null: 2 x epochs"
    )
    teacher: str = Field(
        "self", description="teacher of an extra 'teacher' arm: self (no extra arm), max (the "
        "max subnet trained once in the run) or model:PATH (a .pt, .ts or .onnx model)",
    )
    teacher_temperature: float = Field(
        1.0, gt=0, description="softens the teacher's density: softmax(logits / T)"
    )
    csnet_dwd: float = Field(
        10.0, ge=0, description="peers: also train the CSNet-style peer with dynamic weight "
        "decay of this strength (loss + strength * sum 0.5 * S * gamma^2 over the branch BN "
        "scales, as in the authors' code) and prune it (peer-csnet-dwd); 0: off",
    )
    csnet_dwd_lr_scale: float = Field(
        10.0, gt=0, description="lr factor of the decayed BN scales (the authors train 300 "
        "epochs; a short budget needs a larger rate to carry an unneeded scale to 0)",
    )
    csnet_finetune_epochs: int = Field(
        1, ge=0, description="of distill.epochs, the last ones (at most all but one) fine-tune "
        "the pruned CSNet without the decay (the authors' finetune.py); the others train it "
        "with the decay",
    )
    csnet_prune: float = Field(
        0.4, gt=0, lt=1, description="prune CSNet branch channels whose |BN gamma| is below "
        "this fraction of the largest",
    )
    val_images: int | None = Field(None, ge=1, description="validate on the first N val images")
    bn_recalib_batches: int = Field(8, ge=1, description="BN recalibration of inherited weights")
    export_onnx: bool = Field(True, description="also write model.onnx (needs onnx installed)")
    track_energy: bool = Field(True, description="codecarbon offline tracker around training")
    country_iso_code: str = Field("USA", description="grid carbon intensity (codecarbon)")
    latency_repeats: int = Field(10, ge=1, description="timed batch-1 CPU forwards (median)")
    latency_threads: int = Field(1, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: default)")

    @property
    def peer_names(self) -> tuple[str, ...]:
        """The peers to train, in training order: a subset of ``max``, ``fpn``, ``csnet``."""
        if self.peers is True:
            return PEER_NAMES
        return tuple(p for p in PEER_NAMES if self.peers and p in self.peers)

    @field_validator("monitor")
    @classmethod
    def _monitor(cls, v: str) -> str:
        if v not in ORACLE_METRICS:
            raise ValueError(f"monitor {v!r} must be one of {', '.join(ORACLE_METRICS)}")
        return v

    @field_validator("select")
    @classmethod
    def _select(cls, v: str) -> str:
        kind, _, k = v.partition(":")
        if v in ("all", "ids", "none") or (kind == "crowding" and k.isdigit() and int(k) >= 1):
            return v
        raise ValueError(f"select {v!r} must be 'all', 'crowding:K' (K >= 1), 'ids' or 'none'")

    @field_validator("alpha_schedule")
    @classmethod
    def _alphas(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not all(0 <= a <= 1 for a in v):
            raise ValueError(f"alpha_schedule {list(v)}: both values must be in [0, 1]")
        return v

    @field_validator("kfold")
    @classmethod
    def _kfold(cls, v: int) -> int:
        if v == 1:
            raise ValueError("kfold 1 is not cross-validation; use 0 (off) or K >= 2")
        return v

    @model_validator(mode="after")
    def _snapshot_budget(self) -> DistillConfig:
        if self.min_snapshots and not self.selfkd:
            raise ValueError("min_snapshots counts the Self-KD teacher's snapshots: it needs "
                             "selfkd: true (or set min_snapshots: 0)")
        if self.max_epochs is not None and self.max_epochs < self.epochs:
            raise ValueError(f"max_epochs {self.max_epochs} is under epochs {self.epochs}")
        return self

    def longer_epochs(self, epochs: int) -> int | None:
        """The next, longer training ``min_snapshots`` tries after ``epochs``; None at the cap."""
        cap = self.max_epochs if self.max_epochs is not None else 2 * self.epochs
        return min(cap, math.ceil(epochs * 1.5)) if epochs < cap else None


class Config(Section):
    """A whole run's settings. Sections for later stages join as those stages land."""

    seed: int = 0
    data: DataConfig = DataConfig()
    supernet: SupernetConfig = SupernetConfig()
    search: SearchConfig = SearchConfig()
    distill: DistillConfig = DistillConfig()


def _format_error(err: ValidationError, source: str) -> str:
    """One line: the source, then each invalid setting by its dotted key."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{key}' (check the spelling; see `salnas config show`)")
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
            parts.append(f"'{key}': {msg}")
    return f"{source}: invalid config: " + "; ".join(" ".join(p.split()) for p in parts)


def config_from_dict(data: dict[str, Any] | None, source: str = "config") -> Config:
    try:
        return Config.model_validate(data or {})
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    """The mapping of a YAML config file; every unusable file is a one-line ConfigError."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config {path} is a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not a text file (not UTF-8); give a YAML "
                          "config") from None
    except OSError as e:
        raise ConfigError(f"config {path} cannot be read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded or {}


def parse_set_options(items: Sequence[str] | None) -> dict[str, Any]:
    """``--set key=value`` options as dotted overrides; each value is read as YAML (``3``,
    ``0.5``, ``true``, ``[96, 128]``, ``null``) and typed by the schema in :func:`load_config`."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key or not all(part.strip() for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. "
                              "--set supernet.epochs=3")
        try:
            out[key] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: the value {text!r} is not valid YAML") from None
    return out


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply dotted overrides.

    The overrides (``{"supernet.epochs": 3}``, what ``--set`` gives) apply to the validated
    config, defaults filled in, and the result is validated again: a key that is no setting
    or a value of the wrong type is an error naming it.
    """
    source = "defaults" if path is None else str(path)
    data = {} if path is None else _read_yaml(Path(path))
    if not overrides:
        return config_from_dict(data, source)
    merged = config_from_dict(data, source).model_dump(mode="json")
    for dotted, value in overrides.items():
        node: Any = merged
        *parents, leaf = dotted.split(".")
        for i, p in enumerate(parents):
            node = node.setdefault(p, {}) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: '{'.'.join(parents[: i + 1])}' is a "
                                  "setting, not a section")
        node[leaf] = value
    return config_from_dict(merged, f"{source} with --set {', '.join(overrides)}")


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
