"""The exported .splat must be antimatter15's layout, byte for byte, biggest splats first."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch

from gaussian_splatting.spherical_harmonics import SH_C0
from gaussian_splatting.splat_export import read_splat, splat_bytes, write_splat


def _state(count: int, seed: int = 5) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "means": torch.randn(count, 3, generator=generator) * 10,
        "log_scales": torch.randn(count, 3, generator=generator) - 3,
        "quats": torch.randn(count, 4, generator=generator),
        "opacity_logits": torch.randn(count, generator=generator) * 3,
        "sh_dc": torch.randn(count, 1, 3, generator=generator) * 2,
        "sh_rest": torch.randn(count, 15, 3, generator=generator),
    }


def _unsorted(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Equal sizes and opacities: every key ties, so the stable sort keeps the input order."""
    count = state["means"].shape[0]
    return {**state, "log_scales": torch.full((count, 3), -2.0), "opacity_logits": torch.zeros(count)}


def test_layout_read_back_with_struct(tmp_path):
    state = _unsorted(_state(4))
    path = tmp_path / "scene.splat"
    write_splat(path, state)
    data = path.read_bytes()
    assert len(data) == 32 * 4
    for i in range(4):
        row = data[32 * i : 32 * (i + 1)]
        position = struct.unpack_from("<3f", row, 0)
        scale = struct.unpack_from("<3f", row, 12)
        rgba = struct.unpack_from("4B", row, 24)
        rotation = struct.unpack_from("4B", row, 28)
        assert position == tuple(state["means"][i].tolist())  # exact: float32 in, float32 out
        assert scale == pytest.approx([math.exp(-2.0)] * 3, rel=1e-6)
        assert rgba[3] == 128  # sigmoid(0) * 255 = 127.5, rounded to even
        quat = state["quats"][i].double()
        assert rotation == tuple(min(255, max(0, round(float(q) * 128 + 128))) for q in quat / quat.norm())
    assert splat_bytes(state) == data


def test_values(tmp_path):
    state = _unsorted(_state(50))
    path = tmp_path / "scene.splat"
    write_splat(path, state)
    back = read_splat(path)
    np.testing.assert_array_equal(back["positions"], state["means"].numpy())
    np.testing.assert_allclose(back["scales"], np.exp(state["log_scales"].numpy()), rtol=1e-6)
    colour = np.clip(0.5 + SH_C0 * state["sh_dc"][:, 0].double().numpy(), 0, 1) * 255
    assert colour.min() == 0 and colour.max() == 255  # both clamps are exercised
    np.testing.assert_array_equal(back["rgba"][:, :3], np.rint(colour).astype(np.uint8))
    np.testing.assert_array_equal(back["rgba"][:, 3], 128)


def test_alpha_is_the_sigmoid_of_the_logit():
    logits = torch.tensor([-20.0, -1.0, 0.5, 2.0, 20.0])
    state = {**_unsorted(_state(5)), "opacity_logits": logits}
    rows = np.frombuffer(splat_bytes(state), dtype=np.uint8).reshape(5, 32)
    alphas = sorted(rows[:, 27].tolist())  # the order is the sort's; only the values matter here
    assert alphas == [0, 69, 159, 225, 255]  # rint(255 * sigmoid): 0.0, 68.6, 158.7, 224.6, 255.0


@pytest.mark.parametrize(
    ("quat", "expected"),
    [
        ((1.0, 0.0, 0.0, 0.0), (255, 128, 128, 128)),  # 256 clamps to 255
        ((2.0, 0.0, 0.0, 0.0), (255, 128, 128, 128)),  # not normalised
        ((0.0, -3.0, 0.0, 0.0), (128, 0, 128, 128)),
        ((1.0, 1.0, 1.0, 1.0), (192, 192, 192, 192)),  # each 0.5
        ((-4.0, 0.0, 3.0, 0.0), (26, 128, 205, 128)),  # -0.8 -> 25.6, 0.6 -> 204.8
        ((0.0, 0.0, 0.0, 0.0), (255, 128, 128, 128)),  # undefined: the identity
    ],
)
def test_quaternion_encoding(quat, expected):
    state = {**_unsorted(_state(1)), "quats": torch.tensor([quat])}
    row = splat_bytes(state)
    assert struct.unpack_from("4B", row, 28) == expected


