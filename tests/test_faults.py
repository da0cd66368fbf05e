"""Fault injection: bad inputs, a full disk, kills. Every fault is a clear error or a resume.

* The bad-input table (:data:`CASES`): each case runs a command through ``salnas.cli.main``
  (what the ``salnas`` script runs) and expects its exit code (2 for errors), one line on
  stderr that holds the fragment (no traceback, no rich markup or emoji rewriting), and every
  file that was in its run directory before the command unchanged by checksum, with no
  temporary file left behind.
* A full disk: a 64 KiB tmpfs (root only; skipped with the reason elsewhere).
* Kills: SIGKILL during a distill arm, and during ``salnas run``'s search stage, then the same
  command again; the search, supernet and pipeline resume tests of the other modules cover
  their own kill points.

Run with ``python -m pytest tests/test_faults.py`` (the slow cases are marked ``slow``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from spaces import NARROW_SPACE

from salnas.cli import main
from salnas.config import config_from_dict
from salnas.datasets import make_split, open_source
from salnas.errors import OutputError, SalnasError
from salnas.io import write_json_atomic
from salnas.predictions import write_prediction
from salnas.search.archive import COLUMNS, Archive, worker_id

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A narrow, shallow space (as in test_search_engines): trainings take seconds.
SPACE = NARROW_SPACE
TINY = {
    "seed": 3,
    "data": {"spec": "synthetic:16", "resolution": [64, 96], "val": 4, "test": 4},
    "supernet": {"space": SPACE, "pretrained": False, "epochs": 1, "batch_size": 4,
                 "n_random": 1, "bn_recalib_batches": 1, "val_random": 0, "threads": 1},
    "search": {"population": 4, "generations": 2, "val_images": 4, "bn_batches": 1,
               "batch_size": 4, "threads": 1, "objectives": ["CC", "flops"]},
    "distill": {"epochs": 2, "batch_size": 4, "bn_recalib_batches": 1, "latency_repeats": 1,
                "threads": 1, "peers": False, "export_onnx": False, "track_energy": False},
}


def tiny(**sections) -> dict:
    data = json.loads(json.dumps(TINY))
    for name, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(name, {}).update(values)
        else:
            data[name] = values
    return data


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


# ---------------------------------------------------------------- running the CLI
@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Outcome:
    """``salnas ARGV`` in this process, through the entry point's error handling."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    code = exited.value.code
    return Outcome(code if isinstance(code, int) else (0 if code is None else 1),
                   captured.out, captured.err)


