"""SalNAS supernet: search space/genome, elastic weight-sharing ops, supernet and subnets.

The public training and evaluation toolkit, one concept per module:

* ``space`` (genome, search space, block plan), ``ops`` and ``model`` (elastic layers, the
  supernet, extraction), ``subnet`` (standalone model files, prediction);
* ``evaluate``: ``forward_at``, ``calibrated_subnet``, the one validation loop
  (``score_batches``, ``validate``); ``bn``: BatchNorm recalibration;
* ``optim``: ``make_optimizer``, ``lr_factor``; ``runtime``: device and process groups;
* ``checkpoint``: build, save and load supernets; ``train``: the sandwich training loop;
* ``stage``: the stage runner of ``salnas run``; ``cli``: ``salnas supernet ...``.

``costs`` (params/FLOPs with fvcore) and ``pretrained`` (Lite ImageNet weights) are imported
on demand.
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
