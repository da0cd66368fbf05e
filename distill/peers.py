"""Hand-designed peers trained beside the searched models with the same recipe and budget.

* ``max``: the supernet's max subnet (full Lite0-style encoder, every block at kernel 5 and
  expand 6, widest decoder with all skips and the centre-bias prior), extracted like any other
  architecture and started as ``distill.init`` says.
* ``fpn``: the plain reference a person designs in five minutes: the EfficientNet-Lite0
  encoder exactly as published (its kernels, expand 6, every block) started from ImageNet
  weights, and a small decoder of the space (every skip on, widths 64/48/32/16 or the nearest
  choices,
  depthwise-separable 3x3 convolutions, the learned centre-bias prior), at the largest input
  resolution of the space. It is a point of the search space (:func:`fpn_genome`) but never
  inherits supernet weights: it stands for what one gets without NAS.
* ``csnet``: a CSNet-style network of about 100k parameters trained from scratch (after Gao
  et al., "Highly Efficient Salient Object Detection with 100K Parameters", ECCV 2020). Its
  building block is a multi-scale depthwise block in the spirit of gOctConv: a 1x1 conv
  expands the input, the channels are split into three groups processed at full, 1/2 and 1/4
  resolution (bilinear 2x downsampling, which at exactly half size is 2x2 average pooling),
  each by a 3x3 depthwise conv with BN and ReLU, the groups are upsampled back and
  concatenated, and a 1x1 conv with BN projects them (residual when the shapes match).
  Layout (input H x W, channels):

  ====================  =======  ========
  part                  stride   channels
  ====================  =======  ========
  stem 3x3 conv         2        16
  stage 1: 1 block      4        24
  stage 2: 2 blocks     8        40
  stage 3: 3 blocks     16       64
  stage 4: 1 block      32       80
  decoder: 1x1 lateral  4..32    32 each
  top-down: up + add + one multi-scale block per level (32 channels)
  read-out 1x1 conv     4        1, bilinear to H x W
  ====================  =======  ========

  101,470 parameters.
* ``csnet-dwd``: the same network trained with CSNet's dynamic weight decay on the BatchNorm
  scales of its per-scale branches (:class:`DynamicWeightDecay`, ``distill.csnet_dwd``), then
  pruned to the channels that kept a scale above ``distill.csnet_prune`` of the largest
  (:func:`prune_csnet`): each scale of each block learns its number of channels. It is
  exported as the smaller network (``splits`` in its model file).

Peer model files (``model.pt``) of ``csnet`` use the format ``salnas-peer-v1`` (name,
constructor arguments, weights, resolution, config); :func:`distill.export.load_any_model`
reads them beside ``save_subnet``'s files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salnas.config import Config
from salnas.errors import SalnasError
from salnas.io import save_torch_atomic
from salnas.supernet.space import Genome, SearchSpace

__all__ = ["PEERS", "PEER_FORMAT", "CSNet", "DynamicWeightDecay", "MultiScaleBlock",
           "branch_norms", "fpn_genome", "load_peer", "prune_csnet", "save_peer"]

PEER_FORMAT = "salnas-peer-v1"
PEERS = ("max", "fpn", "csnet")


FPN_WIDTHS = (64, 48, 32, 16)  # decoder widths of the plain reference, deepest level first


def _nearest(choices: tuple[int, ...], target: int) -> int:
    """The choice nearest to ``target`` (the wider one on a tie)."""
    return min(choices, key=lambda c: (abs(c - target), -c))


def fpn_genome(space: SearchSpace) -> Genome:
    """The plain reference's architecture as a genome of ``space`` (see the ``fpn`` peer)."""
    lite = space.lite0_genome()
    levels = len(space.decoder_widths)
    return Genome.from_json({
        **lite.to_dict(),
        "resolution": list(space.max_genome().resolution),
        "skips": [True] * levels,
        "ops": ["dwsep3x3" if "dwsep3x3" in space.decoder_ops else space.decoder_ops[0]]
        * levels,
        # The hand design's widths (measured as the plain reference), or the nearest choice.
        "widths": [_nearest(w, t)
                   for w, t in zip(space.decoder_widths, FPN_WIDTHS, strict=False)],
        "centre_bias": space.prior_channels > 0,
    }, space)
