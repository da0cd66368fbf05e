"""CSNet's dynamic weight decay and the pruning of its per-scale channels."""

from __future__ import annotations

import pytest
import torch

from salnas.distill.peers import CSNet, DynamicWeightDecay, branch_norms, prune_csnet
from salnas.losses import SaliencyLoss


def _toy_batches(n: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        x = torch.rand(4, 3, 32, 48, generator=g)
        target = torch.zeros(4, 1, 32, 48)
        target[:, :, 12:20, 18:30] = 1.0
        out.append((x, target / target.sum((2, 3), keepdim=True)))
    return out


def _train(strength: float, steps: int = 3, adam: bool = False) -> CSNet:
    torch.manual_seed(0)
    net = CSNet().train()
    opt: torch.optim.Optimizer = (
        torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.0) if adam
        else torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9))
    loss_fn = SaliencyLoss({"kld": 1.0})
    dwd = DynamicWeightDecay(net, strength) if strength else None
    for _ in range(steps):
        for x, density in _toy_batches():
            opt.zero_grad()
            loss, _ = loss_fn(net(x), density)
            loss.backward()
            opt.step()
            if dwd is not None:
                dwd.apply(opt)
    if dwd is not None:
        dwd.remove()
    return net


def _gamma_norm(net: CSNet) -> float:
    return float(torch.cat([bn.weight.detach().abs() for bn in branch_norms(net)]).mean())


@pytest.mark.parametrize("adam", [False, True], ids=["sgd", "adamw"])
def test_dynamic_weight_decay_drives_branch_gammas_down(adam):
    # decoupled from the step, so Adam's normalisation does not rescale the decay away
    plain, decayed = _train(0.0, adam=adam), _train(5.0, adam=adam)
    assert _gamma_norm(decayed) < 0.6 * _gamma_norm(plain)
    assert not any(bn._forward_hooks for bn in branch_norms(decayed))  # hooks removed


@torch.no_grad()
def test_pruning_keeps_the_kept_channels_outputs_and_shrinks_the_net():
    torch.manual_seed(0)
    net = CSNet().eval()
    for bn in branch_norms(net):
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.3)
        bn.weight[::2] = 0.0  # half of every branch's channels carry nothing but beta
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    small = prune_csnet(net, 1e-6).eval()
    assert sum(p.numel() for p in small.parameters()) < 0.7 * sum(
        p.numel() for p in net.parameters())
    torch.testing.assert_close(small(x), net(x), rtol=1e-5, atol=1e-6)
    # every branch keeps at least one channel, and the file round-trips with its splits
    assert all(min(b.split) >= 1 for b in small.blocks())
    again = CSNet(tuple(tuple(s) for s in small.config["stages"]), small.config["stem"],
                  small.config["decoder"], small.config["splits"])
    again.load_state_dict(small.state_dict())
    torch.testing.assert_close(again.eval()(x), small(x))
