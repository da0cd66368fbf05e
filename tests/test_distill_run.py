"""The distill stage: selection, both arms end to end, resume, time budget, errors, CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import salnas.distill.run as stage
from salnas.cli import app
from salnas.config import config_from_dict
from salnas.distill.export import export_metadata, load_any_model
from salnas.errors import ConfigError, SalnasError
from salnas.supernet.checkpoint import CHECKPOINT_FORMAT, build_supernet, save_checkpoint
from salnas.supernet.space import SearchSpace

SPACE = {"resolutions": [[32, 64], [64, 96]],
         "decoder_widths": [[16, 24], [16, 24], [8, 16], [8, 16]]}
TINY = {"data": {"spec": "synthetic:16", "resolution": [64, 96], "val": 4, "test": 4},
        "supernet": {"space": SPACE, "pretrained": False, "bn_recalib_batches": 1}}
DISTILL = {"epochs": 1, "batch_size": 4, "bn_recalib_batches": 1, "latency_repeats": 2,
           "threads": 1, "peers": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    """A run with an (untrained) tiny supernet and a hand-written search result."""
    run = tmp_path_factory.mktemp("run")
    config = config_from_dict(TINY)
    torch.manual_seed(0)
    model = build_supernet(config)
    save_checkpoint(run / "supernet.pt", {"format": CHECKPOINT_FORMAT, "epoch": 0,
                                          "model": model.state_dict(),
                                          "config": config.model_dump(mode="json")})
    space = SearchSpace(SPACE)
    rng = np.random.default_rng(0)
    genomes = [space.min_genome()]
    while len(genomes) < 4:
        g = space.random_genome(rng)
        if g.resolution == (32, 64) and g not in genomes:
            genomes.append(g)
    search = run / "search"
    search.mkdir()
    pd.DataFrame({"id": [g.id for g in genomes], "genome": [g.to_json() for g in genomes],
                  "CC": [0.30, 0.40, 0.45, 0.50], "flops": [1e6, 2e6, 2.1e6, 4e6]}
                 ).to_csv(search / "pareto.csv", index=False)
    (search / "search.json").write_text(json.dumps({"supernet": str(run / "supernet.pt"),
                                                    "objectives": ["CC", "flops"]}))
    return search


def config(**distill):
    return config_from_dict({**TINY, "distill": {**DISTILL, **distill}})


def ids(search_dir) -> list[str]:
    return list(pd.read_csv(search_dir / "pareto.csv", dtype=str)["id"])


def test_crowding_keeps_the_ends_and_spreads():
    f = np.array([[0.0, 4.0], [0.1, 3.9], [1.0, 3.0], [2.0, 2.0], [2.05, 1.95], [4.0, 0.0]])
    d = stage.crowding_distance(f)
    assert np.isinf(d[0]) and np.isinf(d[-1]) and d[1] < d[2]
    assert stage.select_crowding(f, 2) == [0, 5]
    chosen = stage.select_crowding(f, 4)
    assert 0 in chosen and 5 in chosen and not {1, 4} <= set(chosen)
    assert stage.select_crowding(f, 10) == list(range(6))


def test_selection_leaves_the_peers_genomes_out():
    front = pd.DataFrame({"id": ["a", "b", "max", "c", "d"], "CC": [0.1, 0.3, 0.9, 0.5, 0.7],
                          "flops": [1.0, 2.0, 9.0, 4.0, 6.0]})
    crowding = config(select="crowding:2").distill
    assert stage.select_architectures(front, crowding, exclude=["max"]) == [0, 4]  # a, d
    assert stage.select_architectures(front, crowding) == [0, 2]  # a, max
    everything = config(select="all").distill
    assert stage.select_architectures(front, everything, exclude=["max"]) == [0, 1, 3, 4]
    named = config(select="ids", ids=["max", "b"], peers=True).distill
    assert stage.select_architectures(front, named, exclude=["max"]) == [2, 1]
    peers_only = config(select="none").distill  # e.g. a teacher for a KD study
    assert stage.select_architectures(front, peers_only, exclude=["max"]) == []
    with pytest.raises(ConfigError, match="'ids' or 'none'"):
        config(select="some")

    # the max genome named as a Pareto architecture is trained once: no separate peer-max
    space = SearchSpace(SPACE)
    genomes = [space.max_genome(), space.min_genome()]
    pareto = pd.DataFrame({"id": [g.id for g in genomes],
                           "genome": [g.to_json() for g in genomes]})
    units = stage._units(pareto, [0, 1], space, named, Path("pareto.csv"))
    assert [u.arch for u in units] == [genomes[0].id, genomes[1].id, "peer-fpn", "peer-csnet",
                                       "peer-csnet-dwd"]
    units = stage._units(pareto, [1], space, named, Path("pareto.csv"))
    assert [u.arch for u in units] == [genomes[1].id, "peer-max", "peer-fpn", "peer-csnet",
                                       "peer-csnet-dwd"]


def test_a_list_of_peers_trains_only_those():
    space = SearchSpace(SPACE)
    genome = space.min_genome()
    pareto = pd.DataFrame({"id": [genome.id], "genome": [genome.to_json()]})
    cheap = config(select="all", peers=["csnet"]).distill
    assert cheap.peer_names == ("csnet",)
    units = stage._units(pareto, [0], space, cheap, Path("pareto.csv"))
    assert [u.arch for u in units] == [genome.id, "peer-csnet", "peer-csnet-dwd"]
    # order is the training order whatever the list's order; csnet_dwd 0 leaves dwd out
    both = config(select="all", peers=["fpn", "max"], csnet_dwd=0).distill
    assert both.peer_names == ("max", "fpn")
    units = stage._units(pareto, [0], space, both, Path("pareto.csv"))
    assert [u.arch for u in units] == [genome.id, "peer-max", "peer-fpn"]
    assert config(peers=True).distill.peer_names == ("max", "fpn", "csnet")
    assert config(peers=[]).distill.peer_names == ()
    with pytest.raises(ConfigError, match=r"distill\.peers"):
        config(peers=["resnet"])


def test_clear_errors(search_dir, tmp_path):
    with pytest.raises(SalnasError, match=r"pareto.csv does not exist"):
        stage.run_distill(config(), tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(SalnasError, match=r"unknown architecture id\(s\) \['nope'\]"):
        stage.run_distill(config(select="ids", ids=["nope"]), search_dir, tmp_path / "out",
                          progress=False)
    with pytest.raises(ConfigError, match=r"distill\.select"):
        config(select="best:3")
    with pytest.raises(ConfigError, match="nothing to train"):
        stage.run_distill(config(select="none", peers=False), search_dir, tmp_path / "out",
                          progress=False)
    with pytest.raises(ConfigError, match="kfold"):
        config(kfold=1)
    with pytest.raises(ConfigError, match=r"unknown key 'distill\.epoch'"):
        config_from_dict({"distill": {"epoch": 3}})


def test_both_arms_end_to_end_and_rerun_trains_nothing(search_dir, tmp_path, monkeypatch):
    out = tmp_path / "distill"
    first = ids(search_dir)[0]
    results = stage.run_distill(config(select="ids", ids=[first]), search_dir, out,
                                progress=False)
    assert list(results["arm"]) == ["selfkd", "baseline"]
    assert set(results["arch"]) == {first} and set(results["seed"]) == {0}
    assert list(results["kd"]) == [True, False] and list(results["alpha"]) == [0.5, 1.0]
    for col in ("test_CC", "test_KLD", "test_NSS", "test_sAUC", "test_IG", "params", "flops",
                "latency_ms", "energy_kwh", "co2_kg", "wall_s", "search_CC", "genome"):
        assert col in results.columns, col
    assert results["test_CC"].notna().all() and (results["params"] > 0).all()
    on_disk = pd.read_csv(out / "results.csv")
    assert len(on_disk) == 2 and on_disk["arch"].astype(str).tolist() == [first, first]
    x = torch.rand(1, 3, 32, 64)
    for arm in stage.ARMS:
        folder = out / first / arm
        for name in ("model.pt", "model.ts", "model.onnx", "train_log.csv", "result.json"):
            assert (folder / name).is_file(), name
        ref, res = load_any_model(folder / "model.pt")
        assert res == (32, 64)
        with torch.no_grad():
            want = ref(x)
            for name in ("model.ts", "model.onnx"):
                model, _ = load_any_model(folder / name)
                torch.testing.assert_close(model(x), want, rtol=1e-4, atol=1e-4)
    meta = export_metadata(out / first / "selfkd" / "model.onnx")
    assert meta["resolution"] == [32, 64] and meta["arm"] == "selfkd"
    assert meta["data"]["split_seed"] == 0 and json.loads(meta["genome"])
    assert export_metadata(out / first / "baseline" / "model.ts")["arm"] == "baseline"
    assert json.loads((out / "distill.json").read_text())["status"] == "done"
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary files left

    def must_not_train(self, unit, arm):
        raise AssertionError(f"{unit.arch}/{arm} retrained")

    monkeypatch.setattr(stage.DistillRun, "train_arm", must_not_train)
    again = stage.run_distill(config(select="ids", ids=[first]), search_dir, out,
                              progress=False)
    pd.testing.assert_frame_equal(again, results)


def _fake_arm(calls, fail_at=None, sleep=0.0):
    def fake(self, unit, arm):
        calls.append((unit.arch, arm))
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt("killed (test)")
        time.sleep(sleep)
        row = {"arch": unit.arch, "kind": unit.kind, "arm": arm, "seed": unit.seed}
        path = unit.arm_dir(self.out_dir, arm) / stage.RESULT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"row": row}))
        return row

    return fake


def test_a_killed_run_resumes_with_the_next_unfinished_arm(search_dir, tmp_path, monkeypatch):
    out = tmp_path / "distill"
    a, b = ids(search_dir)[1:3]
    cfg = config(select="ids", ids=[a, b], peers=True)
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(stage.DistillRun, "train_arm", _fake_arm(calls, fail_at=3))
    with pytest.raises(KeyboardInterrupt):
        stage.run_distill(cfg, search_dir, out, progress=False)
    assert calls == [(a, "selfkd"), (a, "baseline"), (b, "selfkd")]
    assert len(pd.read_csv(out / "results.csv")) == 2  # rewritten after each finished arm
    calls.clear()
    monkeypatch.setattr(stage.DistillRun, "train_arm", _fake_arm(calls))
    results = stage.run_distill(cfg, search_dir, out, progress=False)
    assert calls == [(b, "selfkd"), (b, "baseline"), ("peer-max", "selfkd"),
                     ("peer-max", "baseline"), ("peer-fpn", "selfkd"), ("peer-fpn", "baseline"),
                     ("peer-csnet", "selfkd"), ("peer-csnet", "baseline"),
                     ("peer-csnet-dwd", "selfkd"), ("peer-csnet-dwd", "baseline")]
    assert len(results) == 12 and set(results["kind"]) == {"pareto", "peer"}
    with pytest.raises(SalnasError, match="another config"):
        stage.run_distill(config(select="ids", ids=[a], epochs=2), search_dir, out,
                          progress=False)


def test_a_finished_run_resumed_with_a_fidelity_sample_trains_only_the_sample(
        search_dir, tmp_path, monkeypatch):
    out = tmp_path / "distill"
    a = ids(search_dir)[1]
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(stage.DistillRun, "train_arm", _fake_arm(calls))
    stage.run_distill(config(select="ids", ids=[a]), search_dir, out, progress=False)
    # as an earlier version wrote it, when distill.fidelity was not yet resumable
    saved = json.loads((out / "distill.json").read_text())
    saved["fingerprint"]["distill"]["fidelity"] = 0
    (out / "distill.json").write_text(json.dumps(saved))
    calls.clear()
    results = stage.run_distill(config(select="ids", ids=[a], fidelity=2), search_dir, out,
                                progress=False)
    assert len(calls) == 2 and all(arch.startswith("fidelity-") and arm == "baseline"
                                   for arch, arm in calls)
    assert set(results["kind"]) == {"pareto", "fidelity"} and len(results) == 4


class FakeClock:
    """Seconds that pass only when a (fake) training says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_time_budget_stops_starting_architectures(search_dir, tmp_path, monkeypatch):
    out = tmp_path / "distill"
    calls: list[tuple[str, str]] = []
    clock = FakeClock()
    fake = _fake_arm(calls)

    def arm_of_0_3_s(self, unit, arm):
        clock.now += 0.3
        return fake(self, unit, arm)

    monkeypatch.setattr(stage.DistillRun, "train_arm", arm_of_0_3_s)
    cfg = config(select="crowding:2", time_budget_s=0.5, seeds=[0, 1])
    # 0.6 s after the first pair: over the budget, so the second pair is not started
    stage.DistillRun(cfg, search_dir, out, progress=False).run(clock=clock)
    ends = [ids(search_dir)[0], ids(search_dir)[-1]]  # crowding:2 keeps the two ends
    assert calls == [(ends[0], "selfkd"), (ends[0], "baseline")]  # the started pair finishes
    status = json.loads((out / "distill.json").read_text())
    assert status["status"] == "budget_exhausted"
    assert status["selected"] == ends
    assert status["not_started"] == [f"{ends[0]}/seed1", f"{ends[1]}/seed0",
                                     f"{ends[1]}/seed1"]
    assert (out / ends[0] / "selfkd" / stage.RESULT_FILE).is_file()
    assert status["wall_s"] == pytest.approx(0.6)

    # a budget the first pair stays under (0.6 s < 0.7 s) lets the second pair start
    calls.clear()
    out = tmp_path / "distill-wider"
    cfg = config(select="crowding:2", time_budget_s=0.7, seeds=[0, 1])
    stage.DistillRun(cfg, search_dir, out, progress=False).run(clock=clock)
    assert calls == [(ends[0], "selfkd"), (ends[0], "baseline")] * 2  # seeds 0 and 1
    status = json.loads((out / "distill.json").read_text())
    assert status["status"] == "budget_exhausted"
    assert status["not_started"] == [f"{ends[1]}/seed0", f"{ends[1]}/seed1"]
    assert status["wall_s"] == pytest.approx(1.2)


