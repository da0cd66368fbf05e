"""Latency lookup table: measurement, JSON round trip, predictor, validation, CLI.

Timings on shared CI machines drift, so nothing here asserts on absolute milliseconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from salnas.cli import app
from salnas.errors import SalnasError
from salnas.search.latency import (
    LatencyTable,
    _fit_overhead,
    busy_warning,
    entry_keys,
    genome_entry_keys,
    measure_latency_ms,
    profile_latency,
    time_interleaved,
    validate_table,
)
from salnas.supernet.model import Supernet
from salnas.supernet.space import Genome, SearchSpace

# The TINY space of tests/test_supernet_train.py.
TINY_SPACE = {
    "resolutions": [[32, 64], [64, 96]],
    "decoder_widths": [[16, 24], [16, 24], [8, 16], [8, 16]],
}
FAST = {"warmup": 0, "repeats": 1}  # one calibration call + one timed pass: CI-fast
REPORT_KEYS = {"n", "rmse_pct", "share_within_10pct", "mean_error_pct", "max_abs_error_pct",
               "kendall_tau", "measured_max_over_min", "subnets"}
runner = CliRunner()


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace(TINY_SPACE)


@pytest.fixture(scope="module")
def table(space: SearchSpace) -> LatencyTable:
    return profile_latency(space, fit=3, validate=2, progress=False, **FAST)


def test_table_covers_the_space_and_records_its_provenance(table, space):
    assert set(table.entries) == set(entry_keys(space))
    assert all(v > 0 for v in table.entries.values())
    assert table.meta["threads"] == 1 and table.meta["torch"] == torch.__version__
    assert table.meta["device"]["type"] == "cpu" and table.meta["device"]["name"]
    assert table.a > 0 and len(table.overhead["points"]) == 3 + 2  # random + min and max
    # Every genome's entries exist (a later block of a stage shares the "rest" entry).
    g = space.max_genome()
    assert set(genome_entry_keys(g)) <= set(table.entries)
    assert sum("/rest/" in k for k in genome_entry_keys(g)) == sum(d - 1 for d in g.depths)


def test_lut_json_round_trip(table, space, tmp_path):
    path = tmp_path / "lut.json"
    table.save(path)
    data = json.loads(path.read_text())
    assert data["space"] == space.to_config() and data["validation"]["n"] == 2
    loaded = LatencyTable.load(path, space=space)
    assert loaded.entries == table.entries and (loaded.a, loaded.b) == (table.a, table.b)
    assert loaded.meta["device"] == table.meta["device"]
    for seed in range(5):
        g = space.random_genome(seed)
        assert loaded.predict_ms(g) == table.predict_ms(g)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no temp left


def test_predict_is_deterministic_and_positive(table, space):
    genomes = [space.random_genome(s) for s in range(20)] + [space.min_genome(),
                                                             space.max_genome()]
    first = [table.predict_ms(g) for g in genomes]
    assert first == [table.predict_ms(g) for g in genomes]
    assert all(np.isfinite(first)) and min(first) > 0
    parts = table.breakdown(genomes[0])
    assert sum(parts.values()) == pytest.approx(first[0])


def test_predictor_is_monotone_in_obvious_cases(table, space):
    lo, hi = space.min_genome(), space.max_genome()
    assert table.predict_ms(hi) > table.predict_ms(lo)
    # One more block in a stage adds a positive entry: slower.
    g = space.random_genome(3)
    i = next(i for i, d in enumerate(g.depths) if d < max(space.depth_choices[i]))
    deeper = Genome(**{
        **{k: getattr(g, k) for k in ("resolution", "skips", "ops", "widths", "centre_bias")},
        "depths": tuple(d + (j == i) for j, d in enumerate(g.depths)),
        "kernels": tuple(ks + ((3,) if j == i else ()) for j, ks in enumerate(g.kernels)),
        "expands": tuple(es + ((3,) if j == i else ()) for j, es in enumerate(g.expands)),
    }, space=space)
    assert table.predict_ms(deeper) > table.predict_ms(g)


def test_validate_reports_the_documented_keys(table):
    report = validate_table(table, 2, warmup=0, repeats=1, progress=False)
    assert set(report) >= REPORT_KEYS
    assert report["n"] == 2 and 0 <= report["share_within_10pct"] <= 1
    assert report["rmse_pct"] >= 0 and report["measured_max_over_min"] >= 1
    assert set(report["subnets"][0]) == {"id", "resolution", "measured_ms", "predicted_ms",
                                         "ratio"}
    assert set(table.validation) >= REPORT_KEYS  # profile --validate stores the same report


def test_a_table_for_another_space_is_rejected(table, tmp_path):
    path = tmp_path / "lut.json"
    table.save(path)
    other = SearchSpace({**TINY_SPACE, "resolutions": [[64, 96]]})
    with pytest.raises(SalnasError, match=r"lut\.json was profiled for another search space"):
        LatencyTable.load(path, space=other)
    with pytest.raises(SalnasError, match="resolutions"):
        LatencyTable.load(path).predict_ms(other.max_genome())
    with pytest.raises(SalnasError, match="another search space"):
        table.predict_ms(SearchSpace().max_genome())  # the default space


def test_broken_tables_are_clear_errors(table, tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(SalnasError, match=r"none\.json does not exist"):
        LatencyTable.load(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SalnasError, match=r"bad\.json is not readable JSON"):
        LatencyTable.load(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(SalnasError, match="not a salnas latency table"):
        LatencyTable.load(bad)
    data = table.to_dict()
    data["entries"].pop(next(iter(data["entries"])))
    bad.write_text(json.dumps(data))
    with pytest.raises(SalnasError, match="1 entries missing"):
        LatencyTable.load(bad)


def test_overhead_fit_recovers_a_line_and_falls_back_to_a_ratio():
    sums = np.array([1.0, 2.0, 4.0, 8.0])
    fit = _fit_overhead(sums, 1.5 * sums + 0.25, floor_sum=0.5)
    assert fit["a"] == pytest.approx(1.5) and fit["b"] == pytest.approx(0.25)
    same = _fit_overhead(np.array([2.0, 2.0]), np.array([3.0, 5.0]), floor_sum=1.0)
    assert same["b"] == 0 and same["a"] == pytest.approx(2.0)  # degenerate: median ratio


def test_measure_latency_restores_threads_and_mode():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)).train()
    before = torch.get_num_threads()
    ms = measure_latency_ms(model, (32, 32), threads=1, warmup=1, repeats=3)
    assert ms > 0 and model.training and torch.get_num_threads() == before


def test_a_busy_machine_is_flagged():
    cpu = {"type": "cpu", "usable_cpus": 2}
    assert busy_warning([0.5, 1.9], cpu) is None and busy_warning([None, None], cpu) is None
    assert "busy" in busy_warning([1.0, 5.5], cpu)
    assert busy_warning([9.0], {"type": "cuda"}) is None


def test_interleaved_timing_orders_slow_and_fast():
    ms = time_interleaved([lambda: time.sleep(0.004), lambda: None], warmup=1, repeats=3)
    assert ms.shape == (2,) and ms[0] > ms[1] > 0


def test_cli_profile_validate_and_predict(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"supernet": {"space": TINY_SPACE}}))
    lut, report = tmp_path / "lut.json", tmp_path / "val.json"
    fast = ["--warmup", "0", "--repeats", "1", "--no-progress"]
    result = runner.invoke(app, ["latency", "profile", "--out", str(lut), "--config", str(config),
                                 "--validate-subnets", "3", "--fit", "2", "--json", str(report),
                                 *fast])
    assert result.exit_code == 0, result.output
    table = LatencyTable.load(lut, space=SearchSpace(TINY_SPACE))
    assert table.validation["n"] == 3 and set(json.loads(report.read_text())) >= REPORT_KEYS
    assert "within ±10 %" in result.output

    result = runner.invoke(app, ["latency", "validate", "--lut", str(lut), "--subnets", "2",
                                 "--store", *fast])
    assert result.exit_code == 0, result.output
    assert LatencyTable.load(lut).validation["when"].startswith("validate")

    result = runner.invoke(app, ["latency", "predict", "--lut", str(lut), "--genome", "max"])
    assert result.exit_code == 0 and " ms on " in result.output, result.output


def test_cli_subnet_counts_share_one_name_and_keep_the_old_spellings(tmp_path):
    lut = tmp_path / "lut.json"
    for args in (["profile", "--out", str(lut), "--validate-subnets", "-1"],
                 ["profile", "--out", str(lut), "--validate", "-1"]):
        result = runner.invoke(app, ["latency", *args])
        assert isinstance(result.exception, SalnasError), result.output
        assert "--validate-subnets must be >= 0" in str(result.exception)
    lut.write_text("{}")
    for flag in ("--subnets", "--n"):
        result = runner.invoke(app, ["latency", "validate", "--lut", str(lut), flag, "0"])
        assert isinstance(result.exception, SalnasError), result.output
        assert "--subnets must be >= 1" in str(result.exception)
    assert lut.read_text() == "{}"


def test_cli_rejects_a_bad_device(tmp_path):
    result = runner.invoke(app, ["latency", "profile", "--out", str(tmp_path / "x.json"),
                                 "--device", "tpu"])
    assert isinstance(result.exception, SalnasError) and not Path(tmp_path / "x.json").exists()


# A space with few choices (kernels 3/5, depths): few entries, cheap to export part by part.
NARROW_SPACE = {"resolutions": [[32, 64]], "kernels": [3, 5], "expands": [6],
                "decoder_widths": [[8], [8], [8], [8]], "decoder_ops": ["dwsep3x3"],
                "prior_channels": 0}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime"])  # torchscript: test_backends_time_the_same
def test_profile_in_a_deployment_backend_records_it_and_refuses_another(backend, tmp_path):
    from salnas.search.latency import measure_latency_ms

    narrow = SearchSpace(NARROW_SPACE)
    table = profile_latency(narrow, fit=2, validate=0, progress=False, backend=backend, **FAST)
    assert table.backend == backend and set(table.entries) == set(entry_keys(narrow))
    path = tmp_path / "lut.json"
    table.save(path)
    assert LatencyTable.load(path, space=narrow, backend=backend).backend == backend
    with pytest.raises(SalnasError, match=f"measured in the {backend} backend, not torch"):
        LatencyTable.load(path, space=narrow, backend="torch")
    net = Supernet(narrow, pretrained=False).extract(narrow.max_genome())
    assert measure_latency_ms(net, (32, 64), backend=backend, **FAST) > 0
    with pytest.raises(SalnasError, match="backend must be one of"):
        measure_latency_ms(net, (32, 64), backend="tensorrt", **FAST)


def test_tables_from_before_backends_read_as_torch(tmp_path):
    path = tmp_path / "old.json"
    profile_latency(SearchSpace(NARROW_SPACE), fit=2, progress=False, **FAST).save(path)
    data = json.loads(path.read_text())
    data.pop("backend", None)
    path.write_text(json.dumps(data))
    assert LatencyTable.load(path).backend == "torch"


@pytest.mark.parametrize("backend", ["torch", "torchscript", "onnxruntime"])
def test_backends_run_what_eager_torch_computes(backend):
    from salnas.search.backends import compile_for_timing, compile_module

    narrow = SearchSpace(NARROW_SPACE)
    net = Supernet(narrow, pretrained=False).extract(narrow.max_genome()).eval()
    x = torch.rand(1, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    out = compile_module(net, (x,), backend)()
    got = torch.as_tensor(out[0] if isinstance(out, list) else out)
    torch.testing.assert_close(got, net(x).detach(), rtol=1e-4, atol=1e-5)
    assert compile_for_timing(net, (32, 64), backend)() is not None


def test_an_fpn_space_profiles_every_entry():
    fpn = SearchSpace({**NARROW_SPACE, "decoder_types": ["fpn", "unet"],
                       "decoder_widths": [[8, 16], [8], [8], [8]]})
    table = profile_latency(fpn, fit=2, validate=0, progress=False, **FAST)
    assert set(table.entries) == set(entry_keys(fpn))
    assert any(k.startswith("fpn@") for k in table.entries)
    assert table.predict_ms(fpn.min_genome()) > 0  # the min genome decodes with FPN
