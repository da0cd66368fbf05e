"""Elastic (weight-sharing) ops and their plain counterparts.

Every elastic module holds the weights of its largest configuration; ``active_*`` attributes
choose the running sub-configuration, and ``export()`` returns a plain module (``nn.Conv2d``,
``nn.BatchNorm2d``, :class:`DynamicConv2d`) with the sliced weights, computing the same function.

Channel selections are contiguous slices: output channels are always the first ``n`` (hence
:meth:`ElasticMBConv.sort_channels`), input channels may start at an offset (decoder inputs are
``[skip | previous level]`` so that both "skip on" and "skip off" are one slice).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Conv2dSame",
    "DynamicConv2d",
    "ElasticBatchNorm2d",
    "ElasticConv2d",
    "ElasticDynamicConv2d",
    "ElasticMBConv",
    "MBConv",
    "anneal_temperature",
    "plain_conv",
]

BN_EPS = 1e-3  # EfficientNet-Lite (TF) batch-norm epsilon; the pretrained stats assume it.


def _same_pad(x: Tensor, k: int, stride: int) -> Tensor:
    """TF "SAME" padding for a strided conv (extra pixel at the bottom/right)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Conv2dSame(nn.Conv2d):
    """Plain ``nn.Conv2d`` with TF "SAME" padding (used for the strided convs only)."""

    def forward(self, x: Tensor) -> Tensor:
        x = _same_pad(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


def plain_conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
               bias: bool = False) -> nn.Conv2d:
    """``nn.Conv2d`` with "same" padding (:class:`Conv2dSame` when strided)."""
    if stride > 1:
        return Conv2dSame(cin, cout, k, stride, 0, groups=groups, bias=bias)
    return nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias)