def test_cli_names_the_problem(search_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["distill", "--search", str(search_dir), "--out",
                                 str(tmp_path / "o"), "--ids", "abc,def"])
    assert isinstance(result.exception, SalnasError)
    assert "unknown architecture id(s) ['abc', 'def']" in str(result.exception)
    help_text = runner.invoke(app, ["distill", "--help"]).output
    assert "--search" in help_text and "--time-budget" in help_text


def test_fpn_peer_is_the_plain_reference_genome():
    from salnas.distill.peers import fpn_genome

    space = SearchSpace(SPACE)
    genome = fpn_genome(space)
    assert genome.resolution == space.max_genome().resolution
    assert all(genome.skips) and set(genome.ops) == {"dwsep3x3"}
    # SPACE's widths [[16, 24], [16, 24], [8, 16], [8, 16]]: nearest to 64/48/32/16
    assert list(genome.widths) == [24, 24, 16, 16]
    osie = SearchSpace({"decoder_widths": [[16, 32, 64, 128], [16, 32, 48, 96],
                                           [16, 32, 48, 64], [8, 16, 24, 32]]})
    assert list(fpn_genome(osie).widths) == [64, 48, 32, 16]
    assert genome.kernels == tuple((s.kernel,) * s.repeats for s in space.stages)
    assert genome.expands == tuple((s.expand,) * s.repeats for s in space.stages)


