"""The compiled CPU compositor against a brute-force per-pixel reference: values and gradients."""

from __future__ import annotations

import pytest
import torch

from gaussian_splatting import CompositingRules, composite
from splat_reference import Scene2D, brute_force_composite, random_scene_2d

# 3 x 2 tiles of 16 pixels, the right and bottom ones cut short.
WIDTH, HEIGHT = 37, 29


def render(scene: Scene2D, rules: CompositingRules = CompositingRules(), width=WIDTH, height=HEIGHT):
    """Our compositor and the reference on fresh leaves of the same scene.

    Returns (ours, reference): each a tuple (image, alpha, leaves); the reference also returns
    which pixels stopped early.
    """
    ours_leaves = scene.differentiable()
    means2d, conics, colours, opacities, background = ours_leaves
    image, alpha = composite(
        means2d, conics, colours, opacities, scene.depths, scene.visible, width, height,
        background=background, rules=rules,
    )  # fmt: skip
    reference_leaves = scene.differentiable()
    means2d, conics, colours, opacities, background = reference_leaves
    reference_image, reference_alpha, stopped = brute_force_composite(
        means2d, conics, colours, opacities, scene.depths, scene.visible, width, height, background, rules
    )
    return (image, alpha, ours_leaves), (reference_image, reference_alpha, reference_leaves, stopped)


def backpropagate(image, alpha, seed: int) -> None:
    """A loss with a different random weight on every output value, so every path is exercised."""
    generator = torch.Generator().manual_seed(seed)
    image_weights = torch.rand(image.shape, generator=generator, dtype=torch.float64) - 0.5
    alpha_weights = torch.rand(alpha.shape, generator=generator, dtype=torch.float64) - 0.5
    loss = (image * image_weights.to(image.dtype)).sum() + (alpha * alpha_weights.to(alpha.dtype)).sum()
    loss.backward()


GRADIENT_NAMES = ("means2d", "conics", "colours", "opacities", "background")


