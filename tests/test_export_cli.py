"""`salnas export`: extracted subnets and peers to ONNX (run in onnxruntime) and TorchScript."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from spaces import NARROW_SPACE
from typer.testing import CliRunner

from salnas.cli import app
from salnas.config import config_from_dict
from salnas.distill.peers import CSNet, save_peer
from salnas.errors import SalnasError
from salnas.supernet.model import Supernet
from salnas.supernet.space import SearchSpace
from salnas.supernet.subnet import relative_difference, save_subnet

SPACE = {**NARROW_SPACE, "resolutions": [[32, 48], [48, 64]]}
HAS_ORT = bool(importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime"))
CONFIG = {"supernet": {"space": SPACE, "pretrained": False}, "data": {"spec": "synthetic:40"}}

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Extracted subnets (min: free batch; max: a dynamic conv, batch 1) and a CSNet peer,
    saved as `salnas supernet extract` and the distill stage save them."""
    root = tmp_path_factory.mktemp("export-models")
    torch.manual_seed(0)
    space = SearchSpace(SPACE)
    supernet = Supernet(space, pretrained=False)
    config = config_from_dict(CONFIG)
    files = {}
    for name, genome in (("min", space.min_genome()), ("max", space.max_genome())):
        net = supernet.extract(genome).eval()
        with torch.no_grad():  # untrained read-outs are flat: give the logits some structure
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        save_subnet(root / f"{name}.pt", net, genome, config, arch=genome.id)
        files[name] = (root / f"{name}.pt", net, tuple(genome.resolution), genome)
    peer = CSNet().eval()
    save_peer(root / "csnet.pt", peer, (64, 96), config, arch="peer-csnet", arm="baseline")
    files["csnet"] = (root / "csnet.pt", peer, (64, 96), None)
    return files


def _export(*args: str) -> str:
    result = runner.invoke(app, ["export", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


@pytest.mark.parametrize("name", ["min", "max", "csnet"])
def test_onnx_round_trip_in_onnxruntime(model_files, tmp_path, name):
    if not HAS_ORT:
        pytest.skip("onnx/onnxruntime not installed")
    import onnx
    import onnxruntime as ort

    path, net, (h, w), genome = model_files[name]
    out = tmp_path / "deploy" / "model.onnx"  # the folder is made
    printed = _export(str(path), "--format", "onnx", "--out", str(out))
    fixed = name == "max"  # dynamic convolution: batch fixed to 1
    assert f"input 'image' ({'1' if fixed else 'N'}, 3, {h}, {w})" in printed
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, outp.name) == ("image", "logits")
    assert inp.shape[1:] == [3, h, w]  # the output's shape is left symbolic by the exporter
    assert inp.shape[0] == (1 if fixed else "batch")
    batch = 1 if fixed else 3
    x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(1))
    (logits,) = session.run(["logits"], {"image": x.numpy()})
    with torch.no_grad():
        want = net(x)
    assert logits.shape == (batch, 1, h, w)
    assert relative_difference(torch.from_numpy(logits), want) <= 1e-4
    # the contract's density: a spatial softmax of the logits
    density = torch.softmax(torch.from_numpy(logits).flatten(1), 1)
    assert torch.allclose(density.sum(1), torch.ones(batch, dtype=density.dtype))
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    meta = json.loads(props["salnas.json"])
    assert meta["resolution"] == [h, w] and meta["batch"] == (1 if fixed else None)
    assert meta["data"]["spec"] == "synthetic:40"
    if genome is not None:
        assert meta["arch"] == genome.id and json.loads(meta["genome"]) == genome.to_dict()
    else:
        assert meta["arch"] == "peer-csnet" and meta["arm"] == "baseline"


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_export(model_files, tmp_path):
    path, net, (h, w), _ = model_files["min"]
    out = tmp_path / "model.ts"
    _export(str(path), "--format", "torchscript", "--out", str(out))
    loaded = torch.jit.load(str(out))
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        assert relative_difference(loaded(x), net(x)) <= 1e-5
    # and `salnas predict` takes it as it is
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(image_dir / "a.png")
    result = runner.invoke(app, ["predict", str(out), "--images", str(image_dir), "--out",
                                 str(tmp_path / "maps"), "--format", "npy", "--no-progress"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert np.load(tmp_path / "maps" / "a.npy").shape == (30, 40)


def test_export_errors_name_the_problem(model_files, tmp_path):
    path = str(model_files["min"][0])

    def error(*args: str) -> str:
        result = runner.invoke(app, ["export", *args])
        assert result.exit_code != 0 and isinstance(result.exception, SalnasError), result.output
        return str(result.exception)

    assert "onnx or torchscript" in error(path, "--format", "tflite", "--out",
                                          str(tmp_path / "m.tflite"))
    assert "must end in .onnx" in error(path, "--format", "onnx", "--out",
                                        str(tmp_path / "m.ts"))
    ts = tmp_path / "m.ts"
    _export(path, "--format", "ts", "--out", str(ts))  # "ts" is torchscript
    assert "already an export" in error(str(ts), "--format", "onnx", "--out",
                                        str(tmp_path / "m.onnx"))
    assert "does not exist" in error(str(tmp_path / "none.pt"), "--format", "onnx", "--out",
                                     str(tmp_path / "m.onnx"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert "junk.pt" in error(str(tmp_path / "junk.pt"), "--format", "onnx", "--out",
                              str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()
