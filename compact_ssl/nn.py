"""Small nn utilities shared by the method packages: parameter counts, EMA update, the cosine
learning-rate curve, the mixed-label cross-entropy of mixing augmentations, strict weight
loading that says which keys and shapes do not fit, and the effective weight of a weight-normed layer."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.weight_norm import WeightNorm


def count_parameters(module: nn.Module, trainable_only: bool = False, exclude: Iterable[str] = ()) -> int:
    """Number of parameters of ``module``.

    Args:
        trainable_only: count only parameters with ``requires_grad``.
        exclude: name prefixes to leave out (e.g. ``("pred_head.",)``).
    """
    prefixes = tuple(exclude)
    return sum(
        p.numel() for name, p in module.named_parameters()
        if (p.requires_grad or not trainable_only) and not (prefixes and name.startswith(prefixes))
    )


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online``, parameter by parameter
    (MoCo's key encoder, BYOL's target network). Buffers are left alone."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)


def cosine_lr(base_lr: float, epoch: float, total_epochs: float, eta_min: float = 0.0) -> float:
    """Cosine annealing: ``eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / total_epochs)) / 2``,
    ``base_lr`` at epoch 0 and ``eta_min`` at ``total_epochs``."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * epoch / total_epochs)) / 2


def mixed_label_cross_entropy(logits: Tensor, labels_a: Tensor, labels_b: Tensor, lam: float | Tensor,
                              weight: Tensor | None = None) -> Tensor:
    """Cross-entropy against a mix of two label sets (mixup, CutMix, Patch-Mix):
    ``lam * CE(logits, a) + (1 - lam) * CE(logits, b)``; ``weight`` are optional class weights."""
    return lam * F.cross_entropy(logits, labels_a, weight=weight) + (1.0 - lam) * F.cross_entropy(
        logits, labels_b, weight=weight)


def state_dict_mismatch(expected: Mapping[str, Tensor], state_dict: Mapping[str, Any], limit: int = 8) -> str | None:
    """What keeps ``state_dict`` from loading strictly where ``expected`` does, or None when it fits:
    ``"missing keys: [...]; unexpected keys: [...]; wrong shapes: [...]"`` (at most ``limit`` of each,
    with the count when there are more)."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = []
    for key in sorted(set(expected) & set(state_dict)):
        value = state_dict[key]
        found = tuple(value.shape) if isinstance(value, Tensor) else f"a {type(value).__name__}, not a tensor"
        if found != tuple(expected[key].shape):
            wrong.append(f"{key}: {found} in the file, {tuple(expected[key].shape)} expected")
    if not (missing or unexpected or wrong):
        return None

    def listed(keys: list[str]) -> str:
        return f"{keys[:limit]}" + (f" ({len(keys)} in all)" if len(keys) > limit else "")

    return f"missing keys: {listed(missing)}; unexpected keys: {listed(unexpected)}; wrong shapes: {listed(wrong)}"


def load_state_strictly(module: nn.Module, state_dict: Mapping[str, Any], where: str | Path, problem: str,
                        error: type[Exception] = ValueError) -> None:
    """Load ``state_dict`` into ``module`` only if names and shapes match exactly; otherwise raise
    ``error("<where>: <problem>; missing keys: ...; unexpected keys: ...; wrong shapes: ...")`` and
    leave the module untouched."""
    mismatch = state_dict_mismatch(module.state_dict(), state_dict)
    if mismatch:
        raise error(f"{where}: {problem}; {mismatch}")
    module.load_state_dict(dict(state_dict), strict=True)


def old_weight_norm(module: nn.Module) -> WeightNorm | None:
    """The hook of ``torch.nn.utils.weight_norm`` (the old style, ``weight_g`` / ``weight_v``) on ``module``'s
    ``weight``, if any."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, WeightNorm) and hook.name == "weight":
            return hook
    return None


def effective_weight(module: nn.Module) -> Tensor:
    """The weight ``module`` computes with: plain, parametrized (new-style weight norm) or ``g v / |v|`` (old)."""
    hook = old_weight_norm(module)
    return hook.compute_weight(module) if hook is not None else module.weight


def set_effective_weight(module: nn.Module, weight: Tensor) -> None:
    """Make ``module``'s effective weight equal ``weight`` (call under ``no_grad``), whichever of the three
    layouts of :func:`effective_weight` it has; ``weight`` is moved to the module's device and dtype."""
    hook = old_weight_norm(module)
    weight = weight.to(effective_weight(module))
    if parametrize.is_parametrized(module, "weight"):
        module.weight = weight.clone()  # runs the parametrization's right_inverse (g, v for weight norm)
    elif hook is not None:
        module.weight_g.copy_(torch.norm_except_dim(weight, 2, hook.dim))
        module.weight_v.copy_(weight)
    else:
        module.weight.copy_(weight)
