"""Supernet, subnet extraction, BN recalibration, pretrained weights and costs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from salnas.supernet.bn import recalibrate_bn
from salnas.supernet.costs import count_params_flops, flop_analysis
from salnas.supernet.model import SalNet, Supernet
from salnas.supernet.ops import (
    Conv2dSame,
    DynamicConv2d,
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticDynamicConv2d,
    anneal_temperature,
)
from salnas.supernet.space import Genome, default_space, random_genome

RES = (64, 96)
SPACE = default_space()
GENOMES = {"max": SPACE.max_genome(), "min": SPACE.min_genome(),
           **{f"random{i}": random_genome(i) for i in range(20)}}
MIXED = Genome(**{**SPACE.max_genome().to_dict(),
                  "ops": ("conv3x3", "dwsep3x3", "dwsep5x5", "dynconv"),
                  "skips": (True, False, True, False)})
ELASTIC = (ElasticConv2d, ElasticBatchNorm2d, ElasticDynamicConv2d)


def images(n: int = 2, res: tuple[int, int] = RES, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, *res, generator=torch.Generator().manual_seed(seed))


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


@pytest.fixture(scope="module")
def net() -> Supernet:
    """From-scratch supernet whose BN stats were moved by a few train-mode forwards."""
    torch.manual_seed(0)
    model = Supernet(pretrained=False).train()
    with torch.no_grad():
        for i, g in enumerate([SPACE.max_genome(), SPACE.min_genome(), random_genome(100)]):
            model.set_active(g)
            model(images(seed=10 + i))
    return model.eval()


@pytest.mark.parametrize("name", [*GENOMES, "mixed"])
def test_extracted_subnet_equals_supernet(net: Supernet, name: str) -> None:
    genome = GENOMES.get(name, MIXED)
    x = images(seed=1)
    net.set_active(SPACE.max_genome())
    sub = net.extract(genome)
    assert net.genome == SPACE.max_genome()  # extract leaves the active subnet alone
    net.set_active(genome)
    with torch.no_grad():
        y, z = net(x), sub.eval()(x)
    assert y.shape == z.shape == (2, 1, *RES) and torch.isfinite(y).all()
    assert rel_diff(y, z) <= 1e-4
    assert not any(isinstance(m, ELASTIC) for m in sub.modules())
    assert type(sub) is SalNet and sub.genome == genome
    assert [len(s) for s in sub.encoder.stages] == list(genome.depths)


def test_odd_resolution_and_logit_output(net: Supernet) -> None:
    net.set_active(random_genome(7))
    x = images(res=(40, 56))  # not a multiple of 32: strided convs pad like TF "SAME"
    with torch.no_grad():
        y = net(x)
        assert rel_diff(y, net.extract().eval()(x)) <= 1e-4
    assert y.shape == (2, 1, 40, 56)
    density = y.flatten(1).softmax(1).view_as(y)  # what the losses do with the logits
    assert torch.allclose(density.sum((2, 3)), torch.ones(2, 1))


def test_plain_modules_of_extracted_subnet(net: Supernet) -> None:
    sub = net.extract(MIXED)
    kinds = {type(m) for m in sub.modules()}
    assert {nn.Conv2d, Conv2dSame, nn.BatchNorm2d, DynamicConv2d} <= kinds
    assert sub.readout.prior is not None and net.extract(SPACE.min_genome()).readout.prior is None
    n_sub = sum(p.numel() for p in sub.parameters())
    assert n_sub < sum(p.numel() for p in net.parameters())


def test_sort_channels_keeps_the_max_subnet() -> None:
    torch.manual_seed(1)
    model = Supernet(pretrained=False).eval()
    x = images(seed=2)
    with torch.no_grad():
        before = model(x)
        model.sort_channels()
        after = model(x)
    assert rel_diff(before, after) <= 1e-5
    block = model.encoder.stages[3][1]
    importance = block.expand_conv.weight.abs().sum((1, 2, 3))
    assert (importance[:-1] >= importance[1:]).all()


def test_kernel_transform_option() -> None:
    torch.manual_seed(2)
    plain = Supernet(pretrained=False).eval()
    kt = Supernet(pretrained=False, kernel_transform=True).eval()
    missing, unexpected = kt.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all("transforms.5to3" in k for k in missing)
    genome, x = random_genome(3), images(seed=3)
    plain.set_active(genome)
    kt.set_active(genome)
    with torch.no_grad():
        assert rel_diff(plain(x), kt(x)) <= 1e-5  # identity initialisation
        for name, p in kt.named_parameters():
            if "transforms" in name:
                p.add_(0.05 * torch.randn_like(p))
        y = kt(x)
        assert rel_diff(plain(x), y) > 1e-3
        assert rel_diff(y, kt.extract().eval()(x)) <= 1e-4


def test_dynamic_conv_matches_per_sample_convolution() -> None:
    torch.manual_seed(3)
    m = DynamicConv2d(6, 5, 3, num_kernels=4, temperature=2.0)
    x = torch.randn(3, 6, 7, 9)
    pi = m.attention(x)
    assert torch.allclose(pi.sum(1), torch.ones(3))
    expected = torch.cat([
        torch.nn.functional.conv2d(x[i:i + 1], torch.einsum("k,koihw->oihw", pi[i], m.weight),
                                   padding=1) for i in range(3)])
    assert torch.allclose(m(x), expected, atol=1e-5)
    m.temperature = 30.0
    assert m.attention(x).std() < pi.std()  # hotter softmax: flatter attention


def test_temperature_setting_and_schedule(net: Supernet) -> None:
    net.set_temperature(30.0)
    temps = {m.temperature for m in net.modules() if isinstance(m, ElasticDynamicConv2d)}
    net.set_temperature(1.0)
    assert temps == {30.0}
    assert anneal_temperature(0) == 30.0 and anneal_temperature(5) == 15.5
    assert anneal_temperature(10) == anneal_temperature(50) == 1.0


def test_recalibrate_bn_is_exact_and_deterministic(net: Supernet) -> None:
    genome = random_genome(5)
    batches = [images(seed=20), images(seed=21)]
    sub = net.extract(genome)
    before = {k: v.clone() for k, v in sub.state_dict().items() if "running" in k}
    assert recalibrate_bn(sub, batches) is sub
    after = {k: v for k, v in sub.state_dict().items() if "running" in k}
    assert not sub.training
    assert all(m.momentum == 0.1 for m in sub.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(torch.isfinite(v).all() for v in after.values())
    assert sum(not torch.allclose(before[k], after[k]) for k in after) > 0.9 * len(after)
    with torch.no_grad():  # cumulative average: the stem BN mean is the mean of batch means
        feats = [sub.encoder.stem[0]((x - sub.mean) / sub.std) for x in batches]
    expected = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    assert torch.allclose(sub.encoder.stem[1].running_mean, expected, atol=1e-5)
    again = recalibrate_bn(net.extract(genome), batches).state_dict()
    assert all(torch.equal(after[k], again[k]) for k in after)


def test_pretrained_lite0_classifies_a_cat() -> None:
    """Proof of the key mapping: Lite0's own ImageNet head on the supernet's max encoder."""
    skimage = pytest.importorskip("skimage")
    from salnas.supernet.pretrained import imagenet_classifier, lite0_key_map, lite0_state_dict

    sd = lite0_state_dict()
    keys = lite0_key_map([s.repeats for s in SPACE.stages], [s.expand for s in SPACE.stages])
    model = Supernet(SPACE, pretrained=True).eval()
    encoder_keys = {k for k in model.state_dict() if k.startswith("encoder.")}
    assert set(keys.values()) == encoder_keys
    assert set(sd) - set(keys) == {k for k in sd if k.startswith(("_conv_head", "_bn1.", "_fc"))}

    img = skimage.transform.resize(skimage.data.chelsea(), (224, 224), anti_aliasing=True)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    head = imagenet_classifier(sd)
    with torch.no_grad():
        model.set_active(SPACE.lite0_genome())
        feats = model.encode(x)[-1]
        top5 = head(feats).softmax(1).topk(5)
        model.set_active(SPACE.max_genome())  # 5x5 kernels: pretrained 3x3 + zero ring
        assert rel_diff(feats, model.encode(x)[-1]) <= 1e-5
    assert feats.shape == (1, 320, 7, 7)
    assert set(top5.indices[0].tolist()) & set(range(281, 286)), top5
    assert top5.indices[0, 0].item() in range(281, 286) and top5.values[0, 0] > 0.5


def test_params_and_flops(net: Supernet) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no op without a flop handle
        p_max, f_max = count_params_flops(net.extract(SPACE.max_genome()), RES)
        p_min, f_min = count_params_flops(net.extract(SPACE.min_genome()), RES)
        p_mix, f_mix = count_params_flops(net.extract(MIXED), RES)
    assert p_max == sum(p.numel() for p in net.extract(SPACE.max_genome()).parameters())
    assert 0 < p_min < p_mix < p_max and 0 < f_min < f_max
    assert f_mix > 0
    analysis = flop_analysis(net.extract(MIXED), RES)
    assert analysis.total() == f_mix and not analysis.unsupported_ops()


def test_flops_of_dynamic_conv_and_lite0(net: Supernet) -> None:
    m = nn.Sequential(nn.Conv2d(3, 16, 1, bias=False), DynamicConv2d(16, 32, 3, num_kernels=4))
    counts = flop_analysis(m, (8, 8)).by_operator()
    assert counts["conv"] == 3 * 16 * 64 + 32 * 16 * 9 * 64  # one aggregated conv per image
    assert counts["matmul"] == 4 * 32 * 16 * 9  # mixing the K kernels
    assert counts["linear"] == 16 * 4 + 4 * 4 and counts["mean"] == 16 * 64  # attention

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net.extract(SPACE.lite0_genome())
            self.head = nn.Sequential(nn.Conv2d(320, 1280, 1, bias=False), nn.ReLU6(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.net.encode(x)[-1])

    _, flops = count_params_flops(Classifier(), (224, 224))
    assert 0.38e9 < flops < 0.41e9  # EfficientNet-Lite0: 0.385 G multiply-adds (0.40 here)
