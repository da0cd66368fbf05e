import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salnas.density import (
    Fixations,
    default_sigma_px,
    density_from_fixations,
    fixation_count_map,
    scaled_sigma,
)


def test_count_map_rounds_to_nearest_pixel_and_adds_duplicates():
    fix = Fixations.from_arrays([0.0, 0.4, 2.6, 2.4], [0.0, 0.2, 1.0, 1.4])
    counts = fixation_count_map(fix, (3, 4))
    assert counts[0, 0] == 2  # (0,0) and (0.4,0.2) both round to pixel (0,0)
    assert counts[1, 3] == 1 and counts[1, 2] == 1
    assert counts.sum() == 4


def test_points_off_the_image_are_dropped():
    fix = Fixations.from_arrays([-0.6, -0.4, 3.49, 3.5], [1, 1, 1, 1])
    assert fix.inside((3, 4)).tolist() == [False, True, True, False]
    assert fixation_count_map(fix, (3, 4)).sum() == 2


def test_density_sums_to_one_and_peaks_at_the_fixation():
    fix = Fixations.from_arrays([20.0], [10.0])
    d = density_from_fixations(fix, (40, 50), 3.0)
    assert d.dtype == np.float32
    assert d.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(d.argmax(), d.shape) == (10, 20)


def test_density_of_no_fixation_is_zero_and_bad_sigma_fails():
    empty = Fixations.from_arrays([], [])
    assert density_from_fixations(empty, (5, 5), 1.0).sum() == 0
    with pytest.raises(ValueError, match="sigma"):
        density_from_fixations(empty, (5, 5), 0.0)


def test_default_sigma_is_three_percent_of_the_long_side():
    assert default_sigma_px((600, 800)) == pytest.approx(24.0)
    assert scaled_sigma(24.0, (600, 800), (192, 256)) == pytest.approx((7.68, 7.68))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 79), st.floats(0, 59)), min_size=1, max_size=30))
def test_density_at_model_resolution_matches_resized_original(points):
    """The model-resolution map (rescaled points, scaled sigma) matches a resized original."""
    from salnas.datasets.prepare import resize_map

    xs, ys = zip(*points, strict=True)
    fix = Fixations.from_arrays(xs, ys)
    big = density_from_fixations(fix, (60, 80), 6.0)
    small = density_from_fixations(
        fix.rescale((60, 80), (30, 40)), (30, 40), scaled_sigma(6.0, (60, 80), (30, 40))
    )
    resized = resize_map(big, (30, 40))
    cc = np.corrcoef(small.ravel(), resized.ravel())[0, 1]
    assert cc > 0.97