def checksums(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_error(outcome: Outcome, fragment: str, code: int = 2) -> None:
    assert outcome.code == code, (outcome.code, outcome.err[-2000:])
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    assert "Traceback" not in outcome.err, outcome.err
    errors = [line for line in lines if line.startswith("error: ")]
    # the error is one line, the last (a command may have said what it was doing before)
    assert len(errors) == 1 and lines[-1] == errors[0], outcome.err
    assert fragment in errors[0], (fragment, errors[0])


# ---------------------------------------------------------------- the bad-input table
@dataclass
class Case:
    """One bad input: ``setup(root)`` writes the inputs into ``root`` (the run directory
    whose earlier files must survive) and returns the command's arguments."""

    id: str
    setup: Callable[[Path], list[str]]
    fragment: str
    code: int = 2


def _config(root: Path, text: str) -> Path:
    path = root / "bad.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _earlier_run(root: Path) -> Path:
    """A run directory with the files an earlier run left (they must survive)."""
    (root / "run" / "supernet").mkdir(parents=True, exist_ok=True)
    (root / "run" / "supernet" / "train_log.csv").write_text("epoch,lr\n1,0.001\n")
    write_json_atomic(root / "run" / "run.json", {"stages": {"supernet": {"status": "done"}}})
    return root / "run"


def _predictions(root: Path, spec: str, kind: str) -> Path:
    source = open_source(spec)
    test = make_split(source.stems(), 0, *source.default_split)["test"]
    folder = root / "preds"
    folder.mkdir(parents=True, exist_ok=True)
    for stem in test:
        truth = source.generating_map(stem)
        if kind in ("png", "both"):
            write_prediction(folder / f"{stem}.png", truth)
        if kind in ("npy", "both"):
            write_prediction(folder / f"{stem}.npy", truth)
        if kind == "negative":
            np.save(folder / f"{stem}.npy", truth - truth.mean())
    return folder


def _pareto(root: Path, text: str) -> Path:
    search = root / "search"
    search.mkdir(parents=True, exist_ok=True)
    (search / "pareto.csv").write_text(text)
    (search / "search.json").write_text('{"supernet": "absent.pt"}')
    return search


def _baselines(sigma: str) -> Callable[[Path], list[str]]:
    return lambda root: ["baselines", "--data", "synthetic:6", "--sigma-px", sigma,
                         "--json", root / "b.json"]


def _show(text: str) -> Callable[[Path], list[str]]:
    return lambda root: ["config", "show", _config(root, text)]


GENOME = '"{""x"": 1}"'
CASES = [
    # --- issue 15 item 2: no silent wrong result
    *(Case(f"--sigma-px {v}", _baselines(v), "--sigma-px") for v in
      ("nan", "0", "-3", "inf", "1e9")),
    Case("supernet train --sigma-px nan",
         lambda r: ["supernet", "train", "--out", r / "sn", "--sigma-px", "nan"], "--sigma-px"),
    Case("data.sigma_px: .nan", _show("data: {sigma_px: .nan}\n"), "'data.sigma_px'"),
    Case("data.sigma_px: 0", _show("data: {sigma_px: 0}\n"), "'data.sigma_px'"),
    Case("data.val: 0", _show("data: {val: 0}\n"), "'data.val': 0 leaves the val split empty"),
    Case("data.test: 0", _show("data: {test: 0}\n"), "'data.test'"),
    Case("pareto.csv torn last line",
         lambda r: ["distill", "--search", _pareto(r, f"id,genome,CC\na,{GENOME},0.5\nb,{{"),
                    "--out", r / "d"], "pareto.csv: the last line is incomplete"),
    Case("pareto.csv missing fields",
         lambda r: ["distill", "--search", _pareto(r, f"id,genome,CC\na,{GENOME},0.5\nb\n"),
                    "--out", r / "d"], "pareto.csv: line 3 has 1 fields"),
    Case("all-zero ground-truth map", lambda r: ["data", "check", _zero_map_dataset(r)],
         "", code=1),  # a data check report: exit 1 and the problem named (checked below)
    Case("negative .npy prediction",
         lambda r: ["evaluate", "--data", "synthetic:8", "--predictions",
                    _predictions(r, "synthetic:8", "negative"), "--json", r / "e.json"],
         ".npy: a prediction must not be negative"),
    Case("<stem>.png beside <stem>.npy",
         lambda r: ["evaluate", "--data", "synthetic:8", "--predictions",
                    _predictions(r, "synthetic:8", "both"), "--json", r / "e.json"],
         "are both predictions of image"),
    # --- issue 15 item 3: every error one line, exit 2
    Case("space typo (resolutionz)", _show("supernet: {space: {resolutionz: [[64, 64]]}}\n"),
         "resolutionz"),
    Case("resolutions: []", _show("supernet: {space: {resolutions: []}}\n"), "must not be empty"),
    Case("resolutions: [[16, 16]]", _show("supernet: {space: {resolutions: [[16, 16]]}}\n"),
         "total stride"),
    Case("run with a bad space",
         lambda r: ["run", "--config", _config(r, "supernet: {space: {resolutionz: [[1]]}}\n"),
                    "--out", _earlier_run(r)], "resolutionz"),
    *(Case(f"synthetic:{n}", lambda r, n=n: ["data", "check", f"synthetic:{n}"],
           "synthetic:N needs") for n in ("abc", "0", "-5")),
    Case("--out is a file",
         lambda r: ["run", "--config", write_yaml(r / "c.yaml", tiny()), "--out",
                    _earlier_run(r) / "run.json"], "is a file, not a folder"),
    Case("--out below a file",
         lambda r: ["supernet", "train", "--config", write_yaml(r / "c.yaml", tiny()), "--out",
                    _earlier_run(r) / "run.json" / "sn"], "cannot create the folder"),
    Case("binary config",
         lambda r: ["config", "show", _binary(r)], "is not a text file"),
    Case("folder as config", lambda r: ["config", "show", _earlier_run(r)], "is a folder"),
    Case("loss: {}", _show("supernet: {loss: {}}\n"), "no loss term has a positive weight"),
    Case("unknown loss term", _show("distill: {loss: {kdl: 1}}\n"), "unknown loss term(s)"),
    Case("--set of a wrong type",
         lambda r: ["run", "--config", write_yaml(r / "c.yaml", tiny()), "--out",
                    _earlier_run(r), "--set", "supernet.epochs=many"], "'supernet.epochs'"),
    Case("--set without =",
         lambda r: ["search", "--out", r / "s", "--set", "search.population"],
         "expected KEY=VALUE"),
    Case("--set of an unknown key",
         lambda r: ["distill", "--search", r, "--out", r / "d", "--set", "distill.epoch=2"],
         "unknown key 'distill.epoch'"),
    # rich markup and emoji codes in user text are printed as they are
    Case("markup in a path", lambda r: ["config", "show", r / "a[/x]" / "c.yaml"],
         "a[/x]/c.yaml does not exist"),
    Case("emoji code in a path", lambda r: ["config", "show", r / "root:x:0" / "c.yaml"],
         "root:x:0/c.yaml does not exist"),
    Case("emoji code in a spec", lambda r: ["data", "check", f"folder:{r / 'root:x:0'}"],
         "root:x:0 does not exist"),
    Case("emoji code in --genome",
         lambda r: ["supernet", "extract", _tiny_checkpoint(r / "sn" / "supernet.pt"),
                    "--genome", "random:x", "--out", r / "m.pt"],
         "--genome random:x: the seed after 'random:' must be an integer"),
    Case("NaN in archive.csv on resume", lambda r: _resume_search(r, "nan"),
         "archive.csv: line 2, column CC: 'nan' is not a finite number"),
    Case("inf in archive.csv on resume", lambda r: _resume_search(r, "inf"),
         "archive.csv: line 2, column CC: 'inf' is not a finite number"),
    # --- issue 15 item 4: clear messages
    Case("CRLF archive.csv", lambda r: _resume_search(r, "crlf"),
         "archive.csv has Windows (CRLF) line endings"),
]


def _binary(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "model.pt"
    path.write_bytes(b"\x80\x02\xff\xfe\x00PK\x03\x04binary")
    return path


def _zero_map_dataset(root: Path) -> str:
    from dataset_fixtures import make_folder_dataset, write_gray

    fx = make_folder_dataset(root / "data", n=3, with_maps=True)
    write_gray(fx.map_files[fx.stems[1]], np.zeros(fx.sizes[fx.stems[1]]))
    return fx.spec


def _resume_search(root: Path, fault: str) -> list[str]:
    """``salnas search`` resuming a directory whose archive.csv was edited (``fault``)."""
    from salnas.io import file_sha1
    from salnas.search.run import fingerprint

    ckpt = _tiny_checkpoint(root / "sn" / "supernet.pt")
    config = config_from_dict(tiny())
    out = root / "search"
    write_json_atomic(out / "search.json", {
        "status": "running", "fingerprint": fingerprint(config, file_sha1(ckpt)),
        "hypervolume": {"bounds": {"CC": [0.0, 1.0], "flops": [0.0, 1e7]}}})
    Archive(out).add(_record(0))
    path = out / "archive.csv"
    text = path.read_text()
    if fault == "crlf":
        path.write_bytes(text.replace("\n", "\r\n").encode())
    else:
        path.write_text(text.replace(f",{_record(0)['CC']!r},", f",{fault},", 1))
    return ["search", "--config", write_yaml(root / "c.yaml", tiny()), "--supernet", ckpt,
            "--out", out, "--no-progress"]


def _tiny_checkpoint(path: Path) -> Path:
    """An untrained tiny supernet saved as a checkpoint (loads like a trained one)."""
    from salnas.supernet.checkpoint import CHECKPOINT_FORMAT, build_supernet, save_checkpoint

    config = config_from_dict(tiny())
    torch.manual_seed(0)
    model = build_supernet(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "epoch": 0, "model": model.state_dict(),
                           "config": config.model_dump(mode="json")})
    return path


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = case.setup(tmp_path)
    before = checksums(tmp_path)
    outcome = run_cli(argv, capsys)
    if case.code == 2:
        assert_one_line_error(outcome, case.fragment)
    else:
        assert outcome.code == case.code, outcome.err
        assert "all zero" in outcome.err and "Traceback" not in outcome.err
    after = checksums(tmp_path)
    changed = {k for k, v in before.items() if after.get(k) != v}
    assert not changed, f"earlier files changed: {sorted(changed)}"
    assert not [k for k in after if Path(k).name.endswith(".tmp")], after


def test_the_table_covers_the_issue(capsys: pytest.CaptureFixture[str]) -> None:
    # for the README's reliability figures
    assert len(CASES) >= 38
    assert len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------- archive.csv on resume
def _record(i: int, **kw) -> dict:
    return {"id": f"g{i:04d}", "genome": "{}", "CC": 0.1 + i / 10, "KLD": 1.0, "NSS": 0.5,
            "SIM": 0.4, "AUC_Judd": 0.7, "params": 1000 + i, "flops": 10**6 + i,
            "latency_ms": math.nan, "latency_source": "", "feasible": True, "scored": True,
            "engine": "nsga2", "generation": 0, "worker": worker_id(), "wall_s": 0.1,
            "finished_at": "2026-01-01T00:00:00+00:00", **kw}


@pytest.mark.parametrize(("column", "text"), [("CC", "nan"), ("CC", "inf"), ("KLD", "-inf"),
                                              ("wall_s", "NaN"), ("params", "1.5"),
                                              ("feasible", "yes")])
def test_a_non_finite_or_malformed_archive_value_is_refused_naming_line_and_column(
        tmp_path, column, text):
    a = Archive(tmp_path)
    for i in range(3):
        a.add(_record(i))
    path = tmp_path / "archive.csv"
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[2].rstrip("\n").split(",")
    fields[COLUMNS.index(column)] = text
    lines[2] = ",".join(fields) + "\n"
    path.write_text("".join(lines))
    before = path.read_bytes()
    with pytest.raises(SalnasError, match=rf"archive\.csv: line 3, column {column}: "):
        Archive(tmp_path)
    assert path.read_bytes() == before


def test_missing_archive_values_stay_missing(tmp_path):
    a = Archive(tmp_path)
    a.add(_record(0, latency_ms=math.nan, generation=None, feasible=None))
    row = Archive(tmp_path).records()[0]
    assert math.isnan(row["latency_ms"]) and row["generation"] is None and not row["feasible"]


# ---------------------------------------------------------------- a full disk
@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root: mount -t tmpfs -o size=64k tmpfs DIR)."""
    if os.geteuid() != 0:
        pytest.skip("the disk-full cases mount a 64 KiB tmpfs, which needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> None:
    """Write a filler file until the device is full."""
    with contextlib.suppress(OSError), open(disk / "filler", "wb", buffering=0) as fh:
        while True:
            fh.write(b"\0" * 4096)


def test_disk_full_while_writing_outputs(tiny_disk, tmp_path, capsys):
    preds = _predictions(tmp_path, "synthetic:8", "png")
    argv = ["evaluate", "--data", "synthetic:8", "--predictions", preds, "--json",
            tiny_disk / "scores.json"]
    assert run_cli(argv, capsys).code == 0
    before = checksums(tiny_disk)
    fill(tiny_disk)
    outcome = run_cli(argv, capsys)
    assert_one_line_error(outcome, "scores.csv: no space left on the device (earlier files "
                                   "are intact)")
    after = checksums(tiny_disk)
    assert {k: after[k] for k in before} == before
    assert not [p for p in tiny_disk.iterdir() if p.name.endswith(".tmp")]


def test_disk_full_while_appending_to_the_archive(tiny_disk):
    a = Archive(tiny_disk / "search")
    for i in range(3):
        a.add(_record(i))
    fill(tiny_disk)
    with pytest.raises(OutputError, match=r"cannot write .*archive\.csv: no space left"):
        a.add(_record(3, genome="{" + "x" * 8000 + "}"))
    (tiny_disk / "filler").unlink()
    again = Archive(tiny_disk / "search")  # a resume: every acknowledged row, no torn one
    assert [r["id"] for r in again.records()] == ["g0000", "g0001", "g0002"]
    again.add(_record(3))
    assert len(Archive(tiny_disk / "search").records()) == 4


def test_read_only_place_for_out(tiny_disk, tmp_path, capsys):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    outcome = run_cli(["run", "--config", write_yaml(tmp_path / "c.yaml", tiny()), "--out",
                       tiny_disk / "run"], capsys)
    assert_one_line_error(outcome, "cannot create the folder (read-only file system)")


# ---------------------------------------------------------------- NaN in training
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny supernet trained for one epoch (its run directory)."""
    from salnas.supernet.train import train_supernet

    out = tmp_path_factory.mktemp("faults-run") / "supernet"
    train_supernet(config_from_dict(tiny()), out, progress=False)
    return out


