"""Self-KD trainer: target mixing, frozen eval-mode teacher, averaging on improving epochs."""

from __future__ import annotations

import pytest
import torch

import salnas.distill.trainer as trainer
from salnas.config import DistillConfig, config_from_dict
from salnas.datasets.training import load_training_data
from salnas.supernet.model import Supernet
from salnas.supernet.space import SearchSpace

SPACE = {"resolutions": [[32, 64], [64, 96]],
         "decoder_widths": [[16, 24], [16, 24], [8, 16], [8, 16]]}
TINY = {"data": {"spec": "synthetic:16", "resolution": [64, 96], "val": 4, "test": 4},
        "supernet": {"space": SPACE, "pretrained": False}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return load_training_data(config_from_dict(TINY), None, progress=False)


def tiny_net(seed: int = 0):
    torch.manual_seed(seed)
    space = SearchSpace(SPACE)
    genome = space.min_genome()
    return Supernet(space, pretrained=False).extract(genome), genome.resolution


def cfg(**kw) -> DistillConfig:
    return DistillConfig(**{"epochs": 1, "batch_size": 4, "track_energy": False, **kw})


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_target_mixing_is_exact(alpha):
    g = torch.rand(3, 1, 8, 12) * 5
    t = torch.rand(3, 8, 12)
    gn = (g.reshape(3, -1) / g.reshape(3, -1).sum(1, keepdim=True)).reshape(g.shape)
    tn = (t.reshape(3, -1) / t.reshape(3, -1).sum(1, keepdim=True)).reshape(g.shape)
    mixed = trainer.mix_target(g, t, alpha)
    assert mixed.shape == g.shape
    if alpha in (0.0, 1.0):  # bit-exact: no rounding from the zero-weighted term
        assert torch.equal(mixed, tn if alpha == 0.0 else gn)
    else:
        assert torch.equal(mixed, 0.5 * gn + 0.5 * tn)
    torch.testing.assert_close(mixed.sum((-2, -1)), torch.ones(3, 1))


def test_alpha_schedule():
    c = cfg(epochs=5, alpha_schedule=(1.0, 0.2))
    assert [round(trainer.alpha_at(e, c), 6) for e in range(5)] == [1.0, 0.8, 0.6, 0.4, 0.2]
    assert trainer.alpha_at(3, cfg(alpha=0.3)) == 0.3


def test_teacher_is_the_equal_weight_average_of_snapshots():
    net, _ = tiny_net()
    teacher = trainer.SelfKDTeacher(net)
    snaps = []
    for k in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * (k + 1))
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.add_(k + 1.0)
        snaps.append({n: v.clone() for n, v in net.state_dict().items()})
        teacher.update(net)
    for name, value in teacher.model.state_dict().items():
        if torch.is_floating_point(value):
            mean = torch.stack([s[name] for s in snaps]).mean(0)
            torch.testing.assert_close(value, mean, rtol=1e-5, atol=1e-6)
    assert teacher.snapshots == 3


def test_teacher_updates_only_on_improving_epochs_and_never_learns(data, monkeypatch):
    """Scripted val scores: epochs 1, 3 and 5 improve; the teacher must be the mean of the
    student's weights at exactly those epochs, never see a gradient, stay in eval mode."""
    scores = iter([0.10, 0.05, 0.20, 0.20, 0.30])
    snapshots = []

    def fake_validate(model, resolution, dataset, batch_size, device):
        snapshots.append({n: v.detach().clone() for n, v in model.state_dict().items()})
        return {"CC": next(scores), "KLD": 1.0, "NSS": 0.0, "SIM": 0.0, "AUC_Judd": 0.5}

    monkeypatch.setattr(trainer, "validate", fake_validate)
    seen = []
    original_predict = trainer.SelfKDTeacher.predict

    def spy_predict(self, images, resolution):
        handle = self.model.register_forward_hook(
            lambda m, i, o: seen.append((m.training, torch.is_grad_enabled(), o.requires_grad)))
        try:
            return original_predict(self, images, resolution)
        finally:
            handle.remove()

    monkeypatch.setattr(trainer.SelfKDTeacher, "predict", spy_predict)
    net, res = tiny_net()
    result = trainer.train_standalone(net, res, data, cfg(epochs=5), seed=0, kd=True,
                                      pretrained=False, progress=False)
    teacher = result.teacher
    assert teacher is not None and teacher.epochs == [1, 3, 5] and teacher.snapshots == 3
    assert seen and all(s == (False, False, False) for s in seen)  # eval, no_grad, no graph
    assert not teacher.model.training
    assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())
    for name, value in teacher.model.state_dict().items():
        if torch.is_floating_point(value):
            mean = torch.stack([snapshots[e][name] for e in (0, 2, 4)]).mean(0)
            torch.testing.assert_close(value, mean, rtol=1e-5, atol=1e-6)
    assert result.best_epoch == 5 and [r["improved"] for r in result.history] == [
        True, False, True, False, True]
    # Model selection: the returned student is the best-val (last improving) snapshot.
    for name, value in result.model.state_dict().items():
        assert torch.equal(value, snapshots[4][name]), name


def test_baseline_has_no_teacher_and_the_first_epoch_is_shared(data):
    a, res = tiny_net(1)
    b, _ = tiny_net(1)
    kd = trainer.train_standalone(a, res, data, cfg(), seed=2, kd=True, pretrained=False,
                                  progress=False)
    base = trainer.train_standalone(b, res, data, cfg(), seed=2, kd=False, pretrained=False,
                                    progress=False)
    assert base.teacher is None and kd.teacher is not None
    # No teacher exists before the first validation: same seed, same first epoch.
    for (name, x), y in zip(kd.model.state_dict().items(), base.model.state_dict().values(),
                            strict=True):
        assert torch.equal(x, y), name


def test_kfold_teacher_selection_runs_fold_students(data):
    net, res = tiny_net()
    result = trainer.train_standalone(net, res, data, cfg(kfold=2), seed=0, kd=True,
                                      pretrained=False, progress=False)
    assert result.extra["fold_students"] == 2
    assert "cv_CC" in result.history[0]
    folds = trainer.kfold_stems([f"s{i}" for i in range(9)], 3, seed=0)
    assert sorted(s for f in folds for s in f) == sorted(f"s{i}" for i in range(9))
    assert [len(f) for f in folds] == [3, 3, 3]
