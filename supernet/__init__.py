"""SalNAS supernet: search space/genome, elastic weight-sharing ops, supernet and subnets.

``supernet.costs`` (params/FLOPs with fvcore) and ``supernet.pretrained`` (Lite0 ImageNet
weights) are imported on demand.
"""

from .bn import recalibrate_bn
from .model import SalNet, Supernet
from .space import DEFAULT_CONFIG, Genome, GenomeError, SearchSpace, default_space

__all__ = [
    "DEFAULT_CONFIG",
    "Genome",
    "GenomeError",
    "SalNet",
    "SearchSpace",
    "Supernet",
    "default_space",
    "recalibrate_bn",
]