class ElasticConv2d(nn.Conv2d):
    """Conv with elastic kernel size (centre crop), output width (first n) and input slice.

    ``kernel_sizes`` lists the selectable kernels. With ``kernel_transform`` (OFA, Cai et al.
    2020) each crop step big->small also multiplies the cropped kernel by a learned
    (small^2 x small^2) matrix shared by all channels, initialised to identity; off by default.
    """

    def __init__(self, cin: int, cout: int, kernel_sizes: tuple[int, ...] | int, stride: int = 1,
                 depthwise: bool = False, bias: bool = False,
                 kernel_transform: bool = False) -> None:
        ks = (kernel_sizes,) if isinstance(kernel_sizes, int) else tuple(sorted(kernel_sizes))
        super().__init__(cin, cout, ks[-1], stride, 0, groups=cin if depthwise else 1, bias=bias)
        self.kernel_sizes, self.depthwise = ks, depthwise
        self.active_k, self.active_out, self.active_in = ks[-1], cout, slice(0, cin)
        self.transforms = nn.ParameterDict({
            f"{b}to{s}": nn.Parameter(torch.eye(s * s)) for b, s in zip(ks[1:], ks[:-1],
                                                                        strict=True)
        } if kernel_transform else {})

    def active_weight(self) -> Tensor:
        """The weight of the active configuration."""
        w = self.weight[self.active_in] if self.depthwise else self.weight[: self.active_out,
                                                                           self.active_in]
        big = self.kernel_sizes[-1]
        for small in reversed(self.kernel_sizes[:-1]):
            if small < self.active_k:
                break
            o = (big - small) // 2
            w = w[..., o:o + small, o:o + small]
            if f"{big}to{small}" in self.transforms:
                t = self.transforms[f"{big}to{small}"]
                w = (w.reshape(-1, small * small) @ t).reshape(*w.shape[:2], small, small)
            big = small
        return w

    def active_bias(self) -> Tensor | None:
        if self.bias is None:
            return None
        return self.bias[self.active_in] if self.depthwise else self.bias[: self.active_out]

    def forward(self, x: Tensor) -> Tensor:
        w = self.active_weight()
        k, s = self.active_k, self.stride[0]
        if s > 1:
            x, pad = _same_pad(x, k, s), 0
        else:
            pad = k // 2
        return F.conv2d(x, w, self.active_bias(), s, pad, 1, w.shape[0] if self.depthwise else 1)

    @torch.no_grad()
    def export(self) -> nn.Conv2d:
        """Plain conv of the active configuration."""
        w = self.active_weight()
        cout, cin = w.shape[0], w.shape[0] if self.depthwise else w.shape[1]
        conv = plain_conv(cin, cout, self.active_k, self.stride[0],
                          groups=cin if self.depthwise else 1, bias=self.bias is not None)
        conv.weight.copy_(w)
        bias = self.active_bias()
        if conv.bias is not None and bias is not None:
            conv.bias.copy_(bias)
        return conv


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the channel slice ``active`` (running stats are sliced views).

    ``momentum=None`` gives the cumulative average (as in ``nn.BatchNorm2d``).
    """

    # Always tracked here (torch types them Optional for track_running_stats=False).
    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor

    def __init__(self, channels: int, eps: float = BN_EPS, momentum: float | None = 0.1) -> None:
        super().__init__(channels, eps=eps, momentum=momentum)
        self.active = slice(0, channels)

    def forward(self, x: Tensor) -> Tensor:
        factor = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
        a = self.active
        # Basic slices of the 1-D buffers are views: the in-place stat update reaches them.
        return F.batch_norm(x, self.running_mean[a], self.running_var[a], self.weight[a],
                            self.bias[a], self.training, factor, self.eps)

    @torch.no_grad()
    def export(self) -> nn.BatchNorm2d:
        """Plain BatchNorm2d of the active channels (parameters and running stats copied)."""
        a = self.active
        bn = nn.BatchNorm2d(len(range(self.num_features)[a]), eps=self.eps,
                            momentum=self.momentum)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, name).copy_(getattr(self, name)[a])
        if bn.num_batches_tracked is not None:  # always: a default BatchNorm2d tracks stats
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn


class DynamicConv2d(nn.Module):
    """Dynamic convolution (Chen et al., CVPR 2020): K kernels mixed per sample.

    Attention ``pi = softmax(FC(ReLU(FC(GAP(x)))) / temperature)`` over the K kernels; the
    aggregated kernel ``sum_k pi_k W_k`` is applied as one grouped conv over the batch. The paper
    anneals ``temperature`` from 30 to 1 over the first epochs (see :func:`anneal_temperature`).
    Without bias: the ops here are followed by BatchNorm.
    """

    def __init__(self, cin: int, cout: int, k: int = 3, num_kernels: int = 4,
                 reduction: int = 4, temperature: float = 1.0, hidden: int | None = None) -> None:
        super().__init__()
        self.cin, self.cout, self.k, self.temperature = cin, cout, k, temperature
        self.weight = nn.Parameter(torch.empty(num_kernels, cout, cin, k, k))
        for w in self.weight:
            nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
        self.fc1 = nn.Linear(cin, hidden or max(4, cin // reduction))
        self.fc2 = nn.Linear(self.fc1.out_features, num_kernels)

    def _weight(self) -> Tensor:
        return self.weight

    def _fc1(self, v: Tensor) -> Tensor:
        return self.fc1(v)

    def attention(self, x: Tensor) -> Tensor:
        """Per-sample kernel weights ``pi`` (B, K), summing to 1."""
        a = F.relu(self._fc1(x.mean((2, 3))))
        return torch.softmax(self.fc2(a) / self.temperature, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, wd = x.shape
        w = self._weight()
        kernel = (self.attention(x) @ w.flatten(1)).reshape(b * w.shape[1], c, self.k, self.k)
        y = F.conv2d(x.reshape(1, b * c, h, wd), kernel, None, 1, self.k // 2, 1, b)
        return y.reshape(b, w.shape[1], h, wd)


class ElasticDynamicConv2d(DynamicConv2d):
    """:class:`DynamicConv2d` with elastic output width and input channel slice."""

    def __init__(self, cin: int, cout: int, k: int = 3, **kwargs: float) -> None:
        super().__init__(cin, cout, k, **kwargs)  # type: ignore[arg-type]
        self.active_out, self.active_in = cout, slice(0, cin)

    def _weight(self) -> Tensor:
        return self.weight[:, : self.active_out, self.active_in]

    def _fc1(self, v: Tensor) -> Tensor:
        return F.linear(v, self.fc1.weight[:, self.active_in], self.fc1.bias)

    @torch.no_grad()
    def export(self) -> DynamicConv2d:
        """Plain :class:`DynamicConv2d` of the active widths (same temperature)."""
        w = self._weight()
        m = DynamicConv2d(w.shape[2], w.shape[1], self.k, w.shape[0],
                          temperature=self.temperature, hidden=self.fc1.out_features)
        m.weight.copy_(w)
        m.fc1.weight.copy_(self.fc1.weight[:, self.active_in])
        m.fc1.bias.copy_(self.fc1.bias)
        m.fc2.load_state_dict(self.fc2.state_dict())
        return m


def anneal_temperature(epoch: float, start: float = 30.0, epochs: float = 10.0) -> float:
    """Chen et al.'s schedule: linear from ``start`` to 1 over the first ``epochs``, then 1."""
    return max(1.0, start - (start - 1.0) * epoch / epochs) if epochs > 0 else 1.0