def test_fidelity_sample_trains_baselines_short_and_writes_rank_fidelity(search_dir, tmp_path,
                                                                       monkeypatch):
    out = tmp_path / "distill"
    calls: list[tuple[str, str]] = []
    epochs: list[int] = []
    base = _fake_arm(calls)

    def fake(self, unit, arm):
        epochs.append(unit.epochs)
        row = base(self, unit, arm)
        # a retrained score that follows the oracle's, so the ranking holds
        cc = float(unit.search.get("search_CC", 0.0))
        row.update({"search_CC": cc, "test_CC": cc + 0.1, "genome_id": unit.arch})
        (unit.arm_dir(self.out_dir, arm) / stage.RESULT_FILE).write_text(
            json.dumps({"row": row}))
        return row

    monkeypatch.setattr(stage.DistillRun, "train_arm", fake)
    cfg = config(select="ids", ids=[ids(search_dir)[0]], fidelity=3, fidelity_epochs=1)
    results = stage.run_distill(cfg, search_dir, out, progress=False)
    sample = [a for a, _ in calls if a.startswith("fidelity-")]
    assert len(sample) == 3 and {arm for a, arm in calls if a in sample} == {"baseline"}
    assert epochs.count(1) == 3  # the sample trains at distill.fidelity_epochs
    assert set(results.loc[results["kind"] == "fidelity", "arm"]) == {"baseline"}
    fidelity = json.loads((out / "rank_fidelity.json").read_text())
    assert fidelity["n"] == 3 and fidelity["sample"] == "fidelity"
    assert fidelity["kendall_tau"] == pytest.approx(1.0)
    assert 0 < fidelity["p_value"] <= 1 and fidelity["fidelity_epochs"] == 1


