"""CSNet's dynamic weight decay and the pruning of its per-scale channels."""

from __future__ import annotations

import pytest
import torch

from salnas.config import DistillConfig, config_from_dict
from salnas.datasets.training import load_training_data
from salnas.distill.peers import CSNet, DynamicWeightDecay, branch_norms, prune_csnet
from salnas.distill.pruning import train_pruned_csnet
from salnas.losses import SaliencyLoss

TINY = {"data": {"spec": "synthetic:40", "resolution": [64, 96], "val": 4, "test": 4},
        "supernet": {"space": {"resolutions": [[64, 96]]}, "pretrained": False}}


def _toy_batches(n: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        x = torch.rand(4, 3, 32, 48, generator=g)
        target = torch.zeros(4, 1, 32, 48)
        target[:, :, 12:20, 18:30] = 1.0
        out.append((x, target / target.sum((2, 3), keepdim=True)))
    return out


def _train(strength: float, steps: int = 3, adam: bool = False,
           lr_scale: float = 1.0) -> CSNet:
    torch.manual_seed(0)
    net = CSNet().train()
    opt: torch.optim.Optimizer = (
        torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.0) if adam
        else torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9))
    loss_fn = SaliencyLoss({"kld": 1.0})
    dwd = DynamicWeightDecay(net, strength, opt, lr_scale) if strength else None
    for _ in range(steps):
        for x, density in _toy_batches():
            opt.zero_grad()
            loss, _ = loss_fn(net(x), density)
            if dwd is not None:
                loss = loss + dwd.penalty()
            loss.backward()
            opt.step()
    if dwd is not None:
        dwd.remove()
    return net


def _gammas(net: CSNet) -> torch.Tensor:
    return torch.cat([bn.weight.detach().abs() for bn in branch_norms(net)])


@pytest.mark.parametrize("adam", [False, True], ids=["sgd", "adamw"])
def test_dynamic_weight_decay_drives_branch_gammas_down(adam):
    plain = _train(0.0, adam=adam)
    decayed = _train(3.0, adam=adam, lr_scale=3.0 if adam else 1.0)
    assert float(_gammas(decayed).mean()) < 0.6 * float(_gammas(plain).mean())
    assert not any(b._forward_hooks for blk in decayed.blocks() for b in blk.branches)


def test_penalty_gradient_is_strength_times_feature_times_gamma():
    torch.manual_seed(0)
    net = CSNet().train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    dwd = DynamicWeightDecay(net, 2.0, opt)
    branch = net.blocks()[1].branches[0]
    bn = branch_norms(net)[3]
    assert bn is branch[1]
    seen: list[torch.Tensor] = []
    branch.register_forward_hook(lambda m, i, out: seen.append(out.detach().clone()))
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
    net(torch.rand(3, 3, 32, 48, generator=torch.Generator().manual_seed(2)))
    dwd.penalty().backward()
    feature = seen[0].mean((2, 3)).abs().mean(0)  # S_c: batch mean |GAP| after ReLU
    torch.testing.assert_close(bn.weight.grad, 2.0 * feature * bn.weight.detach())
    assert float(dwd.penalty()) == 0.0  # one term per forward, consumed by the step
    with torch.no_grad():  # eval and no-grad forwards (validation, teachers) add nothing
        net.eval()(torch.rand(1, 3, 32, 48))
    assert float(dwd.penalty()) == 0.0


def test_branch_gammas_get_their_own_group_without_decay():
    net = CSNet()
    opt = torch.optim.AdamW([{"params": list(net.parameters()), "lr": 2e-3, "lr_scale": 1.0,
                              "weight_decay": 0.1}])
    DynamicWeightDecay(net, 1.0, opt, lr_scale=10.0)
    gammas = {id(bn.weight) for bn in branch_norms(net)}
    assert not any(id(p) in gammas for p in opt.param_groups[0]["params"])
    group = opt.param_groups[-1]
    assert {id(p) for p in group["params"]} == gammas
    assert group["lr"] == pytest.approx(2e-2) and group["lr_scale"] == 10.0
    assert group["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))
    opt.step()  # no gradients yet: a no-op step still fills nothing
    opt.state[group["params"][0]]["step"] = torch.tensor(1.0)
    with pytest.raises(ValueError, match="before its first step"):
        DynamicWeightDecay(net, 1.0, opt)


def test_decayed_training_prunes_to_fewer_parameters():
    net = _train(3.0, steps=4, adam=True, lr_scale=10.0).eval()
    small = prune_csnet(net, 0.05)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in net.parameters())
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # the removed channels were near zero: the outputs barely move
        torch.testing.assert_close(small.eval()(x), net(x), rtol=0.0, atol=0.05)


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


def test_decay_prune_finetune_pipeline_within_the_epoch_budget():
    data = load_training_data(config_from_dict(TINY), None, progress=False)
    cfg = DistillConfig(epochs=3, batch_size=4, track_energy=False, csnet_dwd=3.0,
                        csnet_dwd_lr_scale=100.0, csnet_prune=0.5, csnet_finetune_epochs=1)
    torch.manual_seed(0)
    out = train_pruned_csnet(CSNet(), (64, 96), data, cfg, seed=0, kd=True, progress=False)
    assert out.extra["params_unpruned"] == sum(p.numel() for p in CSNet().parameters())
    assert sum(p.numel() for p in out.model.parameters()) < out.extra["params_unpruned"]
    assert not out.model.training
    phases = [(row["epoch"], row["phase"]) for row in out.history]
    assert phases == [(1, "decay"), (2, "decay"), (3, "finetune")]  # 3 epochs in all
    assert 1 <= out.best_epoch <= 3
    assert not any(b._forward_hooks for blk in out.model.blocks() for b in blk.branches)
    # one epoch in all: the decay takes it and nothing is fine-tuned
    short = train_pruned_csnet(CSNet(), (64, 96), data, cfg.model_copy(update={"epochs": 1}),
                               seed=0, kd=False, progress=False)
    assert [row["phase"] for row in short.history] == ["decay"]
