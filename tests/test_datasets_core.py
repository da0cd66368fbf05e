import json

import numpy as np
import pytest

from salnas.config import config_from_dict
from salnas.datasets import (
    ProblemError,
    SaliencyDataset,
    check_source,
    ground_truth,
    load_split,
    make_split,
    open_source,
    prepare,
    save_split,
)
from salnas.datasets.synthetic import SIZE, SyntheticSource, generate_scene
from salnas.datasets.training import load_training_data
from salnas.errors import ConfigError, DatasetError, SalnasError


def test_unknown_kind_and_missing_path_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset kind 'nope'"):
        open_source("nope:/x")
    with pytest.raises(DatasetError, match="needs a path"):
        open_source("osie")
    with pytest.raises(DatasetError, match="does not exist"):
        open_source(f"osie:{tmp_path / 'absent'}")


def test_synthetic_is_deterministic_and_learnable_structure():
    a_img, a_map, a_fix = generate_scene(7)
    b_img, _, b_fix = generate_scene(7)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_fix.x, b_fix.x)
    assert not np.array_equal(a_img, generate_scene(8)[0])
    assert a_img.shape == (*SIZE, 3) and a_img.dtype == np.uint8
    assert a_map.sum() == pytest.approx(1.0, abs=1e-4)
    assert set(a_fix.subjects.tolist()) == set(range(15))
    # Fixations follow the generating map: it is much higher where people looked.
    at_fix = a_map[np.round(a_fix.y).astype(int), np.round(a_fix.x).astype(int)].mean()
    assert at_fix > 2 * a_map.mean()


def test_synthetic_spec_parsing():
    assert len(open_source("synthetic:12").stems()) == 12
    assert open_source("synthetic").spec == "synthetic:300"
    with pytest.raises(Exception, match="integer"):
        SyntheticSource("abc")


def test_split_is_seeded_disjoint_and_complete():
    stems = [f"{i:03d}" for i in range(50)]
    a = make_split(stems, seed=3, val=0.2, test=10)
    assert a == make_split(list(reversed(stems)), seed=3, val=0.2, test=10)
    assert a != make_split(stems, seed=4, val=0.2, test=10)
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (30, 10, 10)
    assert sorted(a["train"] + a["val"] + a["test"]) == stems
    with pytest.raises(DatasetError, match="no training images"):
        make_split(stems, 0, 25, 25)


def test_split_file_round_trip_and_stale_split(tmp_path):
    stems = [f"{i:03d}" for i in range(10)]
    split = make_split(stems, 0, 2, 2)
    save_split(tmp_path / "split.json", split, seed=0)
    assert load_split(tmp_path / "split.json", stems) == split
    assert json.loads((tmp_path / "split.json").read_text())["sizes"] == {
        "train": 6,
        "val": 2,
        "test": 2,
    }
    with pytest.raises(DatasetError, match="not in the dataset"):
        load_split(tmp_path / "split.json", stems[:5])


def test_prepare_caches_once_and_dataset_items(tmp_path):
    source = open_source("synthetic:6")
    prepared = prepare(source, (64, 96), cache_dir=tmp_path, progress=False)
    assert prepared.images.shape == (6, 64, 96, 3)
    assert np.allclose(prepared.density.sum(axis=(1, 2)), 1.0, atol=1e-4)
    assert isinstance(prepared.images, np.memmap)
    entries = list(tmp_path.iterdir())
    assert len(entries) == 1  # no temporary folder left behind
    again = prepare(source, (64, 96), cache_dir=tmp_path, progress=False)
    assert again.path == prepared.path and np.array_equal(again.fixmap, prepared.fixmap)

    ds = SaliencyDataset(prepared, prepared.stems[:4], hflip=True, seed=1)
    item = ds[0]
    assert item["image"].shape == (3, 64, 96) and float(item["image"].max()) <= 1.0
    assert item["density"].shape == (1, 64, 96) and item["fixmap"].shape == (1, 64, 96)
    flips = [bool(ds[i]["image"].equal(ds[i]["image"])) for i in range(4)]
    assert all(flips)  # deterministic per (seed, epoch, index)
    plain = SaliencyDataset(prepared, prepared.stems[:4])
    flipped = [not ds[i]["image"].equal(plain[i]["image"]) for i in range(4)]
    for i, was_flipped in enumerate(flipped):
        if was_flipped:
            assert ds[i]["image"].equal(plain[i]["image"].flip(-1))
            assert ds[i]["density"].equal(plain[i]["density"].flip(-1))


def test_osie_loads_with_one_based_coordinates_converted(osie_root):
    from scipy.io import loadmat

    source = open_source(f"osie:{osie_root}")
    stems = source.stems()
    assert len(stems) == 700 and stems[0] == "1001"
    assert source.default_sigma_px == 24.0
    fix = source.load_fixations("1001")
    raw = loadmat(osie_root / "fixations.mat", squeeze_me=True, struct_as_record=False)[
        "fixations"
    ][0]
    first = raw.subjects[0]
    assert fix.x[0] == pytest.approx(np.atleast_1d(first.fix_x)[0] - 1)
    assert fix.y[0] == pytest.approx(np.atleast_1d(first.fix_y)[0] - 1)
    assert len(fix.subjects) == 15
    assert source.image_size("1001") == (600, 800)
    split = make_split(stems, 0, *source.default_split)
    assert [len(split[k]) for k in ("train", "val", "test")] == [500, 100, 100]


def test_osie_check_reports_no_problem_on_a_sample(osie_root, tmp_path):
    """A copy of 5 OSIE images (fixations.mat keeps all 700): the other 695 are named."""
    import shutil

    (tmp_path / "stimuli").mkdir()
    for stem in ("1001", "1002", "1003", "1004", "1005"):
        shutil.copy(osie_root / "stimuli" / f"{stem}.jpg", tmp_path / "stimuli")
    shutil.copy(osie_root / "fixations.mat", tmp_path)
    report = check_source(open_source(f"osie:{tmp_path}"), progress=False)
    assert report.n_images == 5
    assert len(report.problems) == 695
    assert all("fixations.mat" in p and "no image" in p for p in report.problems)


# ------------------------------------------------------------------------------ reliability
@pytest.mark.parametrize("spec", ["synthetic:abc", "synthetic:0", "synthetic:-5"])
def test_bad_synthetic_counts_are_salnas_errors(spec):
    with pytest.raises(SalnasError, match=r"synthetic:N needs"):
        open_source(spec)


def test_problem_errors_are_value_and_salnas_errors():
    assert issubclass(ProblemError, ValueError) and issubclass(ProblemError, SalnasError)


@pytest.mark.parametrize("sigma", [float("nan"), 0.0, -2.0, float("inf"), 1e9])
def test_ground_truth_refuses_an_unusable_sigma(sigma):
    source = open_source("synthetic:4")
    with pytest.raises(ConfigError, match="sigma_px"):
        ground_truth(source, source.stems()[0], (32, 32), sigma)


def test_an_empty_val_split_stops_before_training(tmp_path):
    # A fraction that rounds to zero images passes the config, not the split.
    config = config_from_dict({"data": {"spec": "synthetic:12", "resolution": [32, 32],
                                        "val": 0.01, "test": 2}})
    with pytest.raises(DatasetError, match=r"val split of synthetic:12 is empty .*raise data\.val"):
        load_training_data(config, tmp_path, progress=False)
