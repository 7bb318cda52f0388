"""Lightning module for ICBHI classification with AST: cross-entropy, Patch-Mix or Patch-Mix CL.

* ``ce``: ``CE(f(g(x)), y)`` (class-weighted with ``method_args.weighted_ce``).
* ``patchmix``: only the Patch-Mixed batch is classified, with the mixed-label loss
  :func:`compact_ssl.nn.mixed_label_cross_entropy` weighted by the effective ratio ``lam'``.
* ``patchmix_cl``: clean CE plus ``alpha`` times the Patch-Mix contrastive loss between the
  projected mixed features and targets from the clean pass (``grad_block``: the detached clean
  feature).

Evaluation runs after every epoch and the best epoch by Score among those with sensitivity above
``trainer.min_sensitivity`` is kept (``val_selection``). The evaluated set is the test set under
the paper protocol (the default: selection on the test set, as the published numbers) and the
held-out training patients under the clean protocol (``data.val_fraction > 0``, see
:mod:`audio_cls.tasks.datamodule`); the ``val_*`` metrics are always those of that set.
Predictions are gathered across DDP ranks and de-duplicated by cycle index, so the metrics cover
every evaluated cycle exactly once.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from audio_cls.losses import class_weights, patchmix_contrastive_loss
from audio_cls.metrics import confusion_matrix, scores_from_confusion
from audio_cls.models import Classifier, Projector, build_ast
from audio_cls.patchmix import draw_lambda, plan_patch_mix
from audio_cls.tasks.config import IcbhiConfig, config_from_dict
from compact_ssl.nn import cosine_lr, mixed_label_cross_entropy
from compact_ssl.training import NonFiniteLossError
from compact_ssl.unpickle import LIGHTNING, load_untrusted, to_plain


class IcbhiTask(L.LightningModule):
    """AST backbone + classifier (+ projector for ``patchmix_cl``) trained by the configured method.

    Batches are ``(features (B, frames, mel), labels (B,), cycle indices (B,))``.
    ``class_counts`` (training cycles per class) is needed for ``weighted_ce``. ``pretrained=False``
    skips loading the initial checkpoint (used when a trained checkpoint is loaded next).
    """

    def __init__(self, config: IcbhiConfig, class_counts: list[int] | None = None, pretrained: bool = True):
        super().__init__()
        self.config = config
        self.save_hyperparameters({"config": config.to_dict(), "class_counts": class_counts})
        feats, model = config.features, config.model
        self.backbone = build_ast(
            model.arch, feats.num_mel_bins, feats.num_frames, init=model.init if pretrained else "random",
            checkpoint=model.checkpoint, swapped_pos_embed=model.swapped_pos_embed,
        )
        hidden = self.backbone.hidden_size
        self.classifier = Classifier(hidden, config.data.num_classes)
        self.projector = None
        if config.method == "patchmix_cl":
            if config.method_args.target_type.startswith("grad_") and model.proj_dim != hidden:
                raise ValueError(
                    f"target_type={config.method_args.target_type} compares projections with raw {hidden}-d features: "
                    f"set model.proj_dim: {hidden}"
                )
            self.projector = Projector(hidden, model.proj_dim)
        weight = None
        if config.method_args.weighted_ce:
            if class_counts is None:
                raise ValueError("method_args.weighted_ce needs the training class counts")
            weight = class_weights(class_counts)
        self.register_buffer("class_weight", weight, persistent=False)
        self._val_outputs: list[tuple[Tensor, Tensor, Tensor]] = []
        self._before_step: dict[str, Tensor] | None = None

    def forward(self, spec: Tensor) -> Tensor:
        """Class logits of clean features (what evaluation uses)."""
        return self.classifier(self.backbone(spec))

    # ------------------------------------------------------------------ losses
    def compute_loss(self, spec: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Training loss of the configured method; a dict with ``loss`` and its terms."""
        args = self.config.method_args
        if self.config.method == "ce":
            ce = F.cross_entropy(self(spec), labels, weight=self.class_weight)
            return {"loss": ce, "ce": ce}
        plan = plan_patch_mix(labels.shape[0], self.backbone.grid, draw_lambda(args.mix_beta), args.time_domain)
        lam = torch.tensor(plan.lam)
        if self.config.method == "patchmix":
            logits = self.classifier(self.backbone(spec, mix=plan))
            perm = plan.perm.to(labels.device)
            loss = mixed_label_cross_entropy(logits, labels, labels[perm], plan.lam, self.class_weight)
            return {"loss": loss, "lam": lam}
        clean = self.backbone(spec)
        ce = F.cross_entropy(self.classifier(clean), labels, weight=self.class_weight)
        mixed = self.projector(self.backbone(spec, mix=plan))
        if args.target_type == "grad_block":
            target = clean.detach()
        elif args.target_type == "grad_flow":
            target = clean
        elif args.target_type == "project_block":
            target = self.projector(clean).detach()
        else:
            target = self.projector(clean)
        cl = patchmix_contrastive_loss(mixed, target, plan.perm, plan.lam, args.temperature, labels, args.negative_pair)
        return {"loss": ce + args.alpha * cl, "ce": ce, "cl": cl, "lam": lam}

    # ------------------------------------------------------------------ steps
    def training_step(self, batch, batch_idx: int) -> Tensor:
        spec, labels, _ = batch
        losses = self.compute_loss(spec, labels)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step}; lower optim.lr, use "
                "trainer.precision 32-true or bf16-mixed instead of 16-mixed, or check the features of this batch"
            )
        self.log_dict({f"train_{k}": v.detach() for k, v in losses.items()}, on_step=True, on_epoch=True,
                      batch_size=labels.shape[0])
        return loss

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.config.optim.ma_beta > 0:
            self._before_step = {k: v.detach().clone() for k, v in self.state_dict().items() if v.is_floating_point()}

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self._before_step is not None:
            # the reference's "moving average": pull every weight and BN buffer halfway back
            beta = self.config.optim.ma_beta
            with torch.no_grad():
                for key, value in self.state_dict().items():
                    if key in self._before_step:
                        value.mul_(1.0 - beta).add_(self._before_step[key], alpha=beta)
            self._before_step = None

    def on_validation_epoch_start(self) -> None:
        self._val_outputs = []

    def validation_step(self, batch, batch_idx: int) -> None:
        spec, labels, index = batch
        logits = self(spec)
        self.log("val_loss", F.cross_entropy(logits, labels), on_epoch=True, sync_dist=True, batch_size=labels.shape[0])
        self._val_outputs.append((index.detach(), logits.argmax(dim=1).detach(), labels.detach()))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        index, preds, labels = (torch.cat(parts) for parts in zip(*self._val_outputs, strict=True))
        self._val_outputs = []
        if self.trainer.world_size > 1:
            index, preds, labels = (self.all_gather(t).reshape(-1) for t in (index, preds, labels))
            # the distributed sampler pads ranks by repeating cycles: keep each cycle once
            index, first = _first_occurrence(index)
            preds, labels = preds[first], labels[first]
        cm = confusion_matrix(labels.cpu().numpy(), preds.cpu().numpy(), self.config.data.num_classes)
        four, two = scores_from_confusion(cm), scores_from_confusion(cm, two_class_eval=True)
        selection = four.score if four.sensitivity > self.config.trainer.min_sensitivity else -1.0
        self.log_dict({
            "val_sp": four.specificity, "val_se": four.sensitivity, "val_score": four.score,
            "val_se_2cls": two.sensitivity, "val_score_2cls": two.score, "val_selection": selection,
        }, prog_bar=False)
        self.print(f"epoch {self.current_epoch + 1}: {self.config.data.selected_on} Sp {four.specificity:.2f} "
                   f"Se {four.sensitivity:.2f} Score {four.score:.2f} (2-class Score {two.score:.2f}, "
                   f"{int(cm.sum())} cycles)")

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self):
        opt = self.config.optim
        epochs = self.config.trainer.max_epochs
        optimizer = torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=opt.lr,
                                     weight_decay=opt.weight_decay)
        # per-epoch cosine with epochs numbered from 1, as in the reference
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: cosine_lr(opt.lr, e + 1, epochs, opt.lr * opt.eta_min_ratio) / opt.lr
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def _first_occurrence(index: Tensor) -> tuple[Tensor, Tensor]:
    """Unique values of ``index`` and the position of each one's first occurrence."""
    unique, inverse = torch.unique(index, return_inverse=True)
    positions = torch.arange(index.numel(), device=index.device)
    first = torch.full_like(unique, index.numel()).scatter_reduce(0, inverse, positions, reduce="amin")
    return unique, first


