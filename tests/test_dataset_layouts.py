"""Each published layout loads exactly what its files say (coordinates made 0-based)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
import scipy.io
from dataset_fixtures import (
    LayoutFixture,
    make_cat2000,
    make_folder_dataset,
    make_mit1003,
    make_salicon,
    write_image,
)
from hypothesis import given, settings
from PIL import Image

from salnas.datasets import check_source, open_source, prepare
from salnas.datasets.base import SaliencySource
from salnas.datasets.folder import parse_fixation_csv
from salnas.errors import DatasetError


def assert_loads_exactly(fx: LayoutFixture) -> SaliencySource:
    source = open_source(fx.spec)
    assert source.kind == fx.kind
    assert source.stems() == fx.stems == sorted(fx.stems)
    for stem in fx.stems:
        image = source.load_image(stem)
        assert image.dtype == np.uint8 and image.shape == (*fx.sizes[stem], 3)
        assert source.image_size(stem) == fx.sizes[stem]
        fix = source.load_fixations(stem)
        x, y, subject = fx.fixations[stem]
        np.testing.assert_allclose(fix.x, x, atol=1e-9, err_msg=stem)
        np.testing.assert_allclose(fix.y, y, atol=1e-9, err_msg=stem)
        np.testing.assert_array_equal(fix.subject, subject, err_msg=stem)
        gt_map = source.load_map(stem)
        if stem in fx.maps:
            assert source.map_path(stem) == fx.map_files[stem]
            assert gt_map is not None and gt_map.shape == fx.sizes[stem]
            # PNG maps come back exactly, JPEG ones within compression noise
            np.testing.assert_allclose(gt_map, fx.maps[stem], atol=3)
        else:
            assert gt_map is None
    report = check_source(source, progress=False)
    assert report.problems == []
    assert report.n_images == len(fx.stems)
    assert report.fixations_outside == fx.n_outside
    assert report.images_with_outside == fx.images_with_outside
    assert report.has_maps == bool(fx.maps)
    assert sum(report.sizes.values()) == len(fx.stems)
    return source


# ------------------------------------------------------------------------------ folder


def test_folder_layout_loads_exact_values_with_integer_subjects(tmp_path):
    fx = make_folder_dataset(tmp_path / "d", n=6, n_outside=3)
    source = assert_loads_exactly(fx)
    stem = fx.stems[0]
    with Image.open(fx.images[stem]) as img:  # PNG: the exact pixels
        assert np.array_equal(source.load_image(stem), np.asarray(img.convert("RGB")))
    assert set(source.load_fixations(stem).subjects.tolist()) == {0, 1, 2}
    assert source.default_sigma_px is None  # 3% of the longer side


def test_folder_layout_subject_labels_and_no_subject_column(tmp_path):
    labelled = make_folder_dataset(tmp_path / "labels", n=3, subjects="labels")
    assert_loads_exactly(labelled)  # obs-a, obs-b, obs-c -> 0, 1, 2 in sorted order
    anonymous = make_folder_dataset(tmp_path / "anon", n=3, subjects=None)
    source = assert_loads_exactly(anonymous)
    assert source.load_fixations(anonymous.stems[0]).subjects.tolist() == [0]


def test_folder_layout_csv_details(tmp_path):
    fx = make_folder_dataset(tmp_path / "d", n=3)
    csv = fx.fixation_files[fx.stems[1]]
    # BOM, upper-case padded header, quoted fields, blank lines, unknown columns, CRLF
    csv.write_bytes(
        b'\xef\xbb\xbf"X", Y ,Subject,note\r\n1.5,2,7,"a, b"\r\n\r\n0,0,7,\r\n-1e0,3,s,x\r\n'
    )
    fix = open_source(fx.spec).load_fixations(fx.stems[1])
    assert fix.x.tolist() == [1.5, 0.0, -1.0] and fix.y.tolist() == [2.0, 0.0, 3.0]
    assert fix.subject.tolist() == [0, 0, 1]  # mixed labels: sorted '7' < 's'


def test_folder_layout_with_8_and_16_bit_maps(tmp_path):
    for bits in (8, 16):
        fx = make_folder_dataset(tmp_path / f"m{bits}", n=3, with_maps=True, map_bits=bits)
        source = assert_loads_exactly(fx)
        m = source.load_map(fx.stems[0])
        assert m.max() == fx.maps[fx.stems[0]].max() > (255 if bits == 16 else 200)


def test_folder_layout_jpeg_images_and_missing_folders(tmp_path):
    assert_loads_exactly(make_folder_dataset(tmp_path / "jpg", n=3, image_suffix=".jpg"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="images"):
        open_source(f"folder:{tmp_path / 'empty'}").stems()


# ----------------------------------------------------------------------------- SALICON


def test_salicon_layout_one_based_fixations_observers_and_maps(tmp_path):
    fx = make_salicon(tmp_path / "salicon", n_train=3, n_val=2, n_test=2, n_outside=2)
    source = assert_loads_exactly(fx)
    # test images have no fixations: not part of the dataset, not a problem
    assert not any("test" in s for s in source.stems())
    assert len(list((tmp_path / "salicon" / "images" / "test").iterdir())) == 2
    fix = source.load_fixations(fx.stems[1])
    # observer 1 wrote one fixation at 1-based (10, 5); observer 2 none
    assert (fix.x[fix.subject == 1].tolist(), fix.y[fix.subject == 1].tolist()) == ([9.0], [4.0])
    assert fix.subjects.tolist() == [0, 1]
    assert source.default_sigma_px == 19.0


def test_salicon_without_maps_and_single_observer(tmp_path):
    fx = make_salicon(tmp_path / "s", n_train=2, n_val=1, n_test=0, with_maps=False)
    stem = fx.stems[0]
    # a file with a single observer (gaze squeezed to one struct) and one fixation
    gaze = np.zeros((1, 1), dtype=[("location", "O"), ("timestamp", "O"), ("fixations", "O")])
    gaze[0, 0]["location"] = np.ones((2, 2))
    gaze[0, 0]["timestamp"] = np.ones((2, 1))
    gaze[0, 0]["fixations"] = np.asarray([[3.0, 7.0]])
    h, w = fx.sizes[stem]
    scipy.io.savemat(fx.fixation_files[stem], {"image": stem, "resolution": [[h, w]], "gaze": gaze})
    fx.fixations[stem] = (np.asarray([2.0]), np.asarray([6.0]), np.asarray([0]))
    assert_loads_exactly(fx)


# ----------------------------------------------------------------------------- MIT1003


def test_mit1003_layout_points_from_fixpts_jpeg_and_fixmap(tmp_path):
    fx = make_mit1003(tmp_path / "mit", n=4)
    source = assert_loads_exactly(fx)
    assert fx.images[fx.stems[-1]].suffix == ".jpg" and fx.images[fx.stems[0]].suffix == ".jpeg"
    for stem in fx.stems:  # no observer ids in this layout
        assert source.load_fixations(stem).subjects.tolist() == [0]
    assert "subject 0" in source.coordinate_note


def test_mit1003_without_fixmaps_has_no_maps(tmp_path):
    fx = make_mit1003(tmp_path / "mit", n=3, with_maps=False)
    assert_loads_exactly(fx)


# ----------------------------------------------------------------------------- CAT2000


def test_cat2000_layout_category_stems_and_fixation_matrices(tmp_path):
    fx = make_cat2000(tmp_path / "cat", categories=("Action", "Art"), per_category=2)
    source = assert_loads_exactly(fx)
    assert source.stems() == ["Action_001", "Action_002", "Art_001", "Art_002"]
    assert all("/" not in s and "\\" not in s for s in source.stems())
    assert "subject 0" in source.coordinate_note


def test_cat2000_accepts_another_single_variable_name(tmp_path):
    fx = make_cat2000(tmp_path / "cat", categories=("Social",), per_category=2,
                      with_maps=False, variable="fixationLocations")
    assert_loads_exactly(fx)


# ------------------------------------------------------------------------------ shared


@pytest.mark.parametrize("maker", [make_folder_dataset, make_salicon, make_mit1003, make_cat2000])
def test_every_layout_prepares_into_the_cache(tmp_path, maker):
    fx = maker(tmp_path / "data")
    prepared = prepare(open_source(fx.spec), (12, 16), cache_dir=tmp_path / "cache", progress=False)
    assert prepared.stems == fx.stems
    assert prepared.images.shape == (len(fx.stems), 12, 16, 3)
    np.testing.assert_allclose(prepared.density.sum(axis=(1, 2)), 1.0, rtol=1e-4)
    assert [tuple(s) for s in prepared.orig_sizes.tolist()] == [fx.sizes[s] for s in fx.stems]


def test_extra_files_are_ignored(tmp_path):
    fx = make_folder_dataset(tmp_path / "d", n=3)
    (fx.root / "images" / ".hidden.png").write_bytes(b"x")
    (fx.root / "images" / "notes.txt").write_text("hello")
    (fx.root / "fixations" / "README.md").write_text("hello")
    (fx.root / "images" / "sub").mkdir()
    write_image(fx.root / "images" / "sub" / "nested.png", (8, 8), 0)
    assert_loads_exactly(fx)


coordinates = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(coordinates, coordinates, st.integers(-5, 5)), min_size=1, max_size=20))
def test_folder_csv_round_trips_exactly(rows):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.csv"
        path.write_text("y,subject,x\n" + "".join(f"{y!r},{s},{x!r}\n" for x, y, s in rows))
        fix = parse_fixation_csv(path)
    assert fix.x.tolist() == [r[0] for r in rows]
    assert fix.y.tolist() == [r[1] for r in rows]
    assert fix.subject.tolist() == [r[2] for r in rows]


# --------------------------------------------------------------------------- links outside
def test_every_layout_refuses_files_that_link_outside_its_folder(tmp_path):
    # a file layout (MIT1003): the image links to a picture elsewhere on the disk
    fx = make_mit1003(tmp_path / "mit", n=3, with_maps=False)
    elsewhere = tmp_path / "elsewhere.jpeg"
    write_image(elsewhere, fx.sizes[fx.stems[0]], 7)
    fx.images[fx.stems[0]].unlink()
    fx.images[fx.stems[0]].symlink_to(elsewhere)
    source = open_source(fx.spec)
    assert fx.stems[0] not in source.stems()
    problems = check_source(source, progress=False).problems
    assert any(p.startswith(f"{fx.images[fx.stems[0]]}: links to a file outside the dataset")
               for p in problems), problems

    # OSIE: a stimulus linking outside stimuli's dataset
    osie = tmp_path / "osie"
    (osie / "stimuli").mkdir(parents=True)
    for stem in ("1001", "1002"):
        write_image(osie / "stimuli" / f"{stem}.jpg", (12, 16), int(stem))
    (osie / "stimuli" / "1002.jpg").unlink()
    (osie / "stimuli" / "1002.jpg").symlink_to(elsewhere)
    subject = {"fix_x": np.array([3.0, 4.0]), "fix_y": np.array([2.0, 5.0])}
    records = np.array([(f"{s}.jpg", np.array([subject], dtype=object)) for s in ("1001", "1002")],
                       dtype=[("img", object), ("subjects", object)])
    scipy.io.savemat(osie / "fixations.mat", {"fixations": records})
    source = open_source(f"osie:{osie}")
    assert source.stems() == ["1001"]
    assert any("1002.jpg: links to a file outside the dataset folder" in p
               for p in source.structural_problems())
