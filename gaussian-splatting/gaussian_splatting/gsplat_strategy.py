"""gsplat's densification strategies (``DefaultStrategy``, ``MCMCStrategy``) driving our trainer,
beside our own densification (``densify.py``, the strategy "ours").

gsplat's strategies edit a dict of parameters under its names (means, scales, quats, opacities,
sh0, shN) with one single-group optimizer per parameter; ours keeps one Adam with a group per
parameter. ``GsplatTraining`` holds gsplat's form and writes the same ``nn.Parameter`` objects
back into our ``Gaussians`` after every edit, so rendering, checkpoints and the PLY see one model.

Where each runs:

- "default" is plain PyTorch (duplicate, split, prune), so it runs on the CPU too: our CPU
  rasterizer's ``RenderMeta`` is handed over in the shape ``gsplat.rasterization`` gives its
  ``info`` (one camera, unpacked rows). It never caps the count, so a cap is added here
  (``max_gaussians``: the strongest gradients that fit, as ours does).
- "mcmc" relocates and adds Gaussians with gsplat's CUDA kernels (``compute_relocation``,
  ``quat_scale_to_covar_preci``): CUDA only. ``max_gaussians`` is its ``cap_max``; it trains
  with gsplat's MCMC recipe (opacity 0.5 and a tenth of the neighbour distance at the start,
  opacity and scale regularisers of 0.01).

Both take the run's schedule from ``DensifySettings.schedule`` (shrunk for short runs as ours),
so a comparison at 7,000 iterations compares the methods, not the schedules.

gsplat 1.5.3's DefaultStrategy never resets opacities: its test ``step % self.reset_every == 0
& step > 0`` is always false (``&`` binds before ``==``, so it reads ``... == 0 and 0 > 0``). It
is measured as shipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor

from gaussian_splatting.config import TrainConfig
from gaussian_splatting.gaussians import Gaussians
from gaussian_splatting.optimizer import learning_rates
from gaussian_splatting.rasterize import RenderMeta

Strategy = Literal["ours", "default", "mcmc"]
STRATEGIES: tuple[str, ...] = ("ours", "default", "mcmc")
CUDA_ONLY_STRATEGIES = ("mcmc",)

# our parameter name -> gsplat's
GSPLAT_NAMES = {
    "means": "means",
    "log_scales": "scales",
    "quats": "quats",
    "opacity_logits": "opacities",
    "sh_dc": "sh0",
    "sh_rest": "shN",
}

# gsplat's examples/simple_trainer.py "mcmc" configuration
MCMC_INITIAL_OPACITY = 0.5
MCMC_INITIAL_SCALE = 0.1  # times the mean neighbour distance our initialisation uses
MCMC_OPACITY_REGULARISER = 0.01
MCMC_SCALE_REGULARISER = 0.01
MCMC_REFERENCE_STOP = 25_000  # MCMCStrategy.refine_stop_iter, of 30,000


class StrategyUnavailable(ValueError):
    """The strategy (or rendering mode) cannot run on this backend; str() says why and what to use."""


def check_strategy(strategy: str, backend: str, antialiased: bool = False) -> None:
    """Refuse what cannot run on ``backend`` ("cpu" or "cuda", resolved) before any work."""
    if strategy not in STRATEGIES:
        raise StrategyUnavailable(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if backend == "cpu" and strategy in CUDA_ONLY_STRATEGIES:
        raise StrategyUnavailable(
            f"the {strategy!r} strategy needs CUDA (gsplat's relocation and noise kernels) and this run is on the "
            "CPU: train with --strategy ours (or default), or on a GPU"
        )
    if backend == "cpu" and antialiased:
        raise StrategyUnavailable(
            "antialiased rendering is gsplat's (CUDA only); the CPU rasterizer renders classic 3DGS: "
            "drop --antialiased, or train on a GPU"
        )


def initial_state(strategy: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Raw parameters as ``strategy`` starts from: MCMC's recipe starts opaque and small."""
    if strategy != "mcmc":
        return state
    count = state["means"].shape[0]
    return {
        **state,
        "log_scales": state["log_scales"] + math.log(MCMC_INITIAL_SCALE),
        "opacity_logits": torch.logit(torch.full((count,), MCMC_INITIAL_OPACITY)).to(state["opacity_logits"]),
    }


def _capped_default_strategy():
    from gsplat.strategy import DefaultStrategy
    from gsplat.strategy.ops import duplicate, split

    @dataclass
    class CappedDefaultStrategy(DefaultStrategy):
        """gsplat's DefaultStrategy that stops growing at ``max_gaussians``: when more Gaussians
        pass the gradient threshold than fit, those with the strongest gradients do (as ours)."""

        max_gaussians: int = 3_000_000

        @torch.no_grad()
        def _grow_gs(self, params, optimizers, state, step):  # gsplat 1.5.3's, plus the cap
            grads = state["grad2d"] / state["count"].clamp_min(1)
            device = grads.device
            is_grad_high = grads > self.grow_grad2d
            room = max(0, self.max_gaussians - len(params["means"]))
            if int(is_grad_high.sum()) > room:
                order = torch.argsort(torch.where(is_grad_high, grads, -1.0), descending=True)
                is_grad_high = torch.zeros_like(is_grad_high)
                is_grad_high[order[:room]] = True
            is_small = torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
            is_dupli = is_grad_high & is_small
            is_split = is_grad_high & ~is_small
            if step < self.refine_scale2d_stop_iter:  # off by default, as in gsplat
                is_split |= state["radii"] > self.grow_scale2d
            n_dupli, n_split = int(is_dupli.sum()), int(is_split.sum())
            if n_dupli > 0:
                duplicate(params=params, optimizers=optimizers, state=state, mask=is_dupli)
            is_split = torch.cat([is_split, torch.zeros(n_dupli, dtype=torch.bool, device=device)])
            if n_split > 0:
                split(params=params, optimizers=optimizers, state=state, mask=is_split,
                      revised_opacity=self.revised_opacity)
            return n_dupli, n_split

    return CappedDefaultStrategy