def test_largest_size_times_opacity_first():
    # key = exp(sum of log scales) * sigmoid(opacity), by hand:
    log_scales = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 0.0, 0.0]])
    logits = torch.tensor([0.0, -10.0, 0.0, 3.0, 0.0])
    # 0: 1 * 0.5 = 0.5; 1: e^3 * 4.5e-5 = 9.1e-4; 2: e^-1 * 0.5 = 0.18; 3: e^3 * 0.953 = 19.1;
    # 4: e^2 * 0.5 = 3.69. Largest first: 3, 4, 0, 2, 1.
    state = {**_state(5), "log_scales": log_scales, "opacity_logits": logits}
    state["means"] = torch.arange(5, dtype=torch.float32)[:, None].expand(5, 3).contiguous()
    rows = np.frombuffer(splat_bytes(state), dtype="<f4").reshape(5, 8)
    assert rows[:, 0].tolist() == [3, 4, 0, 2, 1]


def test_equal_keys_keep_their_order():
    """Three sizes, 100 splats each, shuffled: each size's splats keep the input order."""
    count = 300
    size_class = torch.from_numpy(np.random.default_rng(0).permutation(np.arange(count) % 3))
    state = _unsorted(_state(count))
    state["log_scales"] = size_class.float()[:, None].expand(count, 3).contiguous()
    state["means"] = torch.arange(count, dtype=torch.float32)[:, None].expand(count, 3).contiguous()
    rows = np.frombuffer(splat_bytes(state), dtype="<f4").reshape(count, 8)
    expected = [i for size in (2, 1, 0) for i in range(count) if size_class[i] == size]
    assert rows[:, 0].tolist() == expected


def test_atomic_write_leaves_only_the_file(tmp_path):
    path = tmp_path / "out" / "scene.splat"
    write_splat(path, _state(10))
    assert [p.name for p in path.parent.iterdir()] == ["scene.splat"]
    assert path.stat().st_size == 32 * 10
    assert read_splat(path)["positions"].shape == (10, 3)


def test_empty_and_truncated(tmp_path):
    path = tmp_path / "empty.splat"
    write_splat(path, _state(0))
    assert path.stat().st_size == 0
    assert read_splat(path)["rgba"].shape == (0, 4)
    path.write_bytes(b"\0" * 33)
    with pytest.raises(ValueError, match="32-byte"):
        read_splat(path)


def _reference_converter(state: dict[str, torch.Tensor]) -> np.ndarray:
    """antimatter15's convert.py, vectorised: same order and encoding, but it truncates bytes."""
    v = {name: tensor.numpy() for name, tensor in state.items()}
    order = np.argsort(-np.exp(v["log_scales"].sum(axis=1)) / (1 + np.exp(-v["opacity_logits"])))
    colour = np.concatenate([0.5 + SH_C0 * v["sh_dc"][:, 0], 1 / (1 + np.exp(-v["opacity_logits"]))[:, None]], axis=1)
    rot = v["quats"] / np.linalg.norm(v["quats"], axis=1, keepdims=True)
    rows = np.zeros((len(order), 32), np.uint8)
    rows[:, 0:12] = v["means"][order].astype("<f4").view(np.uint8)
    rows[:, 12:24] = np.exp(v["log_scales"][order]).astype("<f4").view(np.uint8)
    rows[:, 24:28] = (colour[order] * 255).clip(0, 255).astype(np.uint8)
    rows[:, 28:32] = (rot[order] * 128 + 128).clip(0, 255).astype(np.uint8)
    return rows


def test_agrees_with_the_reference_converter():
    """Same order and floats; each byte at most one above its truncated value, never below."""
    state = _state(500, seed=9)
    ours = np.frombuffer(splat_bytes(state), dtype=np.uint8).reshape(500, 32)
    reference = _reference_converter(state)
    np.testing.assert_array_equal(ours[:, 0:12], reference[:, 0:12])
    np.testing.assert_allclose(ours[:, 12:24].copy().view("<f4"), reference[:, 12:24].copy().view("<f4"), rtol=1e-6)
    difference = ours[:, 24:32].astype(int) - reference[:, 24:32]
    assert difference.min() == 0 and difference.max() == 1