def task_from_checkpoint(ckpt: dict) -> IcbhiTask:
    """Rebuild a trained :class:`IcbhiTask` (eval mode) from a loaded Lightning checkpoint dict;
    the initial pretrained weights are not needed. Hyperparameters read as placeholders (a
    checkpoint loaded with :func:`load_task`) are turned into plain data first."""
    hparams = to_plain(ckpt.get("hyper_parameters")) if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or "config" not in hparams or "state_dict" not in ckpt:
        raise ValueError("not an audio_cls checkpoint (no config in hyper_parameters or no state_dict)")
    task = IcbhiTask(config_from_dict(hparams["config"]), hparams.get("class_counts"), pretrained=False)
    task.load_state_dict(ckpt["state_dict"])
    return task.eval()


def read_lightning_checkpoint(checkpoint: str | Path, map_location: str | torch.device = "cpu",
                              trust: bool = False) -> dict:
    """The raw dict of a Lightning checkpoint file, read without running code from it
    (:func:`compact_ssl.unpickle.load_untrusted`) unless ``trust`` (only for a trusted source)."""
    return load_untrusted(checkpoint, what="Lightning checkpoint of an ICBHI run", placeholders=LIGHTNING,
                          trust=trust, map_location=map_location)


def load_task(checkpoint: str | Path, map_location: str | torch.device = "cpu", trust: bool = False) -> IcbhiTask:
    """:func:`task_from_checkpoint` of the Lightning checkpoint file ``checkpoint`` (read with
    :func:`read_lightning_checkpoint`)."""
    ckpt = read_lightning_checkpoint(checkpoint, map_location, trust)
    try:
        return task_from_checkpoint(ckpt)
    except ValueError as err:
        raise ValueError(f"{checkpoint}: {err}") from err
