"""LPIPS (AlexNet, v0.1) against a from-the-formula re-computation, and its weight lookup.

The real weights cannot be downloaded here, so the tests write seeded random weights in the
real files' on-disk layout: torchvision's AlexNet state dict (features.* plus classifier.*)
and the lpips package's alex.pth (lin{i}.model.1.weight, non-negative).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from gaussian_splatting.lpips import Lpips, load_lpips

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LINEAR_FILE = "alex.pth"
# (in, out, kernel) of torchvision's AlexNet convolutions, by their index in ``features``.
CONVS = {0: (3, 64, 11), 3: (64, 192, 5), 6: (192, 384, 3), 8: (384, 256, 3), 10: (256, 256, 3)}


def random_weights(seed: int) -> tuple[dict, dict]:
    """(AlexNet state dict, lpips linear state dict), seeded, He-scaled so activations stay alive."""
    generator = torch.Generator().manual_seed(seed)
    alexnet = {}
    for index, (c_in, c_out, k) in CONVS.items():
        std = math.sqrt(2.0 / (c_in * k * k))
        alexnet[f"features.{index}.weight"] = torch.randn(c_out, c_in, k, k, generator=generator) * std
        alexnet[f"features.{index}.bias"] = torch.randn(c_out, generator=generator) * 0.1
    # The real file also holds the classifier; LPIPS must ignore it (kept small here).
    alexnet["classifier.6.bias"] = torch.randn(1000, generator=generator)
    linear = {
        f"lin{i}.model.1.weight": torch.rand(1, c_out, 1, 1, generator=generator) * 0.1
        for i, (_, c_out, _) in enumerate(CONVS.values())
    }
    return alexnet, linear


def write_weights(folder: Path, alexnet: dict, linear: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(alexnet, folder / ALEXNET_FILE)
    torch.save(linear, folder / LINEAR_FILE)
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, dict, dict]:
    alexnet, linear = random_weights(seed=0)
    return write_weights(tmp_path_factory.mktemp("lpips"), alexnet, linear), alexnet, linear


@pytest.fixture(scope="module")
def metric(weights) -> Lpips:
    result = load_lpips(weights[0])
    assert isinstance(result, Lpips), result
    return result


def reference_lpips(image: torch.Tensor, target: torch.Tensor, alexnet: dict, linear: dict) -> float:
    """lpips v0.1, spatial average, straight from the formula with torch.nn.functional, in float64."""
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)
    w = {key: value.double() for key, value in alexnet.items()}

    def relus(x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x.double().permute(2, 0, 1)[None] * 2 - 1) - shift) / scale
        r1 = F.relu(F.conv2d(x, w["features.0.weight"], w["features.0.bias"], stride=4, padding=2))
        x = F.max_pool2d(r1, kernel_size=3, stride=2)
        r2 = F.relu(F.conv2d(x, w["features.3.weight"], w["features.3.bias"], padding=2))
        x = F.max_pool2d(r2, kernel_size=3, stride=2)
        r3 = F.relu(F.conv2d(x, w["features.6.weight"], w["features.6.bias"], padding=1))
        r4 = F.relu(F.conv2d(r3, w["features.8.weight"], w["features.8.bias"], padding=1))
        r5 = F.relu(F.conv2d(r4, w["features.10.weight"], w["features.10.bias"], padding=1))
        return [r1, r2, r3, r4, r5]

    total = 0.0
    for i, (a, b) in enumerate(zip(relus(image), relus(target))):
        a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        weighted = F.conv2d((a - b) ** 2, linear[f"lin{i}.model.1.weight"].double())
        total += weighted.mean().item()
    return total


def random_image(seed: int, size: int = 64) -> torch.Tensor:
    return torch.rand(size, size, 3, generator=torch.Generator().manual_seed(seed))


def test_identical_images_score_zero(metric):
    image = random_image(1)
    value = metric(image, image.clone())
    assert isinstance(value, float)
    assert value == 0.0


@pytest.mark.parametrize("seeds", [(1, 2), (3, 4)])
def test_matches_the_formula(weights, metric, seeds):
    _, alexnet, linear = weights
    image, target = random_image(seeds[0]), random_image(seeds[1])
    expected = reference_lpips(image, target, alexnet, linear)
    assert expected > 1e-3, "random weights should give a clearly non-zero distance"
    assert metric(image, target) == pytest.approx(expected, rel=1e-5)


def test_non_square_image_matches_the_formula(weights, metric):
    """Height and width kept apart: a transposed layout would still pass on square images."""
    _, alexnet, linear = weights
    generator = torch.Generator().manual_seed(5)
    image, target = torch.rand(2, 48, 80, 3, generator=generator)
    assert metric(image, target) == pytest.approx(reference_lpips(image, target, alexnet, linear), rel=1e-5)


def test_grows_with_noise_and_is_symmetric(metric):
    image = random_image(6) * 0.6 + 0.2  # away from the clamp at 0 and 1
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(7))
    values = [metric(image, (image + sigma * noise).clamp(0, 1)) for sigma in (0.01, 0.03, 0.1, 0.3)]
    assert all(a < b for a, b in zip(values, values[1:])), values
    noisy = (image + 0.1 * noise).clamp(0, 1)
    assert metric(noisy, image) == pytest.approx(metric(image, noisy), rel=1e-6)


def test_float64_input_gives_the_float32_value(metric):
    image, target = random_image(8), random_image(9)
    assert metric(image.double(), target.double()) == pytest.approx(metric(image, target), rel=1e-6)


def test_mismatched_or_tiny_images_are_refused(metric):
    with pytest.raises(ValueError):
        metric(random_image(1, 64), random_image(2, 48))
    with pytest.raises(ValueError):
        metric(random_image(1, 16), random_image(2, 16))


@pytest.fixture
def no_download(monkeypatch):
    """Any attempt to fetch weights fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("LPIPS must never download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_empty_folder_gives_the_reason(tmp_path, no_download):
    reason = load_lpips(tmp_path)
    assert isinstance(reason, str)
    assert reason.startswith("LPIPS weights not found")
    assert ALEXNET_FILE in reason and LINEAR_FILE in reason and str(tmp_path) in reason
    assert "lpips_weights" in reason


def test_one_missing_file_is_named(tmp_path, weights):
    (tmp_path / LINEAR_FILE).write_bytes((weights[0] / LINEAR_FILE).read_bytes())
    reason = load_lpips(tmp_path)
    assert isinstance(reason, str)
    assert f"{ALEXNET_FILE} missing" in reason


def test_no_folder_searches_the_torch_cache(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reason = load_lpips(None)
    assert isinstance(reason, str), "no weights anywhere must give a reason, never a number"
    assert reason.startswith("LPIPS weights not found")
    assert str(tmp_path / "hub" / "checkpoints") in reason
    assert ALEXNET_FILE in reason and LINEAR_FILE in reason


def test_no_folder_loads_from_the_torch_cache(tmp_path, monkeypatch, weights, no_download):
    folder, alexnet, linear = weights
    write_weights(tmp_path / "torch" / "hub" / "checkpoints", alexnet, linear)
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # torch.hub's fallback: $XDG_CACHE_HOME/torch
    result = load_lpips(None)
    assert isinstance(result, Lpips), result
    image, target = random_image(1), random_image(2)
    assert result(image, target) == pytest.approx(reference_lpips(image, target, alexnet, linear), rel=1e-5)


def _corrupt(folder: Path, alexnet: dict, linear: dict, kind: str) -> str:
    """Break one file in ``folder``; returns the name of the broken file."""
    if kind == "garbage":
        (folder / ALEXNET_FILE).write_bytes(b"not a torch file")
        return ALEXNET_FILE
    if kind == "truncated":
        data = (folder / LINEAR_FILE).read_bytes()
        (folder / LINEAR_FILE).write_bytes(data[: len(data) // 2])
        return LINEAR_FILE
    if kind == "not a dict":
        torch.save(torch.zeros(3), folder / LINEAR_FILE)
        return LINEAR_FILE
    if kind == "missing key":
        torch.save({k: v for k, v in alexnet.items() if k != "features.8.weight"}, folder / ALEXNET_FILE)
        return ALEXNET_FILE
    if kind == "wrong shape":
        torch.save({**linear, "lin2.model.1.weight": torch.rand(1, 256, 1, 1)}, folder / LINEAR_FILE)
        return LINEAR_FILE
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "not a dict", "missing key", "wrong shape"])
def test_a_bad_file_gives_a_reason(tmp_path, weights, kind):
    _, alexnet, linear = weights
    write_weights(tmp_path, alexnet, linear)
    broken = _corrupt(tmp_path, alexnet, linear, kind)
    reason = load_lpips(tmp_path)
    assert isinstance(reason, str)
    assert reason.startswith("LPIPS weights unusable") and broken in reason
