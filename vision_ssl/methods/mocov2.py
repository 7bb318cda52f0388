"""MoCo v2, optionally with MixCo semi-positives (``mixco.enabled``).

Query encoder = backbone + head; key encoder = their momentum (EMA) copy; a queue of ``K`` past
keys supplies negatives. With MixCo, the query-view images of the first and second halves of the
batch are mixed (one lambda per pair) and encoded in the same forward pass as the queries; each
mix is scored against the batch's keys and the queue with temperature ``tau_mix`` and soft targets
``lambda`` / ``1 - lambda``. Only the regular keys are enqueued. Under DDP the keys of all
processes are enqueued and the key encoder sees a batch shuffled across processes (shuffle-BN);
the loss terms use each process's own keys, as in the reference code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from compact_ssl.nn import ema_update
from vision_ssl.config import ExperimentConfig
from vision_ssl.losses import mix_halves, mixco_moco_loss, moco_logits, moco_loss, sample_mix_lambda
from vision_ssl.methods.base import PretrainMethod, frozen_copy


class MoCoV2(PretrainMethod):
    """MoCo v2 (``method: mocov2``) and MoCo v2 + MixCo (``mixco.enabled: true``)."""

    def __init__(self, config: ExperimentConfig | dict) -> None:
        super().__init__(config)
        self.key_backbone = frozen_copy(self.backbone)
        self.key_head = frozen_copy(self.head)
        queue = F.normalize(torch.randn(self.config.moco.queue_size, self.config.model.proj_dim), dim=1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``key = m * key + (1 - m) * query`` for every parameter of backbone and head."""
        m = self.config.moco.momentum
        for q_mod, k_mod in ((self.backbone, self.key_backbone), (self.head, self.key_head)):
            ema_update(k_mod, q_mod, m)

    @torch.no_grad()
    def encode_keys(self, x: Tensor) -> Tensor:
        """Normalised keys of ``x``; under DDP the key batch is shuffled across processes."""
        if self.world_size == 1 or not self.config.moco.shuffle_bn:
            return F.normalize(self.key_head(self.key_backbone(x)), dim=1)
        x_all = self.gather(x, grads=False)
        perm = self.trainer.strategy.broadcast(torch.randperm(len(x_all), device=x.device), src=0)
        n, rank = len(x), self.global_rank
        k_local = self.key_head(self.key_backbone(x_all[perm[rank * n:(rank + 1) * n]]))
        shuffled = self.gather(k_local, grads=False)
        k_all = torch.empty_like(shuffled)
        k_all[perm] = shuffled
        return F.normalize(k_all[rank * n:(rank + 1) * n], dim=1)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` (of all processes) into the queue, overwriting the oldest entries."""
        keys = self.gather(keys, grads=False)
        size = self.queue.shape[0]
        index = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % size
        self.queue[index] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % size)

    def compute_loss(self, views: list[Tensor], labels: Tensor) -> dict[str, Tensor]:
        x_q, x_k = views
        n = len(x_q)
        mix = self.config.mixco
        tau = self.config.contrast.temperature
        if mix.enabled:
            lam = sample_mix_lambda(n // 2, mix.lambda_dist, mix.lambda_alpha, x_q.device)
            q_all = self.head(self.backbone(torch.cat([x_q, mix_halves(x_q, lam)])))
            q, q_mix = q_all[:n], q_all[n:]
        else:
            q = self.head(self.backbone(x_q))
        self.momentum_update()
        k = self.encode_keys(x_k)
        queue = self.queue.clone()
        if mix.enabled:
            out = mixco_moco_loss(q, k, queue, q_mix, lam, tau, mix.tau_mix, mix.beta)
        else:
            out = {"loss": moco_loss(q, k, queue, tau)}
        with torch.no_grad():
            out["acc"] = (moco_logits(q, k, queue, tau).argmax(dim=1) == 0).float().mean()
        self.enqueue(k)
        return out