def _frame(rows: list[tuple[str, float, float]], **flags: list[bool]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["id", "CC", "flops"]).assign(genome="{}")
    return frame.assign(**flags)


def test_fidelity_sample_fills_a_small_front_from_the_next_ranks_of_the_archive():
    front = _frame([("a", 0.6, 10.0), ("b", 0.7, 20.0), ("c", 0.8, 40.0)])
    archive = _frame(
        [("a", 0.6, 10.0), ("b", 0.7, 20.0), ("c", 0.8, 40.0),  # the front again
         ("d", 0.55, 10.0), ("e", 0.65, 20.0), ("f", 0.75, 40.0),  # rank 2
         ("g", 0.5, 10.0), ("h", 0.6, 20.0), ("i", 0.62, 30.0), ("j", 0.7, 40.0),  # rank 3
         ("u", 0.99, 1.0)],  # the best of all, but not scored: never in the sample
        scored=[True] * 10 + [False], feasible=[True] * 11)
    search = {"objectives": ["CC", "flops"]}
    sample = stage.select_fidelity(front, config(fidelity=8).distill, search, archive=archive)
    ids = list(sample["id"])
    assert ids[:6] == ["a", "b", "c", "d", "e", "f"]  # the front, then all of rank 2
    # two of rank 3, by crowding: its two ends (the middle points are the most crowded)
    assert sorted(ids[6:]) == ["g", "j"]
    # a front as large as the sample: crowding on the front alone, the archive unused
    assert list(stage.select_fidelity(front, config(fidelity=2).distill, search, archive=archive)
                ["id"]) == ["a", "c"]
    # no archive: the front is all there is
    alone = stage.select_fidelity(front, config(fidelity=8).distill, search)
    assert list(alone["id"]) == ["a", "b", "c"]
    assert stage.select_fidelity(front, config(fidelity=0).distill, search, archive=archive).empty


