"""LPIPS, AlexNet variant (Zhang et al. 2018, the ``lpips`` package's v0.1), written with torch.nn.

Our own copy so that evaluation needs neither torchvision nor the ``lpips`` package, and never
downloads: the weights are two files the user provides, torchvision's AlexNet state dict and the
lpips v0.1 linear layers. Without them ``load_lpips`` returns a reason instead of a metric, so
results.json can say ``lpips: null`` and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet
LINEAR_FILE = "alex.pth"  # the lpips package's weights/v0.1/alex.pth
SETTING = "lpips_weights"  # the setting that names the folder, quoted in the reason

# Output channels of relu1..relu5, the five layers LPIPS compares.
CHANNELS = (64, 192, 384, 256, 256)
# Indices of those ReLUs in torchvision's ``features`` Sequential.
_TAPS = (1, 4, 7, 9, 11)
# lpips v0.1 ScalingLayer: ImageNet mean and std, for inputs in [-1, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10
# The smallest side AlexNet's two stride-2 poolings leave at least one pixel of.
MIN_SIDE = 31


class _Network(nn.Module):
    """AlexNet ``features`` in torchvision's layout (so its state dict loads as is) + the 1x1 lins."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
        )
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))

    def taps(self, x: Tensor) -> list[Tensor]:
        """relu1..relu5 of a [N, 3, H, W] batch in [-1, 1]."""
        x = (x - self.shift) / self.scale
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAPS:
                outputs.append(x)
        return outputs

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """Per-pair distance [N] of two [N, 3, H, W] batches in [-1, 1]."""
        total = x0.new_zeros(x0.shape[0])
        for f0, f1, lin in zip(self.taps(x0), self.taps(x1), self.lins):
            f0 = f0 / (torch.sqrt((f0**2).sum(dim=1, keepdim=True)) + _EPS)
            f1 = f1 / (torch.sqrt((f1**2).sum(dim=1, keepdim=True)) + _EPS)
            total = total + lin((f0 - f1) ** 2).mean(dim=(1, 2, 3))
        return total


@dataclass(frozen=True)
class Lpips:
    """The loaded metric; ``folder`` is where its weights came from (worth recording in results)."""

    network: _Network
    folder: Path

    def __call__(self, image: Tensor, target: Tensor) -> float:
        """LPIPS between two [H, W, 3] images in [0, 1] (lower is closer; 0 for identical images).

        Both are clamped to [0, 1] first, as PSNR clamps renders: splats overshoot slightly,
        and the 3DGS reference scripts score saved 8-bit images, where overshoot is clipped.
        """
        if image.shape != target.shape or image.ndim != 3 or image.shape[2] != 3:
            shapes = f"{tuple(image.shape)} and {tuple(target.shape)}"
            raise ValueError(f"LPIPS needs two [H, W, 3] images of one size, got {shapes}")
        if min(image.shape[0], image.shape[1]) < MIN_SIDE:
            raise ValueError(f"LPIPS needs at least {MIN_SIDE} pixels on each side, got {tuple(image.shape)}")
        device = image.device
        network = self.network.to(device)  # in place; a no-op once it is there

        def batch(x: Tensor) -> Tensor:
            x = x.detach().to(device=device, dtype=torch.float32).clamp(0.0, 1.0)
            return x.permute(2, 0, 1)[None] * 2.0 - 1.0

        with torch.no_grad():
            return float(network(batch(image), batch(target))[0].item())


def default_weights_dir() -> Path:
    """torch.hub's checkpoint folder, found as torch.hub finds it, without touching its downloader."""
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    torch_home = os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))
    return Path(torch_home) / "hub" / "checkpoints"


def load_lpips(weights_dir: Path | None = None) -> Lpips | str:
    """The metric with weights from ``weights_dir`` (default: the torch.hub cache), or why not.

    Never raises for missing or unreadable weights and never downloads: evaluation goes on
    without LPIPS and reports the returned reason.
    """
    folder = Path(weights_dir).expanduser() if weights_dir is not None else default_weights_dir()
    missing = [name for name in (ALEXNET_FILE, LINEAR_FILE) if not (folder / name).is_file()]
    if missing:
        searched = f"{folder} (from {SETTING})" if weights_dir is not None else f"{folder} (torch cache)"
        return (
            f"LPIPS weights not found: {' and '.join(missing)} missing in {searched}; put "
            f"{ALEXNET_FILE} (torchvision AlexNet) and {LINEAR_FILE} (lpips v0.1 linear layers) "
            f"in {folder} or set {SETTING} (--lpips-weights) to a folder that holds them"
        )
    network = _Network()
    for path, expected in ((folder / ALEXNET_FILE, _alexnet_keys()), (folder / LINEAR_FILE, _linear_keys())):
        problem = _load(network, path, expected)
        if problem:
            return f"LPIPS weights unusable: {path}: {problem}"
    network.requires_grad_(False)
    return Lpips(network=network.eval(), folder=folder)


def _alexnet_keys() -> dict[str, str]:
    """File key -> our parameter name; the same names, as ``features`` has torchvision's layout."""
    names = [f"features.{i}.{kind}" for i in (0, 3, 6, 8, 10) for kind in ("weight", "bias")]
    return {name: name for name in names}


def _linear_keys() -> dict[str, str]:
    """File key -> our parameter name: lpips wraps each 1x1 conv in Sequential(Dropout, Conv2d)."""
    return {f"lin{i}.model.1.weight": f"lins.{i}.weight" for i in range(len(CHANNELS))}


def _load(network: _Network, path: Path, expected: dict[str, str]) -> str | None:
    """Copy the file's tensors named in ``expected`` into ``network``; what is wrong if they do not fit.

    Other keys are ignored (torchvision's classifier.*). weights_only: no pickled code runs.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # whatever torch raises for a bad file is a reason, not a crash
        # First sentence only: torch's own advice (weights_only=False) is not for a user's weights.
        detail = (str(error).strip().splitlines() or [""])[0].split(". ")[0][:200]
        return f"cannot read it as torch weights ({type(error).__name__}: {detail})"
    if not isinstance(state, dict):
        return f"not a state dict (a {type(state).__name__})"
    own = network.state_dict()
    absent = [key for key in expected if not isinstance(state.get(key), Tensor)]
    if absent:
        return f"lacks {', '.join(absent)}"
    wrong = [
        f"{key} {tuple(state[key].shape)} (want {tuple(own[name].shape)})"
        for key, name in expected.items()
        if state[key].shape != own[name].shape
    ]
    if wrong:
        return f"wrong shape {', '.join(wrong)}"
    network.load_state_dict({name: state[key].float() for key, name in expected.items()}, strict=False)
    return None
