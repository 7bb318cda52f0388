"""Weighted k-nearest-neighbour classification of frozen features, and the Lightning callback
that monitors it during pretraining.

Each test feature votes with its ``k`` most cosine-similar training features, weighted by
``exp(similarity / temperature)`` (SimCore's monitor: k 20 or 200, temperature 0.07).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from vision_ssl.eval.baselines import module_device


def knn_scores(query: Tensor, bank: Tensor, bank_labels: Tensor, num_classes: int, k: int = 200,
               temperature: float = 0.07, chunk: int = 512) -> Tensor:
    """Class scores ``[Q, num_classes]``: summed ``exp(cos / temperature)`` of the ``k`` nearest
    bank entries of each class (features are l2-normalised here)."""
    bank = F.normalize(bank, dim=1)
    k = min(k, len(bank))
    scores = []
    for start in range(0, len(query), chunk):
        sim = F.normalize(query[start:start + chunk], dim=1) @ bank.T
        top, index = sim.topk(k, dim=1)
        votes = torch.zeros(len(sim), num_classes, dtype=sim.dtype, device=sim.device)
        scores.append(votes.scatter_add_(1, bank_labels[index], (top / temperature).exp()))
    return torch.cat(scores)


@torch.no_grad()
def extract_features(model: torch.nn.Module, loader: DataLoader, name: str = "backbone") -> tuple[Tensor, Tensor]:
    """``(features, labels)`` of every batch of ``loader`` from ``model.features(x)[name]``, in eval
    mode (the previous mode is restored)."""
    was_training = model.training
    model.eval()
    device = module_device(model)
    feats, labels = [], []
    for x, y in loader:
        feats.append(model.features(x.to(device))[name].float())
        labels.append(y.to(device))
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


class KNNMonitor(L.Callback):
    """Logs ``knn/top1`` (test accuracy of the weighted kNN on backbone features, in %) every
    ``every_n_epochs`` training epochs and after the last one.

    Args:
        bank_loader: training images with the evaluation transform (the memory bank).
        test_loader: test images with the evaluation transform.
        num_classes: number of classes.
    """

    def __init__(self, bank_loader: DataLoader, test_loader: DataLoader, num_classes: int, every_n_epochs: int = 10,
                 k: int = 200, temperature: float = 0.07) -> None:
        self.bank_loader, self.test_loader = bank_loader, test_loader
        self.num_classes, self.every_n_epochs, self.k, self.temperature = num_classes, every_n_epochs, k, temperature
        self.last_top1: float | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs and epoch != trainer.max_epochs:
            return
        bank, bank_labels = extract_features(pl_module, self.bank_loader)
        test, test_labels = extract_features(pl_module, self.test_loader)
        pred = knn_scores(test, bank, bank_labels, self.num_classes, self.k, self.temperature).argmax(dim=1)
        self.last_top1 = 100.0 * (pred == test_labels).float().mean().item()
        pl_module.log("knn/top1", self.last_top1)