class MBConv(nn.Module):
    """Inverted residual block (Lite: ReLU6, no SE): [1x1 expand] -> dw kxk -> 1x1 project."""

    expand_conv: nn.Module | None
    bn0: nn.Module | None

    def __init__(self, expand_conv: nn.Module | None, bn0: nn.Module | None, dw_conv: nn.Module,
                 bn1: nn.Module, project_conv: nn.Module, bn2: nn.Module, residual: bool) -> None:
        super().__init__()
        self.expand_conv, self.bn0, self.dw_conv, self.bn1 = expand_conv, bn0, dw_conv, bn1
        self.project_conv, self.bn2, self.residual = project_conv, bn2, residual

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if self.expand_conv is not None and self.bn0 is not None:  # both or neither
            h = F.relu6(self.bn0(self.expand_conv(h)))
        h = F.relu6(self.bn1(self.dw_conv(h)))
        h = self.bn2(self.project_conv(h))
        return h + x if self.residual else h


class ElasticMBConv(MBConv):
    """MBConv with elastic kernel size and expand ratio (hidden channels sorted by importance)."""

    expand_conv: ElasticConv2d | None
    bn0: ElasticBatchNorm2d | None
    dw_conv: ElasticConv2d
    bn1: ElasticBatchNorm2d
    project_conv: ElasticConv2d
    bn2: ElasticBatchNorm2d

    def __init__(self, cin: int, cout: int, stride: int, kernels: tuple[int, ...],
                 expands: tuple[int, ...], kernel_transform: bool = False) -> None:
        hid = cin * max(expands)
        fixed = max(expands) == 1
        super().__init__(
            None if fixed else ElasticConv2d(cin, hid, 1),
            None if fixed else ElasticBatchNorm2d(hid),
            ElasticConv2d(hid, hid, kernels, stride, depthwise=True,
                          kernel_transform=kernel_transform),
            ElasticBatchNorm2d(hid),
            ElasticConv2d(hid, cout, 1),
            ElasticBatchNorm2d(cout),
            residual=stride == 1 and cin == cout,
        )
        self.cin = cin

    def set_active(self, kernel: int, expand: int) -> None:
        """Run with kernel size ``kernel`` and ``cin * expand`` hidden channels."""
        hid = self.cin * expand
        if self.expand_conv is not None and self.bn0 is not None:
            self.expand_conv.active_out = hid
            self.bn0.active = slice(0, hid)
        self.dw_conv.active_k, self.dw_conv.active_in = kernel, slice(0, hid)
        self.bn1.active = slice(0, hid)
        self.project_conv.active_in = slice(0, hid)

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Permute hidden channels by decreasing L1 norm of their expand weights.

        Expand conv, BN0 (params and stats), depthwise conv, BN1 and the project conv's inputs
        are permuted together, so the block's max configuration computes the same function.
        """
        if self.expand_conv is None or self.bn0 is None:
            return
        perm = torch.argsort(self.expand_conv.weight.abs().sum((1, 2, 3)), descending=True)
        self.expand_conv.weight.copy_(self.expand_conv.weight[perm])
        self.dw_conv.weight.copy_(self.dw_conv.weight[perm])
        for bn in (self.bn0, self.bn1):
            for name in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(bn, name)
                t.copy_(t[perm])
        self.project_conv.weight.copy_(self.project_conv.weight[:, perm])

    def export(self) -> MBConv:
        """Plain MBConv of the active configuration."""
        return MBConv(
            None if self.expand_conv is None else self.expand_conv.export(),
            None if self.bn0 is None else self.bn0.export(),
            self.dw_conv.export(), self.bn1.export(), self.project_conv.export(),
            self.bn2.export(), self.residual,
        )
