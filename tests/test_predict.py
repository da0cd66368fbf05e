"""Saliency for plain images: `salnas predict --images`, densities, overlays, the colour map."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image
from spaces import NARROW_SPACE
from typer.testing import CliRunner

from salnas.cli import app
from salnas.colormap import VIRIDIS, colorize, heatmap_overlay
from salnas.config import config_from_dict
from salnas.datasets import open_source
from salnas.distill.export import export_onnx, export_torchscript
from salnas.errors import SalnasError
from salnas.supernet.model import Supernet
from salnas.supernet.space import SearchSpace
from salnas.supernet.subnet import predict_batch, predict_image, save_subnet

# A narrow space: extraction, export and prediction take well under a second.
SPACE = {**NARROW_SPACE, "resolutions": [[32, 48], [48, 64]]}
HAS_ORT = bool(importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime"))
SIZES = {"wide": (50, 90), "tall": (75, 40), "square": (64, 64)}  # (H, W), none the input size

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``{name: (model.pt, net, resolution)}``: min (no dynamic conv, free batch) and max
    (dynamic conv in the decoder: exports fixed to batch 1), with .ts and .onnx beside."""
    root = tmp_path_factory.mktemp("predict-models")
    torch.manual_seed(0)
    space = SearchSpace(SPACE)
    supernet = Supernet(space, pretrained=False)
    config = config_from_dict({"supernet": {"space": SPACE, "pretrained": False}})
    out = {}
    for name, genome in (("min", space.min_genome()), ("max", space.max_genome())):
        net = supernet.extract(genome).eval()
        with torch.no_grad():  # untrained read-outs give flat maps: give them some structure
            for param in net.parameters():
                param.add_(0.05 * torch.randn_like(param))
        path = root / f"{name}.pt"
        save_subnet(path, net, genome, config)
        export_torchscript(net, genome.resolution, root / f"{name}.ts", arch=name)
        if HAS_ORT:
            export_onnx(net, genome.resolution, root / f"{name}.onnx", arch=name)
        out[name] = (path, net, tuple(genome.resolution))
    return out


@pytest.fixture
def photos(tmp_path):
    """A folder of PNG and JPEG images of three sizes, with no fixations, and a stray file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for (stem, (h, w)), suffix in zip(SIZES.items(), (".png", ".jpg", ".JPEG"), strict=True):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder /
                                                                               f"{stem}{suffix}")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _predict(*args: str) -> None:
    result = runner.invoke(app, ["predict", *args, "--no-progress"])
    assert result.exit_code == 0, (result.output, result.exception)


def test_predict_image_is_a_density_at_the_image_size(models):
    _, net, res = models["min"]
    image = np.random.default_rng(1).integers(0, 256, (123, 77, 3), dtype=np.uint8)
    density = predict_image(net, image, res)
    assert density.shape == (123, 77) and density.dtype == np.float32
    assert (density >= 0).all() and float(density.sum(dtype=np.float64)) == pytest.approx(1,
                                                                                         abs=1e-5)
    # a batch gives each image its own size and the same maps as one at a time
    other = np.random.default_rng(2).integers(0, 256, (40, 200, 3), dtype=np.uint8)
    batch = predict_batch(net, [image, other], res)
    assert [m.shape for m in batch] == [(123, 77), (40, 200)]
    np.testing.assert_allclose(batch[0], density, rtol=1e-4, atol=1e-9)
    assert predict_batch(net, [], res) == []


@pytest.mark.parametrize("suffix", [".pt", ".ts", ".onnx"])
@pytest.mark.parametrize("name", ["min", "max"])
def test_predict_images_for_every_model_format(models, photos, tmp_path, name, suffix):
    if suffix == ".onnx" and not HAS_ORT:
        pytest.skip("onnx/onnxruntime not installed")
    pt, net, res = models[name]
    out = tmp_path / "maps"
    _predict(str(pt.with_suffix(suffix)), "--images", str(photos), "--out", str(out),
             "--format", "npy", "--batch-size", "2")
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.npy" for s in SIZES)
    for stem, (h, w) in SIZES.items():
        m = np.load(out / f"{stem}.npy")
        assert m.shape == (h, w) and (m >= 0).all()
        assert float(m.sum(dtype=np.float64)) == pytest.approx(1, abs=1e-5)
        image = np.asarray(Image.open(next(photos.glob(f"{stem}.*"))).convert("RGB"))
        np.testing.assert_allclose(m, predict_image(net, image, res), rtol=2e-3, atol=1e-7)


def test_png_maps_overlays_and_globs(models, photos, tmp_path):
    pt = models["min"][0]
    out = tmp_path / "maps"
    _predict(str(pt), "--images", str(photos), "--out", str(out), "--overlay")
    for stem, (h, w) in SIZES.items():
        with Image.open(out / f"{stem}.png") as img:
            assert img.mode.startswith("I") and img.size == (w, h)  # 16-bit grayscale
            assert np.asarray(img).max() == 65535
        with Image.open(out / "overlays" / f"{stem}.png") as img:
            assert img.mode == "RGB" and img.size == (w, h)
    # a glob picks its own files only (the JPEGs here); overlays stay out of the maps folder
    out2 = tmp_path / "jpegs"
    _predict(str(pt), "--images", str(photos / "*.[jJ][pP]*"), "--out", str(out2))
    assert sorted(p.name for p in out2.iterdir()) == ["square.png", "tall.png"]


def test_evaluate_reads_the_predicted_folder(models, tmp_path):
    """Plain-image predictions of a dataset's images score with `salnas evaluate`."""
    source = open_source("synthetic:8")
    photos = tmp_path / "photos"
    photos.mkdir()
    for stem in source.stems():
        Image.fromarray(source.load_image(stem)).save(photos / f"{stem}.png")
    for fmt in ("npy", "png"):
        out = tmp_path / fmt
        _predict(str(models["min"][0]), "--images", str(photos), "--out", str(out),
                 "--format", fmt)
        result = runner.invoke(app, ["evaluate", "--data", "synthetic:8", "--split", "all",
                                     "--predictions", str(out), "--json",
                                     str(tmp_path / f"{fmt}.json")])
        assert result.exit_code == 0, (result.output, result.exception)
        scores = json.loads((tmp_path / f"{fmt}.json").read_text())
        assert scores["n_images"] == 8 and np.isfinite(scores["CC"])


