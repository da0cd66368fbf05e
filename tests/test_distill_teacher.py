"""KD from a frozen teacher: cached targets, no teacher gradient, any model format, resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from test_distill_run import TINY, config, ids, search_dir  # noqa: F401  (fixture)

import salnas.distill.run as stage
from salnas.config import config_from_dict
from salnas.datasets.batches import iterate_batches
from salnas.datasets.training import load_training_data
from salnas.distill.export import export_onnx, export_torchscript
from salnas.distill.teacher import CachedTeacher, parse_teacher
from salnas.distill.trainer import train_standalone
from salnas.errors import ConfigError
from salnas.losses import logits_to_density
from salnas.supernet.evaluate import forward_at
from salnas.supernet.model import Supernet
from salnas.supernet.space import SearchSpace
from salnas.supernet.subnet import save_subnet

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SPACE = TINY["supernet"]["space"]


@pytest.fixture(scope="module")
def data():
    cfg = config_from_dict({**TINY, "data": {**TINY["data"], "hflip": True}})
    return load_training_data(cfg, None, progress=False)


def _net(seed: int, genome: str = "max"):
    torch.manual_seed(seed)
    space = SearchSpace(SPACE)
    g = space.max_genome() if genome == "max" else space.min_genome()
    return Supernet(space, pretrained=False).extract(g).eval(), g


def test_cached_targets_equal_a_live_teachers_forward(data):
    teacher, _g = _net(1)
    cache = CachedTeacher(teacher, data.train, (32, 64), batch_size=4)
    seen_flips = set()
    for epoch in range(3):  # several epochs: both orientations of some images
        for batch in iterate_batches(data.train, 4, seed=0, epoch=epoch):
            with torch.no_grad():
                live = logits_to_density(forward_at(teacher, batch["image"], (32, 64)))
            torch.testing.assert_close(cache.targets(batch), live, rtol=1e-5, atol=1e-8)
            seen_flips |= set(batch["flipped"].tolist())
    assert seen_flips == {False, True}
    hot = CachedTeacher(teacher, data.train, (32, 64), batch_size=4, temperature=4.0)
    batch = next(iterate_batches(data.train, 4))
    assert hot.targets(batch).amax() < cache.targets(batch).amax()  # softer density


def test_the_teacher_gets_no_gradient_and_never_changes(data):
    teacher, _ = _net(1)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    cache = CachedTeacher(teacher, data.train, (32, 64), batch_size=4)
    student, g = _net(2, "min")
    cfg = config(epochs=1).distill
    train_standalone(student, g.resolution, data, cfg, seed=0, kd=False, teacher=cache,
                     progress=False)
    assert all(p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="exclude each other"):
        train_standalone(student, g.resolution, data, cfg, seed=0, kd=True, teacher=cache,
                         progress=False)


def test_parse_teacher():
    assert parse_teacher("self") == ("self", None) and parse_teacher("max") == ("max", None)
    assert parse_teacher("model:/x/m.onnx")[1].name == "m.onnx"
    with pytest.raises(ConfigError, match="self, max or model:PATH"):
        parse_teacher("teacher")


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".ts", ".onnx"])  # .pt: the max teacher below
def test_model_teacher_of_every_format_adds_a_teacher_arm(search_dir, tmp_path, suffix):  # noqa: F811
    net, g = _net(1)
    path = tmp_path / f"teacher{suffix}"
    if suffix == ".pt":
        save_subnet(path, net, g, config())
    elif suffix == ".ts":
        export_torchscript(net, g.resolution, path)
    else:
        export_onnx(net, g.resolution, path)
    out = tmp_path / "distill"
    cfg = config(select="ids", ids=[ids(search_dir)[0]], teacher=f"model:{path}",
                 export_onnx=False, track_energy=False)
    results = stage.run_distill(cfg, search_dir, out, progress=False)
    assert set(results["arm"]) == {"selfkd", "baseline", "teacher"}
    row = results[results["arm"] == "teacher"].iloc[0]
    assert row["teacher"] == f"model:{path}" and row["alpha"] == 0.5
    status = json.loads((out / "distill.json").read_text())
    assert status["arms"] == ["selfkd", "baseline", "teacher"]
    # resume: every finished arm (the teacher arm too) is skipped
    again = stage.run_distill(cfg, search_dir, out, progress=False)
    pd.testing.assert_frame_equal(again, results)


@pytest.mark.slow
def test_max_teacher_trains_first_and_teaches_the_others(search_dir, tmp_path, monkeypatch):  # noqa: F811
    calls: list[tuple[str, str]] = []
    real = stage.DistillRun.train_arm

    def spy(self, unit, arm):
        calls.append((unit.arch, arm))
        return real(self, unit, arm)

    monkeypatch.setattr(stage.DistillRun, "train_arm", spy)
    cfg = config(select="ids", ids=[ids(search_dir)[0]], teacher="max", peers=True,
                 csnet_dwd=0.0, export_onnx=False, track_energy=False)
    results = stage.run_distill(cfg, search_dir, tmp_path / "d", progress=False)
    assert calls[:2] == [("peer-max", "selfkd"), ("peer-max", "baseline")]
    assert ("peer-max", "teacher") not in calls  # the teacher does not learn from itself
    taught = set(results.loc[results["arm"] == "teacher", "arch"])
    assert taught == {ids(search_dir)[0], "peer-fpn", "peer-csnet"}
    with pytest.raises(ConfigError, match="needs the max subnet"):
        stage.run_distill(config(select="ids", ids=[ids(search_dir)[0]], teacher="max",
                                 peers=False), search_dir, tmp_path / "e", progress=False)
