"""Update methods of a pretrained backbone on one few-shot episode: linear probing (LP), full
fine-tuning (FT), partial fine-tuning, with optional support-set augmentation, MixUp / CutMix,
ReFine re-randomization and test-time augmentation.

Per episode (reference protocol): a fresh copy of the pretrained backbone, a new linear head
for ``n_way`` classes (PyTorch default init; with ``zero_head_bias`` its bias starts at 0, as in
the ReFine-era code), SGD (lr 0.01, momentum 0.9, dampening 0.9, weight decay 1e-3) over
``epochs`` = 100 passes of the support set in shuffled mini-batches of 4, then query accuracy.
This is evaluation, not training infrastructure, so it is a plain loop.

``parts`` names what is updated: ``head`` (always, unless ``full``), ``full`` (body and head), or
body groups ``stem``, ``layer1`` .. ``layer4``, ``bn`` (every BatchNorm weight and bias) next to
``head``. LP with no augmentation computes the support features once, with the body in eval
mode; whenever body parameters are updated the body runs in train mode (BN on batch statistics,
as in the reference FT) unless ``body_mode`` says otherwise.

Test-time augmentation: ``tta_views`` is one view count or a list of them (the study's
``[1, 2, 4, 8, 16, 32]``). The query logits of ``max(tta_views)`` views are computed once
(view 1 clean, the others augmented) and every count ``n`` is scored on the mean logits of the
first ``n`` views, as the reference reports all counts from one run.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compact_ssl.config import build_dataclass
from compact_ssl.nn import mixed_label_cross_entropy
from compact_ssl.training import NonFiniteLossError
from vision_ssl.fewshot.augment import (
    MIX_MODES,
    MIX_PAIRINGS,
    SUPPORT_POLICIES,
    cutmix,
    mix_partners,
    mixup,
    prefix_means,
    support_transform,
    tta_view_logits,
)
from vision_ssl.fewshot.refine import rerandomize

BODY_PARTS = ("stem", "layer1", "layer2", "layer3", "layer4", "bn")
PARTS = ("head", "full", *BODY_PARTS)
BODY_MODES = ("auto", "train", "eval")


@dataclass
class UpdateConfig:
    """How the pretrained backbone is adapted to one episode (one row of the study table)."""

    parts: list[str] = field(default_factory=lambda: ["head"])  #: head (LP) | full (FT) | head + body groups
    epochs: int = 100  #: passes over the support set
    batch_size: int = 4
    lr: float = 0.01
    momentum: float = 0.9
    dampening: float = 0.9
    weight_decay: float = 1.0e-3
    body_mode: str = "auto"  #: BN mode of the body while fitting; auto: train iff body parameters update
    augmentation: str = "none"  #: support-set policy (vision_ssl.fewshot.augment.SUPPORT_POLICIES)
    mix: str = "none"  #: none | mixup | cutmix
    mix_pairing: str = "both"  #: both | within | between
    mix_alpha: float = 1.0  #: lambda ~ Beta(alpha, alpha), drawn once per epoch
    #: query views averaged (1: clean only); a list scores every count on prefixes of one run's views
    tta_views: int | list[int] = 1
    tta_augmentation: str = ""  #: policy of the extra TTA views ("": the support policy, base if none)
    refine: bool = False  #: ReFine: re-randomize refine_layers before fine-tuning
    refine_layers: list[str] = field(default_factory=list)  #: [] -> the default set (last block)
    refine_init: str = ""  #: reinit mode: state-dict file of the weights to reset to ("" -> fresh random)
    #: zero the new head's bias after its default init (ReFine-era CD-FSL code; the bias is still trained)
    zero_head_bias: bool = False

    def __post_init__(self) -> None:
        bad = [p for p in self.parts if p not in PARTS]
        if bad or not self.parts:
            raise ValueError(f"update.parts: unknown {bad or self.parts}; choose from {list(PARTS)}")
        if "head" not in self.parts and "full" not in self.parts:
            raise ValueError(f"update.parts {self.parts} must contain head (or full): the new head is always trained")
        for key, value, choices in (("augmentation", self.augmentation, SUPPORT_POLICIES),
                                    ("mix", self.mix, MIX_MODES), ("mix_pairing", self.mix_pairing, MIX_PAIRINGS),
                                    ("body_mode", self.body_mode, BODY_MODES)):
            if value not in choices:
                raise ValueError(f"update.{key} must be one of {list(choices)}, got {value!r}")
        if self.tta_augmentation and self.tta_augmentation not in SUPPORT_POLICIES:
            raise ValueError(f"update.tta_augmentation must be one of {list(SUPPORT_POLICIES)}")
        if self.epochs < 1 or self.batch_size < 1 or not self.tta_counts or min(self.tta_counts) < 1:
            raise ValueError("update.epochs, update.batch_size and update.tta_views must be >= 1")

    @property
    def tta_counts(self) -> list[int]:
        """The requested TTA view counts, ascending, without repeats."""
        return sorted(set(self.tta_views if isinstance(self.tta_views, list) else [self.tta_views]))

    @property
    def updates_body(self) -> bool:
        """True when some backbone parameter is trained."""
        return any(p != "head" for p in self.parts)

    @property
    def body_train(self) -> bool:
        """Whether the body is in train mode while fitting."""
        return self.body_mode == "train" or (self.body_mode == "auto" and self.updates_body)


#: named rows usable without a table (``fewshot_eval --update NAME``)
UPDATE_PRESETS: dict[str, dict] = {
    "lp": {"parts": ["head"]},
    "ft": {"parts": ["full"]},
    "ft_last": {"parts": ["head", "layer4"]},
    "ft_bn": {"parts": ["head", "bn"]},
    "refine": {"parts": ["full"], "refine": True, "zero_head_bias": True},
}


def update_config(values: Mapping | None = None, where: str = "update") -> UpdateConfig:
    """An :class:`UpdateConfig` from a mapping (unknown keys are errors naming ``where``)."""
    return build_dataclass(UpdateConfig, dict(values or {}), where)


def trainable_body_parameters(backbone: nn.Module, parts: Sequence[str]) -> list[nn.Parameter]:
    """The backbone parameters that ``parts`` updates (in module order, no duplicates)."""
    if "full" in parts:
        return list(backbone.parameters())
    chosen: dict[int, nn.Parameter] = {}
    for name, module in backbone.named_modules():
        top = name.split(".")[0]
        group = "stem" if top in ("conv1", "bn1") else top
        is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm)
        if group in parts or (is_bn and "bn" in parts):
            for p in module.parameters(recurse=False):
                chosen[id(p)] = p
    return list(chosen.values())


def new_head(in_dim: int, n_way: int, zero_bias: bool = False) -> nn.Linear:
    """The episode's linear head: PyTorch's default init, then (``zero_bias``) the bias set to 0 as
    in the ReFine-era code; zeroing after the init leaves the weight draw and the RNG stream as
    they are. The bias stays trainable either way."""
    head = nn.Linear(in_dim, n_way)
    if zero_bias:
        nn.init.zeros_(head.bias)
    return head


@dataclass
class EpisodeOutcome:
    """Query accuracy (%) of one episode (with the most TTA views), the optimizer steps taken and
    the accuracy at every requested TTA view count."""

    accuracy: float
    steps: int
    tta_accuracy: dict[int, float] = field(default_factory=dict)


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def finetune_episode(pretrained: nn.Module, support: Sequence, support_labels: Sequence[int], query: Sequence,
                     query_labels: Sequence[int], n_way: int, config: UpdateConfig, image_size: int,
                     mean: Sequence[float], std: Sequence[float], rng: np.random.Generator,
                     device: torch.device | str = "cpu", initial_state: Mapping[str, Tensor] | None = None
                     ) -> EpisodeOutcome:
    """Adapt ``pretrained`` (left untouched) to one episode and score its query set.

    Args:
        pretrained: backbone with ``out_dim``; copied when the episode changes it.
        support, query: PIL images; ``*_labels`` their episode labels in ``0..n_way-1``.
        config: the update method.
        image_size, mean, std: input side and normalisation of the backbone.
        rng: batch order, mixing partners and lambdas (torch's global generator drives the head
            init, ReFine's draws and the augmentations; seed both per episode).
        initial_state: ReFine reinit-mode weights.
    """
    c = config
    clean = support_transform("none", image_size, mean, std)
    augment = support_transform(c.augmentation, image_size, mean, std)
    changes_body = c.updates_body or c.body_train or c.refine
    body = copy.deepcopy(pretrained) if changes_body else pretrained
    if c.refine:
        rerandomize(body, c.refine_layers or None, initial_state)
    head = new_head(body.out_dim, n_way, c.zero_head_bias).to(device)
    body_params = trainable_body_parameters(body, c.parts) if c.updates_body else []
    if changes_body:  # flags only on the copy: a frozen body runs under no_grad instead
        body.requires_grad_(False)
        for p in body_params:
            p.requires_grad_(True)
    optimizer = torch.optim.SGD([*head.parameters(), *body_params], lr=c.lr, momentum=c.momentum,
                                dampening=c.dampening, weight_decay=c.weight_decay)
    y = torch.as_tensor(list(support_labels), device=device)
    fixed_inputs = c.augmentation == "none"
    clean_x = torch.stack([clean(im) for im in support]).to(device) if fixed_inputs else None
    precomputed = None
    if not c.updates_body and not c.body_train and fixed_inputs and c.mix == "none":
        body.eval()
        with torch.no_grad():  # LP: the frozen body's features once, in eval mode
            precomputed = body(clean_x)

    def inputs(idx: np.ndarray) -> Tensor:
        if fixed_inputs:
            return clean_x[torch.as_tensor(idx, device=device)]
        return torch.stack([augment(support[i]) for i in idx]).to(device)

    def features(x: Tensor) -> Tensor:
        with torch.set_grad_enabled(c.updates_body):
            return body(x)

    head.train()
    body.train(c.body_train)
    steps = 0
    for _ in range(c.epochs):
        lam, partner = 1.0, None
        if c.mix != "none":
            lam = float(rng.beta(c.mix_alpha, c.mix_alpha))
            partner = mix_partners(support_labels, c.mix_pairing, rng)
        for idx in _batches(len(support), c.batch_size, rng):
            target = y[torch.as_tensor(idx, device=device)]
            if precomputed is not None:
                loss = F.cross_entropy(head(precomputed[torch.as_tensor(idx, device=device)]), target)
            elif partner is None:
                loss = F.cross_entropy(head(features(inputs(idx))), target)
            else:
                x, x2 = inputs(idx), inputs(partner[idx])
                x, weight = mixup(x, x2, lam) if c.mix == "mixup" else cutmix(x, x2, lam, rng)
                loss = mixed_label_cross_entropy(head(features(x)), target, y[torch.as_tensor(partner[idx], device=device)],
                                           weight)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"few-shot fine-tuning: loss is {loss.item()} at step {steps}; "
                                         "lower the update lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    body.eval()
    head.eval()
    tta_policy = c.tta_augmentation or (c.augmentation if c.augmentation != "none" else "base")
    counts = c.tta_counts
    views = tta_view_logits(nn.Sequential(body, head), query, clean,
                            support_transform(tta_policy, image_size, mean, std), counts[-1], device)
    labels = torch.as_tensor(list(query_labels))
    accuracy = {n: 100.0 * (logits.argmax(1).cpu() == labels).float().mean().item()
                for n, logits in prefix_means(views, counts).items()}
    return EpisodeOutcome(accuracy[counts[-1]], steps, accuracy)
