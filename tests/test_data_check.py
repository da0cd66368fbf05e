"""``check_source`` names the file of every problem; ``prepare`` stops before caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from dataset_fixtures import (
    make_cat2000,
    make_folder_dataset,
    make_mit1003,
    make_salicon,
    truncate,
    write_garbage,
    write_gray,
    write_image,
)

from salnas.datasets import check_source, open_source, prepare
from salnas.datasets.base import ProblemError, read_mat
from salnas.datasets.folder import parse_fixation_csv
from salnas.errors import DatasetError


def problems_of(spec: str) -> list[str]:
    return check_source(open_source(spec), progress=False).problems


def assert_problem(problems: list[str], path: Path, *words: str) -> None:
    """One problem names ``path`` (as its first word) and contains every one of ``words``."""
    hits = [p for p in problems if p.startswith(f"{path}:")]
    assert hits, f"no problem names {path}; got:\n" + "\n".join(problems)
    assert any(all(w.lower() in p.lower() for w in words) for p in hits), (path, words, hits)


# ------------------------------------------------------------------------------ folder


def test_folder_check_reports_every_problem_naming_its_file(tmp_path):
    fx = make_folder_dataset(tmp_path / "d", n=9, with_maps=True, image_suffix=".jpg")
    s = fx.stems
    write_garbage(fx.images[s[0]])  # unreadable image
    truncate(fx.images[s[1]])  # a JPEG cut in half
    fx.fixation_files[s[2]].unlink()  # image without fixations
    fx.images[s[3]].unlink()  # fixations without image
    fx.fixation_files[s[4]].write_text("a,b\n1,2\n")  # bad header
    fx.fixation_files[s[5]].write_text("x,y,subject\n1,2,0\n3,oops,1\n")  # non-numeric
    write_gray(fx.map_files[s[6]], np.zeros((7, 9)))  # map of the wrong size
    fx.fixation_files[s[7]].write_text("")  # empty file
    fx.map_files[s[8]].unlink()  # image without map while the others have one
    problems = problems_of(fx.spec)

    assert_problem(problems, fx.images[s[0]], "unreadable")
    assert_problem(problems, fx.images[s[1]], "truncated")
    assert_problem(problems, fx.images[s[2]], "no fixation file")
    assert_problem(problems, fx.fixation_files[s[3]], "no image")
    assert_problem(problems, fx.map_files[s[3]], "map has no image")
    assert_problem(problems, fx.fixation_files[s[4]], "header", "'x'", "'y'")
    assert_problem(problems, fx.fixation_files[s[5]], "line 3", "'oops'", "not a number")
    assert_problem(problems, fx.map_files[s[6]], "9x7", f"{fx.sizes[s[6]][1]}x{fx.sizes[s[6]][0]}")
    assert_problem(problems, fx.fixation_files[s[7]], "empty")
    assert_problem(problems, fx.images[s[8]], "no ground-truth map")
    assert len(problems) == 10, "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", ("empty",)),
        ("\n  \n", ("empty",)),
        ("12.5,3\n4,5\n", ("line 1", "header", "lacks")),  # no header line
        ("x;y\n1;2\n", ("comma-separated",)),
        ("x,x,y\n1,2,3\n", ("named twice",)),
        ("x,y\n", ("no fixation rows",)),
        ("x,y\n1,2\n3\n", ("line 3", "1 fields", "header has 2")),
        ("x,y\n1,2,3\n", ("line 2", "3 fields")),
        ("x,y\n1,\n", ("line 2", "y value", "not a number")),
        ("x,y\nnan,2\n", ("line 2", "not finite")),
        ("x,y\n1,inf\n", ("line 2", "not finite")),
        ("x,y,subject\n1,2,\n", ("line 2", "empty subject")),
        ("\n\nx,y\n1,2\nfoo,2\n", ("line 5", "'foo'")),  # line numbers count blank lines
    ],
)
def test_folder_csv_problems_name_file_and_line(tmp_path, text, words):
    path = tmp_path / "fix.csv"
    path.write_text(text)
    with pytest.raises(ProblemError) as info:
        parse_fixation_csv(path)
    assert str(info.value).startswith(f"{path}:")
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_folder_binary_fixation_file_and_duplicate_stems(tmp_path):
    fx = make_folder_dataset(tmp_path / "d", n=3)
    fx.fixation_files[fx.stems[0]].write_bytes(b"\xff\xfe\x00garbage\x00\x81")
    twin = fx.images[fx.stems[1]].with_suffix(".jpg")
    write_image(twin, fx.sizes[fx.stems[1]], 1)
    problems = problems_of(fx.spec)
    assert_problem(problems, fx.fixation_files[fx.stems[0]], "unreadable fixation file")
    # files are scanned in sorted order: img_01.jpg is kept, img_01.png is the duplicate
    assert_problem(problems, fx.images[fx.stems[1]], "same stem", twin.name)
    assert len(problems) == 2, "\n".join(problems)


def test_prepare_raises_naming_the_file_before_writing_any_cache(tmp_path):
    fx = make_folder_dataset(tmp_path / "d", n=4)
    fx.fixation_files[fx.stems[2]].write_text("x,y\n1,two\n")
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError) as info:
        prepare(open_source(fx.spec), (12, 16), cache_dir=cache, progress=False)
    assert str(fx.fixation_files[fx.stems[2]]) in str(info.value)
    assert any(str(fx.fixation_files[fx.stems[2]]) in p for p in info.value.problems)
    assert not cache.exists() or not any(cache.rglob("*"))


def test_prepare_stops_on_a_structural_problem_too(tmp_path):
    fx = make_mit1003(tmp_path / "mit", n=3)
    fx.images[fx.stems[0]].unlink()
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="fixation points have no image"):
        prepare(open_source(fx.spec), (12, 16), cache_dir=cache, progress=False)
    assert not cache.exists() or not any(cache.rglob("*"))


# ----------------------------------------------------------------------------- SALICON


def test_salicon_check_problems(tmp_path):
    fx = make_salicon(tmp_path / "s", n_train=5, n_val=1, n_test=2)
    s = fx.stems  # 5 train stems, then 1 val stem
    fx.images[s[0]].unlink()  # fixation file without image
    fx.fixation_files[s[1]].unlink()  # train image without fixations
    write_garbage(fx.fixation_files[s[2]])  # unreadable .mat
    h, w = fx.sizes[s[3]]  # resolution disagrees with the image
    mat = scipy.io.loadmat(fx.fixation_files[s[3]])
    mat["resolution"] = np.asarray([[h + 1, w]], float)
    scipy.io.savemat(fx.fixation_files[s[3]], {k: v for k, v in mat.items() if k[0] != "_"})
    scipy.io.savemat(fx.fixation_files[s[4]], {"image": s[4], "fixations": np.ones((2, 2))})
    problems = problems_of(fx.spec)
    assert_problem(problems, fx.fixation_files[s[0]], "no image")
    assert_problem(problems, fx.map_files[s[0]], "map has no image")
    assert_problem(problems, fx.images[s[1]], "no fixation file")
    assert_problem(problems, fx.fixation_files[s[2]], "unreadable")
    assert_problem(problems, fx.fixation_files[s[3]], "resolution", f"{h + 1} {w}")
    assert_problem(problems, fx.fixation_files[s[4]], "no 'gaze'")
    # the test split has no fixations: its images are not part of the dataset, no problem
    assert not any("/images/test/" in p for p in problems)
    assert len(problems) == 6, "\n".join(problems)


# ----------------------------------------------------------------------------- MIT1003


def test_mit1003_check_problems(tmp_path):
    fx = make_mit1003(tmp_path / "m", n=5)
    s = fx.stems
    fx.fixation_files[s[0]].unlink()  # image without _fixPts
    fx.images[s[1]].unlink()  # _fixPts without image (and _fixMap without image)
    truncate(fx.fixation_files[s[2]])  # truncated points image
    write_gray(fx.fixation_files[s[3]], np.zeros((5, 5)))  # points of another size
    truncate(fx.images[s[4]], 0.4)
    problems = problems_of(fx.spec)
    assert_problem(problems, fx.images[s[0]], "no fixation points", "_fixPts")
    assert_problem(problems, fx.fixation_files[s[1]], "no image")
    assert_problem(problems, fx.map_files[s[1]], "map has no image")
    assert_problem(problems, fx.fixation_files[s[2]], "truncated")
    assert_problem(problems, fx.fixation_files[s[3]], "5x5")
    assert_problem(problems, fx.images[s[4]], "truncated")
    assert len(problems) == 6, "\n".join(problems)


# ----------------------------------------------------------------------------- CAT2000


def test_cat2000_check_problems(tmp_path):
    fx = make_cat2000(tmp_path / "c", categories=("Action", "Art", "Fractal"), per_category=2)
    s = fx.stems
    fx.images[s[0]].unlink()  # .mat without image
    fx.fixation_files[s[1]].unlink()  # image without .mat
    scipy.io.savemat(fx.fixation_files[s[2]], {"fixLocs": np.zeros((3, 4))})  # wrong size
    scipy.io.savemat(fx.fixation_files[s[3]], {"a": np.zeros(3), "b": np.zeros(3)})  # no fixLocs
    write_garbage(fx.images[s[4]])
    write_gray(fx.map_files[s[5]], np.zeros((3, 3)))  # map of another size
    problems = problems_of(fx.spec)
    assert_problem(problems, fx.fixation_files[s[0]], "no image", "Stimuli/")
    assert_problem(problems, fx.map_files[s[0]], "map has no image")
    assert_problem(problems, fx.images[s[1]], "no fixation locations", "FIXATIONLOCS/")
    assert_problem(problems, fx.fixation_files[s[2]], "4x3")
    assert_problem(problems, fx.fixation_files[s[3]], "no variable 'fixLocs'", "a, b")
    assert_problem(problems, fx.images[s[4]], "unreadable")
    assert_problem(problems, fx.map_files[s[5]], "3x3")
    assert len(problems) == 7, "\n".join(problems)


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.95])
def test_truncated_mat_files_are_problems_naming_the_file(tmp_path, compressed, fraction):
    path = tmp_path / "001.mat"
    locs = np.zeros((24, 32), np.uint8)
    locs[::3, ::5] = 1
    scipy.io.savemat(path, {"fixLocs": locs}, do_compression=compressed)
    truncate(path, fraction)
    with pytest.raises(ProblemError, match=f"^{path}: unreadable or truncated MATLAB file"):
        read_mat(path)


def test_folder_subject_labels_that_overflow_are_labels(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("x,y,subject\n1,2,99999999999999999999999\n3,4,7\n")
    assert parse_fixation_csv(path).subject.tolist() == [1, 0]  # sorted as text


# ------------------------------------------------------------------------------ reliability
def test_an_all_zero_ground_truth_map_is_a_problem_naming_its_file(tmp_path):
    fx = make_folder_dataset(tmp_path / "d", n=4, with_maps=True)
    s = fx.stems
    write_gray(fx.map_files[s[1]], np.zeros(fx.sizes[s[1]]))
    problems = problems_of(fx.spec)
    assert_problem(problems, fx.map_files[s[1]], "all zero")
    assert len(problems) == 1


def test_files_linked_from_outside_the_dataset_are_refused_unread(tmp_path):
    secret = tmp_path / "outside" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    fx = make_folder_dataset(tmp_path / "d", n=4)
    s = fx.stems
    fx.fixation_files[s[0]].unlink()
    fx.fixation_files[s[0]].symlink_to(secret)
    problems = problems_of(fx.spec)
    assert_problem(problems, fx.fixation_files[s[0]], "outside the dataset folder", "refused")
    assert not any("root:x" in p for p in problems), problems
    assert s[0] not in open_source(fx.spec).stems()
    # a link that stays inside the dataset is fine
    inside = fx.root / "fixations" / "copy.csv"
    inside.write_text(fx.fixation_files[s[1]].read_text())
    fx.fixation_files[s[2]].unlink()
    fx.fixation_files[s[2]].symlink_to(inside)
    assert s[2] in open_source(fx.spec).stems()


def test_problem_messages_never_echo_a_files_lines(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n1,2\n")
    with pytest.raises(ProblemError, match="lacks an 'x' and a 'y' column") as err:
        parse_fixation_csv(path)
    assert "root" not in str(err.value).replace(str(tmp_path), "")
    path.write_text("x,y\n" + "9" * 200 + "z,3\n")
    with pytest.raises(ProblemError, match="is not a number") as err:
        parse_fixation_csv(path)
    assert len(str(err.value)) < len(str(path)) + 100


def test_data_check_prints_problems_literally(tmp_path):
    # rich markup and emoji codes in a path are printed as they are
    from typer.testing import CliRunner

    from salnas.cli import app

    fx = make_folder_dataset(tmp_path / "a[/x]:x:0", n=3)
    fx.fixation_files[fx.stems[0]].write_text("")
    result = CliRunner().invoke(app, ["data", "check", fx.spec])
    assert result.exit_code == 1, result.output
    flat = "".join(result.output.split())
    assert f"{fx.fixation_files[fx.stems[0]]}:emptyfixationfile" in flat, result.output
    assert "❌" not in result.output and "\r" not in result.output  # no emoji, no progress bar