def test_predict_errors_name_the_problem(models, photos, tmp_path):
    pt = str(models["min"][0])

    def error(*args: str) -> str:
        result = runner.invoke(app, ["predict", pt, "--out", str(tmp_path / "o"), *args])
        assert result.exit_code != 0 and isinstance(result.exception, SalnasError)
        return str(result.exception)

    assert "exactly one of --images" in error()
    assert "exactly one of --images" in error("--images", str(photos), "--data", "synthetic:4")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no jpg/jpeg/png/bmp image found" in error("--images", str(empty))
    assert "no such folder or file" in error("--images", str(tmp_path / "absent"))
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert "broken.png" in error("--images", str(photos))
    (photos / "broken.png").unlink()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photos / "wide.bmp")
    assert "same stem 'wide'" in error("--images", str(photos))


# ---------------------------------------------------------------- the colour map
def test_viridis_table_matches_plotly():
    from plotly.colors import hex_to_rgb, sequential

    assert VIRIDIS.shape == (256, 3) and VIRIDIS.dtype == np.uint8
    assert [tuple(VIRIDIS[0]), tuple(VIRIDIS[-1])] == [hex_to_rgb(sequential.Viridis[0]),
                                                       hex_to_rgb(sequential.Viridis[-1])]
    anchors = np.array([hex_to_rgb(c) for c in sequential.Viridis], dtype=np.float64)
    x, t = np.linspace(0, 1, 256), np.linspace(0, 1, len(anchors))
    want = np.stack([np.interp(x, t, anchors[:, k]) for k in range(3)], 1).astype(np.uint8)
    assert np.array_equal(VIRIDIS, want)
    with pytest.raises(ValueError):
        VIRIDIS[0, 0] = 1  # read-only: nobody recolours every figure by accident


def test_colorize_and_overlay():
    m = np.array([[0.0, 1.0], [2.0, 4.0]])
    rgb = colorize(m)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == VIRIDIS[0]).all() and (rgb[1, 1] == VIRIDIS[255]).all()
    assert (colorize(10 * m + 3) == rgb).all()  # min-max: offset and scale do not matter
    assert (colorize(np.full((3, 3), 7.0)) == VIRIDIS[0]).all()  # constant: lowest colour
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    density = np.random.default_rng(1).random((10, 15))
    assert (heatmap_overlay(image, density, 0.0) == image).all()
    full = heatmap_overlay(image, density, 1.0)
    assert full.shape == image.shape and set(map(tuple, full.reshape(-1, 3))) <= set(
        map(tuple, VIRIDIS))
    half = heatmap_overlay(image, density, 0.5).astype(int)
    assert np.abs(half - (image.astype(int) + full) / 2).max() <= 1
    with pytest.raises(ValueError, match="alpha"):
        heatmap_overlay(image, density, 1.5)
