"""Optimisers, the learning-rate schedule and the papers' scaling rules.

MoQuad (Sec. 4.1) trains with LARS, lr 3.2 at batch 256 and a half-period
cosine decay; MCPNet (Sec. 4.1) with SGD, lr 0.1 * b / 32.

    optimizer = build_optimizer("lars", model, lr=moquad_lr(batch_size), weight_decay=1e-6)
    scheduler = cosine_schedule(optimizer, total_steps, warmup_steps)
    ...  # per step: optimizer.step(); scheduler.step()
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split parameters into two groups: weights, and biases + norm parameters.

    Biases and BN/LN scales and shifts (every parameter with ndim <= 1) get no
    weight decay and, under LARS, no trust-ratio adaptation (`lars=False`):
    their scale carries no meaning a layer-wise norm could regulate, and
    decaying them only shrinks the normalised activations (SimCLR, BYOL).
    Frozen parameters are left out.
    """
    weights, others = [], []
    for p in model.parameters():
        if p.requires_grad:
            (weights if p.ndim > 1 else others).append(p)
    return [
        {"params": weights, "weight_decay": weight_decay, "lars": True},
        {"params": others, "weight_decay": 0.0, "lars": False},
    ]


class LARS(torch.optim.Optimizer):
    """LARS, layer-wise adaptive rate scaling (You et al. 2017), SGD-momentum form.

    For each parameter tensor w with gradient g in a group with lars=True:
        u = g + weight_decay * w
        trust = trust_coefficient * ||w|| / ||u||   (1 if either norm is 0)
        v <- momentum * v + trust * u
        w <- w - lr * v
    Groups with lars=False (see `param_groups`) use trust = 1: plain
    momentum SGD. This is the form of moco-v3 and SimCLR's implementations.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
    ):
        if lr < 0 or momentum < 0 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError("LARS needs lr, momentum, weight_decay >= 0 and trust_coefficient > 0")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, lars=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad.add(p, alpha=group["weight_decay"])
                if group["lars"]:
                    w_norm, u_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
                    # torch.where keeps this on-device: no .item() sync per tensor.
                    trust = torch.where(
                        (w_norm > 0) & (u_norm > 0),
                        group["trust_coefficient"] * w_norm / u_norm,
                        torch.ones_like(w_norm),
                    )
                    update = update.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(update)
                p.add_(buf, alpha=-group["lr"])
        return loss


def _lars(model: nn.Module, lr: float, weight_decay: float, momentum: float, trust_coefficient: float = 0.001):
    return LARS(param_groups(model, weight_decay), lr=lr, momentum=momentum, trust_coefficient=trust_coefficient)


def _sgd(model: nn.Module, lr: float, weight_decay: float, momentum: float, nesterov: bool = False):
    return torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=nesterov)


def _adaptive(cls):
    """Adam-style optimiser ``cls`` over ``param_groups``; ``momentum`` is beta1."""
    def build(model: nn.Module, lr: float, weight_decay: float, momentum: float, betas=None, eps: float = 1e-8):
        return cls(param_groups(model, weight_decay), lr=lr, betas=tuple(betas or (momentum, 0.999)), eps=eps)
    return build


# The papers' optimisers (LARS, SGD), and Adam (L2 decay in the gradient) / AdamW (decoupled
# decay, Loshchilov & Hutter 2019). At small scale MCPNet's MIP branch learnt with AdamW and not
# with SGD at the demo's learning rate; MoQuad did not change (benchmarks/FIDELITY.md).
OPTIMIZERS = {"lars": _lars, "sgd": _sgd, "adam": _adaptive(torch.optim.Adam), "adamw": _adaptive(torch.optim.AdamW)}


def build_optimizer(
    name: str, model: nn.Module, lr: float, weight_decay: float, momentum: float = 0.9, **kwargs
) -> torch.optim.Optimizer:
    """Build an optimiser over `param_groups(model, weight_decay)`.

    Args:
        name: "lars" (MoQuad), "sgd" (MCPNet), "adam" or "adamw".
        model: the module to optimise (the whole method: backbone + heads).
        lr: peak learning rate, e.g. from `moquad_lr` / `mcpnet_lr`.
        weight_decay: applied to weights only (see `param_groups`).
        momentum: heavy-ball momentum (SGD, LARS); beta1 for Adam and AdamW.
        kwargs: `trust_coefficient` for LARS, `nesterov` for SGD, `betas`/`eps` for Adam(W).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](model, lr=lr, weight_decay=weight_decay, momentum=momentum, **kwargs)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int = 0, final_ratio: float = 0.0) -> float:
    """Learning-rate multiplier at `step` (0-based): linear warm-up, then half-period cosine.

    Warm-up rises linearly to 1 over `warmup_steps` steps; the cosine then
    decays from 1 to `final_ratio` at `total_steps` (He et al. 2019, the
    schedule MoQuad Sec. 4.1 cites) and stays there.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, final_ratio: float = 0.0
) -> LambdaLR:
    """Per-step LambdaLR over `warmup_cosine`; call `.step()` after every optimiser step."""
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps, got {warmup_steps} and {total_steps}")
    return LambdaLR(optimizer, lambda step: warmup_cosine(step, total_steps, warmup_steps, final_ratio))


def linear_scaled_lr(base_lr: float, batch_size: int, base_batch_size: int) -> float:
    """Linear scaling rule (Goyal et al. 2017): lr = base_lr * batch_size / base_batch_size."""
    return base_lr * batch_size / base_batch_size


def moquad_lr(batch_size: int) -> float:
    """MoQuad Sec. 4.1: lr 3.2 at batch 256 with LARS, scaled linearly."""
    return linear_scaled_lr(3.2, batch_size, 256)


def mcpnet_lr(batch_size: int) -> float:
    """MCPNet Sec. 4.1: lr 0.1 * b / 32 with SGD."""
    return linear_scaled_lr(0.1, batch_size, 32)
