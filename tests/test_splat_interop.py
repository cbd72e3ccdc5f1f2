"""Our scene.ply and scene.splat as a third-party parser reads them: PlayCanvas's splat-transform
(the library behind SuperSplat), installed from npm by ``tests.npm_tools`` and never committed.

A synthetic scene is written with the publish stage's own writers (``write_ply``,
``write_splat``); splat-transform converts each file to CSV and prints its own summary of the
columns. What it read must be what we meant: the same number of splats, the same bounding box
of positions, and per splat the same scale, colour, opacity and rotation (exactly for the
float32 PLY, within a byte's quantisation for .splat), the .splat's largest splat first, and the
PLY's higher SH coefficients in the channel-major order the tool assumes when it drops bands.

The scene's extents differ per axis and lie far from any scale (x in [-3, 5], y in [-3.5, -0.5],
z around 10; scales 0.08 to 0.9), so a writer that swapped position and scale, or the axes, moves
the box; colours, opacities and quaternions are random, so a channel or component out of order
changes them. The last tests feed the same checks files written in such wrong layouts and expect
them to fail.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# the trainer's test scene: a plain folder beside its tests, not a package like ours
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gaussian-splatting" / "tests"))
from gs_synthetic_scene import scene_gaussians  # noqa: E402  # isort: skip

from gaussian_splatting.atomic_write import write_atomically  # noqa: E402
from gaussian_splatting.ply_export import PROPERTY_NAMES, ply_rows, write_ply  # noqa: E402
from gaussian_splatting.spherical_harmonics import SH_C0  # noqa: E402
from gaussian_splatting.splat_export import splat_rows, write_splat  # noqa: E402
from tests.npm_tools import splat_transform  # noqa: E402

COUNT = 300
BIGGEST = 17  # planted: by far the largest size x opacity, so .splat must put it first
BIGGEST_SCALE = (0.9, 0.6, 0.4)
BIGGEST_OPACITY = 0.97
BIGGEST_COLOUR = (0.9, 0.25, 0.05)
EXTENT_SCALE = torch.tensor([4.0, 1.5, 0.3])  # the synthetic scene spans [-1, 1] x [-1, 1] x [-0.6, 0.6]
EXTENT_OFFSET = torch.tensor([1.0, -2.0, 10.0])
AXES = ("x", "y", "z")
BYTE = 1.0 / 255.0
CLI_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    """The trainer's raw parameters, float32; higher SH coefficients random, so their order shows."""
    scene = scene_gaussians(seed=3, n_gaussians=COUNT)
    scene["means"] = scene["means"] * EXTENT_SCALE + EXTENT_OFFSET
    scene["sh_rest"] = 0.1 * torch.randn(COUNT, 15, 3, generator=torch.Generator().manual_seed(4))
    scene["log_scales"][BIGGEST] = torch.tensor(BIGGEST_SCALE).log()
    scene["opacity_logits"][BIGGEST] = torch.logit(torch.tensor(BIGGEST_OPACITY))
    scene["sh_dc"][BIGGEST, 0] = (torch.tensor(BIGGEST_COLOUR) - 0.5) / SH_C0
    return {name: tensor.float() for name, tensor in scene.items()}


@pytest.fixture(scope="module")
def cli() -> list[str]:
    return splat_transform()


