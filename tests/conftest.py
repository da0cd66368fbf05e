"""Shared fixtures. Real data (OSIE) is read in place from ../shared/data/osie or $SALNAS_OSIE."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
OSIE_DEFAULT = REPO.parent / "shared" / "data" / "osie"


@pytest.fixture(scope="session")
def osie_root() -> Path:
    """The OSIE folder; missing data fails under CI=true and skips elsewhere."""
    root = Path(os.environ.get("SALNAS_OSIE", OSIE_DEFAULT))
    if not (root / "fixations.mat").is_file() or not (root / "stimuli").is_dir():
        message = f"OSIE not found at {root} (set SALNAS_OSIE to its folder)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; CI needs it")
        pytest.skip(message)
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests never write into the user's ~/.cache/salnas."""
    monkeypatch.setenv("SALNAS_CACHE", str(tmp_path_factory.getbasetemp() / "salnas-cache"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Two torch threads on two shared, busy cores spin against each other: one is faster.
    Modules that train or time models use it (``pytestmark``)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