@pytest.mark.slow
def test_a_huge_lr_stops_supernet_training_at_the_step(tmp_path, capsys):
    config = write_yaml(tmp_path / "c.yaml", tiny(supernet={"epochs": 3}))
    start = time.perf_counter()
    outcome = run_cli(["supernet", "train", "--config", config, "--out", tmp_path / "sn",
                       "--set", "supernet.lr=1e12", "--no-progress"], capsys)
    assert_one_line_error(outcome, "supernet.lr = 1e+12 is too high")
    assert "supernet epoch 1, step 2" in outcome.err  # the first step whose output is NaN
    assert not (tmp_path / "sn" / "supernet.pt").exists()  # no epoch of NaN was kept
    assert time.perf_counter() - start < 120


@pytest.mark.slow
def test_nan_weights_stop_a_resumed_supernet_at_its_first_step(trained, tmp_path, capsys):
    import shutil

    from salnas.supernet.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "sn"
    shutil.copytree(trained, run)
    ckpt = load_checkpoint(run / "supernet.pt")
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and "weight" in k)
    ckpt["model"][name].fill_(float("nan"))
    save_checkpoint(run / "supernet.pt", ckpt)
    before = checksums(run)
    config = write_yaml(tmp_path / "c.yaml", tiny(supernet={"epochs": 2}))
    outcome = run_cli(["supernet", "train", "--config", config, "--out", run, "--resume",
                       "--no-progress"], capsys)
    assert_one_line_error(outcome, "supernet epoch 2, step 1")
    assert "starting weights hold NaN/inf" in outcome.err and name in outcome.err
    after = checksums(run)
    for kept in ("supernet.pt", "train_log.csv", "split.json"):  # epoch 1 is kept as it was
        assert after[kept] == before[kept], kept