@pytest.fixture(scope="module")
def files(state, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scene")
    write_ply(folder / "scene.ply", state)
    write_splat(folder / "scene.splat", state)
    return {"ply": folder / "scene.ply", "splat": folder / "scene.splat"}


def read_with_splat_transform(cli: list[str], path: Path, *actions: str) -> tuple[dict, dict[str, np.ndarray]]:
    """What splat-transform reads from ``path``: its printed summary (row count, per-column min and
    max) and every column of the CSV it converts the file to (after ``actions``, if any)."""
    output = path.with_name(f"{path.name}{''.join(actions).replace(' ', '')}.csv")
    command = [*cli, "--quiet", "--overwrite", str(path), "--summary", *actions, str(output)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"splat-transform failed on {path.name} (exit {result.returncode}):\n{result.stderr}"
    return _parse_summary(result.stdout), _read_csv(output)


def _parse_summary(text: str) -> dict:
    count = re.search(r"\*\*Row Count:\*\*\s*(\d+)", text)
    assert count, f"no row count in splat-transform's summary:\n{text}"
    ranges = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in AXES:
            ranges[cells[0]] = (float(cells[1]), float(cells[2]))
    return {"count": int(count.group(1)), "ranges": ranges}


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, values = rows[0], np.array(rows[1:], dtype=np.float64).reshape(len(rows) - 1, len(rows[0]))
    return {name: values[:, index] for index, name in enumerate(header)}


def ours(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The scene in the units splat-transform reports (log scales, opacity logits, SH dc)."""
    values = {name: tensor.numpy().astype(np.float64) for name, tensor in state.items()}
    return {
        "means": values["means"],
        "log_scales": values["log_scales"],
        "opacity_logits": values["opacity_logits"],
        "sh_dc": values["sh_dc"][:, 0],
        "sh_rest": values["sh_rest"],
        "quats": values["quats"],
    }


def check_count_and_box(summary: dict, table: dict[str, np.ndarray], state: dict[str, torch.Tensor]) -> None:
    means = ours(state)["means"]
    assert summary["count"] == COUNT, f"splat-transform counted {summary['count']} splats, we wrote {COUNT}"
    assert len(table["x"]) == COUNT
    positions = np.stack([table[axis] for axis in AXES], axis=1)
    np.testing.assert_allclose(positions.min(axis=0), means.min(axis=0), rtol=1e-6, err_msg="box min (CSV)")
    np.testing.assert_allclose(positions.max(axis=0), means.max(axis=0), rtol=1e-6, err_msg="box max (CSV)")
    # the tool's own summary prints six significant digits
    summary_box = np.array([summary["ranges"][axis] for axis in AXES])
    np.testing.assert_allclose(summary_box[:, 0], means.min(axis=0), rtol=1e-5, err_msg="box min (summary)")
    np.testing.assert_allclose(summary_box[:, 1], means.max(axis=0), rtol=1e-5, err_msg="box max (summary)")


def columns(table: dict[str, np.ndarray], prefix: str, count: int) -> np.ndarray:
    return np.stack([table[f"{prefix}{i}"] for i in range(count)], axis=1)


def check_ply(summary: dict, table: dict[str, np.ndarray], state: dict[str, torch.Tensor]) -> None:
    """The PLY is float32 throughout, so every value must come back exactly, in our row order."""
    check_count_and_box(summary, table, state)
    expected = ours(state)
    assert list(table) == PROPERTY_NAMES
    np.testing.assert_array_equal(np.stack([table[a] for a in AXES], axis=1), expected["means"], "positions")
    np.testing.assert_array_equal(columns(table, "scale_", 3), expected["log_scales"], "log scales")
    np.testing.assert_array_equal(table["opacity"], expected["opacity_logits"], "opacity logits")
    np.testing.assert_array_equal(columns(table, "f_dc_", 3), expected["sh_dc"], "SH dc (colour)")
    np.testing.assert_array_equal(columns(table, "rot_", 4), expected["quats"], "rotations w, x, y, z")
    biggest = np.exp(columns(table, "scale_", 3)[BIGGEST])
    np.testing.assert_allclose(biggest, BIGGEST_SCALE, rtol=1e-6, err_msg="the planted largest splat's scale")


def check_splat(summary: dict, table: dict[str, np.ndarray], state: dict[str, torch.Tensor]) -> None:
    """Positions and scales are float32 (exact); colour and opacity are bytes and the quaternion a
    byte per component, so those agree within what a byte can say."""
    check_count_and_box(summary, table, state)
    expected = ours(state)
    assert set(table) == {"x", "y", "z", "scale_0", "scale_1", "scale_2", "f_dc_0", "f_dc_1", "f_dc_2",
                          "opacity", "rot_0", "rot_1", "rot_2", "rot_3"}  # fmt: skip

    # which of our Gaussians each row is: positions are unique and stored exactly
    index_of = {tuple(position): index for index, position in enumerate(expected["means"].astype(np.float32))}
    positions = np.stack([table[a] for a in AXES], axis=1).astype(np.float32)
    order = np.array([index_of.get(tuple(position), -1) for position in positions])
    assert (order >= 0).all(), f"{(order < 0).sum()} positions that are none of ours"
    assert sorted(order) == list(range(COUNT)), "some of our splats read back twice, others not at all"

    scales = np.exp(columns(table, "scale_", 3))
    np.testing.assert_allclose(scales, np.exp(expected["log_scales"][order]), rtol=1e-6, err_msg="scales")
    colours = columns(table, "f_dc_", 3) * SH_C0 + 0.5
    np.testing.assert_allclose(colours, expected["sh_dc"][order] * SH_C0 + 0.5, atol=BYTE, err_msg="colours")
    alphas = 1.0 / (1.0 + np.exp(-table["opacity"]))
    np.testing.assert_allclose(alphas, _sigmoid(expected["opacity_logits"][order]), atol=BYTE, err_msg="opacity")
    quats = expected["quats"][order] / np.linalg.norm(expected["quats"][order], axis=1, keepdims=True)
    alignment = np.abs(np.sum(columns(table, "rot_", 4) * quats, axis=1))  # q and -q: the same rotation
    assert alignment.min() > 0.999, f"rotations differ: worst |q . q'| = {alignment.min():.4f}"

    # largest size x opacity first, as antimatter15's viewer streams it
    assert order[0] == BIGGEST, f"the first splat is our #{order[0]}, not the planted largest #{BIGGEST}"
    np.testing.assert_allclose(scales[0], BIGGEST_SCALE, rtol=1e-6, err_msg="the largest splat's scale")
    np.testing.assert_allclose(colours[0], BIGGEST_COLOUR, atol=BYTE, err_msg="the largest splat's colour")
    np.testing.assert_allclose(alphas[0], BIGGEST_OPACITY, atol=BYTE, err_msg="the largest splat's opacity")
    keys = expected["log_scales"].sum(axis=1) + np.log(_sigmoid(expected["opacity_logits"]))
    assert (np.diff(keys[order]) <= 1e-9).all(), "splats not in decreasing size x opacity"


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def check_sh_after_degree_1(table: dict[str, np.ndarray], state: dict[str, torch.Tensor]) -> None:
    """Dropping to SH degree 1 keeps, per channel, the first 3 of its 15 coefficients; in the
    channel-major layout the tool assumes, f_rest_{i + 15 c} becomes f_rest_{i + 3 c}."""
    rest = ours(state)["sh_rest"]  # [N, 15, 3]: coefficient, channel
    assert [name for name in table if name.startswith("f_rest_")] == [f"f_rest_{i}" for i in range(9)]
    for channel in range(3):
        for coefficient in range(3):
            np.testing.assert_array_equal(
                table[f"f_rest_{coefficient + 3 * channel}"], rest[:, coefficient, channel],
                err_msg=f"channel {channel}, coefficient {coefficient + 1}",
            )  # fmt: skip


def test_splat_transform_reads_our_ply_as_written(cli, files, state):
    summary, table = read_with_splat_transform(cli, files["ply"])
    check_ply(summary, table, state)


def test_splat_transform_reads_our_splat_as_written(cli, files, state):
    summary, table = read_with_splat_transform(cli, files["splat"])
    check_splat(summary, table, state)


def test_ply_higher_sh_is_in_the_order_splat_transform_assumes(cli, files, state):
    _, table = read_with_splat_transform(cli, files["ply"], "--filter-harmonics", "1")
    check_sh_after_degree_1(table, state)


# The checks must fail on files laid out wrongly: each writes one mistake a writer could make.


def _swap_position_and_scale(rows: np.ndarray) -> np.ndarray:
    rows["position"], rows["scale"] = rows["scale"].copy(), rows["position"].copy()
    return rows


def _abgr(rows: np.ndarray) -> np.ndarray:
    rows["rgba"] = rows["rgba"][:, ::-1].copy()
    return rows


def _quaternion_xyzw(rows: np.ndarray) -> np.ndarray:
    rows["rotation"] = np.roll(rows["rotation"], -1, axis=1)
    return rows


def _reversed_axes(rows: np.ndarray) -> np.ndarray:
    rows["position"] = rows["position"][:, ::-1].copy()
    return rows


@pytest.mark.parametrize("mistake", [_swap_position_and_scale, _abgr, _quaternion_xyzw, _reversed_axes])
def test_the_splat_checks_catch_a_wrong_layout(cli, state, tmp_path, mistake):
    path = tmp_path / "wrong.splat"
    body = mistake(splat_rows(state)).tobytes()
    write_atomically(path, lambda handle: handle.write(body))
    summary, table = read_with_splat_transform(cli, path)
    with pytest.raises(AssertionError):
        check_splat(summary, table, state)


@pytest.mark.parametrize(
    "swap",
    [("x", "scale_0"), ("opacity", "rot_0"), ("f_dc_0", "f_dc_2"), ("f_rest_1", "f_rest_15")],
    ids=lambda pair: "-".join(pair),
)
def test_the_ply_checks_catch_a_wrong_layout(cli, state, tmp_path, swap):
    """Our header, but two columns' data exchanged: what a writer with its fields out of order makes."""
    rows = ply_rows(state)
    first, second = (PROPERTY_NAMES.index(name) for name in swap)
    rows[:, [first, second]] = rows[:, [second, first]]
    header = "\n".join(
        ["ply", "format binary_little_endian 1.0", f"element vertex {COUNT}"]
        + [f"property float {name}" for name in PROPERTY_NAMES]
        + ["end_header"]
    )
    path = tmp_path / "wrong.ply"
    path.write_bytes(header.encode("ascii") + b"\n" + np.ascontiguousarray(rows, dtype="<f4").tobytes())
    if swap[0].startswith("f_rest"):
        _, table = read_with_splat_transform(cli, path, "--filter-harmonics", "1")
        with pytest.raises(AssertionError):
            check_sh_after_degree_1(table, state)
        return
    summary, table = read_with_splat_transform(cli, path)
    with pytest.raises(AssertionError):
        check_ply(summary, table, state)