def test_rank_fidelity_statistics():
    from salnas.distill.fidelity import rank_fidelity

    rng = np.random.default_rng(1)
    oracle = rng.random(12)
    frame = pd.DataFrame({"arch": [f"a{i}" for i in range(12)], "arm": "baseline",
                          "kind": "fidelity", "search_CC": oracle, "test_CC": -oracle})
    got = rank_fidelity(frame, n_resamples=999)
    assert got["n"] == 12 and got["kendall_tau"] == pytest.approx(-1.0)
    assert got["p_value"] < 0.01  # a perfect (inverse) ranking is no accident
    noise = frame.assign(test_CC=rng.random(12))
    assert rank_fidelity(noise, n_resamples=999)["p_value"] > 0.01
    tiny = rank_fidelity(frame.head(2))
    assert tiny["n"] == 2 and tiny["kendall_tau"] is None and tiny["p_value"] is None


def test_selfkd_false_trains_the_baseline_and_teacher_arms_only(search_dir, tmp_path,
                                                                 monkeypatch):
    a = ids(search_dir)[1]
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(stage.DistillRun, "train_arm", _fake_arm(calls))
    out = tmp_path / "distill"
    results = stage.run_distill(config(select="ids", ids=[a], selfkd=False), search_dir, out,
                                progress=False)
    assert calls == [(a, "baseline")] and list(results["arm"]) == ["baseline"]
    assert json.loads((out / "distill.json").read_text())["arms"] == ["baseline"]
    space = SearchSpace(SPACE)
    pareto = pd.DataFrame({"id": [space.min_genome().id],
                           "genome": [space.min_genome().to_json()]})
    units = stage._units(pareto, [0], space, config(select="all", selfkd=False,
                                                    peers=["csnet"]).distill, Path("p.csv"))
    assert {u.arms for u in units} == {("baseline",)}


