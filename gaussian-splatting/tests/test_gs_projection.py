"""Projection and spherical harmonics against gsplat 1.5.3's own PyTorch reference, and known answers."""

from __future__ import annotations

import math

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics

from gaussian_splatting import ProjectionSettings, evaluate_sh, project_gaussians, sh_to_rgb
from gaussian_splatting.projection import camera_position, covariance_3d, quaternion_to_rotation

WIDTH, HEIGHT = 64, 48
# principal point off centre, so the two sides of the field-of-view clamp differ
K = torch.tensor([[50.0, 0.0, 29.0], [0.0, 55.0, 26.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def random_camera(generator: torch.Generator) -> torch.Tensor:
    """A world-to-camera matrix [4, 4] with a random rotation and position."""
    rotation = quaternion_to_rotation(torch.randn(4, generator=generator, dtype=torch.float64))
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[:3, :3] = rotation
    viewmat[:3, 3] = torch.randn(3, generator=generator, dtype=torch.float64)
    return viewmat


def random_gaussians(n: int, viewmat: torch.Tensor, generator: torch.Generator):
    """Gaussians placed in camera space (some behind the camera, at the near plane, far outside
    the field of view), returned in world space: means [N, 3], quats [N, 4], scales [N, 3]."""

    def uniform(*shape: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)

    depth = uniform(n, low=-1.0, high=6.0)
    depth[:3] = torch.tensor([0.0, 0.005, 0.02], dtype=torch.float64)
    means_cam = torch.stack(
        [uniform(n, low=-1.5, high=1.5) * depth.abs(), uniform(n, low=-1.5, high=1.5) * depth.abs(), depth],
        -1,
    )
    rotation, translation = viewmat[:3, :3], viewmat[:3, 3]
    means = (means_cam - translation) @ rotation
    quats = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    scales = torch.exp(uniform(n, 3, low=math.log(0.01), high=math.log(0.3)))
    return means, quats, scales


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projection_matches_gsplat_reference(seed: int):
    generator = torch.Generator().manual_seed(seed)
    viewmat = random_camera(generator)
    means, quats, scales = random_gaussians(300, viewmat, generator)
    settings = ProjectionSettings()

    ours = project_gaussians(means, quats, scales, viewmat, K, WIDTH, HEIGHT, settings=settings)
    covariances, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covariances, viewmat[None], K[None], WIDTH, HEIGHT,
        eps2d=settings.eps2d, near_plane=settings.near_plane, far_plane=settings.far_plane,
    )  # fmt: skip

    torch.testing.assert_close(covariance_3d(quats, scales), covariances, rtol=1e-12, atol=1e-15)
    assert ours.radii.dtype == torch.int32
    assert torch.equal(ours.radii, radii[0])
    visible = ours.visible
    assert 50 < visible.sum() < 300, "the scene should have both drawn and culled Gaussians"
    assert not visible[:2].any(), "behind or too near the camera"
    torch.testing.assert_close(ours.means2d[visible], means2d[0][visible], rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(ours.conics[visible], conics[0][visible], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.depths, depths[0], rtol=1e-12, atol=1e-12)
    for tensor in (ours.means2d, ours.conics, ours.depths):
        assert torch.isfinite(tensor).all(), "culled rows stay finite"


def test_projection_gradients_match_autograd_of_gsplat_reference():
    generator = torch.Generator().manual_seed(3)
    viewmat = random_camera(generator)
    inputs = random_gaussians(200, viewmat, generator)
    weights = torch.randn(200, 5, generator=generator, dtype=torch.float64)

    ours_leaves = [t.clone().requires_grad_(True) for t in inputs]
    ours = project_gaussians(*ours_leaves, viewmat, K, WIDTH, HEIGHT)
    visible = ours.visible
    loss = (torch.cat([ours.means2d, ours.conics], -1)[visible] * weights[visible]).sum()
    loss.backward()

    reference_leaves = [t.clone().requires_grad_(True) for t in inputs]
    means, quats, scales = reference_leaves
    covariances, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    _, means2d, _, conics, _ = _fully_fused_projection(
        means, covariances, viewmat[None], K[None], WIDTH, HEIGHT
    )
    reference_loss = (torch.cat([means2d[0], conics[0]], -1)[visible] * weights[visible]).sum()
    reference_loss.backward()

    for name, leaf, reference_leaf in zip(
        ("means", "quats", "scales"), ours_leaves, reference_leaves, strict=True
    ):
        assert torch.isfinite(leaf.grad).all(), name
        torch.testing.assert_close(leaf.grad, reference_leaf.grad, rtol=1e-9, atol=1e-9, msg=name)


def test_known_answer_for_one_gaussian():
    """An isotropic Gaussian straight ahead, worked out by hand."""
    scale, depth, opacity = 0.1, 2.0, 0.5
    means = torch.tensor([[0.4, -0.2, depth]], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    scales = torch.full((1, 3), scale, dtype=torch.float64)
    projected = project_gaussians(
        means, quats, scales, torch.eye(4, dtype=torch.float64), K, WIDTH, HEIGHT,
        opacities=torch.tensor([opacity], dtype=torch.float64),
    )  # fmt: skip
    fx, fy, cx, cy = 50.0, 55.0, 29.0, 26.0
    torch.testing.assert_close(
        projected.means2d[0], torch.tensor([fx * 0.2 + cx, fy * -0.1 + cy], dtype=torch.float64)
    )
    # J = [[fx/z, 0, -fx x/z^2], [0, fy/z, -fy y/z^2]]; cov3d = s^2 I
    j = torch.tensor(
        [[fx / depth, 0, -fx * 0.4 / depth**2], [0, fy / depth, fy * 0.2 / depth**2]], dtype=torch.float64
    )
    covariance_2d = scale**2 * j @ j.T + 0.3 * torch.eye(2, dtype=torch.float64)
    inverse = torch.linalg.inv(covariance_2d)
    torch.testing.assert_close(
        projected.conics[0], torch.stack([inverse[0, 0], inverse[0, 1], inverse[1, 1]])
    )
    extent = math.sqrt(2 * math.log(opacity * 255))  # alpha reaches 1/255 out to here
    expected_radii = [math.ceil(extent * math.sqrt(covariance_2d[i, i])) for i in (0, 1)]
    assert projected.radii[0].tolist() == expected_radii


def test_opacity_tightens_and_culls():
    generator = torch.Generator().manual_seed(4)
    viewmat = random_camera(generator)
    means, quats, scales = random_gaussians(300, viewmat, generator)
    opacities = torch.rand(300, generator=generator, dtype=torch.float64)
    opacities[::10] = 0.003  # under 1/255
    loose = project_gaussians(means, quats, scales, viewmat, K, WIDTH, HEIGHT)
    tight = project_gaussians(means, quats, scales, viewmat, K, WIDTH, HEIGHT, opacities=opacities)
    assert (tight.radii <= loose.radii).all()
    assert (tight.radii < loose.radii).any()
    assert not tight.visible[::10].any()


def test_camera_position_inverts_the_view_matrix():
    viewmat = random_camera(torch.Generator().manual_seed(5))
    torch.testing.assert_close(camera_position(viewmat), torch.linalg.inv(viewmat)[:3, 3])


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_spherical_harmonics_match_gsplat_reference(degree: int):
    generator = torch.Generator().manual_seed(degree)
    directions = torch.randn(500, 3, generator=generator, dtype=torch.float64) * 3  # any length
    coefficients = torch.randn(500, 16, 3, generator=generator, dtype=torch.float64)
    expected = _spherical_harmonics(degree, directions, coefficients)
    torch.testing.assert_close(
        evaluate_sh(degree, coefficients, directions), expected, rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(
        sh_to_rgb(degree, coefficients, directions), torch.clamp_min(expected + 0.5, 0.0)
    )


def test_spherical_harmonics_degree_zero_is_the_3dgs_dc_colour():
    coefficients = torch.tensor([[[0.2, -0.4, -3.0]]])
    rgb = sh_to_rgb(0, coefficients, torch.tensor([[0.0, 0.0, 1.0]]))
    torch.testing.assert_close(
        rgb, torch.tensor([[0.28209479177387814 * 0.2 + 0.5, 0.28209479177387814 * -0.4 + 0.5, 0.0]])
    )


def test_spherical_harmonics_refuse_impossible_degrees():
    with pytest.raises(ValueError, match="degree 2 needs 9"):
        evaluate_sh(2, torch.zeros(1, 4, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="0..3"):
        evaluate_sh(4, torch.zeros(1, 25, 3), torch.ones(1, 3))