def assert_same_as_reference(ours, reference, seed: int) -> None:
    """Images, alphas and every gradient equal to float64 rounding (``render``'s two results)."""
    (image, alpha, leaves), (reference_image, reference_alpha, reference_leaves, _) = ours, reference
    torch.testing.assert_close(image, reference_image, rtol=0, atol=1e-12)
    torch.testing.assert_close(alpha, reference_alpha, rtol=0, atol=1e-12)
    backpropagate(image, alpha, seed)
    backpropagate(reference_image, reference_alpha, seed)
    for name, leaf, reference_leaf in zip(GRADIENT_NAMES, leaves, reference_leaves, strict=True):
        torch.testing.assert_close(leaf.grad, reference_leaf.grad, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_matches_brute_force_float32(seed: int):
    scene = random_scene_2d(seed, n=40, width=WIDTH, height=HEIGHT, dtype=torch.float32)
    (image, alpha, _), (reference_image, reference_alpha, _, stopped) = render(scene)

    assert image.shape == (HEIGHT, WIDTH, 3) and alpha.shape == (HEIGHT, WIDTH)
    assert image.dtype == alpha.dtype == torch.float32
    torch.testing.assert_close(image, reference_image, rtol=0, atol=1e-5)
    torch.testing.assert_close(alpha, reference_alpha, rtol=0, atol=1e-5)
    assert stopped.any(), "the scene should make some pixels stop early"


def test_random_scene_exercises_every_rule():
    """Guards the tests above against a generator that drifts into trivial scenes."""
    scene = random_scene_2d(0, n=40, width=WIDTH, height=HEIGHT, dtype=torch.float64)
    rules = CompositingRules()
    assert (~scene.visible).any()
    # near a tile border (x = 16, 32 or y = 16) with a sigma of a pixel or more: spans two tiles
    distance_x = (scene.means2d[:, 0] - torch.tensor([[16.0], [32.0]])).abs().min(dim=0).values
    distance_y = (scene.means2d[:, 1] - 16.0).abs()
    assert (torch.minimum(distance_x, distance_y) < 2)[scene.visible].sum() >= 3
    # off the image's edges
    outside = (scene.means2d < 0).any(dim=-1) | (scene.means2d[:, 0] > WIDTH) | (scene.means2d[:, 1] > HEIGHT)
    assert outside[scene.visible].any()
    # capped alpha: full opacity at a pixel centre
    assert (scene.opacities[:2] == 1).all() and (scene.means2d[0] == scene.means2d[1]).all()
    assert (scene.means2d[0] % 1 == 0.5).all() and rules.max_alpha < 1


@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_match_autograd_of_brute_force_float64(seed: int):
    scene = random_scene_2d(seed, n=40, width=WIDTH, height=HEIGHT, dtype=torch.float64)
    (image, alpha, ours), (reference_image, reference_alpha, reference, _) = render(scene)
    torch.testing.assert_close(image, reference_image, rtol=0, atol=1e-12)
    backpropagate(image, alpha, seed)
    backpropagate(reference_image, reference_alpha, seed)
    for name, leaf, reference_leaf in zip(GRADIENT_NAMES, ours, reference, strict=True):
        scale = reference_leaf.grad.abs().max()
        assert scale > 0, name
        torch.testing.assert_close(leaf.grad, reference_leaf.grad, rtol=1e-9, atol=1e-12 * scale, msg=name)


def test_gradients_float32_close_to_float64_reference():
    scene32 = random_scene_2d(3, n=50, width=WIDTH, height=HEIGHT, dtype=torch.float32)
    (image, alpha, ours), _ = render(scene32)
    scene64 = Scene2D(*(t.double() if t.is_floating_point() else t for t in vars(scene32).values()))
    _, (reference_image, reference_alpha, reference, _) = render(scene64)
    backpropagate(image, alpha, 3)
    backpropagate(reference_image, reference_alpha, 3)
    for name, leaf, reference_leaf in zip(GRADIENT_NAMES, ours, reference, strict=True):
        scale = reference_leaf.grad.abs().max()
        torch.testing.assert_close(
            leaf.grad.double(), reference_leaf.grad, rtol=1e-4, atol=1e-5 * scale, msg=name
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ties_at_the_stop_limit_fall_as_in_the_reference(dtype: torch.dtype):
    """Three fully opaque Gaussians on one pixel centre: capped at 0.99, two of them leave
    (1 - 0.99)^2, exactly the 1e-4 limit in real numbers. Where the pixel stops depends on the
    rounding of that precision; ours must stop where PyTorch does."""
    n = 3
    scene = Scene2D(
        means2d=torch.full((n, 2), 8.5, dtype=dtype),
        conics=torch.tensor([[0.1, 0.0, 0.1]], dtype=dtype).repeat(n, 1),
        colours=torch.eye(3, dtype=dtype),
        opacities=torch.ones(n, dtype=dtype),
        depths=torch.arange(1, n + 1, dtype=dtype),
        visible=torch.ones(n, dtype=torch.bool),
        background=torch.zeros(3, dtype=dtype),
    )
    (image, alpha, _), (reference_image, reference_alpha, _, stopped) = render(scene, width=16, height=16)
    assert stopped[8, 8]
    torch.testing.assert_close(image, reference_image, rtol=0, atol=1e-6)
    torch.testing.assert_close(alpha, reference_alpha, rtol=0, atol=1e-6)


def test_an_opaque_wall_finishes_whole_tiles():
    """Three wide opaque Gaussians in front of everything finish every pixel: nothing behind
    them shows or gets a gradient, and tiles stop walking their lists early."""
    scene = random_scene_2d(8, n=30, width=WIDTH, height=HEIGHT, dtype=torch.float64)
    wall = slice(0, 3)
    scene.means2d[wall] = torch.tensor([WIDTH / 2, HEIGHT / 2], dtype=torch.float64)
    scene.conics[wall] = torch.tensor([1e-4, 0.0, 1e-4], dtype=torch.float64)
    scene.opacities[wall] = 1.0
    scene.depths[wall] = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    scene.visible[wall] = True
    ours, reference = render(scene)
    stopped, means2d = reference[3], ours[2][0]
    assert stopped.all()
    assert_same_as_reference(ours, reference, seed=8)
    assert torch.equal(means2d.grad[3:], torch.zeros(27, 2, dtype=torch.float64))


def test_other_rules_tile_sizes_and_channel_counts():
    """Four channels (as a depth channel will be), 8-pixel tiles and gsplat's 0.999 cap."""
    rules = CompositingRules(tile_size=8, max_alpha=0.999)
    scene = random_scene_2d(4, n=30, width=WIDTH, height=HEIGHT, dtype=torch.float64, channels=4)
    ours, reference = render(scene, rules)
    assert ours[0].shape == (HEIGHT, WIDTH, 4)
    assert_same_as_reference(ours, reference, seed=4)


def test_gradcheck_against_finite_differences():
    """Independent of the reference: analytic gradients vs central differences, float64."""
    scene = random_scene_2d(5, n=8, width=20, height=18, dtype=torch.float64, n_opaque=3)

    def function(means2d, conics, colours, opacities, background):
        return composite(
            means2d, conics, colours, opacities, scene.depths, scene.visible, 20, 18, background=background
        )

    assert torch.autograd.gradcheck(
        function, scene.differentiable(), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True
    )


def test_absgrad_sums_each_pixels_share_without_its_sign():
    """means2d.absgrad (gsplat's absgrad, for densification) is, per Gaussian, the sum over
    pixels of |d loss_pixel / d mean|: the reference's per-pixel Jacobian, summed in absolute value."""
    scene = random_scene_2d(8, n=20, width=WIDTH, height=HEIGHT, dtype=torch.float64)
    generator = torch.Generator().manual_seed(8)
    weights = torch.rand(HEIGHT, WIDTH, 3, generator=generator, dtype=torch.float64) - 0.5
    (image, _, (means2d, *_)), _ = render(scene)
    (image * weights).sum().backward()

    def pixel_losses(reference_means2d):
        reference_image = brute_force_composite(
            reference_means2d, scene.conics, scene.colours, scene.opacities, scene.depths, scene.visible,
            WIDTH, HEIGHT, scene.background,
        )[0]  # fmt: skip
        return (reference_image * weights).sum(dim=-1).flatten()

    jacobian = torch.autograd.functional.jacobian(pixel_losses, scene.means2d, vectorize=True)  # [pixels, N, 2]
    expected = jacobian.abs().sum(dim=0)
    assert expected.max() > 0
    torch.testing.assert_close(means2d.absgrad, expected, rtol=1e-9, atol=1e-12 * float(expected.max()))
    torch.testing.assert_close(means2d.grad, jacobian.sum(dim=0), rtol=1e-9, atol=1e-12 * float(expected.max()))
    # a Gaussian that pixels pull opposite ways: its gradient partly cancels, the absolute sum does not
    assert bool((means2d.absgrad > means2d.grad.abs() * 1.5).any())


def test_nothing_visible_renders_the_background():
    scene = random_scene_2d(6, n=10, width=WIDTH, height=HEIGHT, dtype=torch.float32)
    scene = Scene2D(**{**vars(scene), "visible": torch.zeros(10, dtype=torch.bool)})
    (image, alpha, ours), _ = render(scene)
    assert torch.equal(image, scene.background.expand(HEIGHT, WIDTH, 3))
    assert torch.equal(alpha, torch.zeros(HEIGHT, WIDTH))
    image.sum().backward()
    for name, leaf in zip(GRADIENT_NAMES[:4], ours[:4], strict=True):
        assert torch.equal(leaf.grad, torch.zeros_like(leaf)), name
    torch.testing.assert_close(ours[4].grad, torch.full((3,), float(HEIGHT * WIDTH)))


def test_mixed_precision_is_refused():
    scene = random_scene_2d(7, n=10, width=WIDTH, height=HEIGHT, dtype=torch.float32)
    with pytest.raises(TypeError, match="one dtype"):
        composite(
            scene.means2d.double(), scene.conics, scene.colours, scene.opacities, scene.depths, scene.visible,
            WIDTH, HEIGHT,
        )  # fmt: skip