@pytest.mark.parametrize(("case", "fragment"), [("nan-weight", "starting weights hold NaN"),
                                                ("huge-lr", r"distill\.lr = 1e\+15 is too high")])
def test_nan_stops_distill_training_at_the_step(case, fragment):
    from salnas.config import DistillConfig
    from salnas.datasets.training import load_training_data
    from salnas.distill.trainer import train_standalone
    from salnas.supernet.model import Supernet
    from salnas.supernet.space import SearchSpace

    data = load_training_data(config_from_dict(tiny(data={"spec": "synthetic:16"})), None,
                              progress=False)
    torch.manual_seed(0)
    space = SearchSpace(SPACE)
    net = Supernet(space, pretrained=False).extract(space.min_genome())
    if case == "nan-weight":
        with torch.no_grad():
            next(p for p in net.parameters() if p.dim() > 1).fill_(float("nan"))
    cfg = DistillConfig(epochs=3, batch_size=4, track_energy=False,
                        lr=1e15 if case == "huge-lr" else 1e-3, grad_clip=None)
    with pytest.raises(SalnasError, match=fragment) as err:
        train_standalone(net, space.min_genome().resolution, data, cfg, seed=0, kd=False,
                         pretrained=False, progress=False)
    assert "distill training step" in str(err.value)


