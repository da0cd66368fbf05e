"""Supernet training: sandwich sampling, exact resume, checkpoints, CLI, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from spaces import NARROW_SPACE
from typer.testing import CliRunner

from salnas.cli import app
from salnas.config import config_from_dict
from salnas.errors import ConfigError, SalnasError
from salnas.supernet.checkpoint import load_checkpoint, load_supernet
from salnas.supernet.optim import lr_factor
from salnas.supernet.space import GenomeError, SearchSpace
from salnas.supernet.train import (
    PROGRESSIVE_PHASES,
    sample_subnets,
    temperature_at,
    train_supernet,
    validation_subnets,
)

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "seed": 3,
    "data": {"spec": "synthetic:24", "resolution": [64, 96], "val": 4, "test": 4},
    "supernet": {
        "space": {
            "resolutions": [[32, 64], [64, 96]],
            "decoder_widths": [[16, 24], [16, 24], [8, 16], [8, 16]],
        },
        "pretrained": False,
        "epochs": 2,
        "batch_size": 4,
        "n_random": 1,
        "bn_recalib_batches": 2,
    },
}
runner = CliRunner()


def tiny_config(**supernet):
    data = json.loads(json.dumps(TINY))
    data["supernet"].update(supernet)
    return config_from_dict(data)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny-run")
    train_supernet(tiny_config(), out, progress=False)
    return out


def test_run_directory_contract(trained):
    for name in ("supernet.pt", "train_log.csv", "config.yaml", "split.json", "provenance.json"):
        assert (trained / name).is_file(), name
    assert not [p for p in trained.iterdir() if p.name.startswith(".")]  # no temp files left
    ckpt = load_checkpoint(trained / "supernet.pt")
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2
    assert {"val_max_CC", "val_min_CC", "val_max_AUC_Judd"} <= set(ckpt["history"][0])
    # the fixed random subnets are validated each epoch too, and they are distinct genomes
    assert {f"val_rand{k}_CC" for k in range(4)} <= set(ckpt["history"][0])
    assert len({ckpt["history"][0][f"val_rand{k}_CC"] for k in range(4)}) > 1
    run = json.loads((trained / "provenance.json").read_text())
    assert run["seed"] == 3 and "torch" in run["versions"]
    assert yaml.safe_load((trained / "config.yaml").read_text())["supernet"]["epochs"] == 2


def test_resume_after_a_kill_mid_epoch_equals_an_uninterrupted_run(trained, tmp_path):
    steps_per_epoch = 16 // 4  # 24 images - 4 val - 4 test, batch 4
    with pytest.raises(KeyboardInterrupt):
        train_supernet(
            tiny_config(), tmp_path, progress=False, stop_after_steps=steps_per_epoch + 2
        )
    assert (
        load_checkpoint(tmp_path / "supernet.pt")["epoch"] == 1
    )  # epoch 2 was lost, not corrupted
    train_supernet(tiny_config(), tmp_path, resume=True, progress=False)
    a = load_checkpoint(trained / "supernet.pt")
    b = load_checkpoint(tmp_path / "supernet.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    timing = {"img_per_s", "seconds"}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert a["best"]["epoch"] == b["best"]["epoch"]
    for key in a["best"]["model"]:
        assert torch.equal(a["best"]["model"][key], b["best"]["model"][key]), key


def test_keeps_the_best_epoch_and_later_stages_inherit_it(trained, tmp_path):
    ckpt = load_checkpoint(trained / "supernet.pt")
    history = ckpt["history"]
    for row in history:
        assert row["score"] == pytest.approx((row["val_max_CC"] + row["val_min_CC"]) / 2)
    best_epoch = int(np.argmax([row["score"] for row in history])) + 1
    assert ckpt["best"]["epoch"] == best_epoch == history[-1]["kept_epoch"]
    assert "kept_epoch" in (trained / "train_log.csv").read_text().splitlines()[0]

    # Perturbed "best" weights must be the ones loaded by default, and "last" the others.
    key = next(k for k, v in ckpt["best"]["model"].items() if v.is_floating_point())
    ckpt["best"]["model"][key] = ckpt["best"]["model"][key] + 1.0
    path = tmp_path / "supernet.pt"
    torch.save(ckpt, path)
    assert torch.equal(load_supernet(path)[0].state_dict()[key], ckpt["best"]["model"][key])
    assert torch.equal(load_supernet(path, "last")[0].state_dict()[key], ckpt["model"][key])
    ckpt["config"]["supernet"]["keep"] = "last"
    torch.save(ckpt, path)
    assert torch.equal(load_supernet(path)[0].state_dict()[key], ckpt["model"][key])
    with pytest.raises(SalnasError, match="'best' or 'last'"):
        load_supernet(path, "final")


def test_keep_last_stores_no_second_copy(tmp_path):
    train_supernet(tiny_config(epochs=1, keep="last"), tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path / "supernet.pt")
    assert ckpt["best"] is None and ckpt["history"][-1]["kept_epoch"] == 1


def test_refuses_to_overwrite_or_resume_with_another_config(trained, tmp_path):
    with pytest.raises(SalnasError, match="--resume"):
        train_supernet(tiny_config(), trained, progress=False)
    with pytest.raises(SalnasError, match="another config"):
        train_supernet(tiny_config(lr=0.5), trained, resume=True, progress=False)
    bad = tmp_path / "supernet.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SalnasError, match="not a readable supernet checkpoint"):
        load_checkpoint(bad)


def test_sandwich_sampling_is_deterministic_and_bounded():
    space = SearchSpace(TINY["supernet"]["space"])
    a = sample_subnets(space, 2, seed=1, epoch=0, step=5, elastic_groups=None)
    assert a[0] == space.max_genome() and a[1] == space.min_genome() and len(a) == 4
    assert a == sample_subnets(space, 2, seed=1, epoch=0, step=5, elastic_groups=None)
    assert a[2:] != sample_subnets(space, 2, seed=1, epoch=0, step=6, elastic_groups=None)[2:]
    top = space.encode(space.max_genome())
    for genome in sample_subnets(space, 3, 1, 0, 0, PROGRESSIVE_PHASES[0]):
        vec = space.encode(genome)
        for name, value, best in zip(space.gene_names(), vec, top, strict=True):
            if space.gene_group(name) not in PROGRESSIVE_PHASES[0]:
                assert value == best, name


def test_schedules():
    cfg = tiny_config(epochs=5, warmup_epochs=1).supernet
    assert lr_factor(0, cfg) == pytest.approx(0.5)
    assert lr_factor(1, cfg) == pytest.approx(1.0)
    assert lr_factor(4, cfg) < 0.2
    assert temperature_at(0, cfg) == 30 and temperature_at(4, cfg) == 1


def test_extract_verify_predict_evaluate(trained, tmp_path):
    ckpt = str(trained / "supernet.pt")
    for genome, extra in (
        ("max", []), ("min", []), ("random:1", []), ("random:2", ["--weights", "last"])
    ):
        out = tmp_path / f"{genome.replace(':', '')}.pt"
        result = runner.invoke(
            app,
            ["supernet", "extract", ckpt, "--genome", genome, "--out", str(out), "--verify",
             *extra],
        )
        assert result.exit_code == 0, result.output
        assert "relative difference" in result.output and out.is_file()
    preds = tmp_path / "pred"
    result = runner.invoke(
        app,
        [
            "predict",
            str(tmp_path / "max.pt"),
            "--data",
            "synthetic:24",
            "--out",
            str(preds),
            "--format",
            "npy",
        ],
    )
    assert result.exit_code == 0, result.output
    test = json.loads((trained / "split.json").read_text())["test"]
    assert sorted(p.stem for p in preds.iterdir()) == sorted(test)
    assert np.load(preds / f"{test[0]}.npy").shape == (240, 320)  # the original size
    scores = tmp_path / "s.json"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            "synthetic:24",
            "--predictions",
            str(preds),
            "--json",
            str(scores),
            "--split-file",
            str(trained / "split.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert -1 <= json.loads(scores.read_text())["CC"] <= 1


def test_extract_rejects_a_bad_genome(trained, tmp_path):
    bad = tmp_path / "g.json"
    bad.write_text('{"resolution": [1, 1]}')
    result = runner.invoke(
        app,
        [
            "supernet",
            "extract",
            str(trained / "supernet.pt"),
            "--genome",
            str(bad),
            "--out",
            str(tmp_path / "m.pt"),
        ],
    )
    assert result.exit_code != 0 and "not a valid genome" in str(result.exception)


@pytest.mark.slow
def test_two_cpu_processes_with_torchrun(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    data = json.loads(json.dumps(TINY))
    data["supernet"]["epochs"] = 1
    data["supernet"]["batch_size"] = 2
    cfg.write_text(yaml.safe_dump(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(29500 + os.getpid() % 1000),
            "-m",
            "salnas.cli",
            "supernet",
            "train",
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "run" / "supernet.pt")
    assert ckpt["epoch"] == 1
    assert json.loads((tmp_path / "run" / "provenance.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_smoke_config_max_subnet_beats_the_centre_bias(tmp_path):
    """configs/smoke.yaml for one epoch: the max subnet already beats the centre bias."""
    from salnas.config import load_config
    from salnas.datasets import open_source
    from salnas.evaluation import centre_bias_map, load_targets, score_maps, summarise

    config = load_config(REPO / "configs" / "smoke.yaml", {"supernet.epochs": 1})
    train_supernet(config, tmp_path, progress=False)
    history = load_checkpoint(tmp_path / "supernet.pt")["history"]
    split = json.loads((tmp_path / "split.json").read_text())
    source = open_source(config.data.spec)
    bias = centre_bias_map(source, split["train"], progress=False)
    targets = load_targets(source, split["val"], progress=False)
    bias_cc = summarise(score_maps([bias] * len(targets), targets, names=["CC"]))["CC"]
    assert history[-1]["val_max_CC"] > bias_cc + 0.2


def test_validation_subnets_are_fixed_by_the_seed():
    space = tiny_config().supernet.space
    from salnas.supernet.space import SearchSpace

    sp = SearchSpace(space)
    first = [(t, g.id) for t, g in validation_subnets(sp, 3)]
    assert first == [(t, g.id) for t, g in validation_subnets(sp, 3)]
    assert [t for t, _ in first] == ["max", "min", "rand0", "rand1", "rand2", "rand3"]
    assert first != [(t, g.id) for t, g in validation_subnets(sp, 4)]
    assert len(validation_subnets(sp, 3, n_random=0)) == 2


def test_alternate_types_trains_the_ends_of_each_decoder_type_in_turn():
    space = SearchSpace({**NARROW_SPACE, "decoder_types": ["fpn", "unet"],
                         "decoder_depths": [2, 4]})
    plain = sample_subnets(space, 1, seed=3, epoch=1, step=0, elastic_groups=None)
    first = sample_subnets(space, 1, seed=3, epoch=1, step=0, elastic_groups=None,
                           sandwich="alternate_types")
    second = sample_subnets(space, 1, seed=3, epoch=1, step=1, elastic_groups=None,
                            sandwich="alternate_types")
    assert first == plain  # step 0: the space's max (U-Net) and min (FPN)
    assert [g.decoder_type for g in second[:2]] == ["fpn", "unet"]
    top_fpn = second[0]
    assert top_fpn == space.max_genome("fpn") and top_fpn != space.max_genome()
    assert top_fpn.widths == (max(space.decoder_widths[0]),) and top_fpn.centre_bias
    assert second[1] == space.min_genome("unet") and len(second) == 3
    # alternate_max: the max alternates, the min is the space's every step
    third = sample_subnets(space, 1, seed=3, epoch=1, step=1, elastic_groups=None,
                           sandwich="alternate_max")
    assert third[0] == top_fpn and third[1] == space.min_genome() != second[1]
    # one decoder type: nothing to alternate
    unet_only = SearchSpace(NARROW_SPACE)
    assert (sample_subnets(unet_only, 1, 3, 1, 1, None, sandwich="alternate_types")
            == sample_subnets(unet_only, 1, 3, 1, 1, None))
    with pytest.raises(GenomeError, match="decoder type 'fpn' is not in"):
        unet_only.max_genome("fpn")
    for sandwich in ("alternate_types", "alternate_max"):
        with pytest.raises(ConfigError, match=f"{sandwich} needs progressive: false"):
            config_from_dict({"supernet": {"sandwich": sandwich, "progressive": True}})
