"""Support-set data augmentation (DA), MixUp / CutMix and test-time augmentation (TTA) of the
fine-tuning study.

=================  ===========================================================================
policy             support-set pipeline (before ToTensor + Normalize)
=================  ===========================================================================
``none``           Resize to ``size`` x ``size`` only (the protocol's default)
``base``           ColorJitter(.4, .4, .4) always, RandomResizedCrop(size), horizontal flip
``rcrop``          RandomResizedCrop(size) (scale .08-1)
``cjitter``        Resize, ColorJitter(.4, .4, .4)
``hflip``          Resize, horizontal flip
``rcrop_l1..l4``   RandomResizedCrop with scale (.9, 1) / (.6, 1) / (.3, 1) / (.01, 1)
``cjitter_l1..l4`` Resize, ColorJitter with factors in [.8, 1.2] / [.6, 1.4] / [.4, 1.6] / [.2, 1.8]
=================  ===========================================================================

MixUp / CutMix mix each support image with a partner (``both``: a random permutation of the
support set; ``within``: another image of the same class; ``between``: an image of another class,
through a derangement of the classes) with one ``lambda ~ Beta(1, 1)`` per epoch; the loss is
``lambda CE(y) + (1 - lambda) CE(y')``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torchvision import transforms as T

from vision_ssl.augment import IMAGENET_MEAN, IMAGENET_STD

_CROP_SCALES = {"l1": (0.9, 1.0), "l2": (0.6, 1.0), "l3": (0.3, 1.0), "l4": (0.01, 1.0)}
_JITTER = {"l1": 0.2, "l2": 0.4, "l3": 0.6, "l4": 0.8}

SUPPORT_POLICIES: tuple[str, ...] = ("none", "base", "rcrop", "cjitter", "hflip",
                                     *(f"rcrop_{lv}" for lv in _CROP_SCALES), *(f"cjitter_{lv}" for lv in _JITTER))
MIX_MODES = ("none", "mixup", "cutmix")
MIX_PAIRINGS = ("both", "within", "between")


def _ops(policy: str, size: int) -> list[Callable]:
    resize = T.Resize((size, size))
    op, _, level = policy.partition("_")
    if policy == "none":
        return [resize]
    if policy == "base":
        return [T.ColorJitter(0.4, 0.4, 0.4), T.RandomResizedCrop(size), T.RandomHorizontalFlip()]
    if op == "rcrop" and (not level or level in _CROP_SCALES):
        return [T.RandomResizedCrop(size, scale=_CROP_SCALES.get(level, (0.08, 1.0)))]
    if op == "cjitter" and (not level or level in _JITTER):
        s = _JITTER.get(level, 0.4)
        return [resize, T.ColorJitter(s, s, s)]
    if policy == "hflip":
        return [resize, T.RandomHorizontalFlip()]
    raise ValueError(f"unknown support augmentation {policy!r}; choose one of {SUPPORT_POLICIES}")


def support_transform(policy: str, size: int, mean: Sequence[float] = IMAGENET_MEAN,
                      std: Sequence[float] = IMAGENET_STD) -> Callable[..., Tensor]:
    """Pipeline ``policy`` (module table) from a PIL image to a normalised ``[3, size, size]`` tensor."""
    return T.Compose([*_ops(policy, size), T.ToTensor(), T.Normalize(mean, std)])


def mix_partners(labels: Sequence[int], pairing: str, rng: np.random.Generator) -> np.ndarray:
    """Index of every support image's mixing partner.

    ``both``: a random permutation; ``within``: a shuffle inside each class (1-shot: the image
    itself); ``between``: the classes are deranged (no class maps to itself) and the j-th image of
    a class is paired with the j-th image of the class it maps to (both shuffled).
    """
    labels = np.asarray(labels)
    if pairing == "both":
        return rng.permutation(len(labels))
    groups = {c: rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}
    partner = np.empty(len(labels), dtype=np.int64)
    if pairing == "within":
        for idx in groups.values():
            partner[idx] = rng.permutation(idx)
        return partner
    if pairing != "between":
        raise ValueError(f"unknown mix pairing {pairing!r}; choose one of {MIX_PAIRINGS}")
    classes = sorted(groups)
    if len(classes) < 2:
        raise ValueError("'between' mixing needs at least two classes")
    order = rng.permutation(len(classes))
    # a cyclic shift of a random order is a derangement of the classes
    target = {classes[order[i]]: classes[order[(i + 1) % len(classes)]] for i in range(len(classes))}
    for c, idx in groups.items():
        other = groups[target[c]]
        partner[idx] = other[np.arange(len(idx)) % len(other)]
    return partner


def mixup(x: Tensor, x2: Tensor, lam: float) -> tuple[Tensor, float]:
    """``lam * x + (1 - lam) * x2`` and the label weight ``lam``."""
    return lam * x + (1.0 - lam) * x2, lam


def cutmix(x: Tensor, x2: Tensor, lam: float, rng: np.random.Generator) -> tuple[Tensor, float]:
    """Paste a box of ``x2`` into ``x``: box sides ``sqrt(1 - lam)`` of the image's, centre uniform,
    clipped at the borders; the returned label weight is the area of ``x`` that was kept."""
    h, w = x.shape[-2:]
    cut_h, cut_w = int(h * math.sqrt(1.0 - lam)), int(w * math.sqrt(1.0 - lam))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    out = x.clone()
    out[..., y0:y1, x0:x1] = x2[..., y0:y1, x0:x1]
    return out, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


@torch.no_grad()
def tta_view_logits(model: nn.Module, images: Sequence, clean: Callable[..., Tensor], augment: Callable[..., Tensor],
                    views: int, device: torch.device | str = "cpu", batch_size: int = 128) -> Tensor:
    """``[views, len(images), C]`` logits of PIL ``images``: view 0 through the ``clean`` transform,
    views 1.. through draws of ``augment``; ``model`` is used as it is (put it in eval mode first).

    Views are drawn one after another (every image of view 1, then of view 2, ...), so the first
    ``n`` views of a run with more views are exactly the views of a run with ``n`` (same RNG state).
    """
    out = []
    for v in range(views):
        transform = clean if v == 0 else augment
        out.append(torch.cat([model(torch.stack([transform(im) for im in images[i:i + batch_size]]).to(device))
                              for i in range(0, len(images), batch_size)]))
    return torch.stack(out)


def prefix_means(view_logits: Tensor, counts: Sequence[int]) -> dict[int, Tensor]:
    """``{n: mean of the first n views' logits}`` for each ``n`` in ``counts`` (the reference's
    TTA average over 1, 2, 4, ... 32 views of one run)."""
    cumulative = view_logits.cumsum(0)
    return {n: cumulative[n - 1] / n for n in counts}


def tta_logits(model: nn.Module, images: Sequence, clean: Callable[..., Tensor], augment: Callable[..., Tensor],
               views: int, device: torch.device | str = "cpu", batch_size: int = 128) -> Tensor:
    """Logits of PIL ``images`` averaged over ``views`` views (see :func:`tta_view_logits`)."""
    return tta_view_logits(model, images, clean, augment, views, device, batch_size).mean(0)