# ---------------------------------------------------------------- tidy runs
def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def _orphan(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{name}.{_dead_pid()}@{socket.gethostname()}.0badc0de.tmp"
    path.write_bytes(b"half a checkpoint")
    return path


def test_orphaned_temporary_files_are_removed_when_a_stage_starts(tmp_path, monkeypatch):
    import salnas.distill.run as distill_run
    from salnas.search.run import SearchRun
    from salnas.supernet.train import train_supernet

    # supernet: the first step stops it (the test hook), after the start-up clean-up
    sn = tmp_path / "run" / "supernet"
    orphan = _orphan(sn, "supernet.pt")
    with pytest.raises(KeyboardInterrupt):
        train_supernet(config_from_dict(tiny()), sn, progress=False, stop_after_steps=1)
    assert not orphan.exists()

    # search: a new worker removes a dead worker's orphan, not a live writer's file
    ckpt = _tiny_checkpoint(tmp_path / "ck" / "supernet.pt")
    search = tmp_path / "run" / "search"
    orphan = _orphan(search, "pareto.csv")
    live = search / f".hv_history.csv.{os.getpid()}@{socket.gethostname()}.00c0ffee.tmp"
    live.write_text("in flight")
    SearchRun(config_from_dict(tiny()), ckpt, search, progress=False)
    assert not orphan.exists() and live.exists()

    # distill: orphans in the arm folders too
    search_dir = _search_dir(tmp_path / "s2", ckpt)
    out = tmp_path / "run" / "distill"
    orphans = [_orphan(out, "results.csv"), _orphan(out / "a" / "selfkd", "model.pt")]
    def fake_arm(self, unit, arm):
        path = unit.arm_dir(self.out_dir, arm) / "result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        row = {"arch": unit.arch, "kind": unit.kind, "arm": arm, "seed": unit.seed}
        path.write_text(json.dumps({"row": row}))
        return row

    monkeypatch.setattr(distill_run.DistillRun, "train_arm", fake_arm)
    distill_run.run_distill(config_from_dict(tiny()), search_dir, out, progress=False)
    assert not any(p.exists() for p in orphans)


def _search_dir(root: Path, ckpt: Path, n: int = 2) -> Path:
    """A hand-written search result on the tiny space: the min genome and random ones."""
    from salnas.supernet.space import SearchSpace

    space = SearchSpace(SPACE)
    rng = np.random.default_rng(0)
    genomes = [space.min_genome()]
    while len(genomes) < n:
        g = space.random_genome(rng)
        if g.resolution == (32, 64) and g not in genomes:
            genomes.append(g)
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": [g.id for g in genomes], "genome": [g.to_json() for g in genomes],
                  "CC": np.linspace(0.3, 0.5, n), "flops": np.linspace(1e6, 4e6, n)}
                 ).to_csv(root / "pareto.csv", index=False)
    (root / "search.json").write_text(json.dumps({"supernet": str(ckpt),
                                                  "objectives": ["CC", "flops"]}))
    return root


