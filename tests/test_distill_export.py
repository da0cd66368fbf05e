"""Peers and exports: CSNet size, TorchScript/ONNX equal to PyTorch, load_any_model."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from salnas.config import config_from_dict
from salnas.distill.export import export_onnx, export_torchscript, load_any_model
from salnas.distill.peers import CSNet, save_peer
from salnas.errors import SalnasError
from salnas.supernet.model import Supernet
from salnas.supernet.space import SearchSpace
from salnas.supernet.subnet import relative_difference, save_subnet

SPACE = {"resolutions": [[32, 64], [64, 96]],
         "decoder_widths": [[16, 24], [16, 24], [8, 16], [8, 16]]}
HAS_ORT = importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_csnet_peer_has_about_100k_parameters():
    net = CSNet()
    n = sum(p.numel() for p in net.parameters())
    assert 80_000 <= n <= 120_000, n
    out = net(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 1, 64, 96) and torch.isfinite(out).all()


def _models():
    torch.manual_seed(0)
    space = SearchSpace(SPACE)
    supernet = Supernet(space, pretrained=False)
    # max: dynamic conv in the decoder (batch-1 export); min: depthwise-separable only.
    return space, {"max": (supernet.extract(space.max_genome()).eval(), space.max_genome()),
                   "min": (supernet.extract(space.min_genome()).eval(), space.min_genome())}


@pytest.mark.parametrize("name", ["max", "min", "csnet"])
def test_exports_equal_the_pytorch_model(name, tmp_path):
    if name == "csnet":
        torch.manual_seed(0)
        model, res, batch = CSNet().eval(), (64, 96), 3
    else:
        _, models = _models()
        model, genome = models[name]
        res, batch = genome.resolution, 1 if name == "max" else 3
    x = torch.rand(batch, 3, *res)
    with torch.no_grad():
        want = model(x)
    assert export_torchscript(model, res, tmp_path / "m.ts", arch=name) <= 1e-4
    ts, ts_res = load_any_model(tmp_path / "m.ts")
    assert ts_res == tuple(res)
    with torch.no_grad():
        assert relative_difference(ts(x), want) <= 1e-5
    if not HAS_ORT:
        pytest.skip("onnx/onnxruntime not installed")
    assert export_onnx(model, res, tmp_path / "m.onnx", arch=name) <= 1e-4
    onnx_model, onnx_res = load_any_model(tmp_path / "m.onnx")
    assert onnx_res == tuple(res)
    assert relative_difference(onnx_model(x), want) <= 1e-4  # onnxruntime vs torch


def test_load_any_model_reads_model_files(tmp_path):
    _, models = _models()
    net, genome = models["min"]
    config = config_from_dict({"supernet": {"space": SPACE}})
    save_subnet(tmp_path / "a.pt", net, genome, config)
    peer = CSNet().eval()
    save_peer(tmp_path / "b.pt", peer, (64, 96), config)
    x = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        a, res_a = load_any_model(tmp_path / "a.pt")
        assert res_a == genome.resolution and torch.equal(a(x), net(x))
        b, res_b = load_any_model(tmp_path / "b.pt")
        assert res_b == (64, 96) and torch.equal(b(x), peer(x))
    (tmp_path / "c.pt").write_bytes(b"junk")
    with pytest.raises(SalnasError, match="not a readable model file"):
        load_any_model(tmp_path / "c.pt")
    with pytest.raises(SalnasError, match="does not exist"):
        load_any_model(tmp_path / "none.ts")
    (tmp_path / "d.h5").write_bytes(b"")
    with pytest.raises(SalnasError, match="unknown model type"):
        load_any_model(tmp_path / "d.h5")


def test_predictions_of_every_format_are_densities_at_the_image_size(tmp_path):
    """predict_image renormalises after the bilinear resize: a density summing to 1 (it used
    to sum to the area ratio), the same through the .pt, .ts and .onnx files."""
    import numpy as np

    from salnas.supernet.subnet import predict_image

    torch.manual_seed(0)
    peer = CSNet().eval()
    image = np.random.default_rng(0).integers(0, 256, (150, 110, 3), dtype=np.uint8)
    want = predict_image(peer, image, (64, 96))
    assert want.shape == (150, 110) and float(want.sum(dtype=np.float64)) == pytest.approx(1)
    paths = [tmp_path / "m.ts"]
    export_torchscript(peer, (64, 96), paths[0])
    if HAS_ORT:
        paths.append(tmp_path / "m.onnx")
        export_onnx(peer, (64, 96), paths[1])
    for path in paths:
        model, res = load_any_model(path)
        got = predict_image(model, image, res)
        assert float(got.sum(dtype=np.float64)) == pytest.approx(1)
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-9)