# ImageNet statistics: the peer is trained from scratch, any fixed standardisation will do.
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _conv_bn(
    cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, relu: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _half(x: Tensor) -> Tensor:
    # Bilinear to half size (= 2x2 average pooling for even sizes; fvcore counts it, 4 per
    # output); never below 1 pixel, so tiny inputs still run.
    h, w = x.shape[-2:]
    return F.interpolate(
        x, size=(max(1, h // 2), max(1, w // 2)), mode="bilinear", align_corners=False
    )


class MultiScaleBlock(nn.Module):
    """gOctConv-like block: expand, depthwise 3x3 at three scales, concatenate, project."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 2,
                 split: tuple[int, ...] | None = None) -> None:
        super().__init__()
        if split is None:
            hidden = max(3, cin * expand // 3 * 3)  # divisible into three scale groups
            split = (hidden // 3,) * 3
        hidden = sum(split)
        self.down = _conv_bn(cin, cin, 3, 2, groups=cin, relu=False) if stride == 2 else None
        self.expand = _conv_bn(cin, hidden, 1)
        self.split = list(split)
        self.branches = nn.ModuleList(_conv_bn(c, c, 3, groups=c) for c in self.split)
        self.project = _conv_bn(hidden, cout, 1, relu=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        if self.down is not None:
            x = self.down(x)
        y = self.expand(x)
        outs = []
        for level, (part, branch) in enumerate(
            zip(y.split(self.split, 1), self.branches, strict=True)
        ):
            z = part
            for _ in range(level):
                z = _half(z)
            z = branch(z)
            if level:
                z = F.interpolate(z, size=y.shape[-2:], mode="bilinear", align_corners=False)
            outs.append(z)
        out = self.project(torch.cat(outs, 1))
        return out + x if self.residual else out


class CSNet(nn.Module):
    """CSNet-style saliency network (~100k parameters): logits (B, 1, H, W) for RGB in [0, 1]."""

    def __init__(
        self,
        stages: tuple[tuple[int, int], ...] = ((24, 1), (40, 2), (64, 3), (80, 1)),
        stem: int = 16,
        decoder: int = 32,
        splits: list[list[int]] | None = None,
    ) -> None:
        super().__init__()
        n_blocks = sum(r for _, r in stages) + len(stages) - 1
        if splits is not None and len(splits) != n_blocks:
            raise ValueError(f"splits: need one per multi-scale block ({n_blocks}), "
                             f"got {len(splits)}")
        given = iter(splits) if splits is not None else None

        def split() -> tuple[int, ...] | None:
            return tuple(next(given)) if given is not None else None

        self.stem = _conv_bn(3, stem, 3, 2)
        blocks, cin = [], stem
        for cout, repeats in stages:
            blocks.append(
                nn.Sequential(
                    *(
                        MultiScaleBlock(cin if j == 0 else cout, cout, 2 if j == 0 else 1,
                                        split=split())
                        for j in range(repeats)
                    )
                )
            )
            cin = cout
        self.stages = nn.ModuleList(blocks)
        self.lateral = nn.ModuleList(_conv_bn(c, decoder, 1) for c, _ in stages)
        self.fuse = nn.ModuleList(MultiScaleBlock(decoder, decoder, split=split())
                                  for _ in stages[:-1])
        self.config: dict[str, Any] = {
            "stages": [list(s) for s in stages], "stem": stem, "decoder": decoder,
            "splits": [list(b.split) for b in self.blocks()]}
        self.readout = nn.Conv2d(decoder, 1, 1)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.readout.weight, std=0.01)  # start near a uniform density
        nn.init.zeros_(self.readout.bias)  # type: ignore[arg-type]

    def blocks(self) -> list[MultiScaleBlock]:
        """Every multi-scale block: encoder stages in order, then the decoder's fuse blocks."""
        out = [cast(MultiScaleBlock, b) for stage in self.stages
               for b in cast(nn.Sequential, stage)]
        return out + [cast(MultiScaleBlock, b) for b in self.fuse]

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        y = self.stem((x - self.mean) / self.std)  # type: ignore[operator]
        feats = []
        for stage in self.stages:
            y = stage(y)
            feats.append(y)
        top = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):  # deepest to shallowest
            lat = self.lateral[i](feats[i])
            top = lat + F.interpolate(
                top, size=lat.shape[-2:], mode="bilinear", align_corners=False
            )
            top = self.fuse[i](top)
        logits = self.readout(top)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def save_peer(
    path: Path, model: CSNet, resolution: tuple[int, int], config: Config, **meta: Any
) -> None:
    """Write a peer model file (atomic): name, constructor arguments, weights, resolution."""
    payload = {
        "format": PEER_FORMAT,
        "name": "csnet",
        "kwargs": json.dumps(model.config),
        "resolution": list(resolution),
        "config": config.model_dump(mode="json"),
        "state_dict": model.state_dict(),
        "meta": json.dumps(meta, default=str),
    }
    save_torch_atomic(path, payload)


def load_peer(payload: dict[str, Any], path: Path) -> tuple[CSNet, tuple[int, int]]:
    """Rebuild a peer from a loaded ``salnas-peer-v1`` payload."""
    if payload.get("name") != "csnet":
        raise SalnasError(f"{path}: unknown peer model {payload.get('name')!r}")
    kwargs = json.loads(payload["kwargs"])
    net = CSNet(tuple(tuple(s) for s in kwargs["stages"]), kwargs["stem"], kwargs["decoder"],
                kwargs.get("splits"))
    net.load_state_dict(payload["state_dict"])
    h, w = payload["resolution"]
    return net.eval(), (int(h), int(w))


# ---------------------------------------------------------------- learned channel counts
class DynamicWeightDecay:
    """CSNet's dynamic weight decay on the per-scale channels of every multi-scale block.

    Gao et al., "Highly Efficient Salient Object Detection with 100K Parameters", ECCV 2020,
    Sec. 3.3: the decay of a channel's weight follows its feature,
    ``w <- w - lr * (grad f(w) + lambda_d * S(x) * w)``, with ``S`` the global average pooling
    of the feature the weight produces. The rule implemented is the one of the authors'
    training code (SOD100K, ``CSNet_training``: the forward hook on each gOctConv's BatchNorms
    and the ``Adam_dynamic_weight_decay`` solver):

    * ``w`` is the BatchNorm scale (gamma) after each scale branch's depthwise conv;
    * the loss gains ``strength * sum_c 0.5 * S_c * gamma_c ** 2``, with ``S_c`` the batch mean
      of ``|GAP(x)_c|`` over the branch's output (conv, BN, ReLU), detached, so its gradient
      is ``strength * S_c * gamma_c``, the paper's term (:meth:`penalty`);
    * Adam steps the gammas in a parameter group of their own without weight decay.

    The authors train 300 epochs at lr 1e-4 with ``strength`` 3 (their penalty is summed over
    every channel, as here); a distill budget is a few epochs, so the gammas' group learns at
    ``lr_scale`` times the rate of the group they came from, enough for Adam to carry an
    unneeded gamma from 1 to 0 within the budget. Channels that carry little signal decay
    towards zero and :func:`prune_csnet` removes them, so each scale learns its own number of
    channels. (A decay decoupled from the step, AdamW-style, pruned nothing on OSIE: it shrinks
    every gamma in proportion, and the relative pruning threshold keeps them all; README.)
    """

    def __init__(self, model: nn.Module, strength: float, optimiser: torch.optim.Optimizer,
                 lr_scale: float = 1.0) -> None:
        if not isinstance(model, CSNet):
            raise TypeError(f"dynamic weight decay needs a CSNet, not {type(model).__name__}")
        if optimiser.state:
            raise ValueError("dynamic weight decay: regroup the optimiser before its first step")
        self.model, self.strength = model, float(strength)
        self.terms: dict[nn.Module, Tensor] = {}
        branches = [branch for block in model.blocks() for branch in block.branches]
        self.scales = {branch: _bn(branch).weight for branch in branches}
        self.handles = [branch.register_forward_hook(self._record) for branch in branches]
        self._regroup(optimiser, list(self.scales.values()), lr_scale)

    @staticmethod
    def _regroup(optimiser: torch.optim.Optimizer, gammas: list[nn.Parameter],
                 lr_scale: float) -> None:
        ids = {id(p) for p in gammas}
        source = next(g for g in optimiser.param_groups if any(id(p) in ids for p in g["params"]))
        for group in optimiser.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in ids]
        scale = float(source.get("lr_scale", 1.0)) * lr_scale
        optimiser.add_param_group({"params": list(gammas), "lr": source["lr"] * lr_scale,
                                   "lr_scale": scale, "weight_decay": 0.0})

    def _record(self, branch: nn.Module, _inputs: Any, output: Tensor) -> None:
        if branch.training and torch.is_grad_enabled():
            feature = output.detach().mean((2, 3)).abs().mean(0)  # S_c: batch mean |GAP|
            self.terms[branch] = (feature * self.scales[branch].pow(2)).sum()

    def penalty(self) -> Tensor:
        """The decay term of the last training forward (0 when there was none); call it
        once per step, before ``backward``."""
        if not self.terms:
            return torch.zeros(())
        out = 0.5 * self.strength * torch.stack(list(self.terms.values())).sum()
        self.terms.clear()
        return out

    def remove(self) -> None:
        """Detach the hooks (the model trains plainly again)."""
        for handle in self.handles:
            handle.remove()
        self.terms.clear()


def branch_norms(model: CSNet) -> list[nn.BatchNorm2d]:
    """The BatchNorm after each scale branch of each block (the channels DWD learns)."""
    return [_bn(branch) for block in model.blocks() for branch in block.branches]


def _conv(layers: nn.Module) -> nn.Conv2d:
    return cast(nn.Conv2d, cast(nn.Sequential, layers)[0])


def _bn(layers: nn.Module) -> nn.BatchNorm2d:
    return cast(nn.BatchNorm2d, cast(nn.Sequential, layers)[1])


@torch.no_grad()
def prune_csnet(model: CSNet, threshold: float) -> CSNet:
    """A smaller CSNet without the branch channels whose ``|gamma|`` is below ``threshold``
    times the largest ``|gamma|`` of the network (at least one channel per branch stays).

    Kept channels compute exactly what they computed. A removed channel's output, which is
    ``relu(beta)`` when its gamma is 0, is folded into the block's projection BatchNorm as a
    constant, so in eval mode the pruned network matches the original up to the removed
    channels' (small) gamma terms.
    """
    top = max(float(bn.weight.abs().max()) for bn in branch_norms(model))
    keeps: list[list[Tensor]] = []
    for block in model.blocks():
        per_branch = []
        for branch in block.branches:
            gamma = _bn(branch).weight.abs()
            keep = torch.nonzero(gamma >= threshold * top).flatten()
            per_branch.append(keep if keep.numel() else gamma.argmax().reshape(1))
        keeps.append(per_branch)
    kwargs = model.config
    pruned = CSNet(tuple(tuple(s) for s in kwargs["stages"]), kwargs["stem"], kwargs["decoder"],
                   [[int(k.numel()) for k in per_branch] for per_branch in keeps])
    pruned.load_state_dict(_unchanged_weights(model, pruned), strict=False)
    for old, new, per_branch in zip(model.blocks(), pruned.blocks(), keeps, strict=True):
        _prune_block(old, new, per_branch)
    return pruned.train(model.training)


def _unchanged_weights(old: CSNet, new: CSNet) -> dict[str, Tensor]:
    shapes = {k: v.shape for k, v in new.state_dict().items()}
    return {k: v for k, v in old.state_dict().items() if k in shapes and v.shape == shapes[k]}


def _copy_bn(old: nn.BatchNorm2d, new: nn.BatchNorm2d, index: Tensor) -> None:
    new.weight.copy_(old.weight[index])
    new.bias.copy_(old.bias[index])
    assert old.running_mean is not None and old.running_var is not None
    assert new.running_mean is not None and new.running_var is not None
    new.running_mean.copy_(old.running_mean[index])
    new.running_var.copy_(old.running_var[index])


def _prune_block(old: MultiScaleBlock, new: MultiScaleBlock, keeps: list[Tensor]) -> None:
    offsets = [0, *torch.tensor(old.split).cumsum(0).tolist()[:-1]]
    kept = torch.cat([k + off for k, off in zip(keeps, offsets, strict=True)])
    removed = torch.tensor(sorted(set(range(sum(old.split))) - set(kept.tolist())),
                           dtype=torch.long)
    if old.down is not None and new.down is not None:
        new.down.load_state_dict(old.down.state_dict())
    _conv(new.expand).weight.copy_(_conv(old.expand).weight[kept])
    _copy_bn(_bn(old.expand), _bn(new.expand), kept)
    for b_old, b_new, keep in zip(old.branches, new.branches, keeps, strict=True):
        _conv(b_new).weight.copy_(_conv(b_old).weight[keep])
        _copy_bn(_bn(b_old), _bn(b_new), keep)
    project_old, project_new = _conv(old.project), _conv(new.project)
    project_new.weight.copy_(project_old.weight[:, kept])
    _copy_bn(_bn(old.project), _bn(new.project), torch.arange(project_old.out_channels))
    if removed.numel():
        # The removed channels' constant output relu(beta) reaches the projection conv: fold
        # it into the projection BN's running mean (eval-mode arithmetic unchanged).
        betas = torch.cat([_bn(b).bias for b in old.branches])
        constant = project_old.weight[:, removed, 0, 0] @ betas[removed].clamp_min(0)
        mean = _bn(new.project).running_mean
        assert mean is not None
        mean.sub_(constant)
