import pytest
import torch

from salnas import metrics
from salnas.losses import SaliencyLoss, logits_to_density, loss_terms


def _batch(seed=0, b=3, h=12, w=16):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, 1, h, w, generator=g, requires_grad=True)
    density = torch.softmax(torch.randn(b, h * w, generator=g), 1).view(b, 1, h, w)
    fixmap = (torch.rand(b, 1, h, w, generator=g) > 0.9).float()
    fixmap[:, :, 0, 0] = 1
    return logits, density, fixmap


def test_logits_to_density_is_a_spatial_softmax():
    logits = torch.randn(2, 1, 4, 5)
    d = logits_to_density(logits)
    assert d.shape == (2, 4, 5)
    assert torch.allclose(d.sum((1, 2)), torch.ones(2))
    assert torch.allclose(d, logits_to_density(logits + 7.0))  # shift invariant


def test_terms_are_the_metrics_oriented_for_minimisation():
    logits, density, fixmap = _batch()
    pred = logits_to_density(logits).detach()
    terms = {k: float(v.detach()) for k, v in loss_terms(logits, density, fixmap).items()}
    assert terms["kld"] == pytest.approx(float(metrics.kld(pred, density[:, 0]).mean()))
    assert terms["cc"] == pytest.approx(1 - float(metrics.cc(pred, density[:, 0]).mean()))
    assert terms["nss"] == pytest.approx(-float(metrics.nss(pred, fixmap[:, 0]).mean()))
    assert terms["sim"] == pytest.approx(1 - float(metrics.sim(pred, density[:, 0]).mean()))


def test_weighted_sum_and_gradients():
    logits, density, fixmap = _batch(1)
    loss_fn = SaliencyLoss({"kld": 1.0, "cc": 0.5, "nss": 0.1})
    total, parts = loss_fn(logits, density, fixmap)
    expected = parts["kld"] + 0.5 * parts["cc"] + 0.1 * parts["nss"]
    assert float(total.detach()) == pytest.approx(float(expected))
    assert "sim" not in parts
    total.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_a_perfect_prediction_minimises_kld_and_cc_terms():
    _, density, fixmap = _batch(2)
    perfect = density.log()  # softmax(log p) == p
    terms = {k: float(v) for k, v in loss_terms(perfect, density, fixmap, ("kld", "cc")).items()}
    assert terms["kld"] == pytest.approx(0.0, abs=1e-5)
    assert terms["cc"] == pytest.approx(0.0, abs=1e-5)


def test_training_on_the_loss_moves_towards_the_target():
    logits, density, fixmap = _batch(3)
    logits = logits.detach().clone().requires_grad_(True)
    loss_fn = SaliencyLoss()
    opt = torch.optim.Adam([logits], lr=0.1)
    first = float(loss_fn(logits, density, fixmap)[0].detach())
    for _ in range(50):
        opt.zero_grad()
        loss_fn(logits, density, fixmap)[0].backward()
        opt.step()
    assert float(loss_fn(logits, density, fixmap)[0].detach()) < first - 0.5


def test_bad_settings_fail_clearly():
    with pytest.raises(ValueError, match="unknown loss term"):
        SaliencyLoss({"mse": 1.0})
    logits, density, _ = _batch()
    with pytest.raises(ValueError, match="fixation map"):
        loss_terms(logits, density, None, ("nss",))
