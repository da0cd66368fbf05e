"""The one typed configuration schema; every stage reads its section from it.

Unknown keys are errors that name the key, so a typo never silently falls back to a
default. The resolved config (defaults filled in) is written into every output folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from salnas.errors import ConfigError


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
    inplace_distill: bool = Field(True, description="smaller subnets learn the max's prediction")
    distill_weight: float = Field(1.0, ge=0)
    loss: dict[str, float] = Field(default_factory=lambda: {"kld": 1.0, "cc": 1.0, "nss": 0.1})
    progressive: bool = Field(
        False, description="progressive shrinking: kernel, then depth, then expand/decoder"
    )
    temperature: tuple[float, float] = Field(
        (30.0, 1.0), description="dynamic-conv softmax temperature, annealed first to last epoch"
    )
    bn_recalib_batches: int = Field(8, ge=1)
    val_images: int | None = Field(None, description="validate on the first N val images")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
    threads: int | None = Field(None, description="torch CPU threads (None: torch default)")


class Config(Section):
    """A whole run's settings. Sections for later stages join as those stages land."""

    seed: int = 0
    data: DataConfig = DataConfig()
    supernet: SupernetConfig = SupernetConfig()


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}' (check the spelling; see `salnas config --help`)")
        else:
            lines.append(f"'{key}': {e['msg']}")
    return f"{source}: invalid config\n" + "\n".join(f"  - {line}" for line in lines)


def config_from_dict(data: dict[str, Any] | None, source: str = "config") -> Config:
    try:
        return Config.model_validate(data or {})
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply dotted overrides."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded or {}
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return config_from_dict(data, source)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
