"""salnas.io: atomic torch files and their safe loader."""

from __future__ import annotations

import pytest
import torch

from salnas.errors import SalnasError
from salnas.io import load_torch_safe, save_torch_atomic


def test_round_trip_checks_the_format(tmp_path):
    path = tmp_path / "m.pt"
    save_torch_atomic(path, {"format": "fmt-a", "w": torch.arange(3)})
    payload = load_torch_safe(path, "model file", ("fmt-a", "fmt-b"))
    assert payload["format"] == "fmt-a" and torch.equal(payload["w"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind
    with pytest.raises(SalnasError, match=r"m\.pt: not a salnas model file \(format fmt-c\); "
                                          r"make one"):
        load_torch_safe(path, "model file", ("fmt-c",), missing_hint="make one")


def test_errors_name_the_file_and_what_it_should_be(tmp_path):
    with pytest.raises(SalnasError, match=r"checkpoint .*none\.pt does not exist; train one"):
        load_torch_safe(tmp_path / "none.pt", "checkpoint", missing_hint="train one")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(SalnasError, match=r"junk\.pt: not a readable checkpoint"):
        load_torch_safe(junk, "checkpoint")


def test_refuses_pickled_code(tmp_path):
    # weights_only: a payload that needs arbitrary unpickling is refused, not executed.
    path = tmp_path / "evil.pt"
    torch.save({"format": "fmt-a", "obj": SalnasError("x")}, path)
    with pytest.raises(SalnasError, match="not a readable model file"):
        load_torch_safe(path, "model file", ("fmt-a",))
