"""PlayCanvas's SOG (Splat Optimized Graphics, version 2): the scene as a handful of lossless WebP
textures and a meta.json in one zip, about 15 bytes a splat with all SH bands kept (the PLY takes
248, the .splat 32 without them), which PlayCanvas's engine, SuperSplat and ``splat-transform``
open. Written here in Python (Pillow's WebP encoder, scikit-learn's k-means): publishing needs no
Node.js.

The layout, as ``@playcanvas/splat-transform`` 2.7.1 writes and reads it (``writeSog``,
``readSog``): a zip of stored entries, ``meta.json`` and one texture per attribute, a splat per
pixel, row by row, ``width = ceil(sqrt(N) / 4) * 4`` and ``height = ceil(N / width / 4) * 4``:

- ``means_l.webp``, ``means_u.webp``: each coordinate as v = sign(x) ln(|x| + 1), stored as a
  16-bit fraction of [mins, maxs] (per axis, in meta) split into a low and a high byte (RGB).
- ``quats.webp``: the unit quaternion (w, x, y, z) with its largest component made positive; the
  other three times sqrt(2), as bytes 255 (c / 2 + 1 / 2), in RGB; A = 252 + the index of the
  dropped largest one, which the reader rebuilds from the unit length.
- ``scales.webp``: the three log scales, each as a byte index into one 256-entry ``codebook``.
- ``sh0.webp``: RGB the three SH dc coefficients, indices into their own 256-entry codebook; A the
  opacity, 255 sigmoid(logit).
- ``shN_centroids.webp``, ``shN_labels.webp`` (not for SH degree 0): the higher coefficients of
  each splat replaced by one of ``count`` palette entries (k-means); the labels texture holds the
  entry's index as 16 bits (R low, G high byte); the centroids texture holds 64 entries a row,
  each ``coefficients`` pixels wide (15 for degree 3), RGB an index per colour channel into a
  256-entry codebook of the palette's values.

Splats go in Morton (Z-order) order of their centres, so neighbouring pixels hold neighbouring
splats, whose bytes are alike: the lossless WebP encoder then finds them cheap to code. (We
interleave 21 bits per axis over the box of all centres; splat-transform interleaves 10 and
refines crowded cells recursively: the same curve.) Values are rounded to the nearest byte or
16-bit step where splat-transform truncates, halving the worst error; the reader is the same.

Codebooks (scales, dc, palette values): 256 entries at the quantiles of an entry density of
1/2 p^(1/3) + 1/2 uniform over the values' range [lo, hi], p the values' density (a histogram).
p^(1/3) is the density that minimises the mean squared error of a fine scalar quantiser; the
uniform half keeps entries in the sparse tails, so no value is farther than (hi - lo) / 256 from
its entry: the hard bound. Most values lie where entries are dense: RMS errors are 4 to 5 times
smaller (on the trained demo and the bench's scene; a uniform quarter gave an RMS 10 % lower and
twice the worst error).

The SH palette: a splat's 3 x 15 higher coefficients (degree 3) as one vector; MiniBatchKMeans
fits the palette on a random sample (16 splats an entry, 3 epochs), every splat then goes to its
nearest entry by squared distance, a matrix product per chunk of splats, and every entry moves
to the mean of its splats (one Lloyd step on all of them, which can only lower the error); unused
entries are dropped. Plain KMeans on all splats with splat-transform's 64k entries for 1M splats
(which it runs on a GPU) is out of reach on two cores: each of its passes is 6e12 flops, minutes
here, and it needs tens. Ours computes (N + 48 K) K distances of 45 dimensions in all, so the
palette has N / 16 entries (a power of two, at least 1024: a smaller scene keeps each splat's own
coefficients), halved while that count exceeds ``PALETTE_WORK`` (6e9): 2048 entries for 50k
splats, 8192 for 300k, 4096 for 1M, 1024 from 4M on, where the time grows linearly with N. The
higher bands are a small part of what a render shows, and the labels (2 bytes a splat) cost the
same for any palette. Measured on two shared cores (bench/sog_export.py): 1M splats in 6-18 s,
14.2 bytes a splat; 300k in 8 s; the trained demo (48k) in 1.3 s, 15.3 bytes a splat, rendered
from its cameras 54 dB PSNR against the PLY (the same model through splat-transform's own SOG
writer, on the CPU: 49 dB, 23 bytes a splat, 168 s).

Errors after the round trip, against the float32 input (asserted by tests/test_sog_export.py on
what splat-transform decodes): positions within (|x| + 1) (exp(s / 2) - 1) ~ (|x| + 1) s / 2 per
axis, s = (maxs - mins) / 65535 of the axis's log transform (4e-4 at x = 10 in a scene from -10
to 10); rotations within 1.1 degrees (each stored component within 1 / (255 sqrt 2) = 0.0028);
opacity (sigmoid) within 0.5 / 255 (and 1e-6, the reader's clamp at 0 and 1); log scales and SH dc
within (hi - lo) / 256 of their range; higher SH: each splat's coefficients are the mean of those
of the splats that share its palette entry, within (hi - lo) / 256 of the range of the palette's
values. How far that mean lies from a splat's own depends on the scene: RMS 0.003 against the
coefficients' RMS of 0.009 on the trained demo; for independent noise (the worst case) most of it
is lost.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.cluster import MiniBatchKMeans
from torch import Tensor

from gaussian_splatting.atomic_write import write_atomically
from gaussian_splatting.splat_export import as_numpy, to_byte

log = logging.getLogger(__name__)

SOG_VERSION = 2
CODEBOOK_SIZE = 256
UNIFORM_SHARE = 0.5  # of the codebook's entries spread evenly over the values' range
HISTOGRAM_BINS = 4096
SH_COEFFICIENTS_BY_BANDS = {0: 0, 1: 3, 2: 8, 3: 15}  # higher coefficients per colour channel
PALETTE_PER_SPLATS = 16  # N / 16 palette entries (a power of two) ...
MIN_PALETTE = 1024  # ... at least this many (a scene of fewer splats keeps each one's own: exact)
MAX_PALETTE = 65536  # ... at most this many (16-bit labels)
FIT_SAMPLE_PER_ENTRY = 16  # splats in the k-means fit's sample per palette entry
FIT_EPOCHS = 3  # passes of MiniBatchKMeans over that sample (5 lowered the error by 1 % at 1M)
# ... and halved while the distances the fit and the assignment compute, (N + 48 K) K, exceed this
PALETTE_WORK = 6e9
PALETTE_ROW = 64  # palette entries per row of the centroids texture
ASSIGN_CHUNK = 4096  # splats per matrix product when assigning palette entries
SEED = 0
META = "meta.json"
# the zip's entries carry this time, so the same scene gives the same file
ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def sog_bytes(state: dict[str, Tensor]) -> bytes:
    """The bundled .sog (a zip) from the trainer's raw parameters."""
    means = as_numpy(state["means"])
    count = means.shape[0]
    if count == 0:
        raise ValueError("a SOG file needs at least one splat")
    log_scales = as_numpy(state["log_scales"])
    quats = as_numpy(state["quats"])
    opacity_logits = as_numpy(state["opacity_logits"]).reshape(count)
    sh_dc = as_numpy(state["sh_dc"]).reshape(count, 3)
    sh_rest = as_numpy(state["sh_rest"], np.float32).reshape(count, -1, 3)  # [N, coefficients, channel]
    for name, values in (("means", means), ("log_scales", log_scales), ("quats", quats),
                         ("opacity_logits", opacity_logits), ("sh_dc", sh_dc), ("sh_rest", sh_rest)):
        bad = ~np.isfinite(values.reshape(count, -1)).all(axis=1)
        if bad.any():
            raise ValueError(f"{int(bad.sum()):,} of {count:,} Gaussians have a non-finite {name}: "
                             "SOG stores only finite values")

    order = morton_order(means)
    width = math.ceil(math.sqrt(count) / 4) * 4
    height = math.ceil(count / width / 4) * 4
    textures: dict[str, bytes] = {}

    def texture(name: str, rgba: np.ndarray, size: tuple[int, int] = (width, height)) -> None:
        textures[name] = _webp(rgba, *size)

    # means: log transform, 16 bits over each axis's range
    logged = np.sign(means) * np.log1p(np.abs(means))
    mins, maxs = logged.min(axis=0), logged.max(axis=0)
    spans = np.where(maxs > mins, maxs - mins, 1.0)
    steps = np.rint(65535.0 * (logged[order] - mins) / spans).astype(np.uint16)
    texture("means_l.webp", _rgba(width * height, (steps & 0xFF).astype(np.uint8)))
    texture("means_u.webp", _rgba(width * height, (steps >> 8).astype(np.uint8)))

    texture("quats.webp", _rgba(width * height, *_packed_quaternions(quats[order])))

    scale_codebook, scale_labels = codebook(log_scales[order])
    texture("scales.webp", _rgba(width * height, scale_labels))

    colour_codebook, colour_labels = codebook(sh_dc[order])
    alpha = to_byte(255.0 / (1.0 + np.exp(-opacity_logits[order])))
    texture("sh0.webp", _rgba(width * height, colour_labels, alpha))

    meta: dict = {
        "version": SOG_VERSION,
        "asset": {"generator": "instarecon3d"},
        "count": count,
        "means": {"mins": _floats(mins), "maxs": _floats(maxs), "files": ["means_l.webp", "means_u.webp"]},
        "scales": {"codebook": _floats(scale_codebook), "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"codebook": _floats(colour_codebook), "files": ["sh0.webp"]},
    }

    coefficients = sh_rest.shape[1]
    if coefficients and sh_rest.any():  # a degree 0 model (as a PLY holds it: zeros) needs no palette
        bands = next((b for b, c in SH_COEFFICIENTS_BY_BANDS.items() if c == coefficients and b), None)
        if bands is None:
            raise ValueError(f"{coefficients} higher SH coefficients per channel match no SH degree up to 3")
        # channel-major vectors (all red coefficients, then green, then blue), as f_rest_* lie
        vectors = np.ascontiguousarray(sh_rest.transpose(0, 2, 1).reshape(count, 3 * coefficients)[order])
        started = time.monotonic()
        palette, labels = sh_palette(vectors)
        log.info("SH palette: %d entries for %d splats in %.1f s", len(palette), count, time.monotonic() - started)
        value_codebook, value_labels = codebook(palette)
        entries = palette.shape[0]
        rows = math.ceil(entries / PALETTE_ROW)
        # [entry, coefficient, channel] -> pixel (entry % 64) * coefficients + coefficient of row entry // 64
        pixels = np.full((rows * PALETTE_ROW, coefficients, 4), 255, dtype=np.uint8)
        pixels[:entries, :, :3] = value_labels.reshape(entries, 3, coefficients).transpose(0, 2, 1)
        texture("shN_centroids.webp", pixels.reshape(-1, 4), (PALETTE_ROW * coefficients, rows))
        texture("shN_labels.webp", _rgba(width * height, (labels & 0xFF).astype(np.uint8),
                                         (labels >> 8).astype(np.uint8), np.zeros(count, np.uint8)))
        meta["shN"] = {
            "count": entries,
            "bands": bands,
            "codebook": _floats(value_codebook),
            "files": ["shN_centroids.webp", "shN_labels.webp"],
        }

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as bundle:
        for name, data in [(META, json.dumps(meta).encode("utf-8")), *textures.items()]:
            bundle.writestr(zipfile.ZipInfo(name, ZIP_TIME), data)
    return archive.getvalue()


def write_sog(path: Path, state: dict[str, Tensor]) -> None:
    """Write the Gaussians to ``path`` (via a temporary file, so readers never see half a file)."""
    body = sog_bytes(state)
    write_atomically(path, lambda handle: handle.write(body))


def read_sog(path: Path) -> dict[str, np.ndarray]:
    """The raw parameters (as ``Gaussians.state()``, float32 numpy) decoded from a .sog as
    splat-transform decodes it, in the file's (Morton) order; sh_rest is [N, 0, 3] without shN."""
    with zipfile.ZipFile(path) as bundle:
        meta = json.loads(bundle.read(META))
        if meta.get("version") != SOG_VERSION:
            raise ValueError(f"{path}: SOG version {meta.get('version')}, only {SOG_VERSION} is read")
        count = int(meta["count"])

        def pixels(name: str) -> np.ndarray:
            with Image.open(io.BytesIO(bundle.read(name))) as image:
                return np.asarray(image.convert("RGBA")).reshape(-1, 4)

        low, high = (pixels(name)[:count, :3].astype(np.float64) for name in meta["means"]["files"])
        mins, maxs = np.array(meta["means"]["mins"]), np.array(meta["means"]["maxs"])
        spans = np.where(maxs - mins != 0, maxs - mins, 1.0)
        logged = mins + spans * (low + 256.0 * high) / 65535.0
        means = np.sign(logged) * np.expm1(np.abs(logged))

        quats = _unpacked_quaternions(pixels(meta["quats"]["files"][0])[:count])
        scale_codebook = np.array(meta["scales"]["codebook"], dtype=np.float32)
        log_scales = scale_codebook[pixels(meta["scales"]["files"][0])[:count, :3]]
        sh0 = pixels(meta["sh0"]["files"][0])[:count]
        sh_dc = np.array(meta["sh0"]["codebook"], dtype=np.float32)[sh0[:, :3]]
        alpha = np.clip(sh0[:, 3] / 255.0, 1e-6, 1 - 1e-6)
        opacity_logits = np.log(alpha / (1.0 - alpha))

        sh_rest = np.zeros((count, 0, 3), dtype=np.float32)
        if "shN" in meta:
            coefficients = SH_COEFFICIENTS_BY_BANDS[int(meta["shN"]["bands"])]
            value_codebook = np.array(meta["shN"]["codebook"], dtype=np.float32)
            entries = int(meta["shN"]["count"])
            centroids = pixels(meta["shN"]["files"][0])[:, :3].reshape(-1, coefficients, 3)[:entries]
            label_pixels = pixels(meta["shN"]["files"][1])[:count].astype(np.int64)
            labels = label_pixels[:, 0] | (label_pixels[:, 1] << 8)
            sh_rest = value_codebook[centroids[labels]]  # [N, coefficient, channel]
    return {
        "means": means.astype(np.float32),
        "log_scales": log_scales,
        "quats": quats.astype(np.float32),
        "opacity_logits": opacity_logits.astype(np.float32),
        "sh_dc": sh_dc[:, None, :],
        "sh_rest": sh_rest,
    }


def morton_order(means: np.ndarray) -> np.ndarray:
    """Indices that put the centres [N, 3] in Z order: 21 bits per axis over their box,
    interleaved (x lowest), stable for equal codes."""
    lows, highs = means.min(axis=0), means.max(axis=0)
    spans = np.where(highs > lows, highs - lows, 1.0)
    cells = np.minimum((means - lows) / spans * 2**21, 2**21 - 1).astype(np.uint64)
    code = _spread_bits(cells[:, 0]) | (_spread_bits(cells[:, 1]) << np.uint64(1)) | (
        _spread_bits(cells[:, 2]) << np.uint64(2))
    return np.argsort(code, kind="stable")


def codebook(values: np.ndarray, size: int = CODEBOOK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A sorted float32 codebook of ``size`` entries for all ``values`` pooled, and each value's
    entry (uint8, the shape of ``values``); see the module's docstring for where entries go."""
    flat = values.reshape(-1).astype(np.float64)
    lo, hi = float(flat.min()), float(flat.max())
    if hi - lo <= 0.0:
        return np.full(size, lo, dtype=np.float32), np.zeros(values.shape, dtype=np.uint8)
    counts, edges = np.histogram(flat, bins=HISTOGRAM_BINS, range=(lo, hi))
    density = np.cbrt(counts.astype(np.float64))
    density = (1.0 - UNIFORM_SHARE) * density / density.sum() + UNIFORM_SHARE / HISTOGRAM_BINS
    cumulative = np.concatenate([[0.0], np.cumsum(density)])
    cumulative /= cumulative[-1]
    entries = np.interp((np.arange(size) + 0.5) / size, cumulative, edges).astype(np.float32)
    entries = np.sort(entries)
    middles = (entries[:-1].astype(np.float64) + entries[1:]) / 2.0
    labels = np.searchsorted(middles, flat, side="right").astype(np.uint8)
    return entries, labels.reshape(values.shape)


def palette_size(count: int) -> int:
    """How many SH palette entries for ``count`` splats (see the module's docstring)."""
    entries = 2 ** math.floor(math.log2(max(1, count // PALETTE_PER_SPLATS)))
    entries = min(MAX_PALETTE, max(MIN_PALETTE, entries))
    while entries > MIN_PALETTE and (count + FIT_EPOCHS * FIT_SAMPLE_PER_ENTRY * entries) * entries > PALETTE_WORK:
        entries //= 2
    return entries


def sh_palette(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Palette [K, D] float32 and each vector's entry [N] (uint16) for the SH vectors [N, D]."""
    count = vectors.shape[0]
    entries = palette_size(count)
    if count <= entries:  # every splat its own entry: exact
        unique, labels = np.unique(vectors, axis=0, return_inverse=True)
        return unique.astype(np.float32), labels.reshape(count).astype(np.uint16)
    generator = np.random.default_rng(SEED)
    sample_size = min(count, FIT_SAMPLE_PER_ENTRY * entries)
    sample = vectors[np.sort(generator.choice(count, sample_size, replace=False))]
    fitted = MiniBatchKMeans(
        n_clusters=entries, init="random", n_init=1, batch_size=4096, max_iter=FIT_EPOCHS, random_state=SEED,
        compute_labels=False, reassignment_ratio=0.0,
    ).fit(sample)
    palette = fitted.cluster_centers_.astype(np.float32)
    labels = nearest_entries(vectors, palette)
    # one Lloyd step on all splats: each entry to the mean of its splats (lowers the error)
    used = np.bincount(labels, minlength=entries)
    sums = np.stack([np.bincount(labels, weights=column, minlength=entries) for column in vectors.T], axis=1)
    kept = used > 0
    palette = (sums[kept] / used[kept, None]).astype(np.float32)
    renumbered = np.cumsum(kept) - 1
    return palette, renumbered[labels].astype(np.uint16)


def nearest_entries(vectors: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index [N] (int64) of each vector's nearest palette entry, by squared distance: argmin of
    |c|^2 - 2 v.c, one matrix product ([v, 1] times [-2 c, |c|^2]) per ``ASSIGN_CHUNK`` vectors."""
    squares = (palette.astype(np.float64) ** 2).sum(axis=1, keepdims=True)
    augmented = np.ascontiguousarray(np.concatenate([-2.0 * palette, squares], axis=1).T, dtype=np.float32)
    rows = np.ones((ASSIGN_CHUNK, vectors.shape[1] + 1), dtype=np.float32)
    distances = np.empty((ASSIGN_CHUNK, palette.shape[0]), dtype=np.float32)  # reused: no page faults per chunk
    labels = np.empty(vectors.shape[0], dtype=np.int64)
    for start in range(0, vectors.shape[0], ASSIGN_CHUNK):
        size = min(ASSIGN_CHUNK, vectors.shape[0] - start)
        rows[:size, :-1] = vectors[start:start + size]
        np.matmul(rows[:size], augmented, out=distances[:size])
        np.argmin(distances[:size], axis=1, out=labels[start:start + size])
    return labels


def _packed_quaternions(quats: np.ndarray) -> tuple[np.ndarray, ...]:
    """Smallest three: the three components other than the largest (made positive) times sqrt 2,
    as bytes, and 252 + the largest one's index."""
    norms = np.linalg.norm(quats, axis=1, keepdims=True)
    identity = np.array([1.0, 0.0, 0.0, 0.0])
    unit = np.where(norms > 0, quats / np.where(norms > 0, norms, 1.0), identity)
    largest = np.argmax(np.abs(unit), axis=1)  # the first of equals, as the reference's reduce
    rows = np.arange(len(unit))
    unit = unit * np.where(unit[rows, largest] < 0, -1.0, 1.0)[:, None]
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    stored = unit[rows[:, None], others] * math.sqrt(2.0)
    bytes_ = to_byte(255.0 * (stored * 0.5 + 0.5))
    return bytes_[:, 0], bytes_[:, 1], bytes_[:, 2], (252 + largest).astype(np.uint8)


def _unpacked_quaternions(pixels: np.ndarray) -> np.ndarray:
    largest = pixels[:, 3].astype(np.int64) - 252
    valid = (largest >= 0) & (largest <= 3)
    largest = np.where(valid, largest, 0)
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    rows = np.arange(len(pixels))
    quats = np.zeros((len(pixels), 4))
    quats[rows[:, None], others] = (pixels[:, :3] / 255.0 * 2.0 - 1.0) / math.sqrt(2.0)
    quats[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - (quats**2).sum(axis=1)))
    quats[~valid] = [1.0, 0.0, 0.0, 0.0]
    return quats


def _spread_bits(values: np.ndarray) -> np.ndarray:
    """The low 21 bits of each value moved to every third bit (bit i to bit 3 i)."""
    x = values & np.uint64(0x1FFFFF)
    for shift, mask in ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
                        (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249)):
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def _rgba(pixels: int, *channels: np.ndarray) -> np.ndarray:
    """[pixels, 4] uint8: ``channels`` (each [N], or one [N, 3]) in R, G, B, A from the first
    pixel on; missing channels and the pixels past N are 0, alpha 255."""
    columns = [c for channel in channels for c in (channel.T if channel.ndim == 2 else [channel])]
    rgba = np.zeros((pixels, 4), dtype=np.uint8)
    rgba[:, 3] = 255
    for index, column in enumerate(columns):
        rgba[: len(column), index] = column
    return rgba


def _webp(rgba: np.ndarray, width: int, height: int) -> bytes:
    """Lossless WebP; ``exact`` keeps the colour of pixels whose alpha is 0 (an opacity byte of 0
    must not change the splat's colour indices)."""
    image = Image.fromarray(np.ascontiguousarray(rgba).reshape(height, width, 4), "RGBA")
    output = io.BytesIO()
    image.save(output, "WEBP", lossless=True, quality=70, method=4, exact=True)
    return output.getvalue()


def _floats(values: np.ndarray) -> list[float]:
    """JSON numbers that read back as the same float64 (the box) or, for float32 values (the
    codebooks), as the same float32, in the fewest digits that do (half the size of meta.json)."""
    values = np.asarray(values).reshape(-1)
    if values.dtype == np.float32:
        return [float(str(value)) for value in values]
    return [float(value) for value in values]
