"""The training loss's compiled SSIM against PyTorch's: the same value and the same gradient."""

from __future__ import annotations

import pytest
import torch

from gaussian_splatting.losses import fast_ssim, ssim, training_loss


def image_pair(dtype: torch.dtype, height: int = 29, width: int = 37, seed: int = 0):
    """A target and a noisy render of it; sizes not multiples of anything, smaller than a few windows."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(height, width, 3, generator=generator, dtype=dtype)
    noise = 0.2 * torch.randn(height, width, 3, generator=generator, dtype=dtype)
    return (target + noise).clamp(0, 1), target


def value_and_gradient(function, image, target):
    leaf = image.clone().requires_grad_()
    value = function(leaf, target)
    value.backward()
    return value.detach(), leaf.grad


@pytest.mark.parametrize("height, width", [(29, 37), (5, 8), (64, 48)])
def test_compiled_ssim_equals_pytorch_in_float64(height: int, width: int):
    image, target = image_pair(torch.float64, height, width)
    value, gradient = value_and_gradient(fast_ssim, image, target)
    expected_value, expected_gradient = value_and_gradient(ssim, image, target)
    assert 0.05 < expected_value < 0.95  # neither trivial nor unrelated images
    torch.testing.assert_close(value, expected_value, rtol=0, atol=1e-12)
    scale = expected_gradient.abs().max()
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-9, atol=1e-12 * scale)


def test_compiled_ssim_close_to_pytorch_in_float32():
    image, target = image_pair(torch.float32, seed=1)
    value, gradient = value_and_gradient(fast_ssim, image, target)
    expected_value, expected_gradient = value_and_gradient(ssim, image, target)
    assert value.dtype == torch.float32 and gradient.dtype == torch.float32
    torch.testing.assert_close(value, expected_value, rtol=0, atol=1e-6)
    scale = expected_gradient.abs().max()
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-4, atol=1e-5 * scale)


def test_equal_images_score_one_with_a_zero_gradient():
    image, _ = image_pair(torch.float64, seed=2)
    value, gradient = value_and_gradient(fast_ssim, image, image)
    assert value.item() == pytest.approx(1.0, abs=1e-12)
    assert gradient.abs().max().item() < 1e-12


def test_training_loss_gradient_matches_finite_differences():
    image, target = image_pair(torch.float64, 9, 12, seed=3)
    leaf = image.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: training_loss(x, target, 0.2), (leaf,), eps=1e-6, atol=1e-7)