def test_distill_epochs_1_warns_that_the_arms_are_identical(tmp_path):
    import salnas.distill.run as distill_run

    ckpt = _tiny_checkpoint(tmp_path / "ck" / "supernet.pt")
    search = _search_dir(tmp_path / "search", ckpt)
    with pytest.warns(UserWarning, match="identical by construction"):
        distill_run.DistillRun(config_from_dict(tiny(distill={"epochs": 1})), search,
                               tmp_path / "d1", progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*identical by construction")
        distill_run.DistillRun(config_from_dict(tiny()), search, tmp_path / "d2",
                               progress=False)


def test_predict_on_a_smaller_dataset_suggests_its_own_options(tmp_path, capsys):
    from salnas.supernet.model import Supernet
    from salnas.supernet.space import SearchSpace
    from salnas.supernet.subnet import save_subnet

    space = SearchSpace(SPACE)
    genome = space.min_genome()
    net = Supernet(space, pretrained=False).extract(genome)
    save_subnet(tmp_path / "m.pt", net, genome, config_from_dict(tiny()))  # val 4, test 4
    outcome = run_cli(["predict", tmp_path / "m.pt", "--data", "synthetic:6", "--out",
                       tmp_path / "p"], capsys)
    assert_one_line_error(outcome, "--split all")
    assert "data.val" not in outcome.err
    done = run_cli(["predict", tmp_path / "m.pt", "--data", "synthetic:6", "--split", "all",
                    "--out", tmp_path / "p", "--no-progress"], capsys)
    assert done.code == 0 and len(list((tmp_path / "p").glob("*.png"))) == 6


# ---------------------------------------------------------------- kill and resume
def _popen_cli(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "salnas.cli", *map(str, argv)], cwd=REPO,
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the process ended before the kill point"
        assert time.monotonic() < deadline, "no kill point within the timeout"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


RESULT_COLUMNS = ["arch", "arm", "seed", "test_CC", "test_KLD", "test_NSS", "test_SIM",
                  "test_AUC_Judd", "params", "flops", "best_epoch"]


@pytest.mark.slow
def test_sigkill_during_a_distill_arm_then_rerun_equals_an_uninterrupted_run(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path / "ck" / "supernet.pt")
    search = _search_dir(tmp_path / "search", ckpt, n=1)  # one architecture, two arms
    config = write_yaml(tmp_path / "c.yaml", tiny())
    argv = ["--no-progress", "distill", "--config", config, "--search", search]
    reference = tmp_path / "reference"
    assert _popen_cli([*argv, "--out", reference], tmp_path / "ref.log").wait(600) == 0

    out = tmp_path / "killed"
    proc = _popen_cli([*argv, "--out", out], tmp_path / "killed.log")
    # kill point: the first arm is finished (result.json written), the second is training
    _kill_when(proc, lambda: len(list(out.glob("*/*/result.json"))) == 1)
    finished = {p.parent for p in out.glob("*/*/result.json")}
    stamps = {p: p.stat().st_mtime_ns for d in finished for p in d.iterdir()}
    rerun = subprocess.run([sys.executable, "-m", "salnas.cli", *map(str, argv), "--out", out],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # the finished arm was skipped (its files untouched), the others trained
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    got = pd.read_csv(out / "results.csv", dtype={"arch": str})[RESULT_COLUMNS]
    want = pd.read_csv(reference / "results.csv", dtype={"arch": str})[RESULT_COLUMNS]
    assert len(got) == 2
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
    assert not [p for p in out.rglob(".*.tmp")]


@pytest.mark.slow
def test_sigkill_during_salnas_run_then_rerun_finishes(tmp_path):
    config = write_yaml(tmp_path / "run.yaml", tiny(distill={"select": "crowding:1"}))
    run = tmp_path / "run"
    argv = ["run", "--config", config, "--out", run, "--no-progress"]
    proc = _popen_cli(argv, tmp_path / "killed.log")

    def in_search() -> bool:  # kill point: search stage, two architectures durable
        archive = run / "search" / "archive.csv"
        return archive.is_file() and archive.read_text().count("\n") >= 3

    _kill_when(proc, in_search)
    supernet = checksums(run / "supernet")
    rerun = subprocess.run([sys.executable, "-m", "salnas.cli", *map(str, argv)], cwd=REPO,
                           capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:] + rerun.stdout[-3000:]
    assert "[supernet] done earlier" in rerun.stdout
    stages = json.loads((run / "run.json").read_text())["stages"]
    assert all(s["status"] == "done" for s in stages.values()) and len(stages) == 5
    assert checksums(run / "supernet") == supernet  # the finished stage was not redone
    log = (run / "run.log").read_text()
    assert "[search] running" in log and "[report] done" in log
    assert not [p for p in run.rglob(".*.tmp")]


@pytest.mark.slow
def test_sigkill_during_supernet_training_then_resume_equals_an_uninterrupted_run(tmp_path):
    from salnas.supernet.checkpoint import load_checkpoint

    config = write_yaml(tmp_path / "c.yaml", tiny(supernet={"epochs": 2}))
    argv = ["supernet", "train", "--config", config, "--no-progress"]
    reference = tmp_path / "reference"
    assert _popen_cli([*argv, "--out", reference], tmp_path / "ref.log").wait(600) == 0
    out = tmp_path / "killed"
    proc = _popen_cli([*argv, "--out", out], tmp_path / "killed.log")
    # kill point: epoch 1's checkpoint is written, epoch 2 is training
    _kill_when(proc, lambda: (out / "train_log.csv").is_file())
    assert load_checkpoint(out / "supernet.pt")["epoch"] == 1
    resumed = subprocess.run([sys.executable, "-m", "salnas.cli", *map(str, argv), "--out", out,
                              "--resume"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got, want = load_checkpoint(out / "supernet.pt"), load_checkpoint(reference / "supernet.pt")
    assert got["epoch"] == want["epoch"] == 2
    assert got["model"].keys() == want["model"].keys()
    for name, tensor in want["model"].items():
        assert torch.equal(got["model"][name], tensor), name
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