def test_min_snapshots_lengthens_the_selfkd_arm_and_pairs_the_baseline(search_dir, tmp_path):
    out = tmp_path / "distill"
    first = ids(search_dir)[0]
    # 2 epochs give the teacher at most 2 snapshots: 3 forces a longer retraining (3, then
    # at most the cap of 4 epochs)
    cfg = config(select="ids", ids=[first], epochs=2, min_snapshots=3, max_epochs=4,
                 export_onnx=False, track_energy=False)
    results = stage.run_distill(cfg, search_dir, out, progress=False).set_index("arm")
    attempts = json.loads((out / first / "selfkd" / "result.json").read_text())["attempts"]
    tried = [a["epochs"] for a in attempts]
    assert tried[:2] == [2, 3] and tried == sorted(set(tried)) and tried[-1] <= 4
    assert all(a["teacher_snapshots"] < 3 for a in attempts[:-1])
    assert attempts[-1]["teacher_snapshots"] >= 3 or tried[-1] == 4
    ended = tried[-1]
    assert results.loc["selfkd", "epochs"] == results.loc["baseline", "epochs"] == ended
    assert results.loc["selfkd", "teacher_snapshots"] == attempts[-1]["teacher_snapshots"]
    for arm in ("selfkd", "baseline"):
        assert len(pd.read_csv(out / first / arm / "train_log.csv")) == ended
    baseline = json.loads((out / first / "baseline" / "result.json").read_text())
    assert [a["epochs"] for a in baseline["attempts"]] == [ended]


def test_min_snapshots_settings():
    cfg = config(epochs=10, min_snapshots=5).distill
    assert [cfg.longer_epochs(e) for e in (10, 15, 20)] == [15, 20, None]
    assert config(epochs=10, min_snapshots=5, max_epochs=12).distill.longer_epochs(10) == 12
    with pytest.raises(ConfigError, match="min_snapshots counts the Self-KD"):
        config(min_snapshots=5, selfkd=False)
    with pytest.raises(ConfigError, match="max_epochs 3 is under epochs 4"):
        config(epochs=4, max_epochs=3)
