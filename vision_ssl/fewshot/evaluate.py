"""Run an update method over the episodes of a target dataset and report mean accuracy with its
95 % interval (and, for an update with several TTA view counts, the same for every count)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from vision_ssl.data.base import LabeledImages
from vision_ssl.fewshot.episodes import confidence_interval, iter_episodes
from vision_ssl.fewshot.update import UpdateConfig, finetune_episode


@dataclass
class FewShotResult:
    """Accuracies (%) of one (update method, shots) cell; with TTA, ``mean`` / ``accuracies`` are
    those of the largest view count and ``tta_accuracies`` holds every requested count."""

    update: str
    shots: int
    mean: float
    ci95: float
    accuracies: list[float] = field(default_factory=list)
    tta_accuracies: dict[int, list[float]] = field(default_factory=dict)  #: view count -> per-episode accuracies

    def to_dict(self) -> dict:
        """The ``results`` entry of ``fewshot_eval``'s JSON; several TTA view counts add ``tta``:
        ``[{"views", "mean", "ci95", "per_episode"}, ...]`` in ascending view count."""
        out = {"shots": self.shots, "update": self.update, "mean": self.mean, "ci95": self.ci95,
               "episodes": len(self.accuracies), "per_episode": self.accuracies}
        if len(self.tta_accuracies) > 1:
            out["tta"] = []
            for n, accs in sorted(self.tta_accuracies.items()):
                mean, half = confidence_interval(accs)
                out["tta"].append({"views": n, "mean": mean, "ci95": half, "per_episode": accs})
        return out


def evaluate_fewshot(backbone: nn.Module, dataset: LabeledImages, update: UpdateConfig, *, name: str = "update",
                     n_way: int = 5, shots: int = 5, queries: int = 15, episodes: int = 600, seed: int = 0,
                     image_size: int = 224, mean: Sequence[float], std: Sequence[float],
                     device: torch.device | str = "cpu", initial_state: Mapping[str, Tensor] | None = None,
                     progress: bool = True) -> FewShotResult:
    """Fine-tune a copy of ``backbone`` with ``update`` on each episode and test on its queries.

    The episodes depend only on ``(seed, episode index)`` (the same for every update method); the
    fine-tuning randomness of episode ``i`` (head init, batch order, augmentation) is seeded from
    ``(seed, i)`` too, so a run is reproducible. Images come untransformed from ``dataset.load``.
    """
    backbone = backbone.to(device).eval()
    accuracies: list[float] = []
    tta_accuracies: dict[int, list[float]] = {n: [] for n in update.tta_counts}
    bar = tqdm(iter_episodes(dataset.targets, n_way, shots, queries, episodes, seed), total=episodes,
               desc=f"{name} {n_way}-way {shots}-shot", disable=not progress)
    for i, ep in enumerate(bar):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i, 1]))
        torch.manual_seed(int(rng.integers(2**62)))
        outcome = finetune_episode(backbone, [dataset.load(j) for j in ep.support], ep.support_labels,
                                   [dataset.load(j) for j in ep.query], ep.query_labels, n_way, update, image_size,
                                   mean, std, rng, device, initial_state)
        accuracies.append(outcome.accuracy)
        for n, acc in outcome.tta_accuracy.items():
            tta_accuracies[n].append(acc)
        bar.set_postfix(acc=f"{np.mean(accuracies):.2f}")
    mean_acc, half = confidence_interval(accuracies)
    return FewShotResult(name, shots, mean_acc, half, accuracies, tta_accuracies)
