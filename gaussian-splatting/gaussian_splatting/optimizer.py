"""Adam with one parameter group per Gaussian attribute, the 3DGS learning rates, and the row
surgery densification needs (new rows start with zero moments, removed rows lose theirs)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from gaussian_splatting.gaussians import Gaussians

if TYPE_CHECKING:  # config imports densify, which imports this module
    from gaussian_splatting.config import TrainConfig


def learning_rates(config: TrainConfig, extent: float) -> dict[str, float]:
    """Each parameter's starting rate, by its name in ``Gaussians``; positions scale with the scene extent."""
    return {
        "means": config.position_lr_init * extent,
        "log_scales": config.scaling_lr,
        "quats": config.rotation_lr,
        "opacity_logits": config.opacity_lr,
        "sh_dc": config.sh_dc_lr,
        "sh_rest": config.sh_rest_lr,
    }


def make_optimizer(gaussians: Gaussians, config: TrainConfig, extent: float) -> torch.optim.Adam:
    """Adam (eps 1e-15, as 3DGS) with a named group per parameter."""
    rates = learning_rates(config, extent)
    groups = [{"params": [p], "lr": rates[name], "name": name} for name, p in gaussians.parameters().items()]
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


def position_lr(config: TrainConfig, extent: float, iteration: int) -> float:
    """Log-linear decay from init to final (both times the extent) over the run, as 3DGS."""
    t = min(max(iteration / max(config.iterations, 1), 0.0), 1.0)
    start, end = config.position_lr_init * extent, config.position_lr_final * extent
    return math.exp((1 - t) * math.log(start) + t * math.log(end))


def set_position_lr(optimizer: torch.optim.Adam, rate: float) -> None:
    for group in optimizer.param_groups:
        if group["name"] == "means":
            group["lr"] = rate


def edit_rows(
    optimizer: torch.optim.Adam,
    gaussians: Gaussians,
    values: Callable[[str, Tensor], Tensor],
    moments: Callable[[Tensor], Tensor],
) -> None:
    """Replace every parameter by ``values(name, old)`` and each Adam moment by
    ``moments(old_moment)``; both map [N, ...] rows to [N', ...] rows the same way."""
    new_tensors = {}
    for group in optimizer.param_groups:
        old = group["params"][0]
        new_tensors[group["name"]] = values(group["name"], old.detach())
    gaussians.replace(new_tensors)
    for group in optimizer.param_groups:
        old = group["params"][0]
        new = getattr(gaussians, group["name"])
        state = optimizer.state.pop(old, None)
        if state:
            state["exp_avg"] = moments(state["exp_avg"])
            state["exp_avg_sq"] = moments(state["exp_avg_sq"])
            optimizer.state[new] = state
        group["params"][0] = new


def keep_rows(optimizer: torch.optim.Adam, gaussians: Gaussians, keep: Tensor) -> None:
    """Drop the Gaussians where ``keep`` [N] bool is False."""
    edit_rows(optimizer, gaussians, lambda _, t: t[keep], lambda m: m[keep])


def append_rows(optimizer: torch.optim.Adam, gaussians: Gaussians, extra: dict[str, Tensor]) -> None:
    """Add Gaussians (``extra[name]`` [M, ...] for every parameter) with zero Adam moments."""
    count = extra["means"].shape[0]
    edit_rows(
        optimizer,
        gaussians,
        lambda name, t: torch.cat([t, extra[name]]),
        lambda m: torch.cat([m, m.new_zeros((count, *m.shape[1:]))]),
    )


def reset_rows(optimizer: torch.optim.Adam, gaussians: Gaussians, name: str, value: Tensor) -> None:
    """Set parameter ``name`` to ``value`` and zero its moments (the opacity reset)."""
    edit_rows(
        optimizer,
        gaussians,
        lambda n, t: value if n == name else t,
        lambda m: m,
    )
    for group in optimizer.param_groups:
        if group["name"] == name:
            state = optimizer.state.get(group["params"][0])
            if state:
                state["exp_avg"].zero_()
                state["exp_avg_sq"].zero_()
