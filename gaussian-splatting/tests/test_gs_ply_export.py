"""The exported PLY must be the standard 3DGS layout, property for property."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from gaussian_splatting.ply_export import write_ply
from gaussian_splatting.ply_import import read_ply, sh_degree_of

# Written out here, not imported, so that a change of order in the exporter fails this test.
STANDARD_PROPERTIES = (
    ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    + [f"f_rest_{i}" for i in range(45)]
    + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
)


def _state(count: int, rest_coefficients: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    sh_rest = torch.zeros(count, rest_coefficients, 3)
    for k in range(rest_coefficients):
        for channel in range(3):
            sh_rest[:, k, channel] = 100 * channel + k + 1
    return {
        "means": torch.randn(count, 3, generator=generator),
        "log_scales": torch.randn(count, 3, generator=generator),
        "quats": torch.randn(count, 4, generator=generator),
        "opacity_logits": torch.randn(count, generator=generator),
        "sh_dc": torch.randn(count, 1, 3, generator=generator),
        "sh_rest": sh_rest,
    }


def test_properties_types_and_values(tmp_path):
    state = _state(5, rest_coefficients=15)
    path = tmp_path / "point_cloud.ply"
    write_ply(path, state)
    ply = PlyData.read(str(path))
    assert ply.text is False and ply.byte_order == "<"
    vertex = ply["vertex"]
    assert [p.name for p in vertex.properties] == STANDARD_PROPERTIES
    assert all(vertex.data.dtype[name] == np.dtype("<f4") for name in STANDARD_PROPERTIES)
    rows = np.stack([vertex[name] for name in STANDARD_PROPERTIES], axis=-1)
    np.testing.assert_allclose(rows[:, 0:3], state["means"].numpy())
    np.testing.assert_array_equal(rows[:, 3:6], 0.0)
    np.testing.assert_allclose(rows[:, 6:9], state["sh_dc"][:, 0].numpy())
    np.testing.assert_allclose(rows[:, 54], state["opacity_logits"].numpy())
    np.testing.assert_allclose(rows[:, 55:58], state["log_scales"].numpy())
    np.testing.assert_allclose(rows[:, 58:62], state["quats"].numpy())
    # Channel-major, as the reference: f_rest_{15 c + k} is coefficient k + 1 of channel c.
    for channel in range(3):
        for k in range(15):
            assert np.all(vertex[f"f_rest_{15 * channel + k}"] == 100 * channel + k + 1)


def test_lower_sh_degree_still_writes_45_rest_values(tmp_path):
    path = tmp_path / "degree1.ply"
    write_ply(path, _state(4, rest_coefficients=3))
    vertex = PlyData.read(str(path))["vertex"]
    assert [p.name for p in vertex.properties] == STANDARD_PROPERTIES
    for channel in range(3):
        for k in range(15):
            expected = 100 * channel + k + 1 if k < 3 else 0.0
            assert np.all(vertex[f"f_rest_{15 * channel + k}"] == expected)


def test_reads_back_the_parameters_it_wrote(tmp_path):
    """Evaluation and export read models from the PLY: a round trip must be exact."""
    state = _state(6, rest_coefficients=15)
    path = tmp_path / "model.ply"
    write_ply(path, state)
    back = read_ply(path)
    assert set(back) == set(state)
    for name, tensor in state.items():
        torch.testing.assert_close(back[name], tensor, rtol=0, atol=0, msg=name)
    assert sh_degree_of(back) == 3


def test_a_ply_without_gaussian_properties_is_refused_by_name(tmp_path):
    path = tmp_path / "points.ply"
    vertices = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    PlyData([PlyElement.describe(vertices, "vertex")]).write(str(path))
    with pytest.raises(ValueError, match="not a 3DGS PLY, it lacks scale_0"):
        read_ply(path)