def make_strategy(strategy: str, config: TrainConfig):
    """The gsplat strategy object for ``strategy`` with our run's schedule and thresholds."""
    settings = config.densify
    # gsplat's DefaultStrategy as gsplat sets it up: signed gradients, and their threshold
    schedule = replace(settings, absgrad=False).schedule(config.iterations)
    if strategy == "default":
        return _capped_default_strategy()(
            prune_opa=settings.min_opacity,
            grow_grad2d=schedule.grad_threshold,
            grow_scale3d=settings.percent_dense,
            prune_scale3d=settings.max_world_scale,
            refine_start_iter=schedule.start,
            refine_stop_iter=schedule.stop,
            refine_every=schedule.every,
            reset_every=schedule.reset_every,
            max_gaussians=settings.max_gaussians,
        )
    if strategy == "mcmc":
        from gsplat.strategy import MCMCStrategy

        factor = min(1.0, config.iterations / 30_000)
        return MCMCStrategy(
            cap_max=settings.max_gaussians,
            refine_start_iter=schedule.start,
            refine_stop_iter=round(MCMC_REFERENCE_STOP * factor),
            refine_every=schedule.every,
            min_opacity=settings.min_opacity,
        )
    raise ValueError(f"no gsplat strategy is called {strategy!r}")


def render_info(meta: RenderMeta, width: int, height: int) -> dict[str, Any]:
    """What the strategies read from ``gsplat.rasterization``'s ``info`` (packed=False, one
    camera), from our ``RenderMeta`` after ``backward()``: means2d [1, N, 2] carrying the
    view-space gradient, radii [1, N, 2]. The same on both backends (the CPU's means2d is
    [N, 2], gsplat's [1, N, 2])."""
    means2d = meta.means2d.detach().reshape(1, -1, 2)
    if meta.means2d.grad is not None:
        means2d.grad = meta.means2d.grad.reshape(1, -1, 2)
    return {
        "means2d": means2d,
        "radii": meta.radii.reshape(1, -1, 2),
        "width": width,
        "height": height,
        "n_cameras": 1,
        "gaussian_ids": None,
    }


class GsplatTraining:
    """The parameters, optimizers and state of a run driven by a gsplat strategy. ``gaussians``
    is kept pointing at the same parameters the strategy edits."""

    def __init__(self, strategy: str, gaussians: Gaussians, config: TrainConfig, extent: float):
        self.name, self.gaussians, self.config, self.extent = strategy, gaussians, config, extent
        self.strategy = make_strategy(strategy, config)
        self.params = {GSPLAT_NAMES[name]: p for name, p in gaussians.parameters().items()}
        rates = {GSPLAT_NAMES[name]: rate for name, rate in learning_rates(config, extent).items()}
        self.optimizers = {
            name: torch.optim.Adam([{"params": [p], "lr": rates[name], "name": name}], eps=1e-15)
            for name, p in self.params.items()
        }
        self.strategy.check_sanity(self.params, self.optimizers)
        self.state = (
            self.strategy.initialize_state(scene_scale=extent)
            if strategy == "default" else self.strategy.initialize_state()
        )

    def set_position_lr(self, rate: float) -> None:
        self.optimizers["means"].param_groups[0]["lr"] = rate

    def regulariser(self) -> Tensor | float:
        """MCMC's opacity and scale regularisers (added to the loss); 0 for the others."""
        if self.name != "mcmc":
            return 0.0
        opacity = torch.sigmoid(self.params["opacities"]).mean()
        scale = torch.exp(self.params["scales"]).mean()
        return MCMC_OPACITY_REGULARISER * opacity + MCMC_SCALE_REGULARISER * scale

    @torch.no_grad()
    def step(self, iteration: int, meta: RenderMeta, width: int, height: int) -> None:
        """After ``backward()``: Adam on every parameter, then the strategy's densification."""
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        info = render_info(meta, width, height)
        if self.name == "mcmc":
            position_rate = self.optimizers["means"].param_groups[0]["lr"]
            self.strategy.step_post_backward(self.params, self.optimizers, self.state, iteration, info,
                                             lr=position_rate)
        else:
            self.strategy.step_post_backward(self.params, self.optimizers, self.state, iteration, info,
                                             packed=False)
        self._write_back()

    def _write_back(self) -> None:
        for name, gsplat_name in GSPLAT_NAMES.items():
            setattr(self.gaussians, name, self.params[gsplat_name])

    def optimizer_state(self) -> dict:
        return {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}

    def load_optimizer_state(self, saved: dict) -> None:
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(saved[name])

    def strategy_state(self) -> dict[str, Tensor]:
        """The per-Gaussian statistics to checkpoint (tensors only; gsplat makes the rest)."""
        return {key: value for key, value in self.state.items() if isinstance(value, Tensor)}

    def load_strategy_state(self, saved: dict[str, Tensor], device: torch.device) -> None:
        self.state.update({key: value.to(device) for key, value in saved.items()})
