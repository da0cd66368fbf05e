"""optuna-dashboard on a real search study: objective names, user attrs, params as gene values,
constraints where the dashboard reads them, no architecture twice among the best trials.

The search writes the documented `--storage RUN/search/study.journal` into a folder that does
not exist yet; `optuna-dashboard` (its command, else `run_server`) serves that journal on
127.0.0.1 and the test reads the study through its JSON API.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from spaces import NARROW_SPACE

from salnas.config import config_from_dict
from salnas.search.run import run_search
from salnas.supernet.train import train_supernet

pytest.importorskip("optuna_dashboard")

FLOPS_BUDGET = 4e6  # about half of the tiny genomes (those at 64x96) are over it
CONFIG = {
    "seed": 3,
    "data": {"spec": "synthetic:24", "resolution": [64, 96], "val": 4, "test": 4},
    "supernet": {
        "space": NARROW_SPACE,
        "pretrained": False, "epochs": 1, "batch_size": 4, "n_random": 1,
        "bn_recalib_batches": 1, "threads": 1,
    },
    "search": {
        "engine": "optuna-nsga2", "population": 4, "generations": 3, "trials": 16,
        "val_images": 4, "bn_batches": 1, "batch_size": 4, "threads": 1,
        "objectives": ["CC", "flops"], "constraints": {"flops": FLOPS_BUDGET},
        "study_name": "dashboard-test",
    },
}
DEADLINE_S = 90.0

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # 127.0.0.1 only
        return json.loads(response.read())


@contextlib.contextmanager
def dashboard(journal: Path):
    """optuna-dashboard serving ``journal`` on 127.0.0.1; yields its base URL."""
    port = _free_port()
    script = Path(sys.executable).with_name("optuna-dashboard")
    cmd = ([str(script), str(journal), "--host", "127.0.0.1", "--port", str(port), "--quiet"]
           if script.is_file() else
           [sys.executable, "-c", "import sys, optuna_dashboard as d; "
            "d.run_server(sys.argv[1], host='127.0.0.1', port=int(sys.argv[2]))",
            str(journal), str(port)])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"optuna-dashboard exited ({proc.returncode}): "
                            f"{proc.stderr.read()[-2000:] if proc.stderr else ''}")
            try:
                _get(f"{base}/api/meta")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"optuna-dashboard did not answer on {base} "
                                f"within {DEADLINE_S:.0f} s")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("dashboard-run")
    cfg = config_from_dict(CONFIG)
    supernet = train_supernet(cfg, run / "supernet", progress=False)
    journal = run / "search" / "study.journal"  # RUN/search does not exist yet
    assert not journal.parent.exists()
    cfg = config_from_dict({**CONFIG, "search": {**CONFIG["search"], "storage": str(journal)}})
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    run_search(cfg, supernet, run / "search", progress=False)
    return run, journal


def _attrs(trial: dict) -> dict[str, str]:
    return {a["key"]: a["value"] for a in trial["user_attrs"]}


def test_dashboard_shows_names_attrs_genes_and_constraints(search_run):
    from salnas.search.archive import Archive

    run, journal = search_run
    archive = {r["id"]: r for r in Archive(run / "search").records()}
    with dashboard(journal) as base:
        studies = _get(f"{base}/api/studies")["study_summaries"]
        (study,) = [s for s in studies if s["study_name"] == "dashboard-test"]
        assert study["directions"] == ["maximize", "minimize"]
        detail = _get(f"{base}/api/studies/{study['study_id']}")
    assert detail["objective_names"] == ["CC", "flops"]  # not "Objective 0/1"
    trials = detail["trials"]
    finished = [t for t in trials if t["state"] in ("Complete", "Pruned")]
    assert len(finished) == CONFIG["search"]["trials"]
    space_genes = None
    for t in finished:
        attrs = _attrs(t)
        assert {"genome", "genome_id", "genes", "inactive", "params", "flops", "latency_ms",
                "CC", "KLD", "NSS", "SIM", "AUC_Judd", "feasible", "constraints",
                "worker"} <= set(attrs)
        record = archive[attrs["genome_id"]]  # the trial's record is the archive's row
        assert json.loads(attrs["genome"]) == json.loads(record["genome"])
        assert int(attrs["flops"]) == record["flops"] and int(attrs["params"]) == record["params"]
        feasible = record["feasible"]
        assert attrs["feasible"] == str(feasible)
        if feasible:
            assert float(attrs["CC"]) == pytest.approx(record["CC"])
        else:
            assert attrs["CC"] == "null"  # not computed, not a CC of 0
        # constraints where samplers and the dashboard read them: > 0 means infeasible
        (violation,) = t["constraints"]
        assert violation == pytest.approx((record["flops"] - FLOPS_BUDGET) / FLOPS_BUDGET)
        assert (violation <= 0) == feasible
        # params are gene values (a resolution reads "32x64", a skip True/False)
        params = {p["name"]: p["param_external_value"] for p in t["params"]}
        assert params["resolution"] in {"32x64", "64x96"}
        assert {params[n] for n in params if n.endswith(".skip")} <= {"True", "False"}
        assert {params[n] for n in params if n.endswith(".kernel")} <= {"3", "5"}
        # the repaired genome's values: inactive genes at their canonical (first) value
        genes = json.loads(attrs["genes"])
        space_genes = space_genes or set(genes)
        assert set(genes) == set(params) == space_genes
        inactive = set(json.loads(attrs["inactive"]))
        assert all(n.startswith("s") and (n.endswith(".kernel") or n.endswith(".expand"))
                   for n in inactive)
        for name, value in genes.items():
            if name not in inactive:
                assert str(value) == params[name]  # active genes: as suggested
    # pruned trials are duplicates of a complete one; no architecture is twice among those
    complete = {int(t["number"]): _attrs(t)["genome_id"] for t in finished
                if t["state"] == "Complete"}
    assert len(set(complete.values())) == len(complete)
    for t in finished:
        if t["state"] == "Pruned":
            attrs = _attrs(t)
            assert complete[int(attrs["duplicate_of"])] == attrs["genome_id"]
    best = [_attrs(t)["genome_id"] for t in detail["best_trials"]]
    assert best and len(best) == len(set(best))  # no architecture twice


# ---------------------------------------------------------------- duplicates, on a tiny space
TINY_SPACE = {  # 24 canonical genomes: 40 proposals must repeat some
    "stem": 8,
    "stages": ["e1_k3_s1_c8_r1", "e6_k3_s2_c12_r2"],
    "kernels": [3, 5], "expands": [6], "depths": [[1], [1, 2]],
    "resolutions": [[32, 32]], "skip_stages": [0], "decoder_widths": [[8]],
    "decoder_ops": ["dwsep3x3", "conv3x3"], "prior_channels": 0,
}


@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])
def test_repeated_genomes_are_pruned_not_completed_twice(sampler):
    """An archive hit of a genome the study already holds is told PRUNED (duplicate_of), still
    counted in the budget; COMPLETE trials, hence the best trials, hold each genome once."""
    import math

    import optuna

    from salnas.search.engines.base import RunContext
    from salnas.search.engines.optuna_engine import OptunaEngine
    from salnas.search.problem import Objectives, SearchProblem
    from salnas.supernet.space import SearchSpace

    space = SearchSpace(TINY_SPACE)
    assert space.size() == 24
    archive: dict[str, dict] = {}

    def evaluate_record(genome, engine="", generation=0):
        cached = genome.id in archive
        if not cached:
            flops = 1000 * (1 + sum(space.encode(genome)) + 3 * genome.depths[1])
            feasible = flops <= 4000
            archive[genome.id] = {"id": genome.id, "genome": genome.to_json(), "flops": flops,
                                  "params": flops // 10, "feasible": feasible,
                                  "CC": (int(genome.id, 16) % 97) / 97 if feasible else math.nan}
        return archive[genome.id], cached

    objectives = Objectives(("CC", "flops"), {"flops": 4000.0},
                            {"CC": (0.0, 1.0), "flops": (0.0, 10000.0)})
    problem = SearchProblem(objectives, evaluate_record, space)
    cfg = config_from_dict({"supernet": {"space": TINY_SPACE},
                            "search": {"engine": f"optuna-{sampler}", "population": 4,
                                       "trials": 40, "objectives": ["CC", "flops"],
                                       "constraints": {"flops": 4000.0},
                                       "study_name": "tiny"}}).search
    storage = optuna.storages.InMemoryStorage()
    ctx = RunContext(cfg, 0, params=lambda g: 0, costs=lambda g: (0, 0), storage=storage)
    OptunaEngine(problem, ctx, sampler).run()
    study = optuna.load_study(study_name="tiny", storage=storage)
    trials = study.get_trials()
    assert len(trials) == 40 and {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE,
                                                                optuna.trial.TrialState.PRUNED}
    complete = {t.number: t.user_attrs["genome_id"] for t in trials
                if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(set(complete.values())) == len(complete) <= 24
    for t in trials:
        if t.state == optuna.trial.TrialState.PRUNED:
            assert complete[t.user_attrs["duplicate_of"]] == t.user_attrs["genome_id"]
            assert t.number > t.user_attrs["duplicate_of"]
        # constraints where samplers and the dashboard read them
        (violation,) = t.system_attrs["constraints"]
        assert (violation <= 0) == archive[t.user_attrs["genome_id"]]["feasible"]
        genes = t.user_attrs["genes"]
        if t.params["s1.depth"] == 1:  # block 1 of stage 1 is inactive: canonical values
            assert set(t.user_attrs["inactive"]) == {"s1.b1.kernel"}
            assert genes["s1.b1.kernel"] == 3
        else:
            assert genes == t.params
    best = [t.user_attrs["genome_id"] for t in study.best_trials]  # Optuna's: feasible only
    assert best and len(best) == len(set(best))
    assert all(archive[b]["feasible"] for b in best)
